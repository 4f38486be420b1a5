"""``POST /v3/sync/tombstones``: which of the given ids a site deleted,
on a real Keystone (every backend for the current release, SQLite for the
previous one), whoever deleted them."""

import uuid

import pytest

ORIGIN = {'OpenStack-Sync-Origin': 'hub-1'}


def _role(id_):
    return {'id': id_, 'name': f'tomb-{id_[:8]}', 'domain_id': None,
            'description': None, 'options': {}, 'extra': {}}


def _ask(call, ids, type_name='role', expect=200):
    return call('POST', '/sync/tombstones', expect,
                json={'type': type_name, 'ids': ids}).json()


def test_deleted_ids_have_tombstones_until_recreated(call):
    by_sync, by_keystone, kept, never = (uuid.uuid4().hex for _ in range(4))
    for id_ in (by_sync, by_keystone, kept):
        call('PUT', f'/sync/resources/role/{id_}', 201, headers=ORIGIN,
             json={'resource': _role(id_)})
    call('DELETE', f'/sync/resources/role/{by_sync}', 204, headers=ORIGIN)
    # Deleted through Keystone's own API: the trigger records it too.
    call('DELETE', f'/roles/{by_keystone}', 204)

    got = _ask(call, [never, kept, by_keystone, by_sync, by_sync])
    assert [t['id'] for t in got['tombstones']] == sorted(
        [by_sync, by_keystone])
    origins = {t['id']: t['origin'] for t in got['tombstones']}
    assert origins == {by_sync: 'hub-1', by_keystone: None}
    assert all(t['deleted_at'] for t in got['tombstones'])

    # The same id made again: no longer deleted.
    call('PUT', f'/sync/resources/role/{by_sync}', 201, headers=ORIGIN,
         json={'resource': _role(by_sync)})
    assert [t['id'] for t in _ask(call, [by_sync, by_keystone])[
        'tombstones']] == [by_keystone]
    # Another type's tombstones are not this type's.
    assert _ask(call, [by_keystone], type_name='project') == {
        'tombstones': []}


@pytest.mark.parametrize('body, status, says', [
    ({'type': 'role'}, 400, 'ids'),
    ({'type': 'role', 'ids': []}, 400, 'ids'),
    ({'type': 'role', 'ids': ['a'], 'more': 1}, 400, 'more'),
    ({'type': 'role', 'ids': [7]}, 400, '7'),
    ({'type': 'role', 'ids': ['x' * 256]}, 400, 'long'),
    ({'type': 'nosuch', 'ids': ['a']}, 404, 'nosuch'),
    ({'type': 'role', 'ids': [f'i{n}' for n in range(1001)]}, 400,
     'max_page_size'),
])
def test_bad_requests_say_what_was_wrong(call, body, status, says):
    resp = call('POST', '/sync/tombstones', status, json=body)
    assert says in resp.json()['error']['message']
