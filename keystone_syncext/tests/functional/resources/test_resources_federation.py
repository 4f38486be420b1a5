"""Application credentials, mappings, identity providers and federation
protocols through /v3/sync, on real Keystone processes.

Each type is created with exactly the id given, read back with the same
representation and hash, seen by Keystone's ordinary v3 API, updated and
deleted (leaving a tombstone). Keystone's rules refuse what Keystone
would refuse, and a refusal writes nothing. An application credential
copied from site A to site B authenticates at B with A's secret.
"""

import uuid

import pytest
import requests
import sqlalchemy as sa

from keystone_syncext import resources
from keystone_syncext.db import tables
from keystone_syncext.resources import base
from keystone_syncext.tests import conftest

RULES = [{'local': [{'user': {'name': '{0}'}}],
          'remote': [{'type': 'REMOTE_USER'}]}]
RULES2 = [{'local': [{'user': {'name': '{0}'}}, {'group': {'id': 'g1'}}],
           'remote': [{'type': 'REMOTE_USER'}]}]


def _hex(prefix):
    return f'{prefix}{uuid.uuid4().hex[:12]}'


# --- sites and clients ----------------------------------------------------

@pytest.fixture(scope='module')
def site_a(shared_site, keystone_release):
    return shared_site(conftest.CURRENT,
                       second=keystone_release == conftest.CURRENT)


@pytest.fixture(scope='module')
def site_b(shared_site, keystone_release):
    """Where most writes land: Keystone ``keystone_release`` (29.1:
    copies from a 30.0 site a go from N+1 to N)."""
    return shared_site(keystone_release)


class Client:
    """The system admin of a site, on the ordinary API and /v3/sync."""

    def __init__(self, site):
        self.site = site
        self.sess = site.admin_session()

    def call(self, method, path, expect=None, **kw):
        resp = self.sess.request(self.site.url + path, method,
                                 raise_exc=False, **kw)
        if expect is not None:
            assert resp.status_code == expect, (method, path, resp.text)
        return resp

    def put(self, type_, id_, resource, **kw):
        return self.call('PUT', f'/sync/resources/{type_}/{id_}',
                         json={'resource': resource}, **kw)

    def get(self, type_, id_, **kw):
        return self.call('GET', f'/sync/resources/{type_}/{id_}', **kw)

    def delete(self, type_, id_, **kw):
        return self.call('DELETE', f'/sync/resources/{type_}/{id_}', **kw)

    def copy_to(self, other, type_, id_):
        """GET here, PUT there; returns the envelope there."""
        env = self.get(type_, id_, expect=200).json()
        resp = other.put(type_, id_, env['resource'])
        assert resp.status_code in (200, 201), resp.text
        assert resp.json()['hash'] == env['hash']
        return resp.json()

    # -- judging through the database
    def last_change(self):
        with self.site.engine().connect() as conn:
            return conn.execute(sa.select(sa.func.max(tables.change.c.id))
                                ).scalar() or 0

    def tombstone(self, type_, id_):
        t = tables.tombstone.c
        with self.site.engine().connect() as conn:
            return conn.execute(sa.select(tables.tombstone).where(
                t.resource_type == type_, t.resource_id == id_)).first()


@pytest.fixture(scope='module')
def a(site_a):
    return Client(site_a)


@pytest.fixture(scope='module')
def b(site_b):
    return Client(site_b)


def _token(site, body):
    return requests.post(site.url + '/auth/tokens', json={'auth': body},
                         timeout=30)


def _password_token(site, user_id, password, scope):
    resp = _token(site, {'identity': {'methods': ['password'], 'password': {
        'user': {'id': user_id, 'password': password}}}, 'scope': scope})
    assert resp.status_code == 201, resp.text
    return resp.headers['X-Subject-Token']


def _app_cred_auth(site, id_, secret):
    return _token(site, {'identity': {
        'methods': ['application_credential'],
        'application_credential': {'id': id_, 'secret': secret}}})


def _check_roundtrip(client, type_, id_, resource, resp, status):
    assert resp.status_code == status, resp.text
    env = resp.json()
    assert env['id'] == id_
    assert env['resource'] == resource
    assert env['hash'] == base.content_hash(resource)
    assert resp.headers['ETag'] == f'"{env["hash"]}"'
    got = client.get(type_, id_, expect=200)
    assert got.json()['resource'] == resource
    assert got.headers['ETag'] == resp.headers['ETag']
    return env


