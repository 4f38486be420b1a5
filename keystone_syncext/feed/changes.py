"""The change log, reader side: feed positions, counters and purge.

Capture (the triggers in ``keystone_syncext.capture``) writes a
``sync_change`` row in the same transaction as every Keystone change. Its
``id`` is the *capture* order: handed out when the trigger runs, before
commit. Transactions commit in any order (concurrent API workers, Galera's
interleaved auto-increment), so a reader that followed ids could read id 7,
move its cursor past it, and only then see id 6 commit: a lost change.

The feed therefore follows ``position`` instead, assigned after commit by
:func:`stamp`. Why a reader following positions never skips a change:

1. A row is only visible to other transactions once the transaction that
   wrote it has committed, so :func:`stamp` can only number rows whose
   writers are done; a row still in flight keeps ``position IS NULL`` and
   is left for a later stamp.
2. Stamping is serialized: every stamper first takes a write lock on the
   ``position`` counter row (a row lock on MySQL/PostgreSQL, the database
   write lock on SQLite) and holds it until its own transaction ends. The
   next stamper therefore reads the counter, and the rows, that the
   previous one committed.
3. Each stamper hands out ``head + 1, head + 2, ...`` and stores the new
   head in the same transaction, so a whole batch of positions becomes
   visible at once, and every batch is above every earlier batch.

So a row that becomes visible later always gets a higher position than
any row a reader could already have seen, and a reader that has read up to
position P will find every later change above P. Re-reading is harmless;
skipping is impossible.

One rule for callers on MySQL/MariaDB, whose default isolation level is
REPEATABLE READ: call :func:`stamp` before any other read in its
transaction, so the snapshot it reads unstamped rows from is taken after
the counter lock. A stale snapshot is caught rather than trusted: the
update only touches rows still unstamped, and a mismatch raises.

Every function takes a SQLAlchemy ``Connection``; the caller owns the
transaction (commit is what publishes the positions).
"""

import datetime
import secrets

import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.db import tables

_change = tables.change
_counter = tables.counter


def _read_counter(conn, name: str, for_update: bool = False) -> int:
    query = sa.select(_counter.c.value).where(_counter.c.name == name)
    if for_update:
        # A locking read sees the latest committed value even under
        # REPEATABLE READ (SQLite has no FOR UPDATE and ignores it).
        query = query.with_for_update()
    return conn.execute(query).scalar_one()


def _write_counter(conn, name: str, value) -> None:
    conn.execute(_counter.update().where(_counter.c.name == name)
                 .values(value=value))


def head(conn) -> int:
    """The last position handed out (0 before the first stamp)."""
    return _read_counter(conn, tables.HEAD)


def purged_through(conn) -> int:
    """Positions up to and including this one have been purged.

    A cursor older than this is no longer valid: the changes after it are
    not all in the log any more.
    """
    return _read_counter(conn, tables.PURGED_THROUGH)


def history(conn) -> int | None:
    """This log's history id (see ``keystone_syncext.feed.cursors``), or None
    before the migration that makes one."""
    return conn.execute(sa.select(_counter.c.value).where(
        _counter.c.name == tables.HISTORY)).scalar()


def new_history_id() -> int:
    """A fresh random history id (63 bits, never 0)."""
    return secrets.randbelow(2**63 - 1) + 1


def renew_history(conn) -> int:
    """Start a new history: every cursor handed out so far is refused
    (the log is known to miss changes). Returns the new id."""
    value = new_history_id()
    _write_counter(conn, tables.HISTORY, value)
    return value


def news(conn, top: int, types=None) -> bool:
    """Whether anything (of ``types``, if given) was captured or stamped
    since the head was ``top``: one indexed read, for long-polls to ask
    often without taking the stamp's write lock."""
    c = _change.c
    unstamped, stamped = c.position.is_(None), c.position > top
    if types:
        unstamped = sa.and_(unstamped, c.resource_type.in_(types))
        stamped = sa.and_(stamped, c.resource_type.in_(types))
    return bool(conn.execute(sa.select(sa.or_(
        sa.exists().where(unstamped),
        sa.exists().where(stamped)))).scalar())


def unstamped(conn) -> bool:
    """Whether any committed change still waits for its position: one
    indexed read, so that read routes stamp (a write) only when there is
    something to stamp."""
    return bool(conn.execute(sa.select(
        sa.exists().where(_change.c.position.is_(None)))).scalar())


def stamp(conn) -> int:
    """Give every committed, unstamped change its feed position.

    Positions continue from the ``position`` counter in capture (id)
    order. Returns the new head. See the module docstring for why this
    is safe with out-of-order commits and concurrent stampers.
    """
    # The no-op write is the lock that serializes stampers; it must come
    # before the counter and the rows are read.
    _write_counter(conn, tables.HEAD, _counter.c.value)
    top = _read_counter(conn, tables.HEAD, for_update=True)
    ids = conn.execute(
        sa.select(_change.c.id).where(_change.c.position.is_(None))
        .order_by(_change.c.id)).scalars().all()
    if not ids:
        return top
    result = conn.execute(
        _change.update()
        .where(_change.c.id == sa.bindparam('b_id'),
               _change.c.position.is_(None))
        .values(position=sa.bindparam('b_position')),
        [{'b_id': id_, 'b_position': top + n}
         for n, id_ in enumerate(ids, start=1)])
    if (conn.dialect.supports_sane_multi_rowcount
            and result.rowcount != len(ids)):
        raise exception.StampConflict(
            'stamp() read unstamped rows from a stale snapshot: call it '
            'before any other read in its transaction')
    new_head = top + len(ids)
    _write_counter(conn, tables.HEAD, new_head)
    return new_head


def _purge_point(conn, cutoff: datetime.datetime, top: int) -> int:
    """The largest P such that every change at or below P is older than
    ``cutoff``: one below the first recent change, or the head."""
    first_recent = conn.execute(
        sa.select(sa.func.min(_change.c.position))
        .where(_change.c.position.is_not(None),
               _change.c.changed_at >= cutoff)).scalar()
    return top if first_recent is None else first_recent - 1


def purge(conn, now: datetime.datetime,
          change_retention: datetime.timedelta,
          tombstone_retention: datetime.timedelta) -> dict:
    """Remove the change log and tombstones older than their retention.

    Changes are removed as a prefix of the feed: positions up to the first
    change that is still within ``change_retention``, so the log never has
    a hole a reader could mistake for "nothing happened". Unstamped rows
    (transactions still in flight) are never touched. ``now`` is naive
    UTC, as the triggers write timestamps.

    Returns ``{'changes': n, 'tombstones': n, 'purged_through': P}``.
    """
    top = stamp(conn)
    point = _purge_point(conn, now - change_retention, top)
    changes = conn.execute(
        _change.delete().where(_change.c.position <= point)).rowcount
    # Only ever raised, and atomically, so concurrent purges cannot lower it.
    conn.execute(_counter.update().where(
        _counter.c.name == tables.PURGED_THROUGH,
        _counter.c.value < point).values(value=point))
    tomb = tables.tombstone
    tombstones = conn.execute(tomb.delete().where(
        tomb.c.deleted_at < now - tombstone_retention)).rowcount
    return {'changes': changes, 'tombstones': tombstones,
            'purged_through': purged_through(conn)}
