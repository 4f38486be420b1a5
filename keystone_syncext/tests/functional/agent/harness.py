"""The three-site world of the agent suites: a hub on Keystone 30.0,
spoke1 on 30.0 and spoke2 on 29.1, each a real Keystone process on its own
SQLite database, synced by the real command line (a subprocess), judged
through Keystone's ordinary v3 API (and the sync API's content hashes,
which are the same bytes on both releases when the fields are the same).

Every spoke was bootstrapped on its own and joined first, as an operator
would; the agent uses a spoke-local account at each spoke. ``world`` is a
module-scoped fixture: a module that uses it does ``world =
harness.world`` and gets its own instance (test_agent.py, the agent as
a service included, test_agent_conflicts.py, test_agent_reconcile.py,
security/test_attacks.py); the fault suite builds one on top. They make
resources at the hub (``make_everything``, ``make_some``, ``bulk``) and
judge them everywhere (``assert_same_everywhere``, ``assert_gone_...``).
"""

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

from keystone_syncext.testing import backends
from keystone_syncext.testing import secrets as secret_scan
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests import personas

AGENT = [sys.executable, '-m', 'keystone_syncext.agent.cli']
RUN_TIMEOUT = 240


class World:
    """The three sites, their clouds.yaml, and the agent's command line."""

    def __init__(self, workdir, hub, spokes):
        self.dir = workdir
        self.hub = hub
        self.spokes = spokes
        self.state = f'sqlite:///{workdir}/state.sqlite'
        self.conf = os.path.join(workdir, 'keystone-sync.conf')
        self.log = os.path.join(workdir, 'agent.log')
        self.env = dict(os.environ, OS_CLIENT_CONFIG_FILE=os.path.join(
            workdir, 'clouds.yaml'))
        self._sessions = {}
        self._runs = 0

    def session(self, site):
        """A system-admin session per site, kept: a token per request
        would make every check slow."""
        if site.name not in self._sessions:
            sess = site.admin_session()
            secret_scan.REGISTRY.secret(sess.get_token(),
                                        f'admin token at {site.name}')
            self._sessions[site.name] = sess
        return self._sessions[site.name]

    def write_conf(self, path=None, **extra):
        opts = dict(hub='hub', spokes=','.join(s.name for s in self.spokes),
                    state=self.state,
                    poll_wait=1, retry_initial=0.2, retry_max=2,
                    once_attempts=3, log_file=self.log)
        opts.update(extra)
        with open(path or self.conf, 'w') as f:
            f.write('[DEFAULT]\n' + ''.join(f'{k} = {v}\n'
                                            for k, v in opts.items()))

    def cmd(self, *argv, conf=None):
        return AGENT + ['--config-file', conf or self.conf, *argv]

    def agent(self, *argv, check=True, timeout=RUN_TIMEOUT, conf=None):
        proc = subprocess.run(self.cmd(*argv, conf=conf), env=self.env,
                              capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        what = f'keystone-sync {argv[0]}'
        secret_scan.REGISTRY.output(f'{what} stdout', proc.stdout)
        secret_scan.REGISTRY.output(f'{what} stderr', proc.stderr)
        if check:
            assert proc.returncode == 0, (proc.stdout, proc.stderr[-3000:])
        return proc

    def sync(self, *extra):
        return self.agent('run', '--once', *extra)

    def start_agent(self, *extra):
        """The agent in the background; its stderr goes to a file in the
        work directory (``proc.stderr_path``), scanned for secrets with
        the other logs."""
        self._runs += 1
        path = os.path.join(self.dir, f'agent-run-{self._runs}.stderr.log')
        with open(path, 'w') as err:
            proc = subprocess.Popen(self.cmd('run', *extra), env=self.env,
                                    stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL,
                                    stderr=err, text=True)
        proc.stderr_path = path
        return proc

    def join(self, clouds, secret_scan):
        """Give each spoke an agent account (added to ``clouds``, which
        holds the hub's), write clouds.yaml and the agent's config, and
        join every spoke (``keystone-sync join``); every password goes to
        the secret scan."""
        for spoke in self.spokes:
            clouds[spoke.name] = spoke.add_agent_account()
        for name, auth in clouds.items():
            secret_scan.secret(auth['password'], f'password of {name}')
        for site in self.every():
            secret_scan.secret(site.admin_password,
                               f'bootstrap password of {site.name}')
        sites.write_clouds_yaml(os.path.join(self.dir, 'clouds.yaml'),
                                clouds)
        self.write_conf()
        # Side by side: each join only reads the hub and re-keys at its
        # own spoke, and most of it is waiting on the sites.
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            for f in [pool.submit(self.agent, 'join', '--spoke', s.name)
                      for s in self.spokes]:
                f.result()

    def status(self):
        out = self.agent('status', '-f', 'json').stdout
        return {s['spoke']: s for s in json.loads(out)}

    # -- judging ------------------------------------------------------

    def every(self):
        return [self.hub] + self.spokes

    def sync_items(self, site, type_):
        """id -> content hash of every resource of ``type_`` at ``site``."""
        sess, out, marker = self.session(site), {}, None
        while True:
            params = {'limit': 1000, **({'marker': marker} if marker
                                        else {})}
            page = sess.get(f'{site.url}/sync/resources/{type_}',
                            params=params).json()
            out.update({i['id']: i['hash'] for i in page['items']})
            marker = page['next_marker']
            if not marker:
                return out

    def assert_converged(self, types=None):
        """Every hub resource is at every spoke with the same hash.
        Spokes may hold more: their own agent account and its grant."""
        for type_ in types or TYPES:
            want = self.sync_items(self.hub, type_)
            for spoke in self.spokes:
                have = self.sync_items(spoke, type_)
                missing = {i for i in want if i not in have}
                differ = {i for i in want if i in have and have[i] != want[i]}
                assert not missing and not differ, (spoke.name, type_,
                                                    missing, differ)


TYPES = ('domain', 'project', 'role', 'implied_role', 'user', 'group',
         'group_membership', 'role_assignment', 'application_credential',
         'mapping', 'identity_provider', 'federation_protocol')


@pytest.fixture(scope='module')
def world(secret_scan, tmp_path_factory, sqlite_dir, schema_template,
          server_kind):
    specs = [('hub', conftest.CURRENT), ('spoke1', conftest.CURRENT),
             ('spoke2', conftest.PREVIOUS)]
    with build_world(secret_scan, str(tmp_path_factory.mktemp('agent')),
                     backends.get('sqlite', sqlite_dir), schema_template,
                     specs, server_kind) as w:
        yield w


@contextlib.contextmanager
def build_world(secret_scan, workdir, db, schema_template, specs,
                server_kind, sync=True):
    """A started, joined and synced world: ``specs`` is ``[(name,
    Keystone release)]``, the hub first (named ``hub``), each site on its
    own copy of ``db``'s schema template for its release. ``sync=False``:
    joined, not synced (the caller's agents seed the spokes; the spokes'
    admin password is the hub's only once they did)."""
    # The agent's log and its runs' stderr, each site's Keystone and
    # uWSGI logs: all below the work directory.
    secret_scan.log_dir(workdir)
    made = []

    def new_site(name, release):
        venv = conftest.release_venv(release)
        site, dbname = conftest._new_site(
            db, schema_template(db, venv), f'{workdir}/{name}', name, venv,
            app=sites.SYNC_APP, server_kind=server_kind,
            hub_site_id=None if name == 'hub' else 'hub')
        made.append((db, site, dbname))
        return site

    try:
        # Side by side: most of a site's setup is waiting on processes.
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            hub, *spokes = [f.result() for f in [
                pool.submit(new_site, name, rel) for name, rel in specs]]
        w = World(workdir, hub, spokes)
        w.join({'hub': hub.admin_auth()}, secret_scan)
        if sync:
            w.sync()
        for spoke in spokes:
            # Joined and synced: the spoke's admin is the hub's admin.
            spoke.admin_password = hub.admin_password
        for site in w.every():
            # The spokes' own admin password hashes, before the hub's
            # replaced them.
            secret_scan.hashes_of(site.engine())
        yield w
    finally:
        try:
            for _, site, _ in made:
                secret_scan.hashes_of(site.engine())
            _scan_conflict_records(secret_scan, workdir)
        finally:
            conftest._stop_and_drop(made)


def _scan_conflict_records(secret_scan, workdir):
    """The conflict records of the agent's state database (kept for
    weeks, shown by ``keystone-sync conflicts``) go through the secret
    scan: they keep secret fields as keyed fingerprints, never a hash.
    The outbox and pending items carry hashes in transit by design."""
    path = os.path.join(workdir, 'state.sqlite')
    if not os.path.exists(path):
        return
    engine = sa.create_engine(f'sqlite:///{path}')
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text('SELECT * FROM agent_conflict'))
            text = '\n'.join(repr(tuple(r)) for r in rows)
    finally:
        engine.dispose()
    secret_scan.output('state database: agent_conflict', text)