def refused(client, type_, id_, resource, status):
    """PUT that must be refused with ``status`` without writing."""
    before = client.last_change()
    resp = client.put(type_, id_, resource)
    assert resp.status_code == status, resp.text
    assert client.last_change() == before
    client.get(type_, id_, expect=404)
    return resp.json()['error']


# --- mappings, identity providers, protocols --------------------------------

def _mapping(id_, rules=RULES, version='1.0'):
    return {'id': id_, 'rules': rules, 'schema_version': version}


def _idp(id_, remote_ids=(), **kw):
    return dict({'id': id_, 'enabled': True, 'description': 'an idp',
                 'domain_id': 'default', 'authorization_ttl': None,
                 'remote_ids': sorted(remote_ids)}, **kw)


def _protocol(idp_id, protocol_id, mapping_id, remote_id_attribute=None):
    return {'id': f'{idp_id}:{protocol_id}', 'idp_id': idp_id,
            'protocol_id': protocol_id, 'mapping_id': mapping_id,
            'remote_id_attribute': remote_id_attribute}


def test_mapping_lifecycle(a):
    mid = _hex('map-')
    rep = _mapping(mid)
    _check_roundtrip(a, 'mapping', mid, rep, a.put('mapping', mid, rep), 201)
    seen = a.call('GET', f'/OS-FEDERATION/mappings/{mid}',
                  expect=200).json()['mapping']
    assert (seen['id'], seen['rules'], seen['schema_version']) == \
        (mid, RULES, '1.0')

    before = a.last_change()
    assert a.put('mapping', mid, rep).status_code == 200  # no change
    assert a.last_change() == before

    rep2 = _mapping(mid, RULES2, '2.0')
    _check_roundtrip(a, 'mapping', mid, rep2, a.put('mapping', mid, rep2),
                     200)
    seen = a.call('GET', f'/OS-FEDERATION/mappings/{mid}',
                  expect=200).json()['mapping']
    assert (seen['rules'], seen['schema_version']) == (RULES2, '2.0')

    a.delete('mapping', mid, expect=204)
    a.call('GET', f'/OS-FEDERATION/mappings/{mid}', expect=404)
    a.get('mapping', mid, expect=404)
    assert a.tombstone('mapping', mid) is not None


def test_identity_provider_lifecycle(a):
    iid = _hex('idp-')
    remotes = [_hex('https://b.example/'), _hex('https://a.example/')]
    rep = _idp(iid, remotes)
    _check_roundtrip(a, 'identity_provider', iid, rep,
                     a.put('identity_provider', iid, rep), 201)
    seen = a.call('GET', f'/OS-FEDERATION/identity_providers/{iid}',
                  expect=200).json()['identity_provider']
    assert seen['domain_id'] == 'default'
    assert seen['enabled'] is True
    assert seen['description'] == 'an idp'
    assert sorted(seen['remote_ids']) == sorted(remotes)

    rep2 = _idp(iid, [remotes[0], _hex('https://c.example/')],
                enabled=False, description=None, authorization_ttl=30)
    _check_roundtrip(a, 'identity_provider', iid, rep2,
                     a.put('identity_provider', iid, rep2), 200)
    seen = a.call('GET', f'/OS-FEDERATION/identity_providers/{iid}',
                  expect=200).json()['identity_provider']
    assert seen['enabled'] is False
    assert seen['authorization_ttl'] == 30
    assert sorted(seen['remote_ids']) == rep2['remote_ids']

    a.delete('identity_provider', iid, expect=204)
    a.call('GET', f'/OS-FEDERATION/identity_providers/{iid}', expect=404)
    assert a.tombstone('identity_provider', iid) is not None


