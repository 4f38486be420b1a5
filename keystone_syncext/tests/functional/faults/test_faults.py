"""Fault injection: processes killed and restarted under the sync, and every
trial ends converged with nothing lost.

The sites are real Keystone processes, as in ``test_agent.py``: a hub on
Keystone 30.0 (SQLite), spoke1 on 30.0 whose database is a private MariaDB
server this module starts (so that a trial can stop and kill it), and
spoke2 on 29.1 (SQLite). The agent is the real command line, run as a
subprocess. Each trial breaks something while changes flow -- the agent
(SIGKILL at random points), a spoke (SIGKILL and restart), the hub
(restart during a long-poll of its feed), spoke1's database server (clean
restart and SIGKILL) -- and then judges the outcome the same way
(``Judge``): after a final ``keystone-sync run --once``, every hub
resource of every synced type is at every spoke with the same id and the
same content hash (0 lost, 0 divergent), nothing the hub deleted is left
at a spoke, and a sample of resources reads the same through Keystone's
ordinary v3 API. At the end, every log any process wrote is scanned for
the secrets the suite used.

Budgets come from the environment (doc/testing.md): ``KSSYNC_FAULT_SEED``
(random seed; printed), ``KSSYNC_FAULT_KILLS`` (agent kills, default 20),
``KSSYNC_FAULT_RESOURCES`` (the seed's size, default 2000) and
``KSSYNC_FAULT_TIMEOUT`` (longest wait for any one condition, default 90
s). ``tox -e faults`` runs a bigger budget.

A trial is a test function taking ``world`` (the sites and the agent's
command line), ``judge`` and ``rng``; a new one (a partition with edits on
both sides, say) follows the same shape: break, change, heal, then
``judge.converged(...)``.
"""

import concurrent.futures
import contextlib
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid

from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
import psutil
import pytest
import requests

from keystone_syncext.testing import backends
from keystone_syncext.testing import mariadb
from keystone_syncext.testing import secrets as scanning
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests.functional.agent import harness as agent_tests

TYPES = agent_tests.TYPES
KILLS = int(os.environ.get('KSSYNC_FAULT_KILLS', '20'))
RESOURCES = int(os.environ.get('KSSYNC_FAULT_RESOURCES', '2000'))
TIMEOUT = float(os.environ.get('KSSYNC_FAULT_TIMEOUT', '90'))
# Resources the spot check reads through the ordinary API, per type.
SPOT = 3


# A site that is down or too slow to answer (keystoneauth wraps what
# requests raises).
UNANSWERED = (requests.RequestException, ksa_exceptions.ConnectionError)


def _seed() -> int:
    raw = os.environ.get('KSSYNC_FAULT_SEED')
    return int(raw) if raw else random.SystemRandom().randrange(2 ** 31)


