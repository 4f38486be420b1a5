"""Reading the change feed: pages after a cursor, the long-poll, and the
feed's bounds.

A read stamps first (``keystone_syncext.feed.changes``), so its head
covers every change committed before it; a cursor this log cannot
continue is refused with 410 (``keystone_syncext.feed.history``).
"""

import threading
import time
import typing

from keystone.common import sql
import keystone.conf
import sqlalchemy as sa
from sqlalchemy import orm

from keystone_syncext import exception
from keystone_syncext import reads
from keystone_syncext import resources
from keystone_syncext.db import tables
from keystone_syncext.feed import changes as change_log
from keystone_syncext.feed import cursors
from keystone_syncext.feed import history
from keystone_syncext.resources import base

CONF = keystone.conf.CONF

# How often a waiting long-poll looks for new changes made by other
# processes. A look is one indexed read (changes.news), so it can be
# frequent; the stamp, a write, runs only when there is something to
# stamp. A write of the long-poll's own process wakes it at once
# (COMMITS); the looks are for other processes' writes.
#
# On SQLite a look is first a ``PRAGMA data_version`` on the open
# connection (no statement for SQLAlchemy, no transaction, no file read
# when nothing committed), so while the database is busy (another
# connection committed within ACTIVE_SECONDS, as when changes are
# flowing) it looks every 10 ms: on a quiet machine a change committed
# by another worker process reached the waiting long-poll's client
# 20 ms sooner at the median. Idle, every 50 ms: looking every 10 ms
# throughout made an idle site with one waiting long-poll use 2.8% of a
# core instead of 0.7% (doc/benchmarks.md, "Issue 22 on a quiet
# machine"), which fifty spokes on one machine would feel. Elsewhere a
# look is a query, every 50 ms.
POLL_INTERVAL = 0.05
SQLITE_POLL_INTERVAL = 0.01
ACTIVE_SECONDS = 10.0


class _Activity:
    """When a long-poll of this process last saw another connection
    commit (SQLite's ``data_version`` moved): what makes the looks
    frequent."""

    def __init__(self):
        self.last = float('-inf')

    def saw_commit(self) -> None:
        self.last = time.monotonic()

    def interval(self, sqlite: bool) -> float:
        """Seconds until a waiting long-poll looks again."""
        if sqlite and time.monotonic() - self.last < ACTIVE_SECONDS:
            return SQLITE_POLL_INTERVAL
        return POLL_INTERVAL


ACTIVITY = _Activity()


