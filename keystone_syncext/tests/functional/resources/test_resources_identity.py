"""Users, groups and memberships through /v3/sync, on two real Keystone
sites, judged through Keystone's ordinary v3 API.

A user created with a password at site A, read from A's sync API and
written into site B, logs in at B with A's password; a password change
at A, synced again, takes effect at B (and revokes B's tokens of that
user). Keystone's rules hold for synced writes (name clashes, missing
references, hash formats, schema; role assignments' too), and a refused
write leaves the database as it was. Runs once per database backend.
"""

import secrets

import pytest
import requests
import sqlalchemy as sa

from keystone_syncext.tests.functional.resources.identity import ORIGIN
from keystone_syncext.tests.functional.resources.identity import assignment_rep
from keystone_syncext.tests.functional.resources.identity import group_rep
from keystone_syncext.tests.functional.resources.identity import login
from keystone_syncext.tests.functional.resources.identity import new_id
from keystone_syncext.tests.functional.resources.identity import snapshot
from keystone_syncext.tests.functional.resources.identity import token_valid
from keystone_syncext.tests.functional.resources.identity import user_rep


@pytest.fixture(scope='module')
def write_headers():
    """Writes through ``/v3/sync`` come from peer site ``site-a``."""
    return ORIGIN


# --- users ------------------------------------------------------------------

def test_password_hash_syncs_across_sites(site_a, site_b, a, b):
    password = secrets.token_hex(12)
    user = a('POST', '/users', expect=201, json={'user': {
        'name': f'alice-{new_id()[:8]}', 'domain_id': 'default',
        'password': password, 'email': 'alice@example.com'}}).json()['user']
    env = a.read('user', user['id'])
    rep = env['resource']
    assert rep['local']['name'] == user['name']
    assert rep['extra'] == {'email': 'alice@example.com'}
    [pw] = rep['local']['passwords']
    assert pw['hash'].startswith('$2')  # A's hash, never the password
    assert password not in str(env)

    put = b.put('user', user['id'], rep, expect=201).json()
    assert put['hash'] == env['hash']
    assert b.read('user', user['id'])['hash'] == env['hash']
    shown = b('GET', f'/users/{user["id"]}', expect=200).json()['user']
    assert (shown['name'], shown['domain_id'], shown['email']) == \
        (user['name'], 'default', 'alice@example.com')

    # A's password works at B; a wrong one does not.
    ok = login(site_b, user['id'], password)
    assert ok.status_code == 201, ok.text
    old_token = ok.headers['X-Subject-Token']
    assert login(site_b, user['id'], password + 'x').status_code == 401

    # Change the password at A through the ordinary API, sync again.
    new_password = secrets.token_hex(12)
    a('PATCH', f'/users/{user["id"]}', expect=200,
      json={'user': {'password': new_password}})
    rep2 = a.read('user', user['id'])['resource']
    assert len(rep2['local']['passwords']) == 2
    assert rep2['local']['passwords'][0]['hash'] == pw['hash']
    assert rep2['local']['passwords'][0]['expires_at'] is not None
    assert b.put('user', user['id'], rep2, expect=200).json()['hash'] == \
        a.read('user', user['id'])['hash']

    assert login(site_b, user['id'], password).status_code == 401
    assert login(site_b, user['id'], new_password).status_code == 201
    # A password change revokes the user's tokens at B as Keystone does.
    assert not token_valid(site_b, b, old_token)


def test_user_create_read_update_delete(site_b, b):
    password = secrets.token_hex(12)
    rep = user_rep(password=password,
                   options={'ignore_password_expiry': True},
                   extra={'email': 'bob@example.com', 'team': 'blue'})
    uid = rep['id']
    put = b.put('user', uid, rep, expect=201)
    env = put.json()
    assert env['id'] == uid and env['resource'] == rep
    assert put.headers['ETag'] == f'"{env["hash"]}"'
    got = b.read('user', uid)
    assert got['resource'] == rep and got['hash'] == env['hash']
    assert got['created_at'] is not None

    shown = b('GET', f'/users/{uid}', expect=200).json()['user']
    assert shown['id'] == uid
    assert shown['name'] == rep['local']['name']
    assert shown['enabled'] is True
    assert shown['options'] == {'ignore_password_expiry': True}
    assert (shown['email'], shown['team']) == ('bob@example.com', 'blue')
    assert login(site_b, uid, password).status_code == 201

    # The same representation again changes nothing.
    assert b.put('user', uid, rep, expect=200).json()['hash'] == env['hash']

    updated = dict(rep, enabled=False, options={}, extra={'team': 'red'},
                   local=dict(rep['local'], name=f'renamed-{uid[:8]}'))
    env2 = b.put('user', uid, updated, expect=200).json()
    assert env2['resource'] == updated and env2['hash'] != env['hash']
    shown = b('GET', f'/users/{uid}', expect=200).json()['user']
    assert shown['enabled'] is False
    assert shown['name'] == f'renamed-{uid[:8]}'
    assert shown['options'] == {}
    assert 'email' not in shown and shown['team'] == 'red'
    assert login(site_b, uid, password).status_code == 401  # disabled

    # Re-enabled: logs in again.
    b.put('user', uid, dict(updated, enabled=True), expect=200)
    assert login(site_b, uid, password).status_code == 201

    b.delete('user', uid)
    b('GET', f'/users/{uid}', expect=404)
    b('GET', f'/sync/resources/user/{uid}', expect=404)
    stone = b.tombstone('user', uid)
    assert stone is not None and stone.origin == 'site-a'


