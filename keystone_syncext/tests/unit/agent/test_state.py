"""The agent's state database on every backend, and its pure helpers.

The state database is what makes a crash harmless, so it is judged here
directly: migrations up, down and up again; changes stored with their
cursor; checkpoints, pending items, pruning and the status report.
"""

import os

import pytest
import sqlalchemy as sa

from keystone_syncext.agent import batch_body
from keystone_syncext.agent import join
from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import writer
from keystone_syncext.tests import conftest


@pytest.fixture(scope='module')
def state_url(backend):
    name = conftest.unique_name('agent_state')
    url = backend.create(name)
    yield url
    backend.drop(name)


def _tables(url):
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


AGENT_TABLES = {'agent_hub', 'agent_outbox', 'agent_spoke', 'agent_pending',
                'agent_upward', 'agent_placed', 'agent_conflict',
                state_mod.VERSION_TABLE}


def test_migrations_up_down_up(state_url):
    st = state_mod.State(state_url)
    st.migrate()
    assert AGENT_TABLES <= _tables(state_url)
    st.downgrade('base')
    assert not (AGENT_TABLES - {state_mod.VERSION_TABLE}) \
        & _tables(state_url)
    st.migrate()
    st.migrate()  # idempotent
    assert AGENT_TABLES <= _tables(state_url)
    st.engine.dispose()


def test_a_state_database_error_never_shows_the_statement_parameters(
        state_url):
    """What the state stores holds password hashes and secrets; an
    error of the state database is logged with its traceback (the agent's
    threads say where a bug is) and noted in the state, so it must not
    carry the parameters of the statement that failed."""
    st = state_mod.State(state_url)
    secret = '$2b$12$' + 'S' * 53
    try:
        with pytest.raises(sa.exc.DBAPIError) as e:
            with st.engine.begin() as conn:
                conn.execute(sa.text('INSERT INTO no_such_table VALUES '
                                     '(:secret)'), {'secret': secret})
    finally:
        st.engine.dispose()
    assert 'no_such_table' in str(e.value)
    assert secret not in str(e.value)
    assert 'hidden due to hide_parameters' in str(e.value)


def _change(cursor, type_, id_, op='create', resource=None, origin=None):
    return {'cursor': cursor, 'type': type_, 'id': id_, 'op': op,
            'origin': origin, 'changed_at': '2026-11-28T03:00:00.000000Z',
            'hash': None,
            'resource': resource if op != 'delete' else None}


def _emptied(state_url):
    """The state database at ``state_url``, migrated, with no hub, spoke,
    outbox, pending or placed rows (the module shares one database)."""
    st = state_mod.State(state_url)
    st.migrate()
    with st.engine.begin() as conn:
        for t in ('agent_placed', 'agent_pending', 'agent_spoke',
                  'agent_outbox', 'agent_hub'):
            conn.execute(sa.text(f'DELETE FROM {t}'))
    return st


def test_outbox_checkpoints_pending_and_report(state_url):
    st = _emptied(state_url)
    st.set_hub('hubcloud', 'hub-site', None)
    with pytest.raises(SystemExit, match='follows hub site'):
        st.set_hub('other', 'another-site', None)
    st.restart_feed('c0')
    assert st.hub().cursor == 'c0'

    top = st.append([_change('c1', 'role', 'r1', resource={'id': 'r1'}),
                     _change('c2', 'role', 'r2', resource={'id': 'r2'},
                             origin='s1-site')], 'c2', 'c2')
    assert st.hub().cursor == 'c2'
    assert [c.id for c in st.outbox_after(0, 10)] == ['r1', 'r2']
    assert top == st.top()

    row = st.spoke('s1')
    assert (row.state, row.applied_seq) == ('new', 0)
    st.set_site_id('s1', 's1-site')
    seed_seq = st.start_seed('s1')
    assert seed_seq == top
    # A seed redone after a crash keeps the first seed's position.
    st.append([_change('c3', 'role', 'r3', resource={'id': 'r3'})],
              'c3', 'c3')
    assert st.start_seed('s1') == seed_seq
    st.finish_seed('s1')
    rows = st.outbox_after(st.spoke('s1').applied_seq, 10)
    assert [c.id for c in rows] == ['r3']

    # A refused item is kept (with its reason) and counted; it is
    # dropped once it applies.
    st.record('s1', rows[-1].seq, [], [(rows[0], 'role r3: 409 taken')])
    assert [c.id for c in st.pending_for('s1')] == ['r3']
    assert st.report_pending('s1') == 'role r3: 409 taken'
    st.record('s1', None, [], [(rows[0], 'role r3: 409 still')])
    with st.engine.connect() as conn:
        attempts = conn.execute(sa.select(state_mod.pending.c.attempts)) \
            .scalar()
    assert attempts == 2
    report = st.report()
    spoke = report['spokes'][0]
    assert (spoke['spoke'], spoke['state'], spoke['pending'],
            spoke['lag_changes']) == ('s1', 'live', 1, 0)
    st.record('s1', None, rows, [])
    assert st.pending_for('s1') == []

    # Pruning keeps what a configured spoke has not applied yet.
    st.spoke('s2')
    assert st.prune(['s1', 's2']) == 0
    assert st.prune(['s1']) == 3
    # s2 was never seeded: it still starts with a seed.
    assert st.spoke('s2').state == 'new'
    st.engine.dispose()


