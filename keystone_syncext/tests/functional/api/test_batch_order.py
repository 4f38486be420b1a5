"""``POST /v3/sync/batch`` applies in the type table's dependency order,
whatever order the batch lists: a federated user arriving with its new
identity provider, mapping and protocol is written after them (it was
once applied first and refused), and deleted before them."""

import uuid

import pytest

ORIGIN = {'OpenStack-Sync-Origin': 'hub-1'}


@pytest.fixture(scope='module')
def call(shared_site, keystone_release):
    site = shared_site(keystone_release)
    sess = site.admin_session()

    def call(method, path, expect, **kw):
        resp = sess.request(site.url + path, method, raise_exc=False, **kw)
        assert resp.status_code == expect, (method, path, resp.text)
        return resp
    return call


def _items(op, user_id, idp, mapping):
    proto = f'{idp}:saml2'
    reps = [
        ('user', user_id, {
            'id': user_id, 'domain_id': 'default', 'enabled': True,
            'default_project_id': None, 'options': {}, 'extra': {},
            'local': None,
            'federated': [{'idp_id': idp, 'protocol_id': 'saml2',
                           'unique_id': f'alice-{user_id[:6]}',
                           'display_name': 'Alice'}]}),
        ('federation_protocol', proto, {
            'id': proto, 'idp_id': idp, 'protocol_id': 'saml2',
            'mapping_id': mapping, 'remote_id_attribute': None}),
        ('identity_provider', idp, {
            'id': idp, 'enabled': True, 'description': None,
            'domain_id': 'default', 'authorization_ttl': None,
            'remote_ids': []}),
        ('mapping', mapping, {
            'id': mapping, 'schema_version': '1.0',
            'rules': [{'local': [{'user': {'name': '{0}'}}],
                       'remote': [{'type': 'REMOTE_USER'}]}]}),
    ]
    if op == 'delete':
        return [{'op': 'delete', 'type': t, 'id': i} for t, i, _ in
                reversed(reps)]
    return [{'op': 'upsert', 'type': t, 'id': i, 'resource': r}
            for t, i, r in reps]


def test_a_federated_user_and_its_new_protocol_in_one_batch(call):
    user_id = uuid.uuid4().hex
    idp, mapping = f'idp-{user_id[:8]}', f'map-{user_id[:8]}'
    results = call('POST', '/sync/batch', 200, headers=ORIGIN, json={
        'items': _items('upsert', user_id, idp, mapping)}).json()['results']
    assert [r['status'] for r in results] == [201] * 4, results
    got = call('GET', f'/sync/resources/user/{user_id}', 200).json()
    assert got['resource']['federated'][0]['idp_id'] == idp
    call('GET', f'/users/{user_id}', 200)

    # Listed dependencies first, deleted dependents first.
    results = call('POST', '/sync/batch', 200, headers=ORIGIN, json={
        'items': _items('delete', user_id, idp, mapping)}).json()['results']
    assert [r['status'] for r in results] == [204] * 4, results
    call('GET', f'/users/{user_id}', 404)
    call('GET', f'/OS-FEDERATION/identity_providers/{idp}', 404)