def test_federated_user(site_b, b):
    idp, proto, mapping = new_id(), 'saml2', new_id()
    b('PUT', f'/OS-FEDERATION/identity_providers/{idp}', expect=201,
      json={'identity_provider': {'enabled': True}})
    b('PUT', f'/OS-FEDERATION/mappings/{mapping}', expect=201,
      json={'mapping': {'rules': [{
          'local': [{'user': {'name': '{0}'}}],
          'remote': [{'type': 'REMOTE_USER'}]}]}})
    b('PUT', f'/OS-FEDERATION/identity_providers/{idp}/protocols/{proto}',
      expect=201, json={'protocol': {'mapping_id': mapping}})

    fed = [{'idp_id': idp, 'protocol_id': proto, 'unique_id': 'carol@idp',
            'display_name': 'carol'}]
    rep = user_rep(local=None, federated=fed)
    assert b.put('user', rep['id'], rep, expect=201).json()['resource'] \
        == rep
    shown = b('GET', f'/users/{rep["id"]}', expect=200).json()['user']
    assert shown['name'] == 'carol'
    assert shown['federated'] == [{'idp_id': idp, 'protocols': [
        {'protocol_id': proto, 'unique_id': 'carol@idp'}]}]

    # A local identity added, then taken away again.
    password = secrets.token_hex(12)
    with_local = dict(rep, local=user_rep(password=password)['local'])
    b.put('user', rep['id'], with_local, expect=200)
    assert login(site_b, rep['id'], password).status_code == 201
    assert b.put('user', rep['id'], rep, expect=200).json()['resource'] \
        == rep
    assert b('GET', f'/users/{rep["id"]}',
             expect=200).json()['user']['name'] == 'carol'
    # (No password login to try: Keystone answers a password login of a
    # user without a local identity with a 500.) No rows are left over.
    with site_b.engine().connect() as conn:
        left = conn.execute(sa.text(
            'SELECT COUNT(*) FROM local_user lu JOIN password p '
            'ON p.local_user_id = lu.id WHERE lu.user_id = :u'),
            {'u': rep['id']}).scalar()
        left += conn.execute(sa.text(
            'SELECT COUNT(*) FROM local_user WHERE user_id = :u'),
            {'u': rep['id']}).scalar()
    assert left == 0

    # The same federated identity under another id: 409 naming the owner.
    before = snapshot(site_b)
    other = user_rep(local=None, federated=fed)
    resp = b.put('user', other['id'], other, expect=409)
    assert resp.json()['error']['existing_id'] == rep['id']
    # A protocol this site does not have: 400.
    other['federated'] = [dict(fed[0], protocol_id='oidc')]
    resp = b.put('user', other['id'], other, expect=400)
    assert 'federation protocol' in resp.json()['error']['message']
    assert snapshot(site_b) == before


# --- groups and memberships ------------------------------------------------

def test_group_and_membership(site_b, b):
    group = group_rep(extra={'tier': 'gold'})
    gid = group['id']
    env = b.put('group', gid, group, expect=201).json()
    assert env['resource'] == group
    assert b.read('group', gid)['hash'] == env['hash']
    shown = b('GET', f'/groups/{gid}', expect=200).json()['group']
    assert (shown['id'], shown['name'], shown['description'],
            shown['tier']) == (gid, group['name'], 'synced', 'gold')

    renamed = dict(group, name=f'h-{gid[:10]}', description=None,
                   extra={})
    assert b.put('group', gid, renamed, expect=200).json()['resource'] == \
        renamed
    shown = b('GET', f'/groups/{gid}', expect=200).json()['group']
    assert shown['name'] == renamed['name'] and 'tier' not in shown

    user = user_rep()
    b.put('user', user['id'], user, expect=201)
    member = {'id': f'{user["id"]}:{gid}', 'user_id': user['id'],
              'group_id': gid}
    env = b.put('group_membership', member['id'], member,
                expect=201).json()
    assert env['resource'] == member
    assert b.read('group_membership', member['id'])['hash'] == env['hash']
    users = b('GET', f'/groups/{gid}/users', expect=200).json()['users']
    assert [u['id'] for u in users] == [user['id']]

    b.delete('group_membership', member['id'])
    assert b('GET', f'/groups/{gid}/users', expect=200).json()['users'] \
        == []
    assert b.tombstone('group_membership', member['id']).origin == \
        'site-a'

    b.put('group_membership', member['id'], member, expect=201)
    b.delete('group', gid)
    b('GET', f'/groups/{gid}', expect=404)
    assert b.tombstone('group', gid).origin == 'site-a'
    # Keystone removed the membership with the group.
    b('GET', f'/sync/resources/group_membership/{member["id"]}', expect=404)


