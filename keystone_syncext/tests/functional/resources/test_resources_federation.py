"""Mappings, identity providers and federation protocols through
/v3/sync, on real Keystone processes.

Each type is created with exactly the id given, read back with the same
representation and hash, seen by Keystone's ordinary v3 API, updated and
deleted (leaving a tombstone). Keystone's rules refuse what Keystone
would refuse, and a refusal writes nothing.
"""

import pytest

from keystone_syncext.resources import base
from keystone_syncext.tests.functional.resources.client import check_roundtrip
from keystone_syncext.tests.functional.resources.client import hex_id
from keystone_syncext.tests.functional.resources.client import refused

RULES = [{'local': [{'user': {'name': '{0}'}}],
          'remote': [{'type': 'REMOTE_USER'}]}]
RULES2 = [{'local': [{'user': {'name': '{0}'}}, {'group': {'id': 'g1'}}],
           'remote': [{'type': 'REMOTE_USER'}]}]


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
    mid = hex_id('map-')
    rep = _mapping(mid)
    check_roundtrip(a, 'mapping', mid, rep, a.put('mapping', mid, rep), 201)
    seen = a.call('GET', f'/OS-FEDERATION/mappings/{mid}',
                  expect=200).json()['mapping']
    assert (seen['id'], seen['rules'], seen['schema_version']) == \
        (mid, RULES, '1.0')

    before = a.last_change()
    assert a.put('mapping', mid, rep).status_code == 200  # no change
    assert a.last_change() == before

    rep2 = _mapping(mid, RULES2, '2.0')
    check_roundtrip(a, 'mapping', mid, rep2, a.put('mapping', mid, rep2),
                     200)
    seen = a.call('GET', f'/OS-FEDERATION/mappings/{mid}',
                  expect=200).json()['mapping']
    assert (seen['rules'], seen['schema_version']) == (RULES2, '2.0')

    a.delete('mapping', mid, expect=204)
    a.call('GET', f'/OS-FEDERATION/mappings/{mid}', expect=404)
    a.get('mapping', mid, expect=404)
    assert a.tombstone('mapping', mid) is not None


def test_identity_provider_lifecycle(a):
    iid = hex_id('idp-')
    remotes = [hex_id('https://b.example/'), hex_id('https://a.example/')]
    rep = _idp(iid, remotes)
    check_roundtrip(a, 'identity_provider', iid, rep,
                     a.put('identity_provider', iid, rep), 201)
    seen = a.call('GET', f'/OS-FEDERATION/identity_providers/{iid}',
                  expect=200).json()['identity_provider']
    assert seen['domain_id'] == 'default'
    assert seen['enabled'] is True
    assert seen['description'] == 'an idp'
    assert sorted(seen['remote_ids']) == sorted(remotes)

    rep2 = _idp(iid, [remotes[0], hex_id('https://c.example/')],
                enabled=False, description=None, authorization_ttl=30)
    check_roundtrip(a, 'identity_provider', iid, rep2,
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
    mid, mid2, iid = hex_id('map-'), hex_id('map-'), hex_id('idp-')
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
    check_roundtrip(a, 'federation_protocol', pid, proto2,
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
    holder, other = hex_id('idp-'), hex_id('idp-')
    remote = hex_id('https://dup.example/')
    a.put('identity_provider', holder, _idp(holder, [remote]), expect=201)
    err = refused(a, 'identity_provider', other,
                  _idp(other, [remote, hex_id('https://x/')]), 409)
    assert err['existing_id'] == holder
    assert remote in err['message']


def test_missing_references_are_400(a):
    iid = hex_id('idp-')
    err = refused(a, 'identity_provider', iid,
                  _idp(iid, domain_id=hex_id('nodomain')), 400)
    assert 'domain' in err['message']

    mid = hex_id('map-')
    a.put('mapping', mid, _mapping(mid), expect=201)
    missing_idp = _protocol(hex_id('noidp-'), 'oidc', mid)
    err = refused(a, 'federation_protocol', missing_idp['id'], missing_idp,
                  400)
    assert 'identity_provider' in err['message']
    assert 'idp_id' in err['message']

    a.put('identity_provider', iid, _idp(iid), expect=201)
    missing_map = _protocol(iid, 'oidc', hex_id('nomap-'))
    err = refused(a, 'federation_protocol', missing_map['id'], missing_map,
                  400)
    assert 'mapping' in err['message']
    assert missing_map['mapping_id'] in err['message']


def test_identity_provider_cannot_change_domain(a):
    iid = hex_id('idp-')
    rep = _idp(iid)
    a.put('identity_provider', iid, rep, expect=201)
    before = a.last_change()
    resp = a.put('identity_provider', iid,
                 dict(rep, domain_id=hex_id('other'), enabled=False))
    assert resp.status_code == 400, resp.text
    assert 'domain' in resp.json()['error']['message']
    assert a.last_change() == before
    assert a.get('identity_provider', iid, expect=200).json()[
        'resource'] == rep


def test_invalid_mapping_rules_are_400_with_keystones_message(a):
    mid = hex_id('map-')
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
        id_ = resource['id'] = hex_id('bad-')
    refused(a, type_, id_, resource, 400)

