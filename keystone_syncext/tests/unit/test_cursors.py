"""Feed cursors are opaque, round-trip, and refuse anything else."""

import base64

import pytest

from keystone_syncext import cursors


@pytest.mark.parametrize('position', [0, 1, 41, 2**31, 2**63 - 1])
def test_round_trip(position):
    cursor = cursors.encode(position)
    assert isinstance(cursor, str)
    assert cursors.decode(cursor) == position


def test_cursor_is_not_the_bare_number():
    assert cursors.encode(7) != '7'
    assert str(7) not in cursors.encode(7)


def test_cursor_is_url_safe():
    cursor = cursors.encode(2**63 - 1)
    assert set(cursor) <= set(
        'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_')


@pytest.mark.parametrize('position', [-1, 1.5, '3', None, True])
def test_encode_refuses_non_positions(position):
    with pytest.raises(ValueError):
        cursors.encode(position)


def _b64(text):
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip('=')


@pytest.mark.parametrize('garbage', [
    '', '7', '!!!!', 'not a cursor', 'x' * 100, None, 12,
    _b64('v2:7'),       # another version
    _b64('v1:'),        # no position
    _b64('v1:-3'),      # negative
    _b64('v1:007'),     # not canonical
    _b64('v1:1e3'),
    _b64('v1:\u0663'),  # a non-ASCII digit
])
def test_decode_refuses_garbage_with_a_clear_message(garbage):
    with pytest.raises(ValueError, match='not a sync cursor'):
        cursors.decode(garbage)
