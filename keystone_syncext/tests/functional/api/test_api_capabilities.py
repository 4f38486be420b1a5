"""GET /v3/sync on a real Keystone running our WSGI entry point.

Who may read the capabilities (system readers and up, nobody scoped to a
domain or project, nobody without a token), what they say, that the route
is in Keystone's JSON-home, that operators override the rule in Keystone's
policy.yaml, and that Keystone's own create routes still ignore a given ID.
Runs once per database backend.
"""

import os
import uuid

import pytest
import requests
import sqlalchemy as sa

from keystone_syncext.capture import spec
from keystone_syncext.db import tables
from keystone_syncext.feed import cursors
from keystone_syncext.tests import personas

# Policy, not SQL: the first selected database backend is enough.
pytestmark = pytest.mark.backend_independent

RULE = 'identity:sync:get_capabilities'
ADMIN_ONLY = 'role:admin and system_scope:all'
SYNC_REL = ('https://docs.openstack.org/api/openstack-identity/3/ext/SYNC/'
            '1.0/rel/sync')

EXPECTED = {
    'system_admin': 200,
    'system_member': 200,
    'system_reader': 200,
    'domain_admin': 403,
    'project_admin': 403,
    'project_member': 403,
    'anonymous': 401,
}


def _get_sync(site, token):
    return requests.get(site.url + '/sync', headers=personas.headers(token),
                        timeout=30)


@pytest.mark.parametrize('persona', sorted(personas.PERSONAS))
def test_who_may_read_capabilities(current_site, tokens, persona):
    resp = _get_sync(current_site, tokens[persona])
    assert resp.status_code == EXPECTED[persona], resp.text
    if resp.status_code >= 400:
        # Keystone's own error document.
        assert resp.json()['error']['code'] == EXPECTED[persona]


def test_capabilities_body(current_site, tokens):
    with current_site.engine().connect() as conn:
        captured = conn.execute(
            sa.select(sa.func.count()).select_from(tables.change)).scalar()
    assert captured > 0  # bootstrap and the personas made changes

    resp = _get_sync(current_site, tokens['system_reader'])
    assert resp.status_code == 200, resp.text
    body = resp.json()['sync']
    assert body['site_id'] == current_site.name
    assert body['resource_types'] == list(spec.TYPES)
    assert body['protocol_version'] == 1
    assert body['protocol_versions'] == [1]
    assert body['keystone_version'].startswith('30.')
    assert body['change_retention_days'] == 7
    assert body['tombstone_retention_days'] == 30
    assert body['max_digests_per_request'] == 100
    assert body['tombstone_lookup'] is True
    assert cursors.decode(body['oldest_valid_cursor']).position == 0
    assert cursors.decode(body['head_cursor']).position >= captured
    # The cursors name this site's history, which the body shows.
    head = cursors.decode(body['head_cursor'])
    assert cursors.history_text(head.history) == body['history_id']


def test_json_home_lists_sync_route(current_site):
    resp = requests.get(current_site.url, timeout=30,
                        headers={'Accept': 'application/json-home'})
    assert resp.status_code == 200
    # Hrefs in /v3's document are relative to /v3.
    assert resp.json()['resources'][SYNC_REL] == {'href': '/sync'}


def test_operator_overrides_rule_in_keystone_policy_file(current_site, tokens):
    # Not policy.yaml: oslo.policy would find that name beside
    # keystone.conf even with policy_file unset, and keep it after the test.
    policy_file = os.path.join(current_site.dir, 'override-policy.yaml')
    with open(policy_file, 'w') as f:
        f.write(f'"{RULE}": "{ADMIN_ONLY}"\n')
    current_site.restart(f'[oslo_policy]\npolicy_file = {policy_file}\n')
    try:
        for who, status in (('system_reader', 403), ('system_admin', 200)):
            assert _get_sync(current_site,
                             tokens[who]).status_code == status, who
    finally:
        os.remove(policy_file)
        current_site.restart('')
    assert _get_sync(current_site, tokens['system_reader']).status_code == 200


def test_keystone_create_route_still_ignores_given_id(current_site):
    given = uuid.uuid4().hex
    resp = current_site.admin_session().post(
        current_site.url + '/projects', raise_exc=False,
        json={'project': {'id': given, 'name': f'p-{given[:8]}',
                          'domain_id': 'default'}})
    if resp.status_code != 400:
        assert resp.status_code == 201, resp.text
        assert resp.json()['project']['id'] != given
