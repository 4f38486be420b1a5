"""SQLite connections reused within a request, never across requests
(keystone_syncext.wsgi.request_pool), on an engine as oslo.db makes it
for a SQLite file (a NullPool, replaced)."""

import sqlite3
import threading

from oslo_db.sqlalchemy import engines
import pytest
import sqlalchemy as sa
from sqlalchemy import pool as sa_pool
from werkzeug import test as wz_test

from keystone_syncext.wsgi import request_pool

ROWS = 500


@pytest.fixture(params=['wal', 'delete'])
def url(tmp_path, request):
    """A SQLite file in WAL mode (as the test sites run it) or in the
    rollback-journal mode SQLite defaults to."""
    path = tmp_path / 'db.sqlite'
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute(f'PRAGMA journal_mode = {request.param}')
    raw.close()
    url = f'sqlite:///{path}'
    setup = engines.create_engine(url)
    with setup.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)')
        conn.execute(sa.text('INSERT INTO t (id, v) VALUES (:i, :v)'),
                     [{'i': i, 'v': 'old'} for i in range(ROWS)])
    setup.dispose()
    return url


class Counted:
    """An oslo.db engine with our pool, counting DBAPI connects and
    closes."""

    def __init__(self, url):
        self.engine = engines.create_engine(url)
        assert isinstance(self.engine.pool, sa_pool.NullPool)
        self.pool = request_pool.install(self.engine)
        assert self.pool is not None
        self.connects = 0
        self.closes = 0
        sa.event.listen(self.engine, 'connect', self._on_connect)
        sa.event.listen(self.engine, 'close', self._on_close)

    def _on_connect(self, dbapi_conn, rec):
        self.connects += 1

    def _on_close(self, dbapi_conn, rec):
        self.closes += 1

    @property
    def open(self):
        return self.connects - self.closes

    def request(self, body):
        """Run ``body()`` as the handler of one WSGI request through
        :func:`request_pool.wrap_wsgi`; its return value."""
        out = {}

        def handler(environ, start_response):
            out['value'] = body()
            start_response('200 OK', [('Content-Type', 'text/plain')])
            return [b'ok']

        app = request_pool.wrap_wsgi(handler, [self.pool])
        resp = wz_test.Client(app).get('/')
        assert resp.status_code == 200
        resp.close()
        return out.get('value')


@pytest.fixture
def counted(url):
    c = Counted(url)
    yield c
    c.engine.dispose()


def _dbapi(conn):
    return conn.connection.dbapi_connection


def test_only_sqlite_files_get_the_pool(tmp_path):
    assert request_pool.is_file_sqlite_url(f'sqlite:///{tmp_path}/x.db')
    for url in ('sqlite://', 'sqlite:///:memory:',
                'mysql+pymysql://u:p@h/db', 'postgresql://u@h/db', None):
        assert not request_pool.is_file_sqlite_url(url), url
    memory = engines.create_engine('sqlite://')
    assert request_pool.install(memory) is None
    memory.dispose()


def test_two_sessions_of_a_request_share_a_connection(counted):
    def body():
        with counted.engine.connect() as a:
            first = _dbapi(a)
            a.execute(sa.text('SELECT count(*) FROM t')).scalar()
        with counted.engine.connect() as b:
            second = _dbapi(b)
            b.execute(sa.text('SELECT count(*) FROM t')).scalar()
        return first is second

    assert counted.request(body) is True
    assert counted.connects == 1


def test_nested_sessions_get_connections_of_their_own(counted):
    def body():
        with counted.engine.connect() as outer:
            with counted.engine.connect() as inner:
                assert _dbapi(outer) is not _dbapi(inner)
        # Both idle now; a third and fourth session take them.
        with counted.engine.connect() as a, counted.engine.connect() as b:
            a.execute(sa.text('SELECT 1'))
            b.execute(sa.text('SELECT 1'))

    counted.request(body)
    assert counted.connects == 2


def test_no_connection_outlives_its_request(counted):
    def body():
        for _ in range(3):
            with counted.engine.connect() as conn:
                conn.execute(sa.text('SELECT count(*) FROM t')).scalar()
        with counted.engine.connect() as outer, counted.engine.connect():
            outer.execute(sa.text('SELECT 1'))
        assert counted.open == 2

    counted.request(body)
    assert counted.connects == 2
    assert counted.open == 0


