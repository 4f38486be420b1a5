"""keystone-sync reconcile end to end: the same three real Keystones as
test_agent.py (hub 30.0, spoke1 30.0, spoke2 29.1, joined and synced by
the real command line).

When the hub has purged the history after the agent's cursor, the next
``run`` follows the feed from the head and reconciles every spoke by
digest: creates, updates and deletes made in the gap all arrive, nothing
deleted comes back, a resource the spoke made itself is left alone, and
the transfer is a small part of a full listing.
"""

import datetime
import json
import re
import sqlite3

import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import harness as base
from keystone_syncext.tests.functional.agent.harness import hex_id

# The same fixture (its own instance for this module): three sites,
# joined, synced once.
world = base.world


def _full_listing_bytes(w, site):
    """Body bytes of a listing of every type at ``site``: what a reconcile
    by listings would read from each site."""
    sess, total = w.session(site), 0
    for type_ in base.TYPES:
        marker = None
        while True:
            resp = sess.get(f'{site.url}/sync/resources/{type_}', params={
                'limit': 1000, **({'marker': marker} if marker else {})})
            total += len(resp.content)
            marker = resp.json()['next_marker']
            if not marker:
                break
    return total


def _expire_the_agents_cursor(hub):
    """Age the hub's whole change log past its retention and purge it: a
    cursor from before is then older than the kept history (410)."""
    long_ago = datetime.datetime.now(datetime.UTC).replace(
        tzinfo=None) - datetime.timedelta(days=60)
    engine = hub.engine()
    try:
        with engine.begin() as conn:
            conn.execute(tables.change.update().values(changed_at=long_ago))
    finally:
        engine.dispose()
    hub.run('keystone-syncext-manage', 'purge')


def test_expired_cursor_is_reconciled_by_digest(world):
    w = world
    base.bulk(w, 600)         # enough that a full listing weighs something
    doomed = base.make_some(w.hub)
    changed = base.make_some(w.hub)
    w.sync()                   # delivery by the feed: test_agent.py
    spoke1 = w.spokes[0]
    local = personas.admin_caller(spoke1)('POST', '/roles', json={
        'role': {'name': f'spoke-local-{hex_id()[:8]}'}}).json()['role']

    call = personas.admin_caller(w.hub)
    call('PATCH', changed['role'][0], json={'role': {
        'description': 'changed during the gap'}})
    call('PATCH', changed['project'][0], json={'project': {
        'description': 'changed during the gap'}})
    for label in ('grant', 'user', 'role', 'project'):
        call('DELETE', doomed[label][0])
    created = base.make_some(w.hub)
    _expire_the_agents_cursor(w.hub)
    # A list-and-diff would read everything at both sites.
    listing = _full_listing_bytes(w, w.hub) + _full_listing_bytes(w, spoke1)

    proc = w.sync()
    with open(w.log) as f:
        log = f.read()
    assert 'no longer holds the history after our cursor' in log
    reconciled = re.findall(
        r'reconciled spoke (\w+): (\d+) digest buckets compared, (\d+) '
        r'upserted, (\d+) deleted, (\d+) site-local kept, (\d+) refused '
        r'\(pending\), (\d+) bytes', log)
    assert {r[0] for r in reconciled} == {'spoke1', 'spoke2'}, proc.stderr
    for name, _cmp, up, deleted, kept, refused, nbytes in reconciled:
        assert int(up) >= 6 and int(deleted) >= 4, (name, up, deleted)
        assert int(kept) >= 1 and refused == '0', (name, kept, refused)
        # Both sites' digests, the reads and the writes: a small part of
        # the listings. (Each difference costs a few digest nodes of up to
        # 64 ids and hashes at both sites, so the part shrinks as the
        # sites grow: see bench/reconcile.py.)
        assert int(nbytes) < listing / 5, (name, nbytes, listing)

    w.assert_converged()
    base.assert_same_everywhere(w, {**changed, **created})
    base.assert_gone_everywhere(w, doomed)
    # The spoke's own role is still there, as it was.
    status, body = base.ordinary(w, spoke1, f'/roles/{local["id"]}')
    assert status == 200 and body['role']['name'] == local['name']
    for name, row in w.status().items():
        assert row['state'] == 'live' and row['last_reconcile_at'], name


def test_reconcile_command_dry_run_changes_nothing(world):
    w = world
    role = personas.admin_caller(w.hub)('POST', '/roles', json={
        'role': {'name': f'dry-{hex_id()[:8]}'}}).json()['role']
    path = f'/roles/{role["id"]}'
    before = {s.name: w.sync_items(s, 'role') for s in w.spokes}

    proc = w.agent('reconcile', '--dry-run', '-f', 'json')
    rows = {(r['spoke'], r['type']): r for r in json.loads(proc.stdout)}
    for spoke in w.spokes:
        assert f'spoke {spoke.name}: would reconcile (dry run) with hub ' \
            'hub: 1 upserts, 0 deletes' in proc.stderr, proc.stderr
        assert base.ordinary(w, spoke, path)[0] == 404
        assert w.sync_items(spoke, 'role') == before[spoke.name]
        got = rows[spoke.name, 'role']
        assert (got['missing'], got['upserts']) == (1, 1), got
        assert rows[spoke.name, 'total']['upserts'] == 1

    proc = w.agent('reconcile')
    for spoke in w.spokes:
        assert f'spoke {spoke.name}: reconciled with hub hub: 1 upserts, ' \
            '0 deletes' in proc.stderr, proc.stderr
        assert base.ordinary(w, spoke, path)[0] == 200
    w.assert_converged(('role',))
    # What the command wrote is placed: a later delete at the hub found
    # by a reconcile removes it again.
    state = sa.create_engine(w.state)
    try:
        with state.connect() as conn:
            placed = conn.execute(sa.text(
                'SELECT spoke FROM agent_placed WHERE resource_id = :i'),
                {'i': role['id']}).scalars().all()
    finally:
        state.dispose()
    assert sorted(placed) == ['spoke1', 'spoke2']


