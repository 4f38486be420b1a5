"""Real Keystone servers as processes, each with its own config and database.

Used by the functional tests, the benchmarks and the demo. A ``Site`` is one
Keystone deployment: a directory with keystone.conf, fernet and credential
keys, a database, and a uWSGI process serving Keystone on 127.0.0.1.
The Keystone release is whatever the given virtualenv holds (or the one
named by ``release``, see :data:`RELEASES`), so one test can run a 30.0 hub
beside spokes on 29.1, 28.1 and 27.1.
"""

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import textwrap
import time

# Imported here, in the main thread, never lazily: it imports eventlet,
# and eventlet imported by another thread leaves that thread unjoinable
# (a ThreadPoolExecutor setting sites up side by side would hang).
try:
    from keystone.common import fernet_utils
except ImportError:
    # The shared conftest imports this module, and the agent's unit tests
    # also run where Keystone is not installed (tools/check-agent-alone).
    fernet_utils = None
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
import requests
import sqlalchemy as sa

ADMIN_USER = 'admin'
# Fast hashing keeps site setup quick; bcrypt's minimum cost is 4.
HASH_ROUNDS = 4
# Keystone's default for every key repository.
MAX_ACTIVE_KEYS = 3

# Keystone's own WSGI entry point: capture does not depend on our code
# running in the API process.
KEYSTONE_APP = 'keystone.wsgi.api:application'
# Ours: Keystone's application plus the /v3/sync routes.
SYNC_APP = 'keystone_syncext.wsgi.api:application'

# The Keystone releases a site can run (the supported span, doc/install.md),
# newest first, each -> the environment variable naming the virtualenv that
# holds it (tools/run-tests sets them; tools/setup-venvs makes the venvs).
RELEASES = {
    '30.0': 'KSSYNC_VENV30',
    '29.1': 'KSSYNC_VENV29',
    '28.1': 'KSSYNC_VENV28',
    '27.1': 'KSSYNC_VENV27',
}
CURRENT = '30.0'


def release_venv(release: str) -> str | None:
    """The virtualenv holding Keystone ``release`` (a key of
    :data:`RELEASES`), from its environment variable; for the current
    release, the running interpreter's when the variable is unset; None
    when the environment does not say."""
    if release not in RELEASES:
        raise ValueError(f'Keystone {release!r}: the harness runs '
                         f'{", ".join(RELEASES)}')
    venv = os.environ.get(RELEASES[release])
    if not venv and release == CURRENT:
        venv = sys.prefix
    return venv or None


# How a site's uWSGI serves requests: ``processes``, two single-threaded
# worker processes (what the suites ran so far); ``threads``, one process
# with four threads, as many deployments run Keystone. Keystone 29.1 on
# SQLite needs ``threads``: a token issued by one worker process leaves
# that process holding the database so that the other's next write fails
# with "database is locked" (doc/install.md).
SERVERS = {
    'processes': {'processes': 2, 'threads': 1},
    'threads': {'processes': 1, 'threads': 4},
}


# A kind for KSSYNC_SERVERS: each suite's sites as both kinds at once
# (which site runs as which: tests/conftest.py ``site_server``).
MIXED = 'mixed'


def server_kinds() -> list[str]:
    """The server kinds the functional suites run sites as
    (``KSSYNC_SERVERS``, comma separated; default ``mixed``: both kinds
    in one run, without running a module twice)."""
    raw = os.environ.get('KSSYNC_SERVERS', MIXED)
    kinds = [k.strip() for k in raw.split(',') if k.strip()]
    unknown = set(kinds) - set(SERVERS) - {MIXED}
    if unknown or not kinds:
        raise ValueError(f'KSSYNC_SERVERS={raw!r}: give one or more of '
                         f'{", ".join([*SERVERS, MIXED])}')
    return kinds


_HANDED_OUT: set[int] = set()

# Every response of a site carries this header with the site's own token,
# so a readiness probe knows it reached this site's server and not
# another one that holds the port.
SITE_HEADER = 'X-Kssync-Test-Site'