def test_two_refusals_of_one_resource_in_a_pass_keep_the_latest(
        state_url):
    """A pass can hold two changes of one resource (its pending retry and
    a newer outbox row, or a create and a delete in one burst) that are
    both refused. Pending keeps one row per resource: the latest change
    and its reason. (Both rows went into one INSERT before, which the
    primary key refused, so the pass failed and the spoke's checkpoint
    never moved: seen in CI under several agents.)"""
    st = _emptied(state_url)
    st.set_hub('hubcloud', 'hub-site', None)
    st.restart_feed('c0')
    st.append([_change('c1', 'role', 'rx', resource={'id': 'rx'}),
               _change('c2', 'role', 'rx', op='delete')], 'c2', 'c2')
    st.spoke('s9')
    rows = st.outbox_after(0, 10)
    assert [(c.id, c.op) for c in rows] == [('rx', 'create'),
                                            ('rx', 'delete')]
    st.record('s9', rows[-1].seq, [], [(rows[0], 'create refused'),
                                       (rows[1], 'delete refused')])
    assert [(c.id, c.op, c.seq) for c in st.pending_for('s9')] == \
        [('rx', 'delete', rows[1].seq)]
    assert st.report_pending('s9') == 'delete refused'
    assert st.spoke('s9').applied_seq == rows[-1].seq
    # The same again, the older first or last: one row, attempts counted.
    st.record('s9', None, [], [(rows[1], 'delete refused again'),
                               (rows[0], 'create refused again')])
    pend = st.pending_for('s9')
    assert [(c.id, c.op) for c in pend] == [('rx', 'delete')]
    with st.engine.connect() as conn:
        assert conn.execute(sa.select(state_mod.pending.c.attempts)
                            .where(state_mod.pending.c.spoke == 's9')
                            ).scalar() == 2
    st.engine.dispose()


def test_a_pass_costs_the_same_statements_however_many_changes_it_holds(
        state_url):
    """Recording a pass is a few statements, not one per change (one
    more per 500 resources of a type written, to find those placed): a
    seed records thousands at a time, and a DELETE per change (built and
    run one by one) was the agent's largest CPU cost in a seed's profile
    (doc/benchmarks.md). What was pending still goes."""
    st = _emptied(state_url)
    st.set_hub('hubcloud', 'hub-site', None)
    st.restart_feed('c0')
    st.append([_change(f'c{n}', 'role', f'r{n}', resource={'id': f'r{n}'})
               for n in range(1, 302)], 'c301', 'c301')
    st.spoke('s7')
    rows = st.outbox_after(0, 400)
    st.record('s7', None, [], [(rows[0], 'refused'), (rows[1], 'refused')])
    assert {c.id for c in st.pending_for('s7')} == {'r1', 'r2'}

    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(st.engine, 'before_cursor_execute', count)
    try:
        st.record('s7', rows[2].seq, rows[2:3], [])
        one = len(statements)
        statements.clear()
        st.record('s7', rows[-1].seq, rows, [], written=rows)
        many = len(statements)
    finally:
        sa.event.remove(st.engine, 'before_cursor_execute', count)
    assert many <= one + 3, (one, many, statements)
    assert st.pending_for('s7') == []
    assert st.spoke('s7').applied_seq == rows[-1].seq
    st.engine.dispose()