def test_protocol_lifecycle_in_one_batch(a):
    """A batch listing the protocol first still creates its mapping and
    identity provider before it (dependency order)."""
    mid, mid2, iid = _hex('map-'), _hex('map-'), _hex('idp-')
    proto = _protocol(iid, 'saml2', mid, 'Shib-Identity-Provider')
    items = [
        {'op': 'upsert', 'type': 'federation_protocol', 'id': proto['id'],
         'resource': proto},
        {'op': 'upsert', 'type': 'identity_provider', 'id': iid,
         'resource': _idp(iid)},
        {'op': 'upsert', 'type': 'mapping', 'id': mid,
         'resource': _mapping(mid)},
        {'op': 'upsert', 'type': 'mapping', 'id': mid2,
         'resource': _mapping(mid2, RULES2)},
    ]
    results = a.call('POST', '/sync/batch', json={'items': items},
                     expect=200).json()['results']
    assert [r['status'] for r in results] == [201] * 4, results

    pid = proto['id']
    assert pid == f'{iid}:saml2'
    got = a.get('federation_protocol', pid, expect=200)
    assert got.json()['resource'] == proto
    assert got.json()['hash'] == base.content_hash(proto)
    path = f'/OS-FEDERATION/identity_providers/{iid}/protocols/saml2'
    seen = a.call('GET', path, expect=200).json()['protocol']
    # (Keystone's API shows only id and mapping_id of a protocol.)
    assert (seen['id'], seen['mapping_id']) == ('saml2', mid)

    proto2 = _protocol(iid, 'saml2', mid2, 'Other-Attribute')
    _check_roundtrip(a, 'federation_protocol', pid, proto2,
                     a.put('federation_protocol', pid, proto2), 200)
    seen = a.call('GET', path, expect=200).json()['protocol']
    assert seen['mapping_id'] == mid2
    listed = a.call('GET', '/sync/resources/federation_protocol',
                    params={'prefix': iid}, expect=200).json()['items']
    assert [i['id'] for i in listed] == [pid]

    a.delete('federation_protocol', pid, expect=204)
    a.call('GET', path, expect=404)
    assert a.tombstone('federation_protocol', pid) is not None
    # The identity provider is still there.
    a.call('GET', f'/OS-FEDERATION/identity_providers/{iid}', expect=200)


def test_duplicate_remote_id_is_409_naming_the_holder(a):
    holder, other = _hex('idp-'), _hex('idp-')
    remote = _hex('https://dup.example/')
    a.put('identity_provider', holder, _idp(holder, [remote]), expect=201)
    err = refused(a, 'identity_provider', other,
                  _idp(other, [remote, _hex('https://x/')]), 409)
    assert err['existing_id'] == holder
    assert remote in err['message']


def test_missing_references_are_400(a):
    iid = _hex('idp-')
    err = refused(a, 'identity_provider', iid,
                  _idp(iid, domain_id=_hex('nodomain')), 400)
    assert 'domain' in err['message']

    mid = _hex('map-')
    a.put('mapping', mid, _mapping(mid), expect=201)
    missing_idp = _protocol(_hex('noidp-'), 'oidc', mid)
    err = refused(a, 'federation_protocol', missing_idp['id'], missing_idp,
                  400)
    assert 'identity_provider' in err['message']
    assert 'idp_id' in err['message']

    a.put('identity_provider', iid, _idp(iid), expect=201)
    missing_map = _protocol(iid, 'oidc', _hex('nomap-'))
    err = refused(a, 'federation_protocol', missing_map['id'], missing_map,
                  400)
    assert 'mapping' in err['message']
    assert missing_map['mapping_id'] in err['message']


def test_identity_provider_cannot_change_domain(a):
    iid = _hex('idp-')
    rep = _idp(iid)
    a.put('identity_provider', iid, rep, expect=201)
    before = a.last_change()
    resp = a.put('identity_provider', iid,
                 dict(rep, domain_id=_hex('other'), enabled=False))
    assert resp.status_code == 400, resp.text
    assert 'domain' in resp.json()['error']['message']
    assert a.last_change() == before
    assert a.get('identity_provider', iid, expect=200).json()[
        'resource'] == rep


def test_invalid_mapping_rules_are_400_with_keystones_message(a):
    mid = _hex('map-')
    err = refused(a, 'mapping', mid, _mapping(mid, []), 400)
    assert 'should be non-empty' in err['message']
    err = refused(a, 'mapping', mid,
                  _mapping(mid, [{'local': [{'user': {'name': 'x'}}]}]), 400)
    assert "'remote' is a required property" in err['message']
    err = refused(a, 'mapping', mid, _mapping(mid, version='9.9'), 400)
    assert '9.9' in err['message']


@pytest.mark.parametrize('type_,resource', [
    ('mapping', {'id': 'M', 'rules': RULES}),
    ('mapping', {'id': 'M', 'rules': {'not': 'a list'},
                 'schema_version': '1.0'}),
    ('identity_provider', dict(_idp('M'), authorization_ttl=-1)),
    ('identity_provider', dict(_idp('M'), extra_field=1)),
    ('federation_protocol', dict(_protocol('M', 'p', 'm'), id='M:other')),
])
def test_schema_failures_are_400(a, type_, resource):
    id_ = resource['id']
    if id_ == 'M':
        id_ = resource['id'] = _hex('bad-')
    refused(a, type_, id_, resource, 400)


