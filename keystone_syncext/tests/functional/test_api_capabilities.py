"""GET /v3/sync on a real Keystone running our WSGI entry point.

Who may read the capabilities (system readers and up, nobody scoped to a
domain or project, nobody without a token), what they say, that the route
is in Keystone's JSON-home, that operators override the rule in Keystone's
policy.yaml, and that Keystone's own create routes still ignore a given ID.
Runs once per database backend.
"""

import os
import secrets
import uuid

import pytest
import requests
import sqlalchemy as sa

from keystone_syncext import cursors
from keystone_syncext.capture import spec
from keystone_syncext.db import tables
from keystone_syncext.testing import sites

RULE = 'identity:sync:get_capabilities'
ADMIN_ONLY = 'role:admin and system_scope:all'
SYNC_REL = ('https://docs.openstack.org/api/openstack-identity/3/ext/SYNC/'
            '1.0/rel/sync')

# persona: (role, target, scope) -- target 'system', 'domain' (default)
# or 'project' (a project of its own); None for anonymous.
PERSONAS = {
    'system_admin': ('admin', 'system'),
    'system_member': ('member', 'system'),
    'system_reader': ('reader', 'system'),
    'domain_admin': ('admin', 'domain'),
    'project_admin': ('admin', 'project'),
    'project_member': ('member', 'project'),
    'anonymous': None,
}

EXPECTED = {
    'system_admin': 200,
    'system_member': 200,
    'system_reader': 200,
    'domain_admin': 403,
    'project_admin': 403,
    'project_member': 403,
    'anonymous': 401,
}


@pytest.fixture(scope='module')
def api_site(make_site):
    return make_site('api', app=sites.SYNC_APP)


@pytest.fixture(scope='module')
def admin_api(api_site):
    sess = api_site.admin_session()

    def call(method, path, **kw):
        resp = sess.request(api_site.url + path, method, raise_exc=False,
                            **kw)
        assert resp.status_code < 300, (method, path, resp.text)
        return resp
    return call


def _token(site, user_id, password, scope):
    body = {'auth': {
        'identity': {'methods': ['password'], 'password': {
            'user': {'id': user_id, 'password': password}}},
        'scope': scope}}
    resp = requests.post(site.url + '/auth/tokens', json=body, timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.headers['X-Subject-Token']


@pytest.fixture(scope='module')
def tokens(api_site, admin_api):
    """A token per persona, made through the ordinary API as the system
    admin (None for anonymous)."""
    roles = {r['name']: r['id'] for r in
             admin_api('GET', '/roles').json()['roles']}
    project = admin_api('POST', '/projects', json={'project': {
        'name': f'p-{uuid.uuid4().hex[:8]}',
        'domain_id': 'default'}}).json()['project']
    out = {}
    for persona, spec_ in PERSONAS.items():
        if spec_ is None:
            out[persona] = None
            continue
        role, target = spec_
        password = secrets.token_hex(12)
        user = admin_api('POST', '/users', json={'user': {
            'name': f'{persona}-{uuid.uuid4().hex[:8]}',
            'domain_id': 'default', 'password': password}}).json()['user']
        grant, scope = {
            'system': ('/system', {'system': {'all': True}}),
            'domain': ('/domains/default', {'domain': {'id': 'default'}}),
            'project': (f'/projects/{project["id"]}',
                        {'project': {'id': project['id']}}),
        }[target]
        admin_api('PUT', f'{grant}/users/{user["id"]}/roles/{roles[role]}')
        out[persona] = _token(api_site, user['id'], password, scope)
    return out


def _get_sync(site, token):
    headers = {'X-Auth-Token': token} if token else {}
    return requests.get(site.url + '/sync', headers=headers, timeout=30)


@pytest.mark.parametrize('persona', sorted(PERSONAS))
def test_who_may_read_capabilities(api_site, tokens, persona):
    resp = _get_sync(api_site, tokens[persona])
    assert resp.status_code == EXPECTED[persona], resp.text
    if resp.status_code >= 400:
        # Keystone's own error document.
        assert resp.json()['error']['code'] == EXPECTED[persona]


def test_capabilities_body(api_site, tokens):
    with api_site.engine().connect() as conn:
        captured = conn.execute(
            sa.select(sa.func.count()).select_from(tables.change)).scalar()
    assert captured > 0  # bootstrap and the personas made changes

    resp = _get_sync(api_site, tokens['system_reader'])
    assert resp.status_code == 200, resp.text
    body = resp.json()['sync']
    assert body['site_id'] == api_site.name
    assert body['resource_types'] == list(spec.TYPES)
    assert body['protocol_version'] == 1
    assert body['protocol_versions'] == [1]
    assert body['keystone_version'].startswith('30.')
    assert body['change_retention_days'] == 7
    assert body['tombstone_retention_days'] == 30
    assert cursors.decode(body['oldest_valid_cursor']) == 0
    assert cursors.decode(body['head_cursor']) >= captured


def test_json_home_lists_sync_route(api_site):
    resp = requests.get(api_site.url, timeout=30,
                        headers={'Accept': 'application/json-home'})
    assert resp.status_code == 200
    # Hrefs in /v3's document are relative to /v3.
    assert resp.json()['resources'][SYNC_REL] == {'href': '/sync'}


def test_operator_overrides_rule_in_keystone_policy_file(api_site, tokens):
    # Not policy.yaml: oslo.policy would find that name beside
    # keystone.conf even with policy_file unset, and keep it after the test.
    policy_file = os.path.join(api_site.dir, 'override-policy.yaml')
    with open(policy_file, 'w') as f:
        f.write(f'"{RULE}": "{ADMIN_ONLY}"\n')
    api_site.restart(f'[oslo_policy]\npolicy_file = {policy_file}\n')
    try:
        assert _get_sync(api_site, tokens['system_reader']).status_code == 403
        assert _get_sync(api_site, tokens['system_admin']).status_code == 200
    finally:
        os.remove(policy_file)
        api_site.restart('')
    assert _get_sync(api_site, tokens['system_reader']).status_code == 200


def test_keystone_create_route_still_ignores_given_id(api_site):
    given = uuid.uuid4().hex
    resp = api_site.admin_session().post(
        api_site.url + '/projects', raise_exc=False,
        json={'project': {'id': given, 'name': f'p-{given[:8]}',
                          'domain_id': 'default'}})
    if resp.status_code != 400:
        assert resp.status_code == 201, resp.text
        assert resp.json()['project']['id'] != given
