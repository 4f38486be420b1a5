"""Upgrading Keystone N -> N+1 under the extension, while the site is a
spoke that a hub on N+1 keeps syncing; a skip-level upgrade (27.1 ->
29.1, SLURP) the same way, with the agent running all along; and the
agent's protocol version negotiation with an extension older or newer
than itself.

A spoke starts on Keystone 29.1 (its own virtualenv, the extension
installed and ``db_sync``ed), joined to and synced from a hub on 30.0 by
the real ``keystone-sync`` command line. Changes are made at the spoke
through Keystone's ordinary API and a reader follows part of the spoke's
change feed. The spoke is then stopped and upgraded exactly as
doc/install.md tells operators: Keystone 30.0's ``keystone-manage
db_sync``, then our ``keystone-syncext-manage db_sync`` and ``check``, on
the same database and keystone.conf, and started on 30.0. Judged: the
reader's cursor still works and returns exactly the rest of what was
made before (nothing lost, nothing twice), new writes are captured, and
the agent keeps syncing the spoke from its checkpoint without seeding it
again. The skip-level upgrade starts the spoke on 27.1 and takes it to
29.1 while ``keystone-sync run`` keeps going in the background (the
spoke is unreachable for a while, then answers as 29.1): the same
judgement, the agent's convergence waited for rather than run.

The spoke runs on the first selected backend (``KSSYNC_BACKENDS``; SQLite
in CI, where a run per backend would cost a minute each: Keystone 29.1 and
30.0 have the same schema, and test_migrations runs each release's
migrations on every backend). ``KSSYNC_BACKENDS=mysql`` or ``postgresql``
runs it there. The hub, which is not upgraded, is on SQLite.
"""

import concurrent.futures
import contextlib
import os
import re
import time
import uuid

import pytest

from keystone_syncext.db import migration
from keystone_syncext.feed import cursors
from keystone_syncext.testing import backends
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import harness as test_agent

MANAGE = 'keystone-syncext-manage'
# keystone_syncext.testing.other_protocols (not imported here: importing it
# builds Keystone's application).
OTHER_PROTOCOLS_APP = 'keystone_syncext.testing.other_protocols:application'
OTHER_PROTOCOLS_ENV = 'KSSYNC_ADVERTISE_PROTOCOL_VERSIONS_FILE'
SEEDED = 'seeding spoke spoke from hub'


@pytest.fixture(scope='module')
def world(backend, tmp_path_factory, sqlite_dir, schema_template):
    """A hub on 30.0 (SQLite) and one spoke on 29.1 (this module's
    backend), joined and synced once. One uWSGI process each: one agent
    is their only client, and every start of a process imports
    Keystone."""
    with _world(backend, tmp_path_factory, sqlite_dir, schema_template,
                conftest.PREVIOUS) as w:
        yield w


@pytest.fixture(scope='module')
def oldest_world(backend, tmp_path_factory, sqlite_dir, schema_template):
    """The same with the spoke on 27.1, the oldest supported release."""
    with _world(backend, tmp_path_factory, sqlite_dir, schema_template,
                conftest.OLDEST) as w:
        yield w


@contextlib.contextmanager
def _world(backend, tmp_path_factory, sqlite_dir, schema_template,
           spoke_release):
    workdir = str(tmp_path_factory.mktemp('upgrade'))
    spoke_venv = conftest.release_venv(spoke_release)
    hub_db = backends.get('sqlite', sqlite_dir)
    made = []

    def new_site(name, db, venv):
        site, dbname = conftest._new_site(
            db, schema_template(db, venv), f'{workdir}/{name}', name, venv,
            app=sites.SYNC_APP, processes=1)
        made.append((db, site, dbname))
        return site

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            hub_f = pool.submit(new_site, 'hub', hub_db, conftest.VENV30)
            spoke_f = pool.submit(new_site, 'spoke', backend, spoke_venv)
            hub, spoke = hub_f.result(), spoke_f.result()
        w = test_agent.World(workdir, hub, [spoke])
        sites.write_clouds_yaml(os.path.join(workdir, 'clouds.yaml'), {
            'hub': hub.admin_auth(), 'spoke': spoke.add_agent_account()})
        w.write_conf(spokes='spoke')
        w.agent('join', '--spoke', 'spoke')
        w.sync()
        # Joined and synced: the spoke's admin is the hub's admin.
        spoke.admin_password = hub.admin_password
        yield w
    finally:
        conftest._stop_and_drop(made)