def free_port() -> int:
    """A loopback port free now and not handed out before by this process
    (the kernel may give a just-released port again: fifty sites made
    before any starts would otherwise share one now and then)."""
    while True:
        with contextlib.closing(socket.socket()) as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class SecondPatientPassword(v3.Password):
    """A password login that, after a 401, asks for its new token in the
    next whole second of the clock.

    Keystone revokes a user's tokens to the whole second: a revocation
    event (a password or role change, a user written by the agent) is
    dated with its microseconds cut off, and a token's issue time has
    none either, so a token issued in the same second as the event is
    refused. keystoneauth answers a 401 by authenticating again at once,
    which is in that second too. Right after a sync wrote the bootstrap
    admin at a spoke, the tests' admin sessions met exactly that (401s
    in CI); the agent waits for the same reason (``retries.REAUTH_DELAY``).
    """

    def invalidate(self):
        time.sleep(1.05 - time.time() % 1)
        return super().invalidate()


class Site:
    """One Keystone deployment under ``workdir``.

    :param venv: virtualenv holding the Keystone release to run (its
        ``bin/`` has keystone-manage, keystone-syncext-manage and uwsgi);
        defaults to ``release``'s, else to the running interpreter's.
    :param release: a key of :data:`RELEASES` (``'27.1'``): run the
        virtualenv its environment variable names (an error when unset).
    :param capture: run ``keystone-syncext-manage db_sync`` (install the
        extension's schema) after Keystone's own db_sync.
    :param processes: uWSGI worker processes; ``threads``: threads per
        process. A site serves that many requests at once, and an agent's
        waiting long-poll holds one of them.
    :param server: a kind of :data:`SERVERS`, instead of ``processes``
        and ``threads``.
    :param env: environment variables for the uWSGI process (added to
        this process's own).
    :param hub_site_id: at a spoke, its hub's site id (``[sync]
        hub_site_id``): writes with that origin are the hub's.
    :param keepalive: serve through uWSGI's HTTP router with keep-alive
        (``--http --http-keepalive``, as behind a proxy that keeps client
        connections) instead of ``--http-socket``, whose workers close
        every connection after its answer without saying so.
    """

    def __init__(self, name: str, workdir: str, db_url: str,
                 venv: str | None = None, capture: bool = True,
                 app: str = KEYSTONE_APP, processes: int = 2,
                 threads: int = 1, server: str | None = None,
                 env: dict | None = None, hub_site_id: str | None = None,
                 release: str | None = None, keepalive: bool = False):
        if venv is None and release is not None:
            venv = release_venv(release)
            if venv is None:
                raise ValueError(f'no virtualenv for Keystone {release}: '
                                 f'set {RELEASES[release]}')
        if server is not None:
            processes, threads = (SERVERS[server]['processes'],
                                  SERVERS[server]['threads'])
        self.name = name
        self.hub_site_id = hub_site_id
        self.dir = os.path.abspath(workdir)
        self.db_url = db_url
        self.venv = venv or sys.prefix
        self.capture = capture
        self.app = app
        self.server = server
        self.processes = processes
        self.threads = threads
        self.env = dict(env or {})
        self.keepalive = keepalive
        self.port = free_port()
        self.admin_password = secrets.token_hex(16)
        self.instance = f'{name}-{secrets.token_hex(8)}'
        self.proc = None
        self._engine = None

    # -- paths and commands -------------------------------------------

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}/v3'

    @property
    def conf(self) -> str:
        return os.path.join(self.dir, 'keystone.conf')

    def bin(self, name: str) -> str:
        return os.path.join(self.venv, 'bin', name)

    def run(self, *argv: str, check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess:
        """Run a command of the site's virtualenv with its keystone.conf."""
        cmd = [self.bin(argv[0]), '--config-file', self.conf, *argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, **(env or {})))
        if check and proc.returncode:
            raise RuntimeError(
                f'{self.name}: {" ".join(argv)} failed ({proc.returncode}):\n'
                f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
        return proc

    def keystone_version(self) -> str:
        """The Keystone release the site's virtualenv holds."""
        return subprocess.run(
            [self.bin('python'), '-c', 'import importlib.metadata as m; '
             'print(m.version("keystone"))'], capture_output=True,
            text=True, check=True).stdout.strip()

    # -- lifecycle ----------------------------------------------------

    def write_config(self, extra: str = '') -> None:
        os.makedirs(self.dir, exist_ok=True)
        for sub in ('fernet-keys', 'credential-keys', 'receipt-keys'):
            os.makedirs(os.path.join(self.dir, sub), mode=0o700,
                        exist_ok=True)
        with open(self.conf, 'w') as f:
            f.write(textwrap.dedent(f"""\
                [DEFAULT]
                log_file = {self.dir}/keystone.log
                [database]
                connection = {self.db_url}
                [fernet_tokens]
                key_repository = {self.dir}/fernet-keys
                [fernet_receipts]
                key_repository = {self.dir}/receipt-keys
                [credential]
                key_repository = {self.dir}/credential-keys
                [identity]
                password_hash_rounds = {HASH_ROUNDS}
                [cache]
                enabled = false
                [sync]
                site_id = {self.name}
                """) + (f'hub_site_id = {self.hub_site_id}\n'
                        if self.hub_site_id else '') + extra)

    def setup(self, extra_config: str = '', schema: bool = True) -> 'Site':
        """Config, schema, keys and ``keystone-manage bootstrap``.

        :param schema: run the db_syncs; False when the database already
            has the schema (a copy of one that had them, see
            :meth:`sync_schema`).
        """
        self.write_config(extra_config)
        if schema:
            self.sync_schema()
        self.write_keys()
        # The password goes through the environment: argv is visible to
        # every process on the machine and ends up in error messages.
        self.run('keystone-manage', 'bootstrap',
                 '--bootstrap-region-id', 'RegionOne',
                 '--bootstrap-public-url', self.url,
                 '--bootstrap-internal-url', self.url,
                 '--bootstrap-admin-url', self.url,
                 env={'OS_BOOTSTRAP_PASSWORD': self.admin_password})
        return self

    def sync_schema(self) -> None:
        """Keystone's ``db_sync``, then ours when ``capture`` is on. Needs
        only the [database] section of the config: a database made here
        can serve as the template of many sites."""
        self.run('keystone-manage', 'db_sync')
        if self.capture:
            self.run('keystone-syncext-manage', 'db_sync')

    def write_keys(self) -> None:
        """Token, receipt and credential key repositories as
        ``keystone-manage fernet_setup``, ``receipt_setup`` and
        ``credential_setup`` make them (a staged and a primary key), with
        Keystone's own code in this process: the three commands would cost
        three Keystone imports, seconds each. The key format is the same
        in every supported release."""
        if fernet_utils is None:
            raise RuntimeError('making a site\'s keys needs Keystone')
        for group, sub in (('fernet_tokens', 'fernet-keys'),
                           ('fernet_receipts', 'receipt-keys'),
                           ('credential', 'credential-keys')):
            futils = fernet_utils.FernetUtils(
                os.path.join(self.dir, sub), MAX_ACTIVE_KEYS, group)
            futils.create_key_directory()
            futils.initialize_key_repository()

    @property
    def token_keys(self) -> str:
        """The site's Fernet token key repository ([fernet_tokens]
        key_repository)."""
        return os.path.join(self.dir, 'fernet-keys')

    def share_token_keys(self, repository: str) -> None:
        """Shared-key mode (doc/install.md): make this site's token key
        repository a copy of ``repository`` (another site's
        :attr:`token_keys`), as an operator's configuration management
        distributes one repository to every site. Keystone reads the
        repository on each token it issues or validates, so a running
        site takes the keys without a restart."""
        names = sorted(os.listdir(repository))
        for name in os.listdir(self.token_keys):
            if name not in names:
                os.remove(os.path.join(self.token_keys, name))
        for name in names:
            with open(os.path.join(repository, name), 'rb') as src:
                key = src.read()
            path = os.path.join(self.token_keys, name)
            fd = os.open(path + '.new', os.O_WRONLY | os.O_CREAT |
                         os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'wb') as dst:
                dst.write(key)
            os.replace(path + '.new', path)

    def start(self, timeout: float = 90) -> 'Site':
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=self.conf,
                   **self.env)
        listen = (['--http', f'127.0.0.1:{self.port}', '--http-keepalive']
                  if self.keepalive else
                  ['--http-socket', f'127.0.0.1:{self.port}'])
        cmd = [self.bin('uwsgi'), *listen,
               '--module', self.app,
               '--master', '--die-on-term', '--need-app',
               '--processes', str(self.processes),
               '--threads', str(self.threads), '--enable-threads',
               '--lazy-apps', '--buffer-size', '65535',
               # Keystone's exit handlers hold a stopping worker for
               # seconds, and a stopped site has no use for them.
               '--skip-atexit',
               '--add-header', f'{SITE_HEADER}: {self.instance}',
               '--logto', os.path.join(self.dir, 'uwsgi.log'),
               '--pidfile', os.path.join(self.dir, 'uwsgi.pid'),
               '--home', self.venv]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'{self.name}: uwsgi exited with '
                                   f'{self.proc.returncode}; see '
                                   f'{self.dir}/uwsgi.log')
            try:
                resp = requests.get(self.url, timeout=2)
            except requests.RequestException:
                resp = None
            if resp is not None and resp.status_code == 200:
                if resp.headers.get(SITE_HEADER) == self.instance:
                    return
                # Another server holds the port (one another process
                # took after it was chosen); ours cannot bind it.
                other = resp.headers.get(SITE_HEADER) or 'not a test site'
                self.stop()
                raise RuntimeError(
                    f'{self.name}: port {self.port} is served by another '
                    f'process ({other})')
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f'{self.name}: not ready after {timeout}s')

    def restart(self, extra_config: str | None = None) -> 'Site':
        """Stop and start again; with ``extra_config``, rewrite keystone.conf
        first (it replaces the extra config given to :meth:`setup`; keys and
        database are kept)."""
        self.stop()
        if extra_config is not None:
            self.write_config(extra_config)
        return self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)
        self.proc = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- clients ------------------------------------------------------

    def admin_session(self, system: bool = True) -> ks_session.Session:
        """A keystoneauth1 session as the bootstrap admin, system scoped
        by default (project scoped to 'admin' otherwise)."""
        scope = ({'system_scope': 'all'} if system else
                 {'project_name': 'admin', 'project_domain_id': 'default'})
        auth = SecondPatientPassword(auth_url=self.url,
                                     username=ADMIN_USER,
                                     password=self.admin_password,
                                     user_domain_id='default', **scope)
        # uWSGI's http-socket closes a connection after each answer
        # without saying so, as deployments serve it: a reused one fails
        # and is retried on a fresh one, as every client of such a site
        # must (the agent does the same).
        return ks_session.Session(auth=auth, connect_retries=3)

    def engine(self) -> sa.engine.Engine:
        """Direct database access, for judging what was captured."""
        if self._engine is None:
            self._engine = sa.create_engine(self.db_url,
                                            poolclass=sa.pool.NullPool)
        return self._engine

    def add_agent_account(self, name: str = 'keystone-sync') -> dict:
        """A site-local user holding the system admin role, for the agent.

        The agent cannot use a spoke's bootstrap admin: joining re-keys
        that user to the hub's admin, and syncing gives it the hub's
        password. This account exists only here, so neither touches it.
        Returns the clouds.yaml ``auth`` for it."""
        s = self.admin_session()
        password = secrets.token_hex(16)
        user = s.post(self.url + '/users', json={'user': {
            'name': name, 'domain_id': 'default',
            'password': password}}).json()['user']
        role = s.get(self.url + '/roles', params={'name': 'admin'}) \
            .json()['roles'][0]
        s.put(f'{self.url}/system/users/{user["id"]}/roles/{role["id"]}')
        return {'auth_url': self.url, 'username': name,
                'password': password, 'user_domain_id': 'default',
                'system_scope': 'all'}

    def admin_auth(self) -> dict:
        """clouds.yaml ``auth`` for the bootstrap admin, system scoped."""
        return {'auth_url': self.url, 'username': ADMIN_USER,
                'password': self.admin_password,
                'user_domain_id': 'default', 'system_scope': 'all'}


def write_clouds_yaml(path: str, clouds: dict[str, dict]) -> str:
    """A clouds.yaml naming each site: ``clouds`` maps a cloud name to its
    ``auth``. Owner-only: it holds passwords."""
    import yaml
    body = {'clouds': {name: {'auth': auth, 'identity_api_version': 3,
                              'interface': 'public',
                              'region_name': 'RegionOne'}
                       for name, auth in clouds.items()}}
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        yaml.safe_dump(body, f)
    return path