# --- Keystone's rules --------------------------------------------------------

def _refused(site, client, type_name, rep, status, id_=None):
    before = snapshot(site)
    resp = client.put(type_name, id_ or rep['id'], rep, expect=status)
    assert snapshot(site) == before
    return resp.json()['error']


def test_name_clash_is_409_with_existing_id(site_b, b):
    admin_id = b('GET', '/users?name=admin&domain_id=default',
                 expect=200).json()['users'][0]['id']
    err = _refused(site_b, b, 'user', user_rep(name='admin'), 409)
    assert err['existing_id'] == admin_id

    group = group_rep()
    b.put('group', group['id'], group, expect=201)
    err = _refused(site_b, b, 'group', group_rep(name=group['name']), 409)
    assert err['existing_id'] == group['id']

    # Renaming onto a taken name is refused too.
    other = group_rep()
    b.put('group', other['id'], other, expect=201)
    err = _refused(site_b, b, 'group', dict(other, name=group['name']), 409)
    assert err['existing_id'] == group['id']


def test_missing_references_are_400(site_b, b):
    missing = new_id()
    err = _refused(site_b, b, 'user', user_rep(domain_id=missing), 400)
    assert f'domain {missing!r}' in err['message']
    err = _refused(site_b, b, 'group', group_rep(domain_id=missing), 400)
    assert f'domain {missing!r}' in err['message']
    # A user's default project cannot be a domain.
    err = _refused(site_b, b, 'user',
                   user_rep(default_project_id='default'), 400)
    assert 'domain' in err['message']

    user, group = user_rep(), group_rep()
    b.put('user', user['id'], user, expect=201)
    b.put('group', group['id'], group, expect=201)
    for rep, what in (
            ({'user_id': missing, 'group_id': group['id']}, 'user'),
            ({'user_id': user['id'], 'group_id': missing}, 'group')):
        rep['id'] = f'{rep["user_id"]}:{rep["group_id"]}'
        err = _refused(site_b, b, 'group_membership', rep, 400)
        assert f'{what} {missing!r} ({what}_id)' in err['message']

    member = b.role_id('member')
    for rep, what in (
            (assignment_rep('UserDomain', user['id'], 'default', missing),
             f'role {missing!r} (role_id)'),
            (assignment_rep('UserDomain', missing, 'default', member),
             f'user {missing!r} (actor_id)'),
            (assignment_rep('GroupProject', group['id'], missing, member),
             f'project {missing!r} (target_id)'),
            (assignment_rep('GroupDomain', missing, 'default', member),
             f'group {missing!r} (actor_id)')):
        err = _refused(site_b, b, 'role_assignment', rep, 400)
        assert what in err['message']


def test_bad_password_hash_is_400_without_echo(site_b, b):
    for bad in ('plain-text-password', '$md5$abc$def',
                '$2b$04$tooShortForBcrypt'):
        rep = user_rep()
        rep['local']['passwords'][0]['hash'] = bad
        err = _refused(site_b, b, 'user', rep, 400)
        assert 'unsupported password hash format' in err['message']
        resp_text = str(err)
        assert bad not in resp_text


def test_schema_failures_are_400(site_b, b):
    rep = user_rep()
    for broken in (
            dict(rep, enabled='yes'),
            {k: v for k, v in rep.items() if k != 'federated'},
            dict(rep, surprise=1),
            dict(rep, options={'no_such_option': True}),
            dict(rep, local=dict(rep['local'], passwords=[
                dict(rep['local']['passwords'][0],
                     created_at='2026-01-02 03:04:05')]))):
        _refused(site_b, b, 'user', broken, 400, id_=rep['id'])
    _refused(site_b, b, 'group', dict(group_rep(), name='x' * 65), 400)
    # The id in the URL must be the id the representation makes.
    grant = assignment_rep('UserSystem', new_id(), 'system', new_id())
    _refused(site_b, b, 'role_assignment', grant, 400, id_=new_id())
    _refused(site_b, b, 'role_assignment',
             assignment_rep('UserSystem', new_id(), 'elsewhere', new_id()),
             400)


def test_system_reader_never_sees_hashes(site_b, b):
    password = secrets.token_hex(12)
    reader = b('POST', '/users', expect=201, json={'user': {
        'name': f'reader-{new_id()[:8]}', 'domain_id': 'default',
        'password': password}}).json()['user']
    b('PUT', f'/system/users/{reader["id"]}/roles/{b.role_id("reader")}',
      expect=204)
    resp = login(site_b, reader['id'], password, {'system': {'all': True}})
    assert resp.status_code == 201, resp.text
    headers = {'X-Auth-Token': resp.headers['X-Subject-Token']}
    for path in ('/sync/resources/user', f'/sync/resources/user/'
                 f'{reader["id"]}', '/sync/changes?types=user'):
        got = requests.get(site_b.url + path, headers=headers, timeout=30)
        assert got.status_code == 403, (path, got.text)
        assert '$2' not in got.text