def upgrade(site: sites.Site, release: str = conftest.CURRENT) -> dict:
    """The operator's steps of doc/install.md, "Upgrading Keystone under
    the extension", with the site stopped: the new release's
    ``keystone-manage db_sync``, then ours, then our check. Returns each
    step's output; the caller starts the site again."""
    assert site.proc is None, 'stop the site first'
    site.venv = conftest.release_venv(release)
    # All of Keystone's expand, migrate and contract phases in one go:
    # the site is down, so there is no rolling upgrade to stage.
    keystone = site.run('keystone-manage', 'db_sync')
    ours = site.run(MANAGE, 'db_sync')
    check = site.run(MANAGE, 'check', check=False)
    return {'keystone': keystone, 'ours': ours, 'check': check}


def capabilities(world, site) -> dict:
    return world.session(site).get(f'{site.url}/sync').json()['sync']


def follow(world, site, since, limit=1000) -> tuple[list, str]:
    """Every change after ``since`` as (cursor, type, id, op, hash), and
    the cursor after the last."""
    out, sess = [], world.session(site)
    while True:
        page = sess.get(f'{site.url}/sync/changes', params={
            'since': since, 'limit': limit}).json()
        out += [(c['cursor'], c['type'], c['id'], c['op'], c['hash'])
                for c in page['changes']]
        since = page['next']
        if not page['more']:
            return out, since


def local_changes(site) -> dict:
    """Creates, updates and deletes of several types at ``site``, through
    the ordinary API; returns {label: (type, id)}."""
    call = personas.admin_caller(site)
    tag = uuid.uuid4().hex[:8]

    def post(path, key, body):
        return call('POST', path, json={key: body}).json()[key]['id']

    role = post('/roles', 'role', {'name': f'ur-{tag}'})
    project = post('/projects', 'project', {'name': f'up-{tag}',
                                            'domain_id': 'default'})
    user = post('/users', 'user', {'name': f'uu-{tag}',
                                   'domain_id': 'default',
                                   'password': f'pw-{tag}'})
    group = post('/groups', 'group', {'name': f'ug-{tag}',
                                      'domain_id': 'default'})
    call('PATCH', f'/roles/{role}', json={'role': {'description': 'x'}})
    call('PATCH', f'/projects/{project}', json={'project': {
        'tags': ['upgraded']}})
    call('DELETE', f'/groups/{group}')
    return {'role': ('role', role), 'project': ('project', project),
            'user': ('user', user), 'group': ('group', group)}


def seeds(world) -> int:
    with open(world.log) as f:
        return f.read().count(SEEDED)


@pytest.mark.first_backend
def test_upgrade_keeps_the_feed_and_the_sync(world):
    _upgrade_keeps_the_feed_and_the_sync(world, conftest.PREVIOUS,
                                         conftest.CURRENT)


@pytest.mark.skipif(
    os.environ.get('KSSYNC_SPAN') != '1',
    reason='the skip-level upgrade runs in tox -e span (a 27.1 world of '
           'its own costs CI about 4 minutes; doc/testing.md)')
@pytest.mark.first_backend
def test_skip_level_upgrade_with_the_agent_running(oldest_world):
    """27.1 -> 29.1 in one step, ``keystone-sync run`` going on."""
    _upgrade_keeps_the_feed_and_the_sync(oldest_world, conftest.OLDEST,
                                         conftest.PREVIOUS, running=True)


