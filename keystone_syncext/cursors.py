"""Opaque feed cursors.

A cursor names a feed position (see ``keystone_syncext.changes``): a
reader that holds cursor C has seen every change at or below its position.
Clients must treat cursors as opaque strings, so the encoding can change
with a later protocol version; the ``v1:`` tag inside lets a server tell
its own old cursors from garbage.
"""

import base64
import binascii

_TAG = 'v1:'


def encode(position: int) -> str:
    """The cursor for feed ``position`` (a non-negative int)."""
    if isinstance(position, bool) or not isinstance(position, int) \
            or position < 0:
        raise ValueError(f'a feed position is an int >= 0, not {position!r}')
    raw = f'{_TAG}{position}'.encode('ascii')
    return base64.urlsafe_b64encode(raw).decode('ascii').rstrip('=')


def decode(cursor: str) -> int:
    """The feed position named by ``cursor``.

    :raises ValueError: when ``cursor`` is not a cursor this module made.
    """
    if not isinstance(cursor, str) or not cursor or len(cursor) > 64:
        raise ValueError(f'not a sync cursor: {cursor!r}')
    try:
        padded = cursor + '=' * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode('ascii'))
        text = raw.decode('ascii')
    except (binascii.Error, UnicodeError, ValueError):
        raise ValueError(f'not a sync cursor: {cursor!r}') from None
    digits = text[len(_TAG):]
    if not text.startswith(_TAG) or not digits.isdigit() \
            or not digits.isascii() or encode(int(digits)) != cursor:
        raise ValueError(f'not a sync cursor: {cursor!r}')
    return int(digits)
