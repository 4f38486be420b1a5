"""A waiting long-poll is woken by a commit of its own process at once,
not at its next look (``feed.reading.COMMITS``): in a threaded server
(one process, several threads, as Keystone often runs) a write and the
long-poll waiting for it share the process. A session that only read
(oslo.db's readers do not commit) wakes nobody."""

import threading
import time

import sqlalchemy as sa
from sqlalchemy import orm

from keystone_syncext.feed import reading

# Far beyond what a wake-up takes: a waiter that sleeps it out failed.
TIMEOUT = 10.0


def _waiter(seen):
    woke = []

    def wait():
        reading.COMMITS.wait(seen, TIMEOUT)
        woke.append(time.monotonic())
    t = threading.Thread(target=wait, daemon=True)
    t.start()
    time.sleep(0.2)   # waiting
    return t, woke


def test_a_commit_wakes_a_waiting_long_poll_at_once(tmp_path):
    engine = sa.create_engine(f'sqlite:///{tmp_path}/db')
    reading.COMMITS.listen()
    t, woke = _waiter(reading.COMMITS.count())
    start = time.monotonic()
    with orm.Session(engine) as session:
        session.execute(sa.text('CREATE TABLE t (a INTEGER)'))
        session.execute(sa.text('INSERT INTO t VALUES (1)'))
        session.commit()
    t.join(TIMEOUT + 1)
    assert woke and woke[0] - start < TIMEOUT / 10


def test_a_read_that_does_not_commit_wakes_nobody(tmp_path):
    engine = sa.create_engine(f'sqlite:///{tmp_path}/db')
    reading.COMMITS.listen()
    seen = reading.COMMITS.count()
    with orm.Session(engine) as session:
        session.execute(sa.text('SELECT 1')).all()
    assert reading.COMMITS.count() == seen
    start = time.monotonic()
    reading.COMMITS.wait(seen, 0.3)
    assert time.monotonic() - start >= 0.29


def test_a_commit_before_the_wait_is_not_missed(tmp_path):
    """Counted, not signalled: a commit between the count and the wait
    (during a look) ends the next wait at once."""
    engine = sa.create_engine(f'sqlite:///{tmp_path}/db')
    reading.COMMITS.listen()
    seen = reading.COMMITS.count()
    with orm.Session(engine) as session:
        session.execute(sa.text('CREATE TABLE t (a INTEGER)'))
        session.commit()
    start = time.monotonic()
    reading.COMMITS.wait(seen, TIMEOUT)
    assert time.monotonic() - start < TIMEOUT / 10


def test_looks_are_frequent_on_sqlite_only_while_it_is_busy(monkeypatch):
    """Every 10 ms on SQLite for ACTIVE_SECONDS after a long-poll saw
    another connection commit, every 50 ms otherwise: an idle site's
    waiting long-polls cost it little, a busy site's changes are found
    sooner. Other databases always every 50 ms (a look there is a
    query)."""
    clock = [1000.0]
    monkeypatch.setattr(reading.time, 'monotonic', lambda: clock[0])
    activity = reading._Activity()
    assert activity.interval(sqlite=True) == reading.POLL_INTERVAL
    activity.saw_commit()
    assert activity.interval(sqlite=True) == reading.SQLITE_POLL_INTERVAL
    assert activity.interval(sqlite=False) == reading.POLL_INTERVAL
    clock[0] += reading.ACTIVE_SECONDS - 0.1
    assert activity.interval(sqlite=True) == reading.SQLITE_POLL_INTERVAL
    clock[0] += 0.2
    assert activity.interval(sqlite=True) == reading.POLL_INTERVAL
    assert reading.SQLITE_POLL_INTERVAL < reading.POLL_INTERVAL
