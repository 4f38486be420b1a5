"""Capture of every v1 type, driven through a real Keystone's HTTP API.

The Keystone process runs Keystone's own WSGI entry point: none of our code
is loaded there, so everything recorded here comes from the triggers.
Runs once per database backend.
"""

import uuid

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
import pytest
import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.tests.capture_oracle import Recorder


def _name(prefix='r'):
    return f'{prefix}-{uuid.uuid4().hex[:8]}'


class Api:
    """Thin helpers over the ordinary v3 API."""

    def __init__(self, site, session):
        self.site, self.s = site, session

    def post(self, path, key, body):
        return self.s.post(self.site.url + path, json={key: body}).json()[key]

    def patch(self, path, key, body):
        return self.s.patch(self.site.url + path, json={key: body}).json()

    def put(self, path, body=None):
        return self.s.put(self.site.url + path, json=body)

    def delete(self, path):
        return self.s.delete(self.site.url + path)

    def domain(self):
        return self.post('/domains', 'domain', {'name': _name('dom')})

    def project(self, domain_id='default', **kw):
        return self.post('/projects', 'project',
                         {'name': _name('proj'), 'domain_id': domain_id, **kw})

    def user(self, domain_id='default', password='secret-Pass1', **kw):
        return self.post('/users', 'user', {'name': _name('user'),
                                            'domain_id': domain_id,
                                            'password': password, **kw})

    def group(self, domain_id='default'):
        return self.post('/groups', 'group',
                         {'name': _name('grp'), 'domain_id': domain_id})

    def role(self, **kw):
        return self.post('/roles', 'role', {'name': _name('role'), **kw})


@pytest.fixture(scope='module')
def api(site, admin):
    return Api(site, admin)


@pytest.fixture
def rec(site):
    return Recorder(site.engine())


def test_domain_create_update_delete(api, rec):
    with rec:
        dom = api.domain()
    rec.check()
    assert rec.ops('domain', dom['id']) == ['create']
    assert rec.touched() == {('domain', dom['id'])}

    with rec:
        api.patch(f'/domains/{dom["id"]}', 'domain',
                  {'description': 'changed', 'enabled': False})
    assert rec.ops('domain', dom['id']) == ['update']

    with rec:
        api.delete(f'/domains/{dom["id"]}')
    rec.check()
    assert rec.ops('domain', dom['id']) == ['delete']
    assert ('domain', dom['id']) in rec.tombstones


def test_project_with_tags_and_options(api, rec):
    with rec:
        proj = api.project(tags=['a', 'b'])
    rec.check()
    assert rec.ops('project', proj['id']) == ['create', 'update']

    with rec:
        api.put(f'/projects/{proj["id"]}/tags/c')
    assert rec.ops('project', proj['id']) == ['update']
    assert rec.touched() == {('project', proj['id'])}

    with rec:
        api.patch(f'/projects/{proj["id"]}', 'project',
                  {'options': {'immutable': False}})
    assert rec.ops('project', proj['id']) == ['update']

    child = api.project(parent_id=proj['id'])
    with rec:
        api.delete(f'/projects/{child["id"]}')
        api.delete(f'/projects/{proj["id"]}')
    rec.check()
    assert rec.ops('project', proj['id'])[-1] == 'delete'


def test_user_password_and_site_local_columns(site, api, rec):
    with rec:
        user = api.user()
    rec.check()
    # user row, then its local_user and password rows
    assert rec.ops('user', user['id']) == ['create', 'update']

    with rec:
        api.patch(f'/users/{user["id"]}', 'user', {'password': 'new-Pass2'})
    assert rec.ops('user', user['id']) == ['update']

    # A successful login moves last_active_at, a failed one moves the
    # failed-login counter: both are site-local and never a change.
    with rec:
        _login(site, user['name'], 'new-Pass2')
        with pytest.raises(ks_exc.Unauthorized):
            _login(site, user['name'], 'wrong-password')
    with site.engine().connect() as conn:
        failed = conn.exec_driver_sql(
            "SELECT failed_auth_count FROM local_user WHERE user_id = "
            f"'{user['id']}'").scalar()
    assert failed == 1
    assert rec.changes == []

    with rec:
        api.delete(f'/users/{user["id"]}')
    rec.check()
    assert rec.ops('user', user['id'])[-1] == 'delete'


