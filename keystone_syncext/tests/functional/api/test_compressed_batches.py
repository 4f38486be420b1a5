"""``POST /v3/sync/batch`` with a gzip-compressed body, on a real Keystone
with its default size limit (``wsgi/compressed_batches.py``): what the
agent sends where the site lists gzip in its capabilities, and what a
hostile caller can do with it (a small body that inflates without end,
an anonymous one, a corrupt one): refused, nothing applied, nothing
decompressed before the route's policy allowed the caller.
"""

import gzip
import json
import uuid

import pytest
import requests

from keystone_syncext.tests import personas

ORIGIN = {'OpenStack-Sync-Origin': 'hub-1'}
# Keystone's default [oslo_middleware] max_request_body_size.
KEYSTONE_BODY_LIMIT = 114688


def _role(name=None):
    i = uuid.uuid4().hex
    return {'op': 'upsert', 'type': 'role', 'id': i, 'resource': {
        'id': i, 'name': name or f'gz-{i}', 'domain_id': None,
        'description': None, 'options': {}, 'extra': {}}}


def _post(site, token, body: bytes, encoding='gzip', **headers):
    sent = dict(ORIGIN, **headers)
    sent.update({'Content-Type': 'application/json',
                 'Content-Encoding': encoding})
    if token:
        sent['X-Auth-Token'] = token
    return requests.post(f'{site.url}/sync/batch', data=body,
                         headers=sent, timeout=60)


def _exists(call, role_id) -> bool:
    return call('GET', f'/roles/{role_id}').status_code == 200


@pytest.fixture(scope='module')
def admin_token(tokens):
    return tokens['system_admin']


@pytest.fixture(scope='module')
def call(current_site):
    return personas.checked_caller(current_site)


def test_capabilities_list_gzip_and_the_decompressed_limit(call):
    caps = call('GET', '/sync', expect=200).json()['sync']
    assert caps['batch_content_encodings'] == ['gzip']
    assert caps['max_decompressed_batch_size'] == 8 * 1024 * 1024


def test_a_batch_over_keystones_limit_goes_through_compressed(
        current_site, admin_token, call):
    items = [_role() for _ in range(1000)]
    body = json.dumps({'items': items}).encode()
    assert len(body) > 2 * KEYSTONE_BODY_LIMIT   # refused sent as is
    plain = requests.post(f'{current_site.url}/sync/batch', data=body,
                          headers=dict(ORIGIN, **{
                              'X-Auth-Token': admin_token,
                              'Content-Type': 'application/json'}),
                          timeout=60)
    assert plain.status_code == 413, plain.text
    packed = gzip.compress(body, compresslevel=1, mtime=0)
    assert len(packed) < KEYSTONE_BODY_LIMIT
    resp = _post(current_site, admin_token, packed)
    assert resp.status_code == 200, resp.text
    results = resp.json()['results']
    assert [r['status'] for r in results] == [201] * 1000
    for item in (items[0], items[-1]):
        got = call('GET', f'/roles/{item["id"]}', expect=200).json()['role']
        assert got['name'] == item['resource']['name']


def test_a_body_that_inflates_past_the_limit_is_refused_whole(
        current_site, admin_token, call):
    role = _role()
    packed = _bomb(role)
    assert len(packed) < 20000
    resp = _post(current_site, admin_token, packed)
    assert resp.status_code == 413, resp.text
    assert 'max_decompressed_batch_size' in resp.json()['error']['message']
    assert not _exists(call, role['id'])


def _bomb(role):
    """A valid batch of ``role``, padded with white space to 9 MiB:
    about 9 KiB compressed."""
    body = (json.dumps({'items': [role]})[:-1] + ' ' * (9 << 20) +
            '}').encode()
    return gzip.compress(body, mtime=0)


def test_nothing_is_decompressed_before_the_policy_allowed_the_caller(
        current_site, tokens, call):
    role = _role()
    bomb = _bomb(role)
    garbage = b'\x1f\x8b' + bytes(range(256)) * 8
    # Keystone parses a request's JSON before the route's policy: a body
    # decompressed in front of it would be parsed for anybody. A 413 or
    # a 400 here would say the body was read; the policy answers first.
    for token, status in ((None, 401), ('not-a-token', 401),
                          (tokens['system_reader'], 403),
                          (tokens['project_admin'], 403)):
        for body in (bomb, garbage):
            resp = _post(current_site, token, body)
            assert resp.status_code == status, (token, resp.text)
            # An identity the token middleware confirmed cannot be
            # claimed by the client.
            resp = _post(current_site, token, body,
                         **{'X-Identity-Status': 'Confirmed'})
            assert resp.status_code == status, (token, resp.text)
    assert not _exists(call, role['id'])


@pytest.mark.parametrize('what', ['corrupt', 'truncated', 'two streams',
                                  'deflate', 'br'])
def test_a_body_that_is_not_one_gzip_stream_is_refused(
        current_site, admin_token, call, what):
    role = _role()
    packed = gzip.compress(json.dumps({'items': [role]}).encode())
    encoding = 'gzip'
    if what == 'corrupt':
        packed = packed[:10] + bytes(b ^ 0x5A for b in packed[10:])
    elif what == 'truncated':
        packed = packed[:len(packed) // 2]
    elif what == 'two streams':
        packed = packed + gzip.compress(b' ')
    else:
        encoding = what
    resp = _post(current_site, admin_token, packed, encoding=encoding)
    expected = 415 if encoding != 'gzip' else 400
    assert resp.status_code == expected, resp.text
    message = resp.json()['error']['message']
    assert ('gzip' in message), message
    assert not _exists(call, role['id'])