def _upgrade_keeps_the_feed_and_the_sync(world, old_release, new_release,
                                         running=False):
    """The spoke on ``old_release`` upgraded to ``new_release``; with
    ``running``, the agent runs from before the spoke stops to the end
    (what it writes to the spoke is told apart from the spoke's own
    changes by id: the hub made it)."""
    hub, spoke = world.hub, world.spokes[0]
    assert capabilities(world, spoke)['keystone_version'].startswith(
        old_release + '.')
    # Synced through the feed (not only seeded) while on the old release.
    grant = test_agent.make_some(hub)['grant'][0]
    world.sync()
    assert world.session(spoke).get(spoke.url + grant,
                                    raise_exc=False).status_code == 204
    assert seeds(world) == 1

    # Changes made at the spoke on the old release, and a reader part-way
    # through.
    start = capabilities(world, spoke)['head_cursor']
    made = local_changes(spoke)
    before, head = follow(world, spoke, start)
    assert {(t, i) for _, t, i, _, _ in before} == set(made.values())
    assert ('group', made['group'][1], 'delete', None) in [
        c[1:] for c in before]
    half = len(before) // 2
    read = world.session(spoke).get(f'{spoke.url}/sync/changes', params={
        'since': start, 'limit': half}).json()
    assert [c['cursor'] for c in read['changes']] == \
        [c[0] for c in before[:half]]
    cursor = read['next']

    # A hub change while the spoke is down for its upgrade.
    agent = world.start_agent() if running else None
    spoke.stop()
    during = test_agent.make_some(hub)
    from_hub = {(t, i) for _, t, i in during.values()}
    out = upgrade(spoke, new_release)
    assert f'Schema is at {migration.head()}.' in out['ours'].stdout, \
        out['ours'].stdout
    assert out['check'].returncode == 0, (out['check'].stdout,
                                          out['check'].stderr)
    spoke.start()
    caps = capabilities(world, spoke)
    assert caps['keystone_version'].startswith(new_release + '.')
    status = world.session(spoke).get(f'{spoke.url}/sync/status').json()
    assert status['status']['capture_complete'] is True, status

    # The reader goes on from its cursor: exactly the rest, then nothing.
    rest, after = follow(world, spoke, cursor)
    assert [c for c in rest if c[1:3] not in from_hub] == before[half:]
    if not running:
        assert cursors.decode(after).position == \
            cursors.decode(head).position

    # Writes on the new release are captured, several types and every op.
    call = personas.admin_caller(spoke)
    new = local_changes(spoke)
    call('DELETE', f'/roles/{made["role"][1]}')
    call('PATCH', f'/users/{made["user"][1]}', json={'user': {
        'email': 'upgraded@example.com'}})
    newer, _ = follow(world, spoke, after)
    seen = {(t, i, op) for _, t, i, op, _ in newer
            if (t, i) not in from_hub}
    want = {(t, i, 'create') for t, i in new.values()} | {
        ('role', new['role'][1], 'update'),
        ('project', new['project'][1], 'update'),
        ('group', new['group'][1], 'delete'),
        ('role', made['role'][1], 'delete'),
        ('user', made['user'][1], 'update')}
    assert want <= seen, want - seen
    assert {(t, i) for t, i, _ in seen} <= {
        (t, i) for t, i, _ in want}, 'changes nobody made'

    # The agent goes on from its checkpoint: what the hub made while the
    # spoke was down and after, without seeding the spoke again.
    later = test_agent.make_some(hub)
    synced = {**{f'during {k}': v for k, v in during.items()},
              **{f'after {k}': v for k, v in later.items()}}
    if agent is None:
        world.sync()
    else:
        _converged_while_running(world, agent, synced)
    test_agent.assert_same_everywhere(world, synced)
    assert seeds(world) == 1
    status = world.status()['spoke']
    assert (status['state'], status['lag_changes'],
            status['pending']) == ('live', 0, 0)


def _converged_while_running(world, agent, made, timeout=180):
    """Wait for the running agent to bring ``made`` to the spoke, then
    stop it as an operator does (it must exit 0)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                test_agent.assert_same_everywhere(world, made)
                break
            except AssertionError:
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise
                time.sleep(1)
    finally:
        test_agent.terminate(agent)


@pytest.mark.backend_independent
def test_protocol_versions_are_negotiated(world):
    """An extension that speaks a newer version besides ours is synced
    with the version both speak; one that shares none is refused at once
    (no retries: waiting does not help), with a one-line reason."""
    hub, spoke = world.hub, world.spokes[0]
    if spoke.venv != conftest.VENV30:
        # Run alone: upgrade it first (the test entry point is in this
        # tree, which the 29.1 virtualenv's copy may predate).
        spoke.stop()
        assert upgrade(spoke)['check'].returncode == 0
    versions = os.path.join(world.dir, 'protocol-versions')
    spoke.stop()
    spoke.app = OTHER_PROTOCOLS_APP
    spoke.env = {OTHER_PROTOCOLS_ENV: versions}
    spoke.start()
    try:
        with open(versions, 'w') as f:
            f.write('2')
        assert capabilities(world, spoke)['protocol_versions'] == [2]
        made = test_agent.make_some(hub)
        proc = world.agent('run', '--once', check=False)
        assert proc.returncode == 1, proc.stdout
        lines = [line for line in proc.stderr.splitlines()
                 if line.startswith('spoke spoke:')]
        assert lines == [
            'spoke spoke: not converged: spoke: no sync protocol version in '
            'common: the site speaks 2, this agent and hub hub 1; upgrade '
            'the side that is behind (extension or agent)'], proc.stderr
        with open(world.log) as f:
            # Refused at the first answer: no retry.
            assert sum('no sync protocol version' in line
                       for line in f) == 1

        with open(versions, 'w') as f:
            f.write('1,2')
        assert capabilities(world, spoke)['protocol_versions'] == [1, 2]
        world.sync()
        test_agent.assert_same_everywhere(world, made)
        with open(world.log) as f:
            chosen = re.findall(r'spoke spoke \(Keystone [^)]*\): sync '
                                r'protocol (\d+)', f.read())
        assert chosen[-1] == '1'
        assert seeds(world) == 1
    finally:
        # Without the file the site is our application, as it was.
        if os.path.exists(versions):
            os.unlink(versions)
