"""Role assignments (every kind, in a batch with what they refer to) and
the re-key of users and groups through /v3/sync, on two real Keystone
sites, judged through Keystone's ordinary v3 API and a login at the site
written to. Runs once per database backend."""

import secrets

import pytest

from keystone_syncext.tests.functional.resources.identity import ORIGIN
from keystone_syncext.tests.functional.resources.identity import assignment_rep
from keystone_syncext.tests.functional.resources.identity import group_rep
from keystone_syncext.tests.functional.resources.identity import listed
from keystone_syncext.tests.functional.resources.identity import login
from keystone_syncext.tests.functional.resources.identity import new_id
from keystone_syncext.tests.functional.resources.identity import user_rep


@pytest.fixture(scope='module')
def write_headers():
    """Writes through ``/v3/sync`` come from peer site ``site-a``."""
    return ORIGIN


# --- role assignments --------------------------------------------------------

def test_role_assignments_every_kind(site_b, b):
    password = secrets.token_hex(12)
    user = user_rep(password=password)
    group = group_rep()
    b.put('user', user['id'], user, expect=201)
    b.put('group', group['id'], group, expect=201)
    project = b('POST', '/projects', expect=201, json={'project': {
        'name': f'p-{new_id()[:8]}', 'domain_id': 'default'}}
    ).json()['project']
    member, reader = b.role_id('member'), b.role_id('reader')

    uid, gid, pid = user['id'], group['id'], project['id']
    reps = [
        assignment_rep('UserProject', uid, pid, member),
        assignment_rep('UserProject', uid, pid, reader, inherited=True),
        assignment_rep('GroupProject', gid, pid, member),
        assignment_rep('UserDomain', uid, 'default', reader),
        assignment_rep('GroupDomain', gid, 'default', member,
                       inherited=True),
        assignment_rep('UserSystem', uid, 'system', reader),
        assignment_rep('GroupSystem', gid, 'system', reader),
    ]
    for rep in reps:
        env = b.put('role_assignment', rep['id'], rep, expect=201).json()
        assert env['id'] == rep['id'] and env['resource'] == rep
    assert b.read('role_assignment', rep['id'])['hash'] == env['hash']

    def scopes(actor, actor_id):
        out = set()
        for ra in listed(b, f'{actor}.id={actor_id}'):
            scope = ra['scope']
            kind = next(k for k in ('project', 'domain', 'system')
                        if k in scope)
            target = 'system' if kind == 'system' else scope[kind]['id']
            out.add((kind, target, ra['role']['id'],
                     scope.get('OS-INHERIT:inherited_to') == 'projects'))
        return out

    assert scopes('user', uid) == {
        ('project', pid, member, False), ('project', pid, reader, True),
        ('domain', 'default', reader, False),
        ('system', 'system', reader, False)}
    assert scopes('group', gid) == {
        ('project', pid, member, False),
        ('domain', 'default', member, True),
        ('system', 'system', reader, False)}

    # The user's token for the project carries the synced role.
    resp = login(site_b, uid, password, {'project': {'id': pid}})
    assert resp.status_code == 201, resp.text
    assert member in {r['id'] for r in resp.json()['token']['roles']}

    # Listing by pages (both tables, ordered by id) and by prefix.
    ours = sorted(r['id'] for r in reps)
    seen, marker = [], None
    while True:
        query = '?limit=4' + (f'&marker={marker}' if marker else '')
        page = b('GET', f'/sync/resources/role_assignment{query}',
                 expect=200).json()
        seen += [i['id'] for i in page['items']]
        marker = page['next_marker']
        if not marker:
            break
    assert seen == sorted(seen, key=str.encode)
    assert set(ours) <= set(seen)
    digest = b('GET', f'/sync/digest/role_assignment?prefix=GroupSystem:{gid}',
               expect=200).json()['digest']
    assert [i['id'] for i in digest['items']] == [reps[-1]['id']]

    for rep in reps:
        b.delete('role_assignment', rep['id'])
        assert b.tombstone('role_assignment', rep['id']) is not None
    assert listed(b, f'user.id={uid}') == []
    assert listed(b, f'group.id={gid}') == []
    resp = login(site_b, uid, password, {'project': {'id': pid}})
    assert resp.status_code == 401


def test_batch_applies_in_dependency_order(site_b, b):
    password = secrets.token_hex(12)
    user, group = user_rep(password=password), group_rep()
    project = b('POST', '/projects', expect=201, json={'project': {
        'name': f'p-{new_id()[:8]}', 'domain_id': 'default'}}
    ).json()['project']
    member = b.role_id('member')
    grant = assignment_rep('GroupProject', group['id'], project['id'],
                           member)
    membership = {'id': f'{user["id"]}:{group["id"]}',
                  'user_id': user['id'], 'group_id': group['id']}
    items = [  # dependents first: the batch must reorder them
        {'op': 'upsert', 'type': 'role_assignment', 'id': grant['id'],
         'resource': grant},
        {'op': 'upsert', 'type': 'group_membership', 'id': membership['id'],
         'resource': membership},
        {'op': 'upsert', 'type': 'group', 'id': group['id'],
         'resource': group},
        {'op': 'upsert', 'type': 'user', 'id': user['id'],
         'resource': user},
    ]
    results = b('POST', '/sync/batch', expect=200, headers=ORIGIN,
                json={'items': items}).json()['results']
    assert [r['status'] for r in results] == [201] * 4, results
    # Through the group, the user holds the role on the project.
    resp = login(site_b, user['id'], password,
                 {'project': {'id': project['id']}})
    assert resp.status_code == 201, resp.text
    assert member in {r['id'] for r in resp.json()['token']['roles']}


# --- re-key -----------------------------------------------------------------

def test_rekey_user_and_group_moves_every_reference(site_b, b):
    password = secrets.token_hex(12)
    user, group = user_rep(password=password), group_rep()
    b.put('user', user['id'], user, expect=201)
    b.put('group', group['id'], group, expect=201)
    member = b.role_id('member')
    membership = {'id': f'{user["id"]}:{group["id"]}',
                  'user_id': user['id'], 'group_id': group['id']}
    b.put('group_membership', membership['id'], membership, expect=201)
    b.put('user', user['id'], dict(user, options={'lock_password': True}),
          expect=200)
    b('PUT', f'/domains/default/users/{user["id"]}/roles/{member}',
      expect=204)

    new_user, new_group = new_id(), new_id()
    for type_name, old, new in (('user', user['id'], new_user),
                                ('group', group['id'], new_group)):
        out = b('POST', '/sync/rekey', expect=200, headers=ORIGIN, json={
            'type': type_name, 'from': old, 'to': new}).json()['rekey']
        assert out['resource']['id'] == new
        b('GET', f'/{type_name}s/{old}', expect=404)

    shown = b('GET', f'/users/{new_user}', expect=200).json()['user']
    assert shown['name'] == user['local']['name']
    assert shown['options'] == {'lock_password': True}
    assert [u['id'] for u in b('GET', f'/groups/{new_group}/users',
                               expect=200).json()['users']] == [new_user]
    assert b('GET', f'/groups/{new_group}', expect=200).json()['group'][
        'name'] == group['name']
    assert [ra['role']['id'] for ra in listed(b, f'user.id={new_user}')] \
        == [member]
    resp = login(site_b, new_user, password, {'domain': {'id': 'default'}})
    assert resp.status_code == 201, resp.text
