"""Application credentials through /v3/sync, on real Keystone processes.

A credential is read as Keystone shows it, created at site B with exactly
the id given, read back with the same representation and hash, updated
and deleted (leaving a tombstone). An application credential copied from
site A to site B authenticates at B with A's secret; Keystone's rules
refuse what Keystone would refuse, a refusal writes nothing and never
echoes the secret's hash.
"""

import uuid

import pytest
import requests
import sqlalchemy as sa

from keystone_syncext import resources
from keystone_syncext.resources import base
from keystone_syncext.tests.functional.resources.client import check_roundtrip
from keystone_syncext.tests.functional.resources.client import hex_id
from keystone_syncext.tests.functional.resources.client import refused


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
        'name': hex_id('dom-')}}).json()['domain']['id']
    w.project = a.call('POST', '/projects', expect=201, json={'project': {
        'name': hex_id('proj-'), 'domain_id': w.domain}}).json()['project'][
        'id']
    w.role = a.call('POST', '/roles', expect=201, json={'role': {
        'name': hex_id('role-')}}).json()['role']['id']
    w.role2 = a.call('POST', '/roles', expect=201, json={'role': {
        'name': hex_id('role-')}}).json()['role']['id']
    w.user = a.call('POST', '/users', expect=201, json={'user': {
        'name': hex_id('user-'), 'domain_id': w.domain,
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
    body.setdefault('name', hex_id('ac-'))
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
    check_roundtrip(b, 'application_credential', ac_id, env['resource'],
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
    check_roundtrip(b, 'application_credential', ac_id, changed,
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
        'id': uuid.uuid4().hex, 'name': hex_id('ac-'), 'description': None,
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
        hex_id('norole'), hex_id('noproj'), hex_id('nouser'))
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
        'name': hex_id('role-')}}).json()['role']['id']
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
        'name': hex_id('reader-'), 'domain_id': 'default',
        'password': password}}).json()['user']['id']
    a.call('PUT', f'/system/users/{uid}/roles/{reader}', expect=204)
    token = _password_token(a.site, uid, password, {'system': {'all': True}})
    resp = requests.get(
        f'{a.site.url}/sync/resources/application_credential/{made["id"]}',
        headers={'X-Auth-Token': token}, timeout=30)
    assert resp.status_code == 403, resp.text
    assert 'secret_hash' not in resp.text
