"""``POST /v3/sync/batch`` with the agents' fencing header on a real
Keystone: a generation lower than one the agent group already wrote under
is refused whole (409, nothing applied); a batch without the header is
written as before; groups are fenced apart; a malformed header is a 400.
"""

import uuid

import pytest

FENCE = 'OpenStack-Sync-Fence'


def _role():
    id_ = uuid.uuid4().hex
    return id_, {'op': 'upsert', 'type': 'role', 'id': id_, 'resource': {
        'id': id_, 'name': f'fence-{id_[:8]}', 'domain_id': None,
        'description': None, 'options': {}, 'extra': {}}}


def _batch(call, fence, expect):
    id_, item = _role()
    headers = {FENCE: fence} if fence else {}
    resp = call('POST', '/sync/batch', expect, json={'items': [item]},
                headers=headers)
    return id_, resp


def _exists(call, id_):
    return call('GET', f'/sync/resources/role/{id_}').status_code == 200


@pytest.fixture
def group():
    return uuid.uuid4().hex


def test_a_superseded_generation_is_refused_whole(call, group):
    first, _ = _batch(call, f'{group}:5', 200)
    assert _exists(call, first)
    again, _ = _batch(call, f'{group}:5', 200)  # the same holder goes on
    stale, resp = _batch(call, f'{group}:4', 409)
    message = resp.json()['error']['message']
    assert 'generation 4 was superseded here by generation 5' in message
    assert not _exists(call, stale)
    newer, _ = _batch(call, f'{group}:6', 200)
    _batch(call, f'{group}:5', 409)
    assert _exists(call, again) and _exists(call, newer)


def test_groups_are_fenced_apart_and_no_header_is_not_fenced(call, group):
    _batch(call, f'{group}:9', 200)
    other, _ = _batch(call, f'{uuid.uuid4().hex}:1', 200)
    plain, _ = _batch(call, None, 200)
    assert _exists(call, other) and _exists(call, plain)


@pytest.mark.parametrize('value', ['nogeneration', 'g:-1', ':3', 'g:x'])
def test_a_malformed_fence_is_a_400(call, value):
    _, resp = _batch(call, value, 400)
    assert FENCE in resp.json()['error']['message']