def test_a_pass_replaces_only_the_placed_rows_that_are_there(state_url):
    """A seed of a new spoke places thousands of resources, none of them
    placed before: recording it deletes nothing (a DELETE per change,
    sent as one executemany, was a tenth of the agent's CPU in a seed);
    what was placed is still replaced, whatever the pass's size."""
    st = _emptied(state_url)
    st.set_hub('hubcloud', 'hub-site', None)
    st.spoke('s8')
    first = [state_mod.Change(0, 'role', f'r{n}', 'upsert', resource={},
                              hash_=f'h{n}') for n in range(1200)]
    statements = []

    def count(conn, cursor, statement, parameters, context, many):
        if statement.startswith('DELETE FROM agent_placed'):
            statements.append(len(parameters) if many else 1)

    sa.event.listen(st.engine, 'before_cursor_execute', count)
    try:
        st.record('s8', None, first, [], first)
        assert statements == []
        again = [state_mod.Change(0, 'role', f'r{n}', 'upsert', resource={},
                                  hash_=f'h{n}b') for n in (5, 700, 1199)]
        new = [state_mod.Change(0, 'group', 'g1', 'upsert', resource={},
                                hash_='hg')]
        st.record('s8', None, again + new, [], again + new)
        assert statements == [3]
    finally:
        sa.event.remove(st.engine, 'before_cursor_execute', count)
    assert st.placed_at('s8', 'role', ['r4', 'r5', 'r700', 'r1199']) == {
        'r4': 'h4', 'r5': 'h5b', 'r700': 'h700b', 'r1199': 'h1199b'}
    assert st.placed_at('s8', 'group', ['g1']) == {'g1': 'hg'}
    st.engine.dispose()


def test_upward_cursor_and_what_the_hub_refused(tmp_path):
    """Two-way sync: a spoke's own-feed cursor is kept per spoke, and what
    the hub refused from it is pending under up_key(), counted in that
    spoke's status row."""
    st = state_mod.State(f'sqlite:///{tmp_path}/s.sqlite')
    st.migrate()
    st.set_hub('hub', 'hub-site', 'c0')
    st.spoke('s1')
    assert st.upward_cursor('s1') is None
    st.set_upward_cursor('s1', 'c1')
    st.set_upward_cursor('s1', 'c2')
    assert st.upward_cursor('s1') == 'c2'
    assert st.upward_cursor('s2') is None
    up = state_mod.up_key('s1')
    refused = state_mod.Change(1, 'application_credential', 'ac1', 'upsert',
                               None, {'id': 'ac1'})
    st.record(up, None, [], [(refused, '400 user u1 not found')])
    assert [c.id for c in st.pending_for(up)] == ['ac1']
    assert st.pending_for('s1') == []
    row = st.report()['spokes'][0]
    assert row['spoke'] == 's1' and row['pending'] == 1
    assert st.report_pending(up) == '400 user u1 not found'
    st.record(up, None, [refused], [])
    assert st.pending_for(up) == []
    st.engine.dispose()


def test_live_spoke_behind_a_pruned_outbox_is_reconciled(tmp_path):
    st = state_mod.State(f'sqlite:///{tmp_path}/state.sqlite')
    st.migrate()
    st.set_hub('h', 'hub-site', 'c0')
    st.spoke('a')
    st.spoke('b')
    st.start_seed('a')
    st.finish_seed('a')
    st.start_seed('b')
    st.finish_seed('b')
    st.append([_change(f'c{n}', 'role', f'r{n}', resource={'id': 'x'})
               for n in range(1, 4)], 'c3', 'c3')
    st.record('a', st.top(), [], [])
    # Only 'a' configured for a while: rows 'b' still needed go.
    assert st.prune(['a']) == 3
    st.append([_change('c4', 'role', 'r4', resource={'id': 'x'})],
              'c4', 'c4')
    assert st.spoke('b').state == 'reconcile'
    assert st.spoke('a').state == 'live'


def _empty(st):
    with st.engine.begin() as conn:
        for t in ('agent_placed', 'agent_pending', 'agent_spoke',
                  'agent_outbox', 'agent_hub'):
            conn.execute(sa.text(f'DELETE FROM {t}'))


