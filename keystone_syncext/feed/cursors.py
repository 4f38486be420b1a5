"""Opaque feed cursors that a restored database cannot fool.

A cursor names a feed position (see ``keystone_syncext.feed.changes``): a
reader that holds cursor C has seen every change at or below its position.
A bare position is not enough to say *which* changes those were. Restore a
site's database from a backup taken at position P after a reader has read
to Q > P, let new writes bring the head to R > Q, and the bare cursor Q
looks valid again: the feed answers with the changes after Q and the ones
between P and Q, made after the restore, are never delivered.

So a cursor (``v2``) carries three things:

- the **history id** of the site (``keystone_syncext.feed.history``): random,
  made by ``keystone-syncext-manage db_sync`` and renewed whenever the log
  is known to have a gap: db_sync had to put back missing capture, or a
  reader showed that the database was rewound (below). A cursor of another
  history is refused.
- the **position**.
- a **mark**: a short hash of the change row at that position (its id,
  type, resource id, op and microsecond ``changed_at``), or zeros where
  there is none (position 0, or a row already purged). A restore keeps the
  history id, but the row that later lands at position Q after a restore
  is another change with another mark.

The feed refuses (410, reconcile) a cursor whose history is not the
site's, whose position is purged, above the head (the database went back
in time), or whose mark is not the row's at its position (the database
went back in time and moved on). The last two renew the history id as
well, so every other reader of the lost history is refused too, even one
whose own position happens to be below the restore point.

Old ``v1`` cursors (a bare position) are decoded with no history: the feed
answers them 410 once, and the agent reconciles and follows the feed from
the head, since nothing can tell whether the site was restored since.

Clients must treat cursors as opaque strings (at most 64 characters).
"""

import base64
import binascii
import hashlib
import struct
import typing

_V1_TAG = 'v1:'
_V2 = struct.Struct('>BQQ6s')   # version, history, position, mark
_V2_VERSION = 2
NO_MARK = bytes(6)
_MAX_BIG = 2**63 - 1


class Cursor(typing.NamedTuple):
    """A decoded cursor; ``history`` is None for an old ``v1`` cursor."""

    history: int | None
    position: int
    mark: bytes = NO_MARK


def _check_int(name, value, low=0):
    if isinstance(value, bool) or not isinstance(value, int) \
            or not low <= value <= _MAX_BIG:
        raise ValueError(f'a {name} is an int from {low} to {_MAX_BIG}, '
                         f'not {value!r}')


def mark(change_id, resource_type, resource_id, op, changed_at) -> bytes:
    """The mark of the change row with these fields (see module doc)."""
    text = f'{change_id}\n{resource_type}\n{resource_id}\n{op}\n' \
        f'{changed_at.isoformat() if changed_at else ""}'
    return hashlib.sha256(text.encode('utf-8')).digest()[:len(NO_MARK)]


def encode(history: int, position: int, mark: bytes = NO_MARK) -> str:
    """The cursor for feed ``position`` of ``history``, whose change row
    has ``mark`` (:data:`NO_MARK` where there is no row)."""
    _check_int('history id', history, low=1)
    _check_int('feed position', position)
    if not isinstance(mark, bytes) or len(mark) != len(NO_MARK):
        raise ValueError(f'a mark is {len(NO_MARK)} bytes, not {mark!r}')
    raw = _V2.pack(_V2_VERSION, history, position, mark)
    return base64.urlsafe_b64encode(raw).decode('ascii').rstrip('=')


def _garbage(cursor):
    return ValueError(f'not a sync cursor: {cursor!r}')


def _decode_v1(cursor: str, text: str) -> Cursor:
    digits = text[len(_V1_TAG):]
    if not digits.isdigit() or not digits.isascii():
        raise _garbage(cursor)
    raw = f'{_V1_TAG}{int(digits)}'.encode('ascii')
    if base64.urlsafe_b64encode(raw).decode('ascii').rstrip('=') != cursor:
        raise _garbage(cursor)
    return Cursor(None, int(digits))


def decode(cursor: str) -> Cursor:
    """The :class:`Cursor` named by ``cursor``.

    :raises ValueError: when ``cursor`` is not a cursor this module made
        (of either version).
    """
    if not isinstance(cursor, str) or not cursor or len(cursor) > 64:
        raise _garbage(cursor)
    try:
        padded = cursor + '=' * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode('ascii'))
    except (binascii.Error, UnicodeError, ValueError):
        raise _garbage(cursor) from None
    if raw.startswith(_V1_TAG.encode('ascii')):
        return _decode_v1(cursor, raw.decode('ascii', errors='replace'))
    if len(raw) != _V2.size or raw[0] != _V2_VERSION:
        raise _garbage(cursor)
    _, history, position, mark_ = _V2.unpack(raw)
    if history < 1 or history > _MAX_BIG or position > _MAX_BIG \
            or encode(history, position, mark_) != cursor:
        raise _garbage(cursor)
    return Cursor(history, position, mark_)


def history_text(history: int) -> str:
    """How ``GET /v3/sync`` shows a history id: 16 hex digits."""
    return f'{history:016x}'