def _user_session(site, name, password, **scope):
    """A session as a user of the default domain (unscoped unless told)."""
    return ks_session.Session(auth=v3.Password(
        auth_url=site.url, username=name, password=password,
        user_domain_id='default', **scope), connect_retries=3)


def _login(site, name, password):
    return _user_session(site, name, password).get_token()


def test_group_and_membership(api, rec):
    with rec:
        grp = api.group()
    assert rec.ops('group', grp['id']) == ['create']
    user = api.user()
    membership = f'{user["id"]}:{grp["id"]}'

    with rec:
        api.put(f'/groups/{grp["id"]}/users/{user["id"]}')
    rec.check()
    assert rec.ops('group_membership', membership) == ['create']

    with rec:
        api.delete(f'/groups/{grp["id"]}/users/{user["id"]}')
    rec.check()
    assert rec.ops('group_membership', membership) == ['delete']

    api.put(f'/groups/{grp["id"]}/users/{user["id"]}')
    with rec:
        api.delete(f'/groups/{grp["id"]}')
    rec.check()
    assert rec.ops('group_membership', membership) == ['delete']
    assert rec.ops('group', grp['id']) == ['delete']


def test_roles_implied_roles_and_options(backend_name, api, rec):
    dom = api.domain()
    with rec:
        prior = api.role()
        implied = api.role()
        domain_role = api.role(domain_id=dom['id'])
    rec.check()
    assert {k for k in rec.appeared} == {
        ('role', prior['id']), ('role', implied['id']),
        ('role', domain_role['id'])}

    with rec:
        api.put(f'/roles/{prior["id"]}/implies/{implied["id"]}')
    implied_id = f'{prior["id"]}:{implied["id"]}'
    assert rec.ops('implied_role', implied_id) == ['create']

    with rec:
        api.patch(f'/roles/{prior["id"]}', 'role',
                  {'description': 'x', 'options': {'immutable': False}})
    assert rec.ops('role', prior['id']) == ['update']

    with rec:
        api.delete(f'/roles/{implied["id"]}')
    rec.check()
    assert rec.ops('role', implied['id']) == ['delete']
    if backend_name == 'sqlite':
        # Keystone does not enforce foreign keys on SQLite: the implied
        # role row outlives its role, so nothing disappeared.
        assert ('implied_role', implied_id) not in rec.disappeared
    else:
        # MySQL cascades without firing triggers; PostgreSQL fires them.
        # Either way the cascaded delete must be logged.
        assert ('implied_role', implied_id) in rec.disappeared


def test_role_assignments_all_kinds(api, rec):
    role = api.role()
    user, grp, proj = api.user(), api.group(), api.project()
    rid = role['id']
    paths = {
        f'UserProject:{user["id"]}:{proj["id"]}:{rid}:0':
            f'/projects/{proj["id"]}/users/{user["id"]}/roles/{rid}',
        f'GroupProject:{grp["id"]}:{proj["id"]}:{rid}:0':
            f'/projects/{proj["id"]}/groups/{grp["id"]}/roles/{rid}',
        f'UserDomain:{user["id"]}:default:{rid}:0':
            f'/domains/default/users/{user["id"]}/roles/{rid}',
        f'GroupDomain:{grp["id"]}:default:{rid}:1':
            f'/OS-INHERIT/domains/default/groups/{grp["id"]}/roles/{rid}'
            '/inherited_to_projects',
        f'UserSystem:{user["id"]}:system:{rid}:0':
            f'/system/users/{user["id"]}/roles/{rid}',
        f'GroupSystem:{grp["id"]}:system:{rid}:0':
            f'/system/groups/{grp["id"]}/roles/{rid}',
    }
    with rec:
        for path in paths.values():
            api.put(path)
    rec.check()
    assert {i for t, i in rec.appeared} == set(paths)

    # Deleting the project removes its assignments with one bulk query.
    with rec:
        api.delete(f'/projects/{proj["id"]}')
    rec.check()
    assert {i for t, i in rec.disappeared if t == 'role_assignment'} == {
        i for i in paths if i.startswith(('UserProject', 'GroupProject'))}

    # Deleting the role removes every remaining assignment of it.
    with rec:
        api.delete(f'/roles/{rid}')
    rec.check()
    assert {i for t, i in rec.disappeared if t == 'role_assignment'} == {
        i for i in paths
        if not i.startswith(('UserProject', 'GroupProject'))}


