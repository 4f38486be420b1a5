"""The change log's reader side: positions, counters and purge.

Run on every backend (``backend`` comes from the shared conftest), each
module on its own database holding only the extension's tables: these
functions never read Keystone's.
"""

import datetime
import threading
import uuid

import pytest
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.db import tables
from keystone_syncext.feed import changes

NOW = datetime.datetime(2030, 1, 31, 12, 0, 0)
DAY = datetime.timedelta(days=1)
WEEK = datetime.timedelta(days=7)
MONTH = datetime.timedelta(days=30)

change = tables.change
tombstone = tables.tombstone


@pytest.fixture(scope='module')
def engine(backend):
    dbname = f'sx_changes_{uuid.uuid4().hex[:10]}'
    url = backend.create(dbname)
    # Writers wait for SQLite's single write lock instead of failing.
    args = {'timeout': 30} if url.startswith('sqlite') else {}
    eng = sa.create_engine(url, connect_args=args)
    tables.metadata.create_all(eng)
    yield eng
    eng.dispose()
    backend.drop(dbname)


@pytest.fixture
def db(engine):
    """An empty change log with both counters at 0, as migration 0001
    leaves it."""
    with engine.begin() as conn:
        for table in (change, tombstone, tables.counter):
            conn.execute(table.delete())
        conn.execute(tables.counter.insert(), [
            {'name': tables.HEAD, 'value': 0},
            {'name': tables.PURGED_THROUGH, 'value': 0}])
    return engine


def add(conn, changed_at=NOW, count=1) -> list[int]:
    """Record ``count`` changes as a trigger would; return their ids."""
    ids = []
    for _ in range(count):
        ids.append(conn.execute(change.insert().values(
            resource_type='project', resource_id=uuid.uuid4().hex,
            op='update', changed_at=changed_at)).inserted_primary_key[0])
    return ids


