"""Users, groups, memberships and role assignments through /v3/sync, on two
real Keystone sites, judged through Keystone's ordinary v3 API.

A user created with a password at site A, read from A's sync API and
written into site B, logs in at B with A's password; a password change
at A, synced again, takes effect at B (and revokes B's tokens of that
user). Keystone's rules hold for synced writes (name clashes, missing
references, hash formats, schema), and a refused write leaves the
database as it was. Runs once per database backend.
"""

from concurrent import futures
import secrets
import uuid

import bcrypt
import pytest
import requests
import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest

ORIGIN = {'OpenStack-Sync-Origin': 'site-a'}
# Tables whose row counts must not move when a write is refused.
WATCHED = ('user', 'local_user', 'password', 'user_option',
           'federated_user', 'group', 'user_group_membership', 'assignment',
           'system_assignment', 'revocation_event')


def new_id() -> str:
    return uuid.uuid4().hex


def hash_password(password: str) -> str:
    # The format Keystone's default hasher writes (bcrypt, cost as the
    # test sites are configured).
    return bcrypt.hashpw(password.encode(),
                         bcrypt.gensalt(sites.HASH_ROUNDS)).decode()


class Client:
    """The bootstrap admin of one site (system scoped)."""

    def __init__(self, site):
        self.site = site
        self.sess = site.admin_session()

    def __call__(self, method, path, expect=None, **kw):
        resp = self.sess.request(self.site.url + path, method,
                                 raise_exc=False, **kw)
        if expect is not None:
            assert resp.status_code == expect, (method, path,
                                                resp.status_code, resp.text)
        return resp

    def read(self, type_name, id_):
        resp = self('GET', f'/sync/resources/{type_name}/{id_}', expect=200)
        env = resp.json()
        assert resp.headers['ETag'] == f'"{env["hash"]}"'
        return env

    def put(self, type_name, id_, resource, expect=None):
        return self('PUT', f'/sync/resources/{type_name}/{id_}',
                    expect=expect, json={'resource': resource},
                    headers=ORIGIN)

    def delete(self, type_name, id_, expect=204):
        return self('DELETE', f'/sync/resources/{type_name}/{id_}',
                    expect=expect, headers=ORIGIN)

    def role_id(self, name):
        roles = self('GET', f'/roles?name={name}', expect=200).json()
        return roles['roles'][0]['id']


def login(site, user_id, password, scope=None):
    body = {'auth': {'identity': {'methods': ['password'], 'password': {
        'user': {'id': user_id, 'password': password}}}}}
    if scope:
        body['auth']['scope'] = scope
    return requests.post(site.url + '/auth/tokens', json=body, timeout=30)


def token_valid(site, admin, token) -> bool:
    resp = admin('GET', '/auth/tokens', headers={'X-Subject-Token': token})
    assert resp.status_code in (200, 404), resp.text
    return resp.status_code == 200


def snapshot(site) -> dict:
    """Row counts of the identity tables and the newest captured change."""
    with site.engine().connect() as conn:
        quote = conn.dialect.identifier_preparer.quote
        out = {name: conn.execute(sa.text(
            f'SELECT COUNT(*) FROM {quote(name)}')).scalar()
            for name in WATCHED}
        out['sync_change'] = conn.execute(
            sa.select(sa.func.max(tables.change.c.id))).scalar()
    return out


def tombstone(site, type_name, id_):
    with site.engine().connect() as conn:
        return conn.execute(sa.select(tables.tombstone).where(
            tables.tombstone.c.resource_type == type_name,
            tables.tombstone.c.resource_id == id_)).first()


def user_rep(id_=None, name=None, password=None, **fields):
    id_ = id_ or new_id()
    rep = {
        'id': id_, 'domain_id': 'default', 'enabled': True,
        'default_project_id': None, 'options': {}, 'extra': {},
        'local': {'name': name or f'u-{id_[:10]}', 'passwords': [{
            'hash': hash_password(password or secrets.token_hex(8)),
            'created_at': '2026-01-02T03:04:05.123456Z',
            'expires_at': None, 'self_service': False}]},
        'federated': [],
    }
    rep.update(fields)
    return rep


def group_rep(id_=None, name=None, **fields):
    id_ = id_ or new_id()
    rep = {'id': id_, 'domain_id': 'default',
           'name': name or f'g-{id_[:10]}', 'description': 'synced',
           'extra': {}}
    rep.update(fields)
    return rep


def assignment_rep(type_, actor, target, role, inherited=False):
    rep = {'type': type_, 'actor_id': actor, 'target_id': target,
           'role_id': role, 'inherited': inherited}
    rep['id'] = ':'.join([type_, actor, target, role,
                          '1' if inherited else '0'])
    return rep


@pytest.fixture(scope='module')
def two_sites(shared_site, keystone_release):
    """Site a runs the current Keystone; site b, where most writes land,
    runs ``keystone_release``: with 29.1 the copies go from N+1 to N."""
    # Set up side by side (when not made yet): most of a site's start is
    # waiting on Keystone processes.
    with futures.ThreadPoolExecutor(2) as pool:
        started = [
            pool.submit(shared_site, conftest.CURRENT,
                        second=keystone_release == conftest.CURRENT),
            pool.submit(shared_site, keystone_release)]
        return [f.result() for f in started]


@pytest.fixture(scope='module')
def site_a(two_sites):
    return two_sites[0]


@pytest.fixture(scope='module')
def site_b(two_sites):
    return two_sites[1]


@pytest.fixture(scope='module')
def a(site_a):
    return Client(site_a)


@pytest.fixture(scope='module')
def b(site_b):
    return Client(site_b)


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
    stone = tombstone(site_b, 'user', uid)
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
    assert tombstone(site_b, 'group_membership', member['id']).origin == \
        'site-a'

    b.put('group_membership', member['id'], member, expect=201)
    b.delete('group', gid)
    b('GET', f'/groups/{gid}', expect=404)
    assert tombstone(site_b, 'group', gid).origin == 'site-a'
    # Keystone removed the membership with the group.
    b('GET', f'/sync/resources/group_membership/{member["id"]}', expect=404)


# --- role assignments --------------------------------------------------------

def _listed(b, query):
    return b('GET', f'/role_assignments?{query}',
             expect=200).json()['role_assignments']


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
        for ra in _listed(b, f'{actor}.id={actor_id}'):
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
        assert tombstone(site_b, 'role_assignment', rep['id']) is not None
    assert _listed(b, f'user.id={uid}') == []
    assert _listed(b, f'group.id={gid}') == []
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
    assert [ra['role']['id'] for ra in _listed(b, f'user.id={new_user}')] \
        == [member]
    resp = login(site_b, new_user, password, {'domain': {'id': 'default'}})
    assert resp.status_code == 201, resp.text