def test_application_credential_with_access_rules(site, api, rec):
    user = api.user(password='appcred-Pass1')
    proj = api.project()
    member = api.role()
    api.put(f'/projects/{proj["id"]}/users/{user["id"]}/roles/{member["id"]}')
    sess = _user_session(site, user['name'], 'appcred-Pass1',
                         project_id=proj['id'])
    with rec:
        cred = sess.post(
            f'{site.url}/users/{user["id"]}/application_credentials',
            json={'application_credential': {
                'name': _name('cred'),
                'access_rules': [{'service': 'compute', 'method': 'GET',
                                  'path': '/v2.1/servers'}]}}
        ).json()['application_credential']
    rec.check()
    assert rec.ops('application_credential', cred['id']) == [
        'create', 'update']

    with rec:
        sess.delete(f'{site.url}/users/{user["id"]}/application_credentials/'
                    f'{cred["id"]}')
    rec.check()
    # Its role and access-rule rows go first (an update), then the row.
    assert rec.ops('application_credential', cred['id'])[-1] == 'delete'


def test_federation_idp_mapping_protocol(backend_name, api, rec):
    rules = [{'local': [{'user': {'name': '{0}'}}],
              'remote': [{'type': 'REMOTE_USER'}]}]
    idp_id, mapping_id = _name('idp'), _name('map')
    with rec:
        api.s.put(f'{api.site.url}/OS-FEDERATION/identity_providers/{idp_id}',
                  json={'identity_provider': {
                      'remote_ids': [_name('remote')], 'enabled': True}})
        api.s.put(f'{api.site.url}/OS-FEDERATION/mappings/{mapping_id}',
                  json={'mapping': {'rules': rules}})
        api.s.put(f'{api.site.url}/OS-FEDERATION/identity_providers/{idp_id}'
                  '/protocols/saml2',
                  json={'protocol': {'mapping_id': mapping_id}})
    rec.check()
    assert rec.ops('identity_provider', idp_id)[0] == 'create'
    assert rec.ops('mapping', mapping_id) == ['create']
    assert rec.ops('federation_protocol', f'{idp_id}:saml2') == ['create']

    with rec:
        api.s.patch(f'{api.site.url}/OS-FEDERATION/identity_providers/'
                    f'{idp_id}', json={'identity_provider': {
                        'remote_ids': [_name('remote2')]}})
    assert rec.ops('identity_provider', idp_id) == ['update']

    with rec:
        api.s.delete(f'{api.site.url}/OS-FEDERATION/identity_providers/'
                     f'{idp_id}')
    rec.check()
    assert rec.ops('federation_protocol', f'{idp_id}:saml2') == ['delete']
    # Its remote-id rows go first (an update), then the row itself.
    assert rec.ops('identity_provider', idp_id)[-1] == 'delete'


def test_domain_delete_cascades_to_everything_inside(api, rec):
    dom = api.domain()
    proj = api.project(domain_id=dom['id'])
    user = api.user(domain_id=dom['id'])
    grp = api.group(domain_id=dom['id'])
    role = api.role()
    api.put(f'/groups/{grp["id"]}/users/{user["id"]}')
    api.put(f'/projects/{proj["id"]}/users/{user["id"]}/roles/{role["id"]}')
    api.patch(f'/domains/{dom["id"]}', 'domain', {'enabled': False})
    with rec:
        api.delete(f'/domains/{dom["id"]}')
    rec.check()
    gone = rec.disappeared
    assert {('domain', dom['id']), ('project', proj['id']),
            ('user', user['id']), ('group', grp['id']),
            ('group_membership', f'{user["id"]}:{grp["id"]}')} <= gone
    assert any(t == 'role_assignment' for t, _ in gone)


def test_failed_write_rolls_back_capture(api, rec):
    proj = api.project()
    with rec:
        resp = api.s.post(api.site.url + '/projects', raise_exc=False,
                          json={'project': {'name': proj['name'],
                                            'domain_id': 'default'}})
    assert resp.status_code == 409
    assert rec.changes == []


def test_origin_is_null_for_local_writes(api, site):
    proj = api.project()
    with site.engine().connect() as conn:
        c = tables.change.c
        origins = conn.execute(sa.select(c.origin).where(
            c.resource_id == proj['id'])).scalars().all()
    assert origins == [None]