def wait_for(what: str, condition, timeout: float = TIMEOUT,
             interval: float = 0.2):
    """Poll ``condition`` until it returns something true (returned);
    fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f'timed out after {timeout:.0f}s waiting for {what}')
        time.sleep(interval)


def _hex() -> str:
    return uuid.uuid4().hex


# -- the sites ----------------------------------------------------------


class FaultWorld(agent_tests.World):
    """``test_agent.World`` plus the private database server under spoke1
    and the means to run, kill and restart the processes."""

    def __init__(self, workdir, hub, spokes, db, clouds):
        super().__init__(workdir, hub, spokes)
        self.db = db
        self.clouds = clouds
        self._agents = 0

    def write_conf(self, path=None, **extra):
        """As ``World.write_conf``, with more patience for ``--once``: on
        a loaded machine a site may refuse a few connections in a row."""
        super().write_conf(path, **{'once_attempts': 8, 'retry_max': 4,
                                    **extra})

    def session(self, site):
        """As ``World.session``, but at a spoke as the agent's account
        there: the spokes' admin is the hub's (joined), and its password
        changes to the hub's at the first sync, which may come in the
        middle of a trial."""
        if site is self.hub or site.name in self._sessions:
            return super().session(site)
        auth = dict(self.clouds[site.name])
        auth.pop('system_scope')
        sess = ks_session.Session(auth=v3.Password(system_scope='all',
                                                   **auth),
                                  connect_retries=3)
        scanning.REGISTRY.secret(sess.get_token(),
                                 f'agent account token at {site.name}')
        self._sessions[site.name] = sess
        return sess

    def all_live(self) -> bool:
        """Whether the state database has every spoke seeded (state
        ``live``), read beside the agent writing it."""
        path = self.state[len('sqlite:///'):]
        if not os.path.exists(path):
            return False
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            try:
                rows = db.execute('SELECT state FROM agent_spoke').fetchall()
            except sqlite3.OperationalError:  # not made yet
                return False
        return len(rows) == len(self.spokes) and \
            all(r[0] == 'live' for r in rows)

    def start_agent_conf(self, label: str, **opts):
        """The agent (``run``, not ``--once``) with a config of its own:
        ``opts`` over ``write_conf``'s, its log in ``agent-LABEL.log``
        (``proc.log``) and its stderr beside it."""
        self._agents += 1
        name = f'agent-{label}-{self._agents}'
        conf = os.path.join(self.dir, f'{name}.conf')
        log = os.path.join(self.dir, f'{name}.log')
        self.write_conf(path=conf, **{'log_file': log, **opts})
        with open(os.path.join(self.dir, f'{name}.stderr.log'), 'w') as err:
            proc = subprocess.Popen(self.cmd('run', conf=conf), env=self.env,
                                    stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    text=True)
        proc.log = log
        proc.stderr_path = err.name
        return proc

    def stop_agent(self, proc) -> None:
        """SIGTERM, as an operator stops it: it must exit 0. (Sent once
        the run follows the hub: before, its handler is not installed.)"""
        try:
            wait_for('the agent to follow the hub', lambda: _log_has(
                proc.log, _PHASE_LINES[-1][1]) or proc.poll() is not None)
        finally:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        with open(proc.stderr_path) as f:
            assert rc == 0, f.read()[-3000:]

    def count(self, site, type_: str) -> int | None:
        """Resources of ``type_`` at ``site`` (its digest's count); None
        when the site does not answer."""
        try:
            resp = self.session(site).get(f'{site.url}/sync/digest/{type_}',
                                          raise_exc=False, timeout=30)
        except UNANSWERED:
            return None
        return resp.json()['digest']['count'] \
            if resp.status_code == 200 else None

    def has(self, site, path: str) -> bool:
        """Whether the ordinary API at ``site`` shows ``path``."""
        try:
            return agent_tests.ordinary(self, site, path)[0] in (200, 204)
        except UNANSWERED:
            return False


def kill_site(site) -> None:
    """SIGKILL the site's uWSGI master and workers (one process group),
    and wait until every one of them is gone and the port is free: a
    worker still dying holds the listening socket, and a restart would
    fail to bind."""
    pgid = site.proc.pid
    os.killpg(pgid, signal.SIGKILL)
    site.proc.wait(timeout=30)
    site.stop()  # forgets the dead process and its database engine

    def gone():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    def port_free():
        with contextlib.closing(socket.socket()) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(('127.0.0.1', site.port))
            except OSError:
                return False
            return True

    wait_for(f'the processes of {site.name} to be gone', gone, timeout=30)
    wait_for(f'the port of {site.name} to be free', port_free, timeout=30)


@pytest.fixture(scope='module')
def world(secret_scan, tmp_path_factory, sqlite_dir, schema_template):
    """hub (30.0, SQLite), spoke1 (30.0, private MariaDB), spoke2 (29.1,
    SQLite); joined, not yet synced: the first trial's sync is the seed
    (every trial starts with a ``--once``, which seeds when it comes
    first). Every log is below the work directory, which the secret scan
    covers."""
    workdir = str(tmp_path_factory.mktemp('faults'))
    secret_scan.log_dir(workdir)
    db = mariadb.PrivateMariaDB(os.path.join(workdir, 'mariadb'))
    reason = db.unavailable()
    if reason:
        pytest.fail(f'private MariaDB server: {reason}', pytrace=False)
    sqlite = backends.get('sqlite', sqlite_dir)
    made, started = [], []

    def on_sqlite(name, venv):
        site, dbname = conftest._new_site(
            sqlite, schema_template(sqlite, venv), f'{workdir}/{name}', name,
            venv, app=sites.SYNC_APP,
            hub_site_id=None if name == 'hub' else 'hub')
        made.append((sqlite, site, dbname))
        return site

    def on_mariadb(name):
        db.install().start()
        site = sites.Site(name, f'{workdir}/{name}',
                          db.create(f'ks_{name}'), venv=conftest.VENV30,
                          app=sites.SYNC_APP, hub_site_id='hub')
        started.append(site)
        site.setup()
        site.start()
        return site

    began = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            jobs = [pool.submit(on_sqlite, 'hub', conftest.VENV30),
                    pool.submit(on_mariadb, 'spoke1'),
                    pool.submit(on_sqlite, 'spoke2',
                                conftest.release_venv(conftest.PREVIOUS))]
            hub, spoke1, spoke2 = [j.result() for j in jobs]
        print(f'sites up in {time.monotonic() - began:.1f}s')
        clouds = {'hub': hub.admin_auth()}
        w = FaultWorld(workdir, hub, [spoke1, spoke2], db, clouds)
        for spoke in w.spokes:
            clouds[spoke.name] = spoke.add_agent_account()
        for name, auth in clouds.items():
            secret_scan.secret(auth['password'], f'password of {name}')
        for site in w.every():
            secret_scan.secret(site.admin_password,
                               f'bootstrap password of {site.name}')
        sites.write_clouds_yaml(os.path.join(workdir, 'clouds.yaml'),
                                clouds)
        w.write_conf()
        for spoke in w.spokes:
            w.agent('join', '--spoke', spoke.name)
        for site in w.every():
            secret_scan.hashes_of(site.engine())
        print(f'world ready in {time.monotonic() - began:.1f}s')
        yield w
    finally:
        try:
            for site in [m[1] for m in made] + started:
                if db.proc is not None or site not in started:
                    secret_scan.hashes_of(site.engine())
        finally:
            try:
                conftest._stop_and_drop(made)
                for site in started:
                    site.stop()
            finally:
                db.remove_data()


@pytest.fixture
def rng(request):
    """A seeded random generator per trial; the seed is printed (and shown
    in a failure's captured output) and ``KSSYNC_FAULT_SEED`` replays it."""
    seed = _seed()
    print(f'{request.node.name}: KSSYNC_FAULT_SEED={seed}')
    return random.Random(seed)


# -- changes at the hub while things break -----------------------------


def _project(id_, description=''):
    return {'id': id_, 'name': f'f-{id_}', 'description': description,
            'enabled': True, 'domain_id': 'default',
            'parent_id': 'default', 'tags': [], 'options': {}, 'extra': {}}


def _role(id_, description=None):
    return {'id': id_, 'name': f'f-{id_}', 'domain_id': None,
            'description': description, 'options': {}, 'extra': {}}


class Changes:
    """Changes at the hub: bulk ones through its batch route, others
    through Keystone's ordinary API; remembers what exists and what was
    deleted, so that the judge can look for both."""

    BUILDERS = {'project': _project, 'role': _role}

    def __init__(self, world, rng):
        self.world = world
        self.rng = rng
        self.sess = world.session(world.hub)
        self.alive = {'project': [], 'role': [], 'user': [], 'group': []}
        self.deleted = set()   # (type, id)
        self.grants = []       # ordinary paths of grants made
        self.counts = {'create': 0, 'update': 0, 'delete': 0}
        self.retried = 0       # batches the hub failed and got again
        self._base = None

    def call(self, method, path, **kw):
        resp = self.sess.request(self.world.hub.url + path, method,
                                 raise_exc=False, timeout=60, **kw)
        assert resp.status_code < 300, (method, path, resp.text[:500])
        return resp.json() if resp.content else None

    def batch(self, items):
        for n in range(0, len(items), 200):
            results = self._batch(items[n:n + 200])
            bad = [r for r in results if r['status'] >= 300]
            assert not bad, bad[:3]

    def _batch(self, items, attempts=3):
        """One batch at the hub, tried again (it is idempotent) when the
        hub fails it: an SQLite hub on a loaded machine may answer 503
        (database is locked, with Retry-After) to a write."""
        for attempt in range(attempts):
            try:
                return self.call('POST', '/sync/batch',
                                 json={'items': items})['results']
            except (AssertionError,) + UNANSWERED:
                if attempt == attempts - 1:
                    raise
                self.retried += 1
                time.sleep(1)

    def bulk(self, count: int) -> None:
        """``count`` new projects and roles (half each)."""
        items = []
        for i in range(count):
            type_ = ('project', 'role')[i % 2]
            id_ = _hex()
            items.append({'op': 'upsert', 'type': type_, 'id': id_,
                          'resource': self.BUILDERS[type_](id_)})
            self.alive[type_].append(id_)
        self.batch(items)
        self.counts['create'] += count

    def base(self):
        """A project and a role for grants, never deleted."""
        if self._base is None:
            p = self.call('POST', '/projects', json={'project': {
                'name': f'fb-{_hex()[:8]}', 'domain_id': 'default'}})
            r = self.call('POST', '/roles', json={'role': {
                'name': f'fb-{_hex()[:8]}'}})
            self._base = (p['project']['id'], r['role']['id'])
        return self._base

    def step(self, size: int = 40, identity: bool = True) -> None:
        """A round of live changes: bulk creates, updates and deletes of
        earlier projects and roles (the seed's among them), a user made
        with a password, in a new or earlier group, with a grant; now and
        then an update of a user and a delete of an earlier user and
        group."""
        rng, items = self.rng, []
        for type_ in ('project', 'role'):
            pool = self.alive[type_]
            # Deletes first: an id deleted and upserted in one batch would
            # be deleted, then made again.
            for _ in range(min(len(pool) // 2, size // 8)):
                id_ = pool.pop(rng.randrange(len(pool)))
                items.append({'op': 'delete', 'type': type_, 'id': id_})
                self.deleted.add((type_, id_))
                self.counts['delete'] += 1
            for id_ in rng.sample(pool, min(len(pool), size // 4)):
                items.append({'op': 'upsert', 'type': type_, 'id': id_,
                              'resource': self.BUILDERS[type_](
                                  id_, f'changed {_hex()[:6]}')})
                self.counts['update'] += 1
        self.batch(items)
        self.bulk(size // 2)
        if identity:
            self._identity_step()

    def _identity_step(self):
        rng = self.rng
        project, role = self.base()
        tag = _hex()[:8]
        password = agent_tests.remember_secret(f'pw-{tag}-{_hex()[:8]}',
                                       'password of a user')
        user = self.call('POST', '/users', json={'user': {
            'name': f'fu-{tag}', 'domain_id': 'default',
            'password': password}})['user']['id']
        if not self.alive['group'] or rng.random() < 0.5:
            group = self.call('POST', '/groups', json={'group': {
                'name': f'fg-{tag}', 'domain_id': 'default'}})
            self.alive['group'].append(group['group']['id'])
            self.counts['create'] += 1
        group = rng.choice(self.alive['group'])
        self.call('PUT', f'/groups/{group}/users/{user}')
        grant = f'/projects/{project}/users/{user}/roles/{role}'
        self.call('PUT', grant)
        self.alive['user'].append(user)
        self.grants.append((grant, user))
        self.counts['create'] += 3
        if len(self.alive['user']) > 1 and rng.random() < 0.5:
            victim = rng.choice(self.alive['user'][:-1])
            self.call('PATCH', f'/users/{victim}', json={'user': {
                'email': f'{tag}@example.com'}})
            self.counts['update'] += 1
        if len(self.alive['user']) > 2 and rng.random() < 0.4:
            victim = self.alive['user'].pop(
                rng.randrange(len(self.alive['user']) - 1))
            self.call('DELETE', f'/users/{victim}')
            self.deleted.add(('user', victim))
            self.grants = [g for g in self.grants if g[1] != victim]
            self.counts['delete'] += 1
        if len(self.alive['group']) > 2 and rng.random() < 0.3:
            victim = self.alive['group'].pop(0)
            self.call('DELETE', f'/groups/{victim}')
            self.deleted.add(('group', victim))
            self.counts['delete'] += 1

    def probe(self) -> str:
        """One new role through the ordinary API; its path, to watch
        for at the spokes."""
        role = self.call('POST', '/roles', json={'role': {
            'name': f'probe-{_hex()[:10]}'}})['role']['id']
        self.alive['role'].append(role)
        self.counts['create'] += 1
        return f'/roles/{role}'


# -- judging ------------------------------------------------------------

_PATHS = {'project': '/projects/{}', 'role': '/roles/{}',
          'user': '/users/{}', 'group': '/groups/{}'}


class Judge:
    """Runs the final ``keystone-sync run --once`` and counts, for each
    spoke, hub resources lost and divergent and deleted ones left."""

    def __init__(self, world):
        self.world = world

    def local_ids(self, spoke) -> set:
        """Resources only the spoke may hold: the agent's own account and
        its system grant (never synced)."""
        sess = self.world.session(spoke)
        users = sess.get(f'{spoke.url}/users', params={
            'name': 'keystone-sync'}).json()['users']
        out = set()
        for user in users:
            out.add(user['id'])
            out.update(a for a in self.world.sync_items(
                spoke, 'role_assignment') if f':{user["id"]}:' in a)
        return out

    def counts(self, deleted=()) -> dict:
        w = self.world
        hub = {t: w.sync_items(w.hub, t) for t in TYPES}
        report = {'hub': sum(len(v) for v in hub.values())}
        for spoke in w.spokes:
            local = self.local_ids(spoke)
            lost = divergent = extra = stale = compared = 0
            odd = []
            for type_ in TYPES:
                have = w.sync_items(spoke, type_)
                for id_, digest in hub[type_].items():
                    compared += 1
                    if id_ not in have:
                        lost += 1
                    elif have[id_] != digest:
                        divergent += 1
                more = set(have) - set(hub[type_]) - local
                left = {i for t, i in deleted if t == type_ and i in have}
                extra += len(more)
                stale += len(left)
                odd += [(type_, i) for i in sorted(more | left)]
            report[spoke.name] = {'compared': compared, 'lost': lost,
                                  'divergent': divergent, 'extra': extra,
                                  'deleted_left': stale, 'first': odd[:5]}
        return report

    def converged(self, label, changes=None, rng=None):
        """The final ``--once``, then the counts (asserted 0), then a spot
        check through the ordinary API; returns the counts."""
        started = time.monotonic()
        self.world.sync()
        took = time.monotonic() - started
        deleted = changes.deleted if changes else set()
        report = self.counts(deleted)
        print(f'{label}: final --once {took:.1f}s; counts {report}')
        assert report['hub'] > 0
        for spoke in self.world.spokes:
            got = report[spoke.name]
            assert got['compared'] == report['hub'], got
            assert (got['lost'], got['divergent'], got['extra'],
                    got['deleted_left']) == (0, 0, 0, 0), (spoke.name, got)
        self.spot_check(changes, rng or random.Random(0))
        return report

    def spot_check(self, changes, rng):
        """A sample of live resources (and grants) reads the same at every
        spoke through Keystone's ordinary API, with the same content hash;
        a sample of deleted ones is 404 everywhere."""
        w = self.world
        made = {}
        for type_, path in _PATHS.items():
            ids = sorted(w.sync_items(w.hub, type_))
            if changes:
                ids = sorted(set(ids) & set(changes.alive[type_])) or ids
            for id_ in rng.sample(ids, min(SPOT, len(ids))):
                made[f'{type_} {id_}'] = (path.format(id_), type_, id_)
        for grant, user in (rng.sample(changes.grants,
                                       min(SPOT, len(changes.grants)))
                            if changes else []):
            _, project, _, _, _, role = grant.strip('/').split('/')
            made[f'grant {grant}'] = (grant, 'role_assignment',
                                      f'UserProject:{user}:{project}:'
                                      f'{role}:0')
        assert made
        agent_tests.assert_same_everywhere(w, made)
        if changes and changes.deleted:
            gone = rng.sample(sorted(changes.deleted),
                              min(SPOT * 2, len(changes.deleted)))
            for site in w.every():
                for type_, id_ in gone:
                    status, _ = agent_tests.ordinary(
                        w, site, _PATHS[type_].format(id_))
                    assert status == 404, (site.name, type_, id_, status)


@pytest.fixture
def judge(world):
    return Judge(world)


# -- trial 1: the agent killed at random points -------------------------

_PHASE_LINES = (
    ('read', re.compile(r'read \d+ changes from hub')),
    ('applied', re.compile(r'spoke \S+: applied up to outbox')),
    ('following', re.compile(r'following hub')),
)


def kill_phase(log_path: str, live: bool) -> str:
    """Where a killed run was: ``startup`` (its log does not say it follows
    the hub yet), ``seeding`` (a spoke not seeded yet: ``live`` False,
    read from the state database just before the kill), ``applying``
    (the log's last word is changes read from the feed, not yet applied)
    or ``feed`` (caught up: waiting on the hub's feed)."""
    last, followed = None, False
    if os.path.exists(log_path):
        with open(log_path) as f:
            for line in f:
                for name, pattern in _PHASE_LINES:
                    if pattern.search(line):
                        if name == 'following':
                            followed = True
                        elif name in ('read', 'applied'):
                            last = name
                        break
    if not followed:
        return 'startup'
    if not live:
        return 'seeding'
    return 'applying' if last == 'read' else 'feed'


def _log_has(path: str, pattern) -> bool:
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return any(pattern.search(line) for line in f)


_BUSY = re.compile(r'seeding spoke|read \d+ changes from hub')
# When a run is killed: a random delay after one of these moments, picked
# at random per run (with these weights), so that the kills land in
# start-up, seeding, reading the feed and applying it alike. ``start``:
# the process started; ``following``: it follows the hub; ``busy``: it
# began a seed or read changes; ``live``: every spoke is seeded (a seed
# cut short starts over, so without these runs a big seed might never
# finish and no kill would land after it). The first quarter of the runs
# never wait for ``live``, and the middle one does if no run finished the
# seed yet.
MOMENTS = (('start', 2), ('following', 3), ('busy', 3), ('live', 2))
AFTER = {'start': (0.2, 3.0), 'following': (0.0, 2.0), 'busy': (0.0, 1.5),
         'live': (0.0, 1.5)}


def _wait_moment(world, proc, moment) -> None:
    """Wait (bounded) for ``moment`` of the run ``proc``; a run that has
    nothing to do never gets ``busy``, which is then given up quietly."""
    if moment == 'start':
        return
    wait_for('the agent to follow the hub', lambda: _log_has(
        proc.log, _PHASE_LINES[-1][1]), interval=0.05)
    if moment == 'busy':
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None and \
                not _log_has(proc.log, _BUSY):
            time.sleep(0.05)
    elif moment == 'live':
        # A seed is the slowest part (minutes on a loaded machine).
        wait_for('every spoke seeded', world.all_live, interval=0.1,
                 timeout=TIMEOUT * 3)


def test_agent_sigkilled_at_random_points_converges(world, judge, rng):
    """SIGKILL of the agent at ``KSSYNC_FAULT_KILLS`` random points while
    it seeds a few thousand resources to both spokes (a seed cut short
    starts over) and then follows the hub's feed, with live changes at the
    hub between kills: creates, updates and deletes of projects and roles
    (deleting the seed's and earlier rounds'), and users with passwords,
    groups, memberships and grants, updates of users and deletes of users
    and groups made earlier. Beyond ``test_agent``'s kill test: the agent
    runs continuously (so every run is killed, never done), changes come
    between the kills, the kill points are spread over start-up, seed,
    feed and apply by a random delay after a random moment, and each kill's
    phase is read from the run's log and counted."""
    started = time.monotonic()
    changes = Changes(world, rng)
    changes.bulk(RESOURCES)
    changes.base()
    phases = {}
    moments, weights = zip(*MOMENTS, strict=True)
    for n in range(KILLS):
        moment = rng.choices(moments, weights)[0]
        while moment == 'live' and n < KILLS // 4:
            # The first quarter never waits for the seed to finish: their
            # kills are the ones that can land in it.
            moment = rng.choices(moments, weights)[0]
        if n == KILLS // 2 and not world.all_live():
            # Half the kills are done and the seed never finished: let
            # this run finish it, so that the other half land after it.
            moment = 'live'
        delay = rng.uniform(*AFTER[moment])
        proc = world.start_agent_conf('killed')
        ran = time.monotonic()
        try:
            _wait_moment(world, proc, moment)
            time.sleep(delay)
            live = world.all_live()
            assert proc.poll() is None, (
                f'the agent exited by itself ({proc.returncode})')
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        ran = time.monotonic() - ran
        phase = kill_phase(proc.log, live)
        phases[phase] = phases.get(phase, 0) + 1
        stepped = time.monotonic()
        if n < KILLS - 1:
            changes.step(identity=n % 3 == 0)
        print(f'kill {n + 1}: {delay:.2f}s after {moment} ({ran:.1f}s '
              f'in all), in {phase}; changes took '
              f'{time.monotonic() - stepped:.1f}s')
    print(f'{KILLS} kills by phase: {phases}; changes {changes.counts} '
          f'({changes.retried} batches retried); '
          f'{time.monotonic() - started:.1f}s')
    assert sum(phases.values()) == KILLS
    # The random points reach past start-up into the seed and beyond.
    assert phases.get('seeding', 0) >= 1, phases
    assert phases.get('feed', 0) + phases.get('applying', 0) >= 1, phases
    judge.converged('agent kills', changes, rng)


# -- trial 2: a spoke killed while the agent applies to it -------------


def _bulk_in_background(changes, count):
    """``changes.bulk(count)`` in a thread, in rounds of 200, so that
    the agent applies while the hub still takes more."""
    def run():
        for _ in range(count // 200):
            changes.bulk(200)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _kill_while_applying(world, site, target_count, kill, timeout=TIMEOUT):
    """Call ``kill`` as soon as ``site`` holds more projects than before
    and fewer than ``target_count()``: the agent is in the middle of
    applying to it. Returns whether that moment was caught (False: the
    spoke was done first, and ``kill`` was not called)."""
    before = world.count(site, 'project')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = world.count(site, 'project')
        if now is not None and now > before:
            if now < target_count():
                kill()
                return True
            return False
        time.sleep(0.05)
    pytest.fail(f'{site.name} received nothing in {timeout}s')


def test_spoke_sigkilled_while_applying_and_restarted(world, judge, rng):
    """spoke2 (29.1) is SIGKILLed while the continuously running agent
    applies a burst to it; meanwhile spoke1 keeps receiving changes (the
    delay of each, from the hub's answer to spoke1's, is measured); after
    the restart spoke2 catches up and all converge."""
    world.sync()
    spoke1, spoke2 = world.spokes
    changes = Changes(world, rng)
    agent = world.start_agent_conf('spoke-killed')
    try:
        caught = False
        for _attempt in range(3):
            thread = _bulk_in_background(changes, 1200)
            caught = _kill_while_applying(
                world, spoke2,
                lambda: world.count(world.hub, 'project') or 0,
                lambda: kill_site(spoke2))
            thread.join(timeout=TIMEOUT)
            if caught:
                break
        assert caught, 'spoke2 was never caught in the middle of applying'
        down = time.monotonic()
        delays = []
        for _ in range(3):
            path = changes.probe()
            made = time.monotonic()
            wait_for(f'{path} at spoke1 while spoke2 is down',
                     lambda p=path: world.has(spoke1, p), interval=0.05)
            delays.append(time.monotonic() - made)
        changes.step()
        hub_projects = world.count(world.hub, 'project')
        wait_for('the burst at spoke1', lambda: world.count(
            spoke1, 'project') == hub_projects)
        print(f'spoke2 down: spoke1 got each probe in '
              f'{", ".join(f"{d:.2f}" for d in delays)} s; burst complete '
              f'at spoke1 {time.monotonic() - down:.1f}s after the kill')
        spoke2.start()
        back = time.monotonic()
        wait_for('spoke2 to catch up after its restart', lambda: world.count(
            spoke2, 'project') == hub_projects and all(
                world.has(spoke2, g) for g, _ in changes.grants))
        print(f'spoke2 caught up {time.monotonic() - back:.1f}s after its '
              'restart')
    finally:
        if spoke2.proc is None:
            spoke2.start()
        world.stop_agent(agent)
    judge.converged('spoke killed', changes, rng)


# -- trial 3: the hub restarted during a long-poll of its feed ---------


def _long_poll_in_flight(world, agent, port) -> bool:
    """Whether the agent holds a connection to ``port`` that stays open
    across half a second: the hub's uWSGI closes each connection after its
    answer (a closed one is no longer ESTABLISHED here), so a request to
    the hub that lasts that long is a long-poll of its feed."""
    def open_ports():
        try:
            conns = psutil.Process(agent.pid).net_connections(kind='tcp')
        except psutil.NoSuchProcess:
            pytest.fail('the agent exited')
        return {c.laddr.port for c in conns
                if c.raddr and c.raddr.port == port
                and c.status == psutil.CONN_ESTABLISHED}
    first = open_ports()
    if not first:
        return False
    time.sleep(0.5)
    return bool(first & open_ports())


def test_hub_restarted_during_a_long_poll(world, judge, rng):
    """With the agent waiting on the hub's feed (a 10 s long-poll), the
    hub is restarted: once cleanly (SIGTERM), once by SIGKILL of its
    uWSGI processes. A change made just before (it may wake the long-poll,
    or not be read before the hub goes) and one right after the restart
    reach both spokes."""
    world.sync()
    hub = world.hub
    changes = Changes(world, rng)
    agent = world.start_agent_conf('hub-restarted', poll_wait=10)
    watched = []
    try:
        for how in ('terminate', 'kill'):
            wait_for('a long-poll of the hub by the agent',
                     lambda: _long_poll_in_flight(world, agent, hub.port))
            before = changes.probe()
            if how == 'kill':
                kill_site(hub)
            else:
                hub.stop()
            stopped = time.monotonic()
            hub.start()
            after = changes.probe()
            up = time.monotonic()
            watched += [before, after]
            paths = (before, after)
            wait_for(f'changes around the hub restart ({how})',
                     lambda paths=paths: all(
                         world.has(s, p) for s in world.spokes
                         for p in paths), interval=0.1)
            print(f'hub {how}: down {up - stopped:.1f}s; the changes '
                  f'before and after reached both spokes '
                  f'{time.monotonic() - up:.1f}s after it was back')
    finally:
        if hub.proc is None:
            hub.start()
        world.stop_agent(agent)
    for path in watched:
        assert all(world.has(s, path) for s in world.spokes), path
    judge.converged('hub restarted', changes, rng)


# -- trial 4: spoke1's database server restarted -----------------------


def _refused_while_down(world, site) -> int:
    """The status ``site``'s Keystone answers while its database is down
    (it is up: only the database is not)."""
    resp = world.session(site).get(f'{site.url}/sync/digest/project',
                                   raise_exc=False, timeout=60)
    return resp.status_code


def test_database_restarted_under_a_running_keystone(world, judge, rng):
    """spoke1's MariaDB server is stopped cleanly and started again, then
    SIGKILLed and started again (InnoDB crash recovery), each time while
    the agent applies a burst to spoke1. Keystone is not restarted: it
    answers 5xx while the database is gone, serves again once it is back
    (oslo.db reconnects), and the agent delivers everything."""
    world.sync()
    spoke1 = world.spokes[0]
    keystone_pid = spoke1.proc.pid
    changes = Changes(world, rng)
    agent = world.start_agent_conf('db-restarted')
    try:
        for how in ('stop', 'kill'):
            caught = False
            for _attempt in range(3):
                thread = _bulk_in_background(changes, 1200)
                caught = _kill_while_applying(
                    world, spoke1,
                    lambda: world.count(world.hub, 'project') or 0,
                    getattr(world.db, how))
                thread.join(timeout=TIMEOUT)
                if caught:
                    break
            assert caught, f'{how}: spoke1 never caught mid-apply'
            down = time.monotonic()
            status = _refused_while_down(world, spoke1)
            assert status >= 500, status
            changes.step(identity=False)
            time.sleep(max(0.0, 2 - (time.monotonic() - down)))
            world.db.start()
            restarted = time.monotonic()
            wait_for('spoke1 serving again', lambda: world.count(
                spoke1, 'project') is not None)
            recovered = time.monotonic() - restarted
            hub_projects = world.count(world.hub, 'project')
            wait_for('spoke1 to catch up', lambda n=hub_projects: world.count(
                spoke1, 'project') == n)
            print(f'database {how}: down {restarted - down:.1f}s, Keystone '
                  f'answered {status} meanwhile and served again '
                  f'{recovered:.1f}s after the restart; spoke1 caught up '
                  f'{time.monotonic() - restarted:.1f}s after it')
        assert spoke1.proc.pid == keystone_pid
        assert spoke1.proc.poll() is None
    finally:
        if world.db.proc is None:
            world.db.start()
        world.stop_agent(agent)
    judge.converged('database restarted', changes, rng)


# -- trial 5: the secret scan ------------------------------------------


def test_no_secret_in_any_log(world, secret_scan):
    """Every log any process of this suite wrote (Keystone's and uWSGI's
    of each site, every agent run's log and stderr, mariadbd's) holds none
    of the passwords, hashes, secrets and tokens the suite used. (The
    ``secret_scan`` fixture scans again once the processes have stopped.)
    """
    for site in world.every():
        secret_scan.hashes_of(site.engine())
    logs = scanning.log_files(world.dir)
    names = {os.path.relpath(p, world.dir) for p in logs}
    for site in world.every():
        assert f'{site.name}/keystone.log' in names, names
    assert 'mariadb/mariadbd.log' in names, names
    assert any(n.startswith('agent-') for n in names), names
    hits = secret_scan.scan()
    print(f'secret scan: {len(secret_scan.secrets)} secrets, {len(logs)} '
          f'logs, {len(hits)} hits')
    assert len(secret_scan.secrets) > 10
    assert hits == [], scanning.report(hits)
