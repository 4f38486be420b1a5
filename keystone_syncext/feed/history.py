"""Whether a reader's cursor and this site's change log tell one history.

The change log is only worth following if it holds every change since the
reader's cursor. Two things break that without the log knowing:

- **a restore**: the database goes back to a backup, and the positions
  after the backup are handed out again to other changes;
- **lost capture**: a capture trigger is missing (a Keystone upgrade
  rebuilt its table), so changes are made and never logged.

The first is caught per cursor (see ``keystone_syncext.feed.cursors`` for the
history id, the mark and why they catch a restore) by :func:`refusal`; the
second by :func:`require_capture`, which makes the feed and the digests
answer 503 naming what is missing until ``db_sync`` puts it back, which
renews the history id, so every reader reconciles the changes that went
unlogged. Every function taking ``conn`` works in the caller's
transaction.
"""

import threading
import time
import typing

from keystone.common import sql
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.capture import install
from keystone_syncext.db import tables
from keystone_syncext.feed import changes as change_log
from keystone_syncext.feed import cursors

_counter = tables.counter
_change = tables.change

# How long a capture check is trusted, per database: it reads the schema
# (every trigger, every captured table's columns), too much to repeat for
# every feed page and long-poll of every reader.
CAPTURE_CHECK_SECONDS = 2.0


def current(conn) -> int:
    """This log's history id; 503 if the schema predates history ids."""
    value = change_log.history(conn)
    if value is None:
        raise exception.Unavailable(
            'the sync schema is older than this code: run '
            '"keystone-syncext-manage db_sync"', retry_after=60)
    return value


def row_mark(row) -> bytes:
    """The mark of a ``sync_change`` row (with id, resource_type,
    resource_id, op and changed_at)."""
    return cursors.mark(row.id, row.resource_type, row.resource_id, row.op,
                        row.changed_at)


def mark_at(conn, position: int) -> bytes:
    """The mark of the change at ``position``; NO_MARK where none is."""
    if position <= 0:
        return cursors.NO_MARK
    c = _change.c
    row = conn.execute(sa.select(c.id, c.resource_type, c.resource_id, c.op,
                                 c.changed_at)
                       .where(c.position == position)).first()
    return cursors.NO_MARK if row is None else row_mark(row)


def cursor_at(conn, history: int, position: int) -> str:
    """The cursor for ``position`` of ``history``, marked."""
    return cursors.encode(history, position, mark_at(conn, position))


class Refusal(typing.NamedTuple):
    """Why a cursor is refused; ``rewound``: it shows the database went
    back in time, so the history id must be renewed."""

    message: str
    rewound: bool = False


def refusal(conn, cursor: cursors.Cursor, history: int, oldest: int,
            top: int) -> Refusal | None:
    """Why the feed after ``cursor`` is not complete here, or None.

    ``oldest`` and ``top`` are the purge point and the head, read in this
    transaction after stamping.
    """
    pos = cursor.position
    if cursor.history is None:
        return Refusal('the cursor is from an older version of this API and '
                       'names no history')
    if cursor.history != history:
        return Refusal('the cursor is from another history of this site '
                       '(restored from a backup, or capture was repaired)')
    if pos < oldest:
        return Refusal(f'the cursor is older than the history this site '
                       f'keeps (valid cursors cover positions {oldest} to '
                       f'{top})')
    if pos > top:
        return Refusal(f'the cursor is past this site\'s head ({top}): its '
                       'database went back in time (restored from a '
                       'backup)', rewound=True)
    found = mark_at(conn, pos)
    if found != cursor.mark and not (found == cursors.NO_MARK
                                     and pos == oldest):
        # A row purged since the cursor was made cannot be compared; any
        # other difference is another change at the same position.
        return Refusal('the change at the cursor is not the one the cursor '
                       'was made for: this site\'s database was restored '
                       'from a backup', rewound=True)
    return None


_checked: dict[str, tuple[float, list, list]] = {}
_checked_lock = threading.Lock()


def capture_gaps(conn, fresh: bool = False) -> tuple[list[str], list[str]]:
    """``(missing triggers, missing 'table.column's)``, from a check at
    most ``CAPTURE_CHECK_SECONDS`` old unless ``fresh``."""
    key = str(conn.engine.url)
    now = time.monotonic()
    with _checked_lock:
        hit = _checked.get(key)
    if hit and not fresh and now - hit[0] < CAPTURE_CHECK_SECONDS:
        return hit[1], hit[2]
    triggers, columns = install.missing(conn)
    with _checked_lock:
        _checked[key] = (now, triggers, columns)
    return triggers, columns


def require_capture(conn) -> None:
    """Raise ``CaptureIncomplete`` (503) unless capture is whole."""
    triggers, columns = capture_gaps(conn)
    if triggers or columns:
        raise exception.CaptureIncomplete(triggers, columns)


def check_capture() -> None:
    """:func:`require_capture` in a read transaction of its own: 503
    while capture is incomplete, as the feed and the digests answer (the
    feed would miss the changes going unlogged, and digests compared
    against hashes the log keeps current could be stale)."""
    with sql.session_for_read() as session:
        require_capture(session.connection())