class _Commits:
    """Commits of this process's database sessions, counted: a waiting
    long-poll is woken by a write of its own process (another thread of
    a threaded server: Keystone's API, a batch) when it commits, not at
    its next look. Writes by other processes (uWSGI's other workers,
    ``keystone-manage``, another node) are still found by the looks.

    Counted at the ORM session's ``after_commit`` (the commit done and
    visible): every Keystone and extension write goes through an
    ``enginefacade`` writer session, and readers do not commit."""

    def __init__(self):
        self._cond = threading.Condition()
        self._count = 0
        self._listening = False

    def listen(self) -> None:
        with self._cond:
            if not self._listening:
                sa.event.listen(orm.Session, 'after_commit', self._commit)
                self._listening = True

    def _commit(self, session) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def count(self) -> int:
        with self._cond:
            return self._count

    def wait(self, seen: int, timeout: float) -> None:
        """Until a commit after ``seen`` (:meth:`count`), or ``timeout``
        seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._count != seen, timeout)


COMMITS = _Commits()


def _parse_types(types) -> list[str] | None:
    if not types:
        return None
    names = [t for t in types.split(',') if t]
    for name in names:
        resources.get(name)
    return names


def changes(since=None, limit=None, types=None, wait=None) -> dict:
    """Changes after cursor ``since``, in feed order, with the current
    representation of each; long-polls up to ``wait`` seconds (capped by
    ``[sync] max_wait_seconds``) when there are none.

    503 while capture is incomplete (the feed would silently miss
    changes); 410 for a cursor this log cannot continue (see
    ``keystone_syncext.feed.history``)."""
    try:
        cursor = cursors.decode(since) if since else None
    except ValueError as e:
        raise exception.BadRequest(f'since: {e}') from None
    limit = reads.check_limit(limit, min(500, CONF.sync.max_page_size))
    names = _parse_types(types)
    deadline = time.monotonic() + min(wait or 0.0,
                                      CONF.sync.max_wait_seconds)
    history.check_capture()
    page = _read_feed(cursor, limit, names)
    if not page.rows and time.monotonic() < deadline:
        page = _wait_for_news(cursor, limit, names, page, deadline)
    with sql.session_for_read() as session:
        items = _feed_items(session.connection(), page.history, page.rows)
    full = len(page.rows) == limit
    return {'changes': items,
            'next': items[-1]['cursor'] if full else page.head,
            'head': page.head, 'more': full}


def _wait_for_news(cursor, limit, names, page, deadline):
    """Look for news until there is some or the deadline passes: at once
    when a session of this process commits (:data:`COMMITS`), else every
    ``POLL_INTERVAL`` (``SQLITE_POLL_INTERVAL`` on a busy SQLite
    database: :data:`ACTIVITY`); then read the feed again.

    The looks share one connection, kept for the whole wait: a new one
    per look would, on SQLite (oslo.db gives it no pool), reconnect and
    parse the whole schema, triggers included, at every look for every
    waiting long-poll, which costs an idle site a large share of a core.
    Each look ends its read transaction, so no writer waits behind it and
    the next look sees what committed meanwhile (REPEATABLE READ would
    otherwise keep showing the first snapshot). On SQLite a look first
    asks whether anything committed at all.
    """
    with sql.session_for_read() as session:
        engine = session.get_bind()
    COMMITS.listen()
    version = None
    seen = COMMITS.count()
    with engine.connect() as conn:
        sqlite = conn.dialect.name == 'sqlite'
        while not page.rows and time.monotonic() < deadline:
            COMMITS.wait(seen, min(ACTIVITY.interval(sqlite), max(
                0.0, deadline - time.monotonic())))
            # Taken before the look: a commit during it wakes the next
            # wait at once.
            seen = COMMITS.count()
            if sqlite:
                # Changes only when another connection commits: a look
                # without a statement for SQLAlchemy or a transaction.
                # The first look always reads (the baseline comes after
                # whatever _read_feed saw).
                now = conn.connection.driver_connection.execute(
                    'PRAGMA data_version').fetchone()[0]
                if now == version:
                    continue
                if version is not None:
                    ACTIVITY.saw_commit()
                version = now
            try:
                fresh = change_log.news(conn, page.top, names)
            finally:
                conn.rollback()
            if fresh:
                page = _read_feed(cursor, limit, names)
    return page


def stamp_if_needed() -> None:
    """Stamp the committed, unstamped changes, if there are any.

    A look first, in a read transaction; the stamp, a write, only when
    the look found something. A write on every feed read or capabilities
    request would take the database's write lock for nothing on SQLite,
    making Keystone's own writers wait for it, and every commit of it
    fails any Keystone transaction that has read before it writes
    (SQLite's deferred transaction cannot upgrade to a write over a
    snapshot that another commit made stale: "database is locked" at
    once, whatever the busy timeout). The stamp's transaction begins with
    its write, so on SQLite it waits for the lock as long as the busy
    timeout allows instead of failing at once.
    """
    with sql.session_for_read() as session:
        if not change_log.unstamped(session.connection()):
            return
    with sql.session_for_write() as session:
        change_log.stamp(session.connection())  # first: see changes.py


def feed_bounds() -> dict:
    """The change feed's history id, oldest valid and head cursors, the
    head covering every change committed before the call."""
    stamp_if_needed()
    with sql.session_for_read() as session:
        return _bounds(session.connection())


def _bounds(conn) -> dict:
    hist = history.current(conn)
    return {'history_id': cursors.history_text(hist),
            'oldest_valid_cursor': history.cursor_at(
                conn, hist, change_log.purged_through(conn)),
            'head_cursor': history.cursor_at(conn, hist,
                                             change_log.head(conn))}


class _Page(typing.NamedTuple):
    rows: list
    top: int        # the head position
    history: int    # the history id the rows belong to
    head: str       # the head cursor


def _read_feed(cursor, limit, names) -> _Page:
    """The rows after ``cursor`` (None: from the start), with the head,
    read in one read transaction after stamping.

    A cursor that shows this database went back in time renews the
    history id, committed before the 410 is raised."""
    stamp_if_needed()
    with sql.session_for_read() as session:
        conn = session.connection()
        # One snapshot: no row above this head is visible in it.
        top = change_log.head(conn)
        oldest = change_log.purged_through(conn)
        hist = history.current(conn)
        cursor = cursor or cursors.Cursor(hist, 0)
        refused = history.refusal(conn, cursor, hist, oldest, top)
        if refused is None:
            rows = conn.execute(_feed_query(cursor.position, limit,
                                            names)).all()
            return _Page(rows, top, hist, history.cursor_at(conn, hist, top))
    if refused.rewound:
        with sql.session_for_write() as session:
            change_log.renew_history(session.connection())
    with sql.session_for_read() as session:
        bounds = _bounds(session.connection())
    raise exception.Gone(
        f'{refused.message}: reconcile (compare digests), then follow '
        'the feed from the head cursor', reconcile=True,
        rewound=refused.rewound,
        oldest_valid_cursor=bounds['oldest_valid_cursor'],
        head_cursor=bounds['head_cursor'])


def _feed_query(position, limit, names):
    c = tables.change.c
    query = (sa.select(c.id, c.position, c.resource_type, c.resource_id,
                       c.op, c.changed_at, c.origin)
             .where(c.position > position).order_by(c.position)
             .limit(limit))
    if names:
        query = query.where(c.resource_type.in_(names))
    return query


def _feed_items(conn, hist, rows) -> list[dict]:
    wanted: dict[str, set] = {}
    for r in rows:
        if r.op != 'delete' and r.resource_type in resources.TYPES:
            wanted.setdefault(r.resource_type, set()).add(r.resource_id)
    current = {}
    for type_name, ids in wanted.items():
        for item in resources.get(type_name).fetch(conn, ids=sorted(ids)):
            current[(type_name, item['id'])] = item
    out = []
    for r in rows:
        item = current.get((r.resource_type, r.resource_id))
        env = base.envelope(r.resource_type, item) if item else None
        out.append({
            'cursor': cursors.encode(hist, r.position, history.row_mark(r)),
            'type': r.resource_type,
            'id': r.resource_id,
            'op': r.op,
            'changed_at': base.iso(r.changed_at),
            'origin': r.origin,
            'hash': env['hash'] if env else None,
            'resource': env['resource'] if env else None,
        })
    return out