# --- application credentials ------------------------------------------------

class World:
    """A user with a password and a role on a project, at site A, and the
    same at site B with the same ids."""


def _copy_user_rows(src, dst, user_id):
    """Test setup only, for a branch without the sync API's ``user`` type:
    copy the user's rows (user, local_user, password) from A's database to
    B's, keeping the user id."""
    meta_a, meta_b = sa.MetaData(), sa.MetaData()
    with src.engine().connect() as ca, dst.engine().begin() as cb:
        tab = {n: (sa.Table(n, meta_a, autoload_with=ca),
                   sa.Table(n, meta_b, autoload_with=cb))
               for n in ('user', 'local_user', 'password')}
        ua, ub = tab['user']
        row = ca.execute(sa.select(ua).where(ua.c.id == user_id)).one()
        cb.execute(ub.insert().values(dict(row._mapping)))
        la, lb = tab['local_user']
        local = ca.execute(sa.select(la).where(la.c.user_id == user_id)).one()
        cb.execute(lb.insert().values(
            {k: v for k, v in local._mapping.items() if k != 'id'}))
        new_local = cb.execute(sa.select(lb.c.id).where(
            lb.c.user_id == user_id)).scalar_one()
        pa, pb = tab['password']
        for pw in ca.execute(sa.select(pa).where(
                pa.c.local_user_id == local.id)):
            values = {k: v for k, v in pw._mapping.items() if k != 'id'}
            cb.execute(pb.insert().values(dict(values,
                                               local_user_id=new_local)))


def _insert_assignment_row(dst, user_id, project_id, role_id):
    """Test setup only, for a branch without the ``role_assignment`` type:
    the assignment row Keystone would write."""
    with dst.engine().begin() as conn:
        t = sa.Table('assignment', sa.MetaData(), autoload_with=conn)
        conn.execute(t.insert().values(
            type='UserProject', actor_id=user_id, target_id=project_id,
            role_id=role_id, inherited=False))


@pytest.fixture(scope='module')
def world(a, b):
    w = World()
    w.password = uuid.uuid4().hex
    w.domain = a.call('POST', '/domains', expect=201, json={'domain': {
        'name': _hex('dom-')}}).json()['domain']['id']
    w.project = a.call('POST', '/projects', expect=201, json={'project': {
        'name': _hex('proj-'), 'domain_id': w.domain}}).json()['project'][
        'id']
    w.role = a.call('POST', '/roles', expect=201, json={'role': {
        'name': _hex('role-')}}).json()['role']['id']
    w.role2 = a.call('POST', '/roles', expect=201, json={'role': {
        'name': _hex('role-')}}).json()['role']['id']
    w.user = a.call('POST', '/users', expect=201, json={'user': {
        'name': _hex('user-'), 'domain_id': w.domain,
        'password': w.password}}).json()['user']['id']
    for role in (w.role, w.role2):
        a.call('PUT', f'/projects/{w.project}/users/{w.user}/roles/{role}',
               expect=204)
    w.token_a = _password_token(a.site, w.user, w.password,
                                {'project': {'id': w.project}})

    # Site B, in dependency order.
    a.copy_to(b, 'domain', w.domain)
    a.copy_to(b, 'project', w.project)
    a.copy_to(b, 'role', w.role)
    a.copy_to(b, 'role', w.role2)
    if 'user' in resources.TYPES:
        a.copy_to(b, 'user', w.user)
    else:
        _copy_user_rows(a.site, b.site, w.user)
    for role in (w.role, w.role2):
        if 'role_assignment' in resources.TYPES:
            a.copy_to(b, 'role_assignment',
                      f'UserProject:{w.user}:{w.project}:{role}:0')
        else:
            _insert_assignment_row(b.site, w.user, w.project, role)
    # The user and the assignments really are there at B.
    b.call('HEAD', f'/projects/{w.project}/users/{w.user}/roles/{w.role}',
           expect=204)
    return w