def hex_id():
    return uuid.uuid4().hex


def issue_token(site, identity, scope=None):
    body = {'auth': {'identity': identity}}
    if scope:
        body['auth']['scope'] = scope
    resp = requests.post(site.url + '/auth/tokens', json=body, timeout=60)
    secret_scan.REGISTRY.secret(resp.headers.get('X-Subject-Token'),
                                f'token issued by {site.name}')
    return resp


def remember_secret(value: str, what: str) -> str:
    """``value``, remembered as a secret the logs must not hold."""
    secret_scan.REGISTRY.secret(value, what)
    return value


def password_identity(user_id, password):
    return {'methods': ['password'],
            'password': {'user': {'id': user_id, 'password': password}}}


def make_app_cred(site, user_id, password, project_id, name, secret):
    """An application credential made at ``site`` by its user (with a
    token of theirs scoped to ``project_id``); its body."""
    tok = issue_token(site, password_identity(user_id, password),
                      {'project': {'id': project_id}})
    assert tok.status_code == 201, tok.text
    resp = requests.post(
        f'{site.url}/users/{user_id}/application_credentials',
        headers={'X-Auth-Token': tok.headers['X-Subject-Token']},
        json={'application_credential': {'name': name, 'secret': secret}},
        timeout=60)
    assert resp.status_code == 201, resp.text
    return resp.json()['application_credential']