def test_placed_follows_writes_and_a_restart_marks_seeded_spokes(state_url):
    st = state_mod.State(state_url)
    st.migrate()
    _empty(st)
    st.set_hub('h', 'hub-site', 'c0')
    for name in ('a', 'b', 'never'):
        st.spoke(name)
    st.start_seed('a')
    st.finish_seed('a')
    st.start_seed('b')   # still seeding when the feed restarts
    up = [state_mod.Change(0, 'role', f'r{n}', 'upsert', resource={},
                           hash_=f'h{n}') for n in range(3)]
    st.record('a', None, up, [], up)
    assert st.placed_at('a', 'role', ['r0', 'r1', 'x']) == {'r0': 'h0',
                                                            'r1': 'h1'}
    assert st.placed_at('b', 'role', ['r0']) == {}
    # An update replaces the hash; a delete forgets the resource.
    st.record('a', None, [], [], [
        state_mod.Change(0, 'role', 'r0', 'upsert', resource={},
                         hash_='h0b'),
        state_mod.Change(0, 'role', 'r1', 'delete')])
    assert st.placed_at('a', 'role', ['r0', 'r1', 'r2']) == {'r0': 'h0b',
                                                             'r2': 'h2'}

    st.append([_change('c1', 'role', 'r9', resource={'id': 'r9'})],
              'c1', 'c1')
    st.restart_feed('c7')
    assert st.hub().cursor == 'c7'
    assert [st.spoke(n).state for n in ('a', 'b', 'never')] == \
        ['reconcile', 'reconcile', 'new']
    # The seed that was running when the feed restarted does not make
    # the spoke live: its listings may have missed deletes.
    st.finish_seed('b')
    assert st.spoke('b').state == 'reconcile'
    # A reconcile skips the outbox rows read before it started.
    assert st.start_reconcile('a') == st.top()
    assert st.start_reconcile('a') == st.top()  # after a crash: the same
    st.finish_reconcile('a')
    row = st.spoke('a')
    assert row.state == 'live' and row.last_reconcile_at is not None
    assert st.outbox_after(row.applied_seq, 10) == []
    st.engine.dispose()


def test_sqlite_state_file_is_private(tmp_path):
    path = tmp_path / 'sub' / 'state.sqlite'
    state_mod.State(f'sqlite:///{path}').migrate()
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'


def _c(seq, type_, id_, op='upsert', resource=None):
    return state_mod.Change(seq, type_, id_, op, resource=resource)


def test_order_dependencies_first_and_latest_change_wins():
    changes = [
        _c(1, 'role_assignment', 'a1', resource={}),
        _c(2, 'project', 'child', resource={'parent_id': 'mid'}),
        _c(3, 'project', 'mid', resource={'parent_id': 'top'}),
        _c(4, 'project', 'top', resource={'parent_id': 'default'}),
        _c(5, 'user', 'u1', resource={}),
        _c(6, 'group', 'g1', 'delete'),
        _c(7, 'role', 'r1', 'delete'),
        _c(8, 'user', 'u1', 'delete'),
        _c(9, 'domain', 'd1', resource={}),
    ]
    got = [(c.op, c.type, c.id) for c in writer.order(changes)]
    assert got == [
        ('delete', 'group', 'g1'), ('delete', 'user', 'u1'),
        ('delete', 'role', 'r1'),
        ('upsert', 'domain', 'd1'), ('upsert', 'project', 'top'),
        ('upsert', 'project', 'mid'), ('upsert', 'project', 'child'),
        ('upsert', 'role_assignment', 'a1'),
    ]


def test_chunks_respect_items_and_bytes():
    items = [{'op': 'upsert', 'type': 'role', 'id': str(n),
              'resource': {'name': 'x' * 100}} for n in range(10)]
    by_count = list(batch_body.chunks(items, 3, 10 ** 6))
    assert [len(c) for c in by_count] == [3, 3, 3, 1]
    by_bytes = list(batch_body.chunks(items, 100, 400))
    assert all(len(c) <= 2 for c in by_bytes)
    assert sum(len(c) for c in by_bytes) == 10
    assert [i['id'] for c in by_bytes for i in c] == [str(n)
                                                      for n in range(10)]


def test_join_natural_keys_and_exclusions():
    assert join.natural_key('role', {'name': 'admin', 'domain_id': None}) \
        == (None, 'admin')
    assert join.natural_key('user', {'domain_id': 'default',
                                     'local': {'name': 'admin'}}) \
        == ('default', 'admin')
    assert join.natural_key('user', {'domain_id': 'd', 'local': None}) \
        is None
    assert join.excluded(['user:svc-*'], 'user', 'svc-nova')
    assert not join.excluded(['user:svc-*'], 'role', 'svc-nova')
    assert join.excluded([':keystone-sync'], 'user', 'keystone-sync')
    assert not join.excluded([], 'user', 'admin')