def test_connection_checked_out_at_the_end_is_closed_when_returned(counted):
    leaked = {}

    def body():
        leaked['conn'] = counted.engine.connect()
        leaked['conn'].execute(sa.text('SELECT 1'))

    counted.request(body)
    assert counted.open == 1
    leaked['conn'].close()
    assert counted.open == 0
    # And the next request does not get it.
    counted.request(lambda: counted.engine.connect().close())
    assert counted.connects == 2
    assert counted.open == 0


def test_outside_a_request_the_pool_is_a_null_pool(counted):
    with counted.engine.connect() as conn:
        conn.execute(sa.text('SELECT 1'))
    with counted.engine.connect() as conn:
        conn.execute(sa.text('SELECT 1'))
    assert counted.connects == 2
    assert counted.open == 0


def test_next_request_gets_a_new_connection(counted):
    def body():
        with counted.engine.connect() as conn:
            return id(_dbapi(conn)), _dbapi(conn)

    first = counted.request(body)
    second = counted.request(body)
    assert first[1] is not second[1]
    assert counted.connects == 2
    assert counted.open == 0


def test_connection_never_handed_to_another_thread(counted):
    """Two threads serving requests at once, taking turns: each session
    of one starts while the other's connection is idle, and each thread
    reuses its own connection and never gets the other's."""
    seen = {'a': [], 'b': []}
    turn = threading.Barrier(2)

    def body(name):
        for _ in range(3):
            for whose in ('a', 'b'):
                if whose == name:
                    with counted.engine.connect() as conn:
                        conn.execute(sa.text('SELECT 1'))
                        seen[name].append(_dbapi(conn))
                turn.wait(timeout=10)

    threads = [threading.Thread(target=counted.request,
                                args=(lambda n=n: body(n),))
               for n in ('a', 'b')]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for name in ('a', 'b'):
        assert len(seen[name]) == 3
        assert all(c is seen[name][0] for c in seen[name]), name
    assert seen['a'][0] is not seen['b'][0]
    assert counted.connects == 2
    assert counted.open == 0


def _leak_one_row(engine, keep):
    """Read one row of many and keep the result unclosed (a statement
    not reset: its read snapshot stays)."""
    conn = engine.connect()
    result = conn.execute(sa.text('SELECT v FROM t ORDER BY id'))
    assert result.fetchone()[0] == 'old'
    keep.append(result)
    # The session ends; its result does not.
    conn.close()


def _commit_elsewhere(url, timeout=5):
    other = sa.create_engine(url, poolclass=sa_pool.NullPool,
                             connect_args={'timeout': timeout})
    with other.begin() as conn:
        conn.execute(sa.text("UPDATE t SET v = 'new' WHERE id = :i"),
                     {'i': ROWS - 1})
    other.dispose()


def _read_last(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text('SELECT v FROM t WHERE id = :i'),
                            {'i': ROWS - 1}).scalar()


def test_leaked_statement_does_not_make_the_next_request_stale(counted, url):
    keep = []
    counted.request(lambda: _leak_one_row(counted.engine, keep))
    _commit_elsewhere(url)
    assert counted.request(lambda: _read_last(counted.engine)) == 'new'
    assert counted.open == 0


def test_leaked_statement_within_a_request_is_reset(counted, url):
    """A later session of the same request reuses the connection; the
    cursor left open was closed first, so the session sees a commit made
    meanwhile (and, without WAL, that commit was not blocked)."""
    keep = []

    def body():
        _leak_one_row(counted.engine, keep)
        _commit_elsewhere(url)
        return _read_last(counted.engine)

    assert counted.request(body) == 'new'
    assert counted.connects == 1


def test_the_hazard_is_real_with_a_pool_across_requests(url):
    """What the scoping prevents: with a pool that keeps a connection
    across requests (a QueuePool of one), the same leak makes the next
    read stale in WAL mode on this Python, and in rollback-journal mode
    blocks the other writer until it gives up."""
    engine = sa.create_engine(url, poolclass=sa_pool.QueuePool,
                              pool_size=1, max_overflow=0,
                              connect_args={'timeout': 0.2})
    keep = []
    _leak_one_row(engine, keep)
    raw = sqlite3.connect(engine.url.database)
    wal = raw.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    raw.close()
    if wal:
        _commit_elsewhere(url)
        assert _read_last(engine) == 'old'
    else:
        with pytest.raises(sa.exc.OperationalError, match='locked'):
            _commit_elsewhere(url, timeout=0.2)
    engine.dispose()
