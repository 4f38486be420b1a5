"""Feed cursors are opaque, round-trip, name their history, and refuse
anything else."""

import base64
import datetime
import struct

import pytest

from keystone_syncext.feed import cursors

H = 0x1234_5678_9abc_def0
MARK = cursors.mark(7, 'project', 'p1', 'create',
                    datetime.datetime(2026, 12, 6, 12, 0, 0, 123456))


@pytest.mark.parametrize('position', [0, 1, 41, 2**31, 2**63 - 1])
@pytest.mark.parametrize('history', [1, H, 2**63 - 1])
def test_round_trip(history, position):
    cursor = cursors.encode(history, position, MARK)
    assert isinstance(cursor, str)
    assert len(cursor) <= 64  # what the agent's state columns hold
    assert cursors.decode(cursor) == (history, position, MARK)


def test_unmarked_round_trip():
    assert cursors.decode(cursors.encode(H, 0)) == (H, 0, cursors.NO_MARK)


def test_another_history_or_mark_is_another_cursor():
    one = cursors.encode(H, 5, MARK)
    assert cursors.encode(H + 1, 5, MARK) != one
    assert cursors.encode(H, 5, cursors.NO_MARK) != one
    other = cursors.decode(cursors.encode(H + 1, 5, MARK))
    assert other.history != cursors.decode(one).history


def test_mark_tells_changes_apart():
    at = datetime.datetime(2026, 12, 6, 12, 0, 0, 123456)
    same = cursors.mark(7, 'project', 'p1', 'create', at)
    assert same == MARK and len(same) == len(cursors.NO_MARK)
    later = at + datetime.timedelta(microseconds=1)
    assert {cursors.mark(7, 'project', 'p1', 'create', later),
            cursors.mark(8, 'project', 'p1', 'create', at),
            cursors.mark(7, 'project', 'p2', 'create', at),
            cursors.mark(7, 'project', 'p1', 'update', at)}.isdisjoint(
        {MARK, cursors.NO_MARK})


def test_cursor_is_not_the_bare_number():
    assert not cursors.encode(H, 7).isdigit()
    with pytest.raises(ValueError):
        cursors.decode('7')


def test_cursor_is_url_safe():
    cursor = cursors.encode(2**63 - 1, 2**63 - 1, b'\xff' * 6)
    assert set(cursor) <= set(
        'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_')


@pytest.mark.parametrize('position', [-1, 1.5, '3', None, True, 2**63])
def test_encode_refuses_non_positions(position):
    with pytest.raises(ValueError):
        cursors.encode(H, position)


@pytest.mark.parametrize('history', [0, -1, None, '1', True, 2**63])
def test_encode_refuses_non_histories(history):
    with pytest.raises(ValueError):
        cursors.encode(history, 1)


@pytest.mark.parametrize('mark', [b'', b'1234567', 'abcdef', None])
def test_encode_refuses_non_marks(mark):
    with pytest.raises(ValueError):
        cursors.encode(H, 1, mark)


def test_old_v1_cursors_decode_with_no_history():
    """Cursors handed out before history ids: the feed refuses them (410)
    rather than trusting a bare position."""
    old = base64.urlsafe_b64encode(b'v1:41').decode().rstrip('=')
    assert cursors.decode(old) == (None, 41, cursors.NO_MARK)


def _b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).decode().rstrip('=')


@pytest.mark.parametrize('garbage', [
    '', '7', '!!!!', 'not a cursor', 'x' * 100, None, 12,
    _b64('v3:7'),       # an unknown version
    _b64('v1:'),        # no position
    _b64('v1:-3'),      # negative
    _b64('v1:007'),     # not canonical
    _b64('v1:1e3'),
    _b64('v1:\u0663'),  # a non-ASCII digit
    _b64(struct.pack('>BQQ6s', 3, H, 1, MARK)),       # unknown version
    _b64(struct.pack('>BQQ6s', 2, 0, 1, MARK)),       # no history
    _b64(struct.pack('>BQQ6s', 2, 2**64 - 1, 1, MARK)),
    _b64(struct.pack('>BQQ6s', 2, H, 2**64 - 1, MARK)),
    _b64(struct.pack('>BQQ6s', 2, H, 1, MARK) + b'x'),  # too long
    _b64(struct.pack('>BQQ6s', 2, H, 1, MARK)[:-1]),    # too short
    cursors.encode(H, 1, MARK) + 'A',                    # not canonical
])
def test_decode_refuses_garbage_with_a_clear_message(garbage):
    with pytest.raises(ValueError, match='not a sync cursor'):
        cursors.decode(garbage)


def test_history_text():
    assert cursors.history_text(H) == '123456789abcdef0'
    assert cursors.history_text(1) == '0000000000000001'