def _sqlite_path(site):
    return site.db_url[len('sqlite:///'):]


def test_spoke_restored_from_backup_resurrects_nothing(world, tmp_path):
    """Drill: back a spoke up, delete at the hub, sync, restore the spoke
    from the backup (the deleted resources are back there, and the agent's
    record of placing them went with the delete). The next run notices the
    restore, and its reconcile deletes them again from the hub's
    tombstones; nothing the spoke made is touched."""
    w = world
    spoke1 = w.spokes[0]
    doomed = base.make_some(w.hub)
    kept = base.make_some(w.hub)
    w.sync()
    local = personas.admin_caller(spoke1)('POST', '/roles', json={
        'role': {'name': f'restored-local-{hex_id()[:8]}'}}).json()['role']
    backup = str(tmp_path / 'spoke1-backup.db')
    with sqlite3.connect(_sqlite_path(spoke1)) as live, \
            sqlite3.connect(backup) as copy:
        live.backup(copy)

    call = personas.admin_caller(w.hub)
    events = set(w.sync_items(w.hub, 'revocation_event'))
    for label in ('grant', 'user', 'role', 'project'):
        call('DELETE', doomed[label][0])
    w.sync()
    base.assert_gone_everywhere(w, doomed)
    # The deletes revoked tokens at the hub: events the restore loses.
    events = set(w.sync_items(w.hub, 'revocation_event')) - events

    spoke1.stop()
    try:
        # Through SQLite's backup API, as an operator's restore tool
        # would: a plain copy would leave the live write-ahead log to be
        # replayed over the restored file.
        with sqlite3.connect(backup) as copy, \
                sqlite3.connect(_sqlite_path(spoke1)) as live:
            copy.backup(live)
    finally:
        spoke1.start()
    for label, (path, _, _) in doomed.items():
        assert base.ordinary(w, spoke1, path)[0] in (200, 204), label

    # The next run notices the restore by itself (the spoke refuses the
    # marker the agent took after its writes) and reconciles the spoke.
    with open(w.log) as f:
        seen = len(f.read())
    w.sync()
    with open(w.log) as f:
        log = f.read()[seen:]
    assert log.count('spoke spoke1 lost history') == 1, log
    reconciled = re.findall(r'reconciled spoke spoke1: \d+ digest buckets '
                            r'compared, (\d+) upserted, (\d+) deleted', log)
    # The four doomed resources deleted again, and the revocation events
    # the restore lost written back; nothing else (the upward recovery
    # of the spoke's own feed, if it runs, finds nothing to do).
    assert sum(int(d) for _, d in reconciled) == 4, reconciled
    assert sum(int(u) for u, _ in reconciled) == len(events), reconciled
    assert events <= set(w.sync_items(spoke1, 'revocation_event'))
    base.assert_gone_everywhere(w, doomed)
    base.assert_same_everywhere(w, kept)
    status, body = base.ordinary(w, spoke1, f'/roles/{local["id"]}')
    assert status == 200 and body['role']['name'] == local['name']
    # The restored user cannot log in at the spoke again.
    user_id = doomed['user'][2]
    resp = w.session(spoke1).post(
        spoke1.url + '/auth/tokens', raise_exc=False, authenticated=False,
        json={'auth': {'identity': {'methods': ['password'], 'password': {
            'user': {'id': user_id, 'password': 'whatever'}}}}})
    assert resp.status_code == 401


def test_agent_state_restored_from_an_older_copy_converges(world, tmp_path):
    """Drill: the agent's state database is restored from a copy taken
    before some changes were applied. The older cursor re-reads what was
    applied since (every write is an upsert or delete by id), and the run
    converges with nothing lost, nothing resurrected."""
    w = world
    doomed = base.make_some(w.hub)
    w.sync()
    state_file = w.state[len('sqlite:///'):]
    backup = str(tmp_path / 'state-backup.sqlite')
    with sqlite3.connect(state_file) as live, \
            sqlite3.connect(backup) as copy:
        live.backup(copy)

    made_after = base.make_some(w.hub)
    call = personas.admin_caller(w.hub)
    for label in ('grant', 'user', 'role', 'project'):
        call('DELETE', doomed[label][0])
    w.sync()

    with sqlite3.connect(backup) as copy, \
            sqlite3.connect(state_file) as live:
        copy.backup(live)
    made_last = base.make_some(w.hub)
    w.sync()

    w.assert_converged()
    base.assert_same_everywhere(w, {**_relabel(made_after, 'a'),
                                    **_relabel(made_last, 'b')})
    base.assert_gone_everywhere(w, doomed)


def _relabel(made, tag):
    return {f'{tag}-{label}': v for label, v in made.items()}