def positions(engine) -> dict[int, int | None]:
    """id -> position of every row in the log."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(change.c.id, change.c.position))
        return {row.id: row.position for row in rows}


def stamp(engine) -> int:
    with engine.begin() as conn:
        return changes.stamp(conn)


def read_after(engine, cursor) -> list[int]:
    """What a feed reader at ``cursor`` gets next: ids in feed order."""
    with engine.connect() as conn:
        return conn.execute(
            sa.select(change.c.id).where(change.c.position > cursor)
            .order_by(change.c.position)).scalars().all()


# SQLite has one writer at a time, so transactions commit in capture order
# there: tests of interleaved writers run on MySQL and PostgreSQL only.
concurrent_writers = pytest.mark.concurrent_writers


# -- stamp -----------------------------------------------------------------

def test_counters_start_at_zero(db):
    with db.connect() as conn:
        assert changes.head(conn) == 0
        assert changes.purged_through(conn) == 0


def test_stamp_numbers_committed_rows_in_capture_order(db):
    with db.begin() as conn:
        ids = add(conn, count=3)
    assert stamp(db) == 3
    assert positions(db) == {ids[0]: 1, ids[1]: 2, ids[2]: 3}
    with db.connect() as conn:
        assert changes.head(conn) == 3


def test_stamp_continues_from_head_and_never_restamps(db):
    with db.begin() as conn:
        first = add(conn, count=2)
    stamp(db)
    assert stamp(db) == 2, 'nothing new: head unchanged'
    with db.begin() as conn:
        second = add(conn, count=2)
    assert stamp(db) == 4
    assert positions(db) == {first[0]: 1, first[1]: 2,
                             second[0]: 3, second[1]: 4}


@concurrent_writers
def test_late_commit_of_a_lower_id_gets_a_higher_position(db):
    """A (lower id) commits after B: the reader that already read B must
    still be given A, so A is numbered after B, once, with no gap."""
    with db.connect() as conn_a, db.connect() as conn_b:
        tx_a = conn_a.begin()
        [id_a] = add(conn_a)
        with conn_b.begin():
            [id_b] = add(conn_b)
        assert id_a < id_b

        assert stamp(db) == 1
        assert positions(db) == {id_b: 1}, 'A is invisible until commit'
        assert read_after(db, 0) == [id_b]

        tx_a.commit()
    assert stamp(db) == 2
    assert positions(db) == {id_b: 1, id_a: 2}
    assert read_after(db, 1) == [id_a], 'the reader at B finds A next'


@concurrent_writers
def test_a_stamper_waits_until_the_previous_stamp_is_committed(db):
    """Stampers are serialized for the whole of their transactions: the
    next one must read the counter and rows the previous one committed."""
    second = {}
    with db.connect() as first:
        tx = first.begin()
        assert changes.stamp(first) == 0
        with db.begin() as conn:
            [late] = add(conn)
        thread = threading.Thread(target=lambda: second.update(head=stamp(db)))
        thread.start()
        thread.join(timeout=1)
        assert thread.is_alive(), 'second stamper did not wait'
        tx.commit()
    thread.join(timeout=30)
    assert second == {'head': 1}
    assert positions(db) == {late: 1}


@concurrent_writers
def test_a_stamp_after_other_reads_never_restamps(db):
    """Called late in a transaction (against the documented rule), stamp
    either numbers correctly (PostgreSQL: each statement sees the latest
    commits) or refuses (MySQL: the transaction's snapshot is stale); it
    never gives a row a second position."""
    with db.begin() as conn:
        first = add(conn, count=2)
    with db.connect() as late:
        tx = late.begin()
        late.execute(sa.select(sa.func.count()).select_from(change)).scalar()
        assert stamp(db) == 2
        with db.begin() as conn:
            [third] = add(conn)
        try:
            changes.stamp(late)
            tx.commit()
        except exception.StampConflict:
            assert db.dialect.name == 'mysql'
            tx.rollback()
    stamp(db)
    assert positions(db) == {first[0]: 1, first[1]: 2, third: 3}


def test_concurrent_stampers_never_hand_out_a_position_twice(db):
    writers, rounds, per_round = 4, 8, 3
    start = threading.Barrier(writers)
    errors = []

    def work():
        try:
            start.wait()
            for _ in range(rounds):
                with db.begin() as conn:
                    add(conn, count=per_round)
                with db.begin() as conn:
                    changes.stamp(conn)
        except Exception as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), 'a stamper hung'
    assert not errors
    total = writers * rounds * per_round
    got = positions(db)
    assert len(got) == total
    # Every row numbered, each number once, no holes: 1..total.
    assert sorted(got.values()) == list(range(1, total + 1))
    with db.connect() as conn:
        assert changes.head(conn) == total


# -- purge -----------------------------------------------------------------

def purge(engine, now=NOW):
    with engine.begin() as conn:
        return changes.purge(conn, now, WEEK, MONTH)


def test_purge_removes_the_old_prefix_of_the_feed(db):
    with db.begin() as conn:
        old = add(conn, NOW - 2 * WEEK, count=3)
        [recent] = add(conn, NOW - DAY)
        # Old, but after a recent change in the feed: removing it would
        # leave a hole a reader could not tell from "nothing happened".
        [late_old] = add(conn, NOW - 2 * WEEK)

    result = purge(db)

    assert result == {'changes': 3, 'tombstones': 0, 'purged_through': 3}
    assert positions(db) == {recent: 4, late_old: 5}
    assert not set(old) & set(positions(db))
    with db.connect() as conn:
        assert changes.purged_through(conn) == 3
        assert changes.head(conn) == 5


def test_purge_keeps_a_change_exactly_at_the_cutoff(db):
    with db.begin() as conn:
        add(conn, NOW - WEEK - DAY)
        [edge] = add(conn, NOW - WEEK)
    assert purge(db)['purged_through'] == 1
    assert list(positions(db)) == [edge]


def test_purge_of_an_all_old_log_purges_through_the_head(db):
    with db.begin() as conn:
        add(conn, NOW - 2 * WEEK, count=2)
    assert purge(db) == {'changes': 2, 'tombstones': 0, 'purged_through': 2}
    assert positions(db) == {}
    # Positions keep counting from the head, never from the purge point.
    with db.begin() as conn:
        [new] = add(conn)
    stamp(db)
    assert positions(db) == {new: 3}


def test_purge_again_removes_nothing_more(db):
    with db.begin() as conn:
        add(conn, NOW - 2 * WEEK, count=2)
        add(conn, NOW)
    purge(db)
    assert purge(db) == {'changes': 0, 'tombstones': 0, 'purged_through': 2}
    assert len(positions(db)) == 1


@concurrent_writers
def test_purge_never_touches_a_change_still_in_flight(db):
    """An old change whose transaction has not committed survives the
    purge and is numbered above what was purged, so a reader still gets
    it."""
    with db.connect() as conn_a:
        tx_a = conn_a.begin()
        [in_flight] = add(conn_a, NOW - 2 * WEEK)
        with db.begin() as conn:
            [done] = add(conn, NOW - 2 * WEEK)
        # If the purge ever waited for A's row lock, fail, not hang.
        if db.dialect.name == 'mysql':
            lock_wait = 'SET SESSION innodb_lock_wait_timeout = 5'
        else:
            lock_wait = 'SET LOCAL lock_timeout = 5000'
        with db.begin() as conn:
            conn.exec_driver_sql(lock_wait)
            result = changes.purge(conn, NOW, WEEK, MONTH)
        assert result['changes'] == 1
        assert result['purged_through'] == 1
        tx_a.commit()
    assert done not in positions(db)
    stamp(db)
    assert positions(db) == {in_flight: 2}
    assert read_after(db, result['purged_through']) == [in_flight]


def test_purge_removes_tombstones_older_than_their_retention(db):
    with db.begin() as conn:
        conn.execute(tombstone.insert(), [
            {'resource_type': 'user', 'resource_id': 'gone-long-ago',
             'deleted_at': NOW - MONTH - DAY},
            {'resource_type': 'user', 'resource_id': 'gone-lately',
             'deleted_at': NOW - MONTH + DAY},
            {'resource_type': 'role', 'resource_id': 'gone-today',
             'deleted_at': NOW}])
    assert purge(db)['tombstones'] == 1
    with db.connect() as conn:
        left = conn.execute(sa.select(tombstone.c.resource_id)).scalars()
        assert sorted(left) == ['gone-lately', 'gone-today']


def test_news_sees_unstamped_and_newly_stamped_changes(db):
    """A long-poll asks news() between stamps: it must answer yes for a
    captured change not yet stamped, and for one another reader stamped
    after this reader's head; no otherwise."""
    with db.begin() as conn:
        assert not changes.news(conn, 0)
        add(conn)
        assert changes.news(conn, 0)
        top = changes.stamp(conn)
        assert top == 1
        assert not changes.news(conn, top)
        # Stamped by someone else since this reader saw head 0.
        assert changes.news(conn, 0)
        add(conn, count=2)
        assert changes.news(conn, top)
        assert not changes.news(conn, changes.stamp(conn))


def test_news_of_some_types_only(db):
    """A long-poll for some types is not woken by changes of others."""
    with db.begin() as conn:
        top = changes.stamp(conn)
        add(conn)   # a project
        assert changes.news(conn, top)
        assert changes.news(conn, top, ['project', 'role'])
        assert not changes.news(conn, top, ['application_credential'])
        top = changes.stamp(conn)
        assert not changes.news(conn, top - 1, ['role'])
        assert changes.news(conn, top - 1, ['project'])
