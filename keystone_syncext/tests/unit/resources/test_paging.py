"""Listings stay paged in SQL: reading a page of a prefix reads at most
``limit`` rows, whatever the type and however many ids share the prefix.

A reconcile lists whole buckets page by page; a listing that drops its
SQL ``LIMIT`` for a prefix re-reads every matching row on every page
(O(N^2/limit) rows for a bucket). Each synthetic type computes its id in
SQL, so each is checked here on tables with the columns its ``fetch``
reads (Keystone's own schema is the functional suites'). Run on every
backend the shared ``backend`` fixture names.
"""

import uuid

import pytest
import sqlalchemy as sa

from keystone_syncext import resources

N = 60
LIMIT = 7

_md = sa.MetaData()


def _times():
    return [sa.Column('created_at', sa.DateTime),
            sa.Column('updated_at', sa.DateTime)]


def _assignment(name):
    return sa.Table(
        name, _md, sa.Column('type', sa.String(64), primary_key=True),
        sa.Column('actor_id', sa.String(64), primary_key=True),
        sa.Column('target_id', sa.String(64), primary_key=True),
        sa.Column('role_id', sa.String(64), primary_key=True),
        sa.Column('inherited', sa.Boolean, primary_key=True), *_times())


TABLES = [
    _assignment('assignment'), _assignment('system_assignment'),
    sa.Table('user_group_membership', _md,
             sa.Column('user_id', sa.String(64), primary_key=True),
             sa.Column('group_id', sa.String(64), primary_key=True),
             *_times()),
    sa.Table('implied_role', _md,
             sa.Column('prior_role_id', sa.String(64), primary_key=True),
             sa.Column('implied_role_id', sa.String(64), primary_key=True),
             *_times()),
    sa.Table('federation_protocol', _md,
             sa.Column('id', sa.String(64), primary_key=True),
             sa.Column('idp_id', sa.String(64), primary_key=True),
             sa.Column('mapping_id', sa.String(64)),
             sa.Column('remote_id_attribute', sa.String(64)),
             *_times()),
]


def _key(i):
    # Half of the ids share the prefix 'a'; their neighbours differ only
    # in case ('A...'), which LIKE on SQLite and MySQL would match too.
    return f'{"aA"[i % 2]}{i:03d}' + uuid.uuid4().hex[:6]


def _rows():
    """Per table, N rows; the ids of the listed types start with 'a'
    for half of them."""
    keys = [_key(i) for i in range(N)]
    grant = {'type': 'UserProject', 'target_id': 'p1', 'role_id': 'r1',
             'inherited': False}
    return {
        'assignment': [dict(grant, actor_id=k) for k in keys],
        'system_assignment': [
            dict(grant, type='UserSystem', target_id='system', actor_id=k)
            for k in keys],
        'user_group_membership': [{'user_id': k, 'group_id': 'g1'}
                                  for k in keys],
        'implied_role': [{'prior_role_id': k, 'implied_role_id': 'r1'}
                         for k in keys],
        'federation_protocol': [{'idp_id': k, 'id': 'saml2',
                                 'mapping_id': 'm1'} for k in keys],
    }


# type -> a prefix that half of its ids (N/2 of them) start with
PREFIXES = {
    'role_assignment': 'UserProject:a',
    'group_membership': 'a',
    'implied_role': 'a',
    'federation_protocol': 'a',
}


@pytest.fixture(scope='module')
def engine(backend):
    dbname = f'sx_paging_{uuid.uuid4().hex[:10]}'
    eng = sa.create_engine(backend.create(dbname))
    _md.create_all(eng)
    with eng.begin() as conn:
        for name, rows in _rows().items():
            conn.execute(_md.tables[name].insert(), rows)
    yield eng
    eng.dispose()
    backend.drop(dbname)


class RowCounter:
    """Every statement run on ``conn`` while counting, and the rows each
    yields (counted by running it again once it is done)."""

    def __init__(self, conn):
        self.conn, self.seen = conn, []

    def __enter__(self):
        sa.event.listen(self.conn, 'before_cursor_execute', self._note)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.conn, 'before_cursor_execute', self._note)

    def _note(self, conn, cursor, statement, parameters, context, many):
        self.seen.append((statement, parameters))

    def rows(self):
        return sum(len(self.conn.exec_driver_sql(s, p).fetchall())
                   for s, p in self.seen)


@pytest.mark.parametrize('type_name', sorted(PREFIXES))
def test_prefix_pages_read_at_most_limit_rows(engine, type_name):
    rtype, prefix = resources.get(type_name), PREFIXES[type_name]
    with engine.connect() as conn:
        everything = [i['id'] for i in rtype.fetch(conn)]
        wanted = [i for i in everything if i.startswith(prefix)]
        assert len(wanted) == N // 2
        got, marker, reads = [], None, []
        while True:
            with RowCounter(conn) as counter:
                page = rtype.fetch(conn, marker=marker, limit=LIMIT,
                                   prefix=prefix)
            reads.append(counter.rows())
            got += [i['id'] for i in page]
            if len(page) < LIMIT:
                break
            # Never short while more match: a short page ends the listing.
            marker = page[-1]['id']
    assert got == wanted
    assert max(reads) <= LIMIT, reads