def where_it_is(proc) -> str:
    """For a failure's message: a running agent's stacks (SIGUSR2), the
    end of its stderr (``stderr_path``) and of its log (``log``)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGUSR2)
        time.sleep(1)
    ends = []
    for path in (proc.stderr_path, getattr(proc, 'log', None)):
        if path and os.path.exists(path):
            with open(path) as f:
                ends.append(f'--- {path} (end) ---\n{f.read()[-6000:]}')
    return '\n'.join(ends)


def terminate(proc, timeout: float = 30) -> None:
    """SIGTERM to a background agent, as an operator stops it: it must
    exit 0 within ``timeout`` s, or it fails with :func:`where_it_is`."""
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f'no stop within {timeout:.0f} s of SIGTERM\n'
                    f'{where_it_is(proc)}', pytrace=False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    with open(proc.stderr_path) as f:
        assert rc == 0, f.read()[-3000:]


def make_everything(hub):
    """One of every v1 type at the hub, through the ordinary API; returns
    {label: (ordinary GET path, sync type, sync id)}."""
    call = personas.admin_caller(hub)

    def post(path, key, body):
        return call('POST', path, json={key: body}).json()[key]

    tag = hex_id()[:8]
    dom = post('/domains', 'domain', {'name': f'd-{tag}'})
    parent = post('/projects', 'project', {'name': f'p-{tag}',
                                           'domain_id': dom['id'],
                                           'tags': ['a', 'b']})
    child = post('/projects', 'project', {'name': f'c-{tag}',
                                          'domain_id': dom['id'],
                                          'parent_id': parent['id']})
    role = post('/roles', 'role', {'name': f'r-{tag}'})
    implied = post('/roles', 'role', {'name': f'i-{tag}'})
    dom_role = post('/roles', 'role', {'name': f'dr-{tag}',
                                       'domain_id': dom['id']})
    call('PUT', f'/roles/{role["id"]}/implies/{implied["id"]}')
    password = remember_secret(f'pw-{tag}', 'password of a user')
    user = post('/users', 'user', {'name': f'u-{tag}', 'domain_id': dom['id'],
                                   'password': password,
                                   'default_project_id': parent['id']})
    group = post('/groups', 'group', {'name': f'g-{tag}',
                                      'domain_id': dom['id']})
    call('PUT', f'/groups/{group["id"]}/users/{user["id"]}')
    call('PUT', f'/projects/{parent["id"]}/users/{user["id"]}/roles/'
         f'{role["id"]}')
    call('PUT', f'/domains/{dom["id"]}/groups/{group["id"]}/roles/'
         f'{implied["id"]}')
    call('PUT', f'/OS-INHERIT/domains/{dom["id"]}/users/{user["id"]}/roles/'
         f'{implied["id"]}/inherited_to_projects')
    call('PUT', f'/system/users/{user["id"]}/roles/{implied["id"]}')
    mapping_id, idp_id = f'm-{tag}', f'idp-{tag}'
    call('PUT', f'/OS-FEDERATION/mappings/{mapping_id}', json={'mapping': {
        'rules': [{'local': [{'user': {'name': '{0}'}}],
                   'remote': [{'type': 'REMOTE_USER'}]}]}})
    call('PUT', f'/OS-FEDERATION/identity_providers/{idp_id}',
         json={'identity_provider': {'enabled': True,
                                     'remote_ids': [f'https://{tag}'],
                                     'domain_id': dom['id']}})
    call('PUT', f'/OS-FEDERATION/identity_providers/{idp_id}/protocols/'
         'saml2', json={'protocol': {'mapping_id': mapping_id}})
    secret = remember_secret(f'secret-{tag}', 'application credential secret')
    ac = make_app_cred(hub, user['id'], password, parent['id'], f'ac-{tag}',
                       secret)
    u, g, p, r, i = (user['id'], group['id'], parent['id'], role['id'],
                     implied['id'])
    made = {
        'domain': (f'/domains/{dom["id"]}', 'domain', dom['id']),
        'project': (f'/projects/{p}', 'project', p),
        'child project': (f'/projects/{child["id"]}', 'project',
                          child['id']),
        'role': (f'/roles/{r}', 'role', r),
        'domain role': (f'/roles/{dom_role["id"]}', 'role', dom_role['id']),
        'implied role': (f'/roles/{r}/implies/{i}', 'implied_role',
                         f'{r}:{i}'),
        'user': (f'/users/{u}', 'user', u),
        'group': (f'/groups/{g}', 'group', g),
        'membership': (f'/groups/{g}/users/{u}', 'group_membership',
                       f'{u}:{g}'),
        'project grant': (f'/projects/{p}/users/{u}/roles/{r}',
                          'role_assignment', f'UserProject:{u}:{p}:{r}:0'),
        'domain group grant': (f'/domains/{dom["id"]}/groups/{g}/roles/{i}',
                               'role_assignment',
                               f'GroupDomain:{g}:{dom["id"]}:{i}:0'),
        'inherited grant': (
            f'/OS-INHERIT/domains/{dom["id"]}/users/{u}/roles/{i}/'
            'inherited_to_projects', 'role_assignment',
            f'UserDomain:{u}:{dom["id"]}:{i}:1'),
        'system grant': (f'/system/users/{u}/roles/{i}', 'role_assignment',
                         f'UserSystem:{u}:system:{i}:0'),
        'application credential': (
            f'/users/{u}/application_credentials/{ac["id"]}',
            'application_credential', ac['id']),
        'mapping': (f'/OS-FEDERATION/mappings/{mapping_id}', 'mapping',
                    mapping_id),
        'identity provider': (f'/OS-FEDERATION/identity_providers/{idp_id}',
                              'identity_provider', idp_id),
        'protocol': (f'/OS-FEDERATION/identity_providers/{idp_id}/protocols/'
                     'saml2', 'federation_protocol', f'{idp_id}:saml2'),
    }
    return made, {'user': user, 'password': password, 'project': parent,
                  'role': role, 'implied': implied, 'domain': dom,
                  'group': group, 'app_cred': ac, 'secret': secret}


def make_some(hub):
    """A project, a role, a user and a grant at the hub, in the format of
    ``make_everything``: for tests about delivery, not about types."""
    call = personas.admin_caller(hub)
    tag = hex_id()[:8]
    p = call('POST', '/projects', json={'project': {
        'name': f'sp-{tag}', 'domain_id': 'default'}}).json()['project']['id']
    r = call('POST', '/roles', json={'role': {
        'name': f'sr-{tag}'}}).json()['role']['id']
    password = remember_secret(f'pw-{tag}', 'password of a user')
    u = call('POST', '/users', json={'user': {
        'name': f'su-{tag}', 'domain_id': 'default',
        'password': password}}).json()['user']['id']
    call('PUT', f'/projects/{p}/users/{u}/roles/{r}')
    return {'project': (f'/projects/{p}', 'project', p),
            'role': (f'/roles/{r}', 'role', r),
            'user': (f'/users/{u}', 'user', u),
            'grant': (f'/projects/{p}/users/{u}/roles/{r}',
                      'role_assignment', f'UserProject:{u}:{p}:{r}:0')}


def ordinary(world, site, path):
    resp = world.session(site).get(site.url + path, raise_exc=False)
    body = resp.json() if resp.content else None
    return resp.status_code, body


def _comparable(body):
    """An ordinary API body without what differs by site: links."""
    if not isinstance(body, dict):
        return body
    return {k: _comparable(v) for k, v in body.items() if k != 'links'}


def assert_same_everywhere(world, made):
    hashes = {}

    def hash_of(site, type_, id_):
        if (site.name, type_) not in hashes:
            hashes[site.name, type_] = world.sync_items(site, type_)
        return hashes[site.name, type_].get(id_)

    for label, (path, type_, id_) in made.items():
        status, body = ordinary(world, world.hub, path)
        assert status in (200, 204), (label, status)
        hub_hash = hash_of(world.hub, type_, id_)
        assert hub_hash, label
        for spoke in world.spokes:
            s_status, s_body = ordinary(world, spoke, path)
            assert s_status == status, (spoke.name, label, s_status)
            if body and s_body:
                a, b = _comparable(body), _comparable(s_body)
                for key in a:  # fields both releases show
                    common = set(a[key]) & set(b[key]) \
                        if isinstance(a[key], dict) else None
                    if common is not None:
                        assert {k: a[key][k] for k in common} == \
                            {k: b[key][k] for k in common}, (spoke.name,
                                                             label)
            assert hash_of(spoke, type_, id_) == hub_hash, (spoke.name,
                                                            label)


def assert_gone_everywhere(world, made):
    for site in world.every():
        held = {t: world.sync_items(site, t)
                for t in {t for _, t, _ in made.values()}}
        for label, (path, type_, id_) in made.items():
            status, _ = ordinary(world, site, path)
            assert status == 404, (site.name, label, status)
            assert id_ not in held[type_], (site.name, label)


def bulk(world, count):
    """``count`` projects and roles at the hub, fast: through the hub's
    own batch route (hub changes like any other)."""
    items = []
    for _ in range(count // 2):
        p, r = hex_id(), hex_id()
        items.append({'op': 'upsert', 'type': 'project', 'id': p,
                      'resource': {'id': p, 'name': f'bulk-{p}',
                                   'description': '', 'enabled': True,
                                   'domain_id': 'default',
                                   'parent_id': 'default', 'tags': [],
                                   'options': {}, 'extra': {}}})
        items.append({'op': 'upsert', 'type': 'role', 'id': r,
                      'resource': {'id': r, 'name': f'bulk-{r}',
                                   'domain_id': None, 'description': None,
                                   'options': {}, 'extra': {}}})
    sess = world.hub.admin_session()
    for n in range(0, len(items), 200):
        results = sess.post(world.hub.url + '/sync/batch', json={
            'items': items[n:n + 200]}).json()['results']
        assert all(r['status'] == 201 for r in results), results