def _create_app_cred(site, w, **body):
    body.setdefault('name', _hex('ac-'))
    resp = requests.post(
        f'{site.url}/users/{w.user}/application_credentials',
        headers={'X-Auth-Token': w.token_a},
        json={'application_credential': body}, timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.json()['application_credential']


def test_app_cred_read_matches_keystone(a, world):
    made = _create_app_cred(a.site, world, description='for the test',
                            roles=[{'id': world.role}],
                            expires_at='2099-01-02T03:04:05.123456',
                            access_rules=[{'service': 'compute',
                                           'method': 'GET',
                                           'path': '/v2.1/servers'}])
    got = a.get('application_credential', made['id'], expect=200)
    rep = got.json()['resource']
    assert got.headers['ETag'] == f'"{base.content_hash(rep)}"'
    assert rep['id'] == made['id']
    assert rep['name'] == made['name']
    assert rep['description'] == 'for the test'
    assert rep['user_id'] == world.user
    assert rep['project_id'] == world.project
    assert rep['system'] is None
    # Not given at creation: Keystone keeps (and shows) NULL, so do we.
    assert made.get('unrestricted') is None
    assert rep['unrestricted'] is None
    assert rep['expires_at'] == '2099-01-02T03:04:05.123456Z'
    assert rep['roles'] == [world.role]
    assert rep['access_rules'] == [{
        'id': made['access_rules'][0]['id'], 'service': 'compute',
        'method': 'GET', 'path': '/v2.1/servers'}]
    assert rep['secret_hash'].startswith('$2')  # bcrypt, never the secret
    assert made['secret'] not in got.text


def test_app_cred_across_sites(a, b, world):
    made = _create_app_cred(a.site, world)
    ac_id, secret = made['id'], made['secret']
    assert _app_cred_auth(a.site, ac_id, secret).status_code == 201
    assert sorted(made_role['id'] for made_role in made['roles']) == \
        sorted([world.role, world.role2])

    env = a.get('application_credential', ac_id, expect=200).json()
    resp = b.put('application_credential', ac_id, env['resource'])
    _check_roundtrip(b, 'application_credential', ac_id, env['resource'],
                     resp, 201)
    assert resp.json()['hash'] == env['hash']

    seen = b.call('GET', f'/users/{world.user}/application_credentials/'
                  f'{ac_id}', expect=200).json()['application_credential']
    assert (seen['name'], seen['project_id']) == (made['name'],
                                                  world.project)
    assert 'secret_hash' not in seen

    # A's secret works at B; the token is scoped to the project with the
    # credential's roles.
    auth = _app_cred_auth(b.site, ac_id, secret)
    assert auth.status_code == 201, auth.text
    token = auth.json()['token']
    assert token['project']['id'] == world.project
    assert token['application_credential']['id'] == ac_id
    assert sorted(r['id'] for r in token['roles']) == \
        sorted([world.role, world.role2])
    # (bcrypt reads only the first 72 bytes: change the first one.)
    wrong = ('A' if secret[0] != 'A' else 'B') + secret[1:]
    assert _app_cred_auth(b.site, ac_id, wrong).status_code == 401

    # Same again: nothing to do, nothing written.
    before = b.last_change()
    assert b.put('application_credential', ac_id,
                 env['resource']).status_code == 200
    assert b.last_change() == before

    # An update (Keystone has none: the rows are replaced in place).
    changed = dict(env['resource'], description='changed',
                   roles=[world.role])
    _check_roundtrip(b, 'application_credential', ac_id, changed,
                     b.put('application_credential', ac_id, changed), 200)
    seen = b.call('GET', f'/users/{world.user}/application_credentials/'
                  f'{ac_id}', expect=200).json()['application_credential']
    assert seen['description'] == 'changed'
    assert [r['id'] for r in seen['roles']] == [world.role]
    auth = _app_cred_auth(b.site, ac_id, secret)
    assert auth.status_code == 201, auth.text
    assert [r['id'] for r in auth.json()['token']['roles']] == [world.role]

    b.delete('application_credential', ac_id, expect=204)
    b.call('GET', f'/users/{world.user}/application_credentials/{ac_id}',
           expect=404)
    assert b.tombstone('application_credential', ac_id) is not None
    # Keystone answers 404 for a credential it does not know.
    assert _app_cred_auth(b.site, ac_id, secret).status_code in (401, 404)
    # A still has it.
    assert _app_cred_auth(a.site, ac_id, secret).status_code == 201


def test_app_cred_access_rules_copied_by_external_id(a, b, world):
    rule = {'service': 'image', 'method': 'GET', 'path': '/v2/images'}
    first = _create_app_cred(a.site, world, access_rules=[rule])
    # Keystone re-uses the user's identical rule for the second one.
    second = _create_app_cred(a.site, world, access_rules=[rule])
    rule_id = first['access_rules'][0]['id']
    assert second['access_rules'][0]['id'] == rule_id
    for made in (first, second):
        a.copy_to(b, 'application_credential', made['id'])
    rules = b.call('GET', f'/users/{world.user}/access_rules',
                   expect=200).json()['access_rules']
    assert [r['id'] for r in rules if r['service'] == 'image'] == [rule_id]


def _app_cred_rep(world, **kw):
    return dict({
        'id': uuid.uuid4().hex, 'name': _hex('ac-'), 'description': None,
        'user_id': world.user, 'project_id': world.project, 'system': None,
        'secret_hash': '$2b$04$' + 'S' * 53, 'expires_at': None,
        'unrestricted': False, 'roles': [world.role], 'access_rules': [],
    }, **kw)


def test_app_cred_refusals(b, world):
    existing = _app_cred_rep(world)
    b.put('application_credential', existing['id'], existing, expect=201)
    secret_hash = existing['secret_hash']

    dup = _app_cred_rep(world, name=existing['name'])
    err = refused(b, 'application_credential', dup['id'], dup, 409)
    assert err['existing_id'] == existing['id']

    # A secret never changes, whoever writes (Keystone cannot change it):
    # such a write is a take-over, not a repair.
    other_hash = '$2b$04$' + 'T' * 53
    taken = dict(existing, secret_hash=other_hash)
    before = b.last_change()
    resp = b.put('application_credential', existing['id'], taken)
    assert resp.status_code == 409, resp.text
    assert b.last_change() == before
    err = resp.json()['error']
    assert 'secret' in err['message']
    assert secret_hash not in err['message']
    assert other_hash not in err['message']

    missing_role, missing_project, missing_user = (
        _hex('norole'), _hex('noproj'), _hex('nouser'))
    cases = [
        (dict(roles=[missing_role]), 'role', missing_role),
        (dict(project_id=missing_project), 'project', missing_project),
        (dict(user_id=missing_user), 'user', missing_user),
    ]
    for change, word, missing in cases:
        rep = _app_cred_rep(world, **change)
        err = refused(b, 'application_credential', rep['id'], rep, 400)
        assert word in err['message'] and missing in err['message']
        assert secret_hash not in err['message']

    # A role the user does not hold on the project (Keystone's rule).
    other_role = b.call('POST', '/roles', expect=201, json={'role': {
        'name': _hex('role-')}}).json()['role']['id']
    rep = _app_cred_rep(world, roles=[other_role])
    err = refused(b, 'application_credential', rep['id'], rep, 400)
    assert other_role in err['message']

    # Schema failures never echo the hash.
    for change in (dict(secret_hash=12345), dict(secret_hash='h' * 300),
                   dict(expires_at='2099-01-01'), dict(roles='x'),
                   dict(unexpected=True)):
        rep = _app_cred_rep(world, **change)
        err = refused(b, 'application_credential', rep['id'], rep, 400)
        assert str(rep['secret_hash']) not in err['message']
    rep = _app_cred_rep(world, expires_at=None)
    rep['roles'] = [{'id': world.role}]  # not an id: the hash is nearby
    err = refused(b, 'application_credential', rep['id'], rep, 400)
    assert rep['secret_hash'] not in err['message']


def test_app_cred_not_readable_by_system_reader(a, world):
    made = _create_app_cred(a.site, world)
    reader = a.call('GET', '/roles', params={'name': 'reader'},
                    expect=200).json()['roles'][0]['id']
    password = uuid.uuid4().hex
    uid = a.call('POST', '/users', expect=201, json={'user': {
        'name': _hex('reader-'), 'domain_id': 'default',
        'password': password}}).json()['user']['id']
    a.call('PUT', f'/system/users/{uid}/roles/{reader}', expect=204)
    token = _password_token(a.site, uid, password, {'system': {'all': True}})
    resp = requests.get(
        f'{a.site.url}/sync/resources/application_credential/{made["id"]}',
        headers={'X-Auth-Token': token}, timeout=30)
    assert resp.status_code == 403, resp.text
    assert 'secret_hash' not in resp.text
