"""Bad input through every write path of /v3/sync on a real Keystone: the
same 4xx with the same message whether an item comes through ``PUT``, a
batch's set-wise path or its item-by-item path; per-item answers (never a
500, the rest of a batch applied, nothing of the refused item); ids in
the form Keystone gives them; no secret in any error body or log.

Runs once per database backend (the database's own errors differ).
"""

import urllib.parse
import uuid

import pytest

from keystone_syncext.testing import secrets

ORIGIN = {'OpenStack-Sync-Origin': 'hub-1'}
# Long enough to be over every column, shaped like a bcrypt hash.
LONG_HASH = '$2b$12$' + 'S' * 293
BAD_DATE = '2026-13-45T99:61:61.000000Z'


@pytest.fixture(scope='module', autouse=True)
def _scan_for_the_long_hash(api_site, secret_scan):
    # Keystone's and uWSGI's logs of the site are scanned for the hash at
    # the end of the module.
    secret_scan.log_dir(api_site.dir)
    secret_scan.secret(LONG_HASH, 'over-long password hash')


def _id():
    return uuid.uuid4().hex


def _url(type_, id_):
    return f'/sync/resources/{type_}/{urllib.parse.quote(id_, safe="")}'


def domain(id_, **kw):
    return dict({'id': id_, 'name': f'd-{id_[:8]}', 'description': '',
                 'enabled': True, 'tags': [], 'options': {}, 'extra': {}},
                **kw)


def project(id_, **kw):
    return dict({'id': id_, 'name': f'p-{id_[:8]}', 'description': '',
                 'enabled': True, 'domain_id': 'default',
                 'parent_id': 'default', 'tags': [], 'options': {},
                 'extra': {}}, **kw)


def role(id_, **kw):
    return dict({'id': id_, 'name': f'r-{id_[:8]}', 'domain_id': None,
                 'description': None, 'options': {}, 'extra': {}}, **kw)


def group(id_, **kw):
    return dict({'id': id_, 'domain_id': 'default', 'name': f'g-{id_[:8]}',
                 'description': None, 'extra': {}}, **kw)


def user(id_, hash_='$2b$04$' + 'a' * 53, created=None, **kw):
    return dict({'id': id_, 'domain_id': 'default', 'enabled': True,
                 'default_project_id': None, 'options': {}, 'extra': {},
                 'federated': [],
                 'local': {'name': f'u-{id_[:8]}', 'passwords': [{
                     'hash': hash_,
                     'created_at': created or '2026-01-02T03:04:05.123456Z',
                     'expires_at': None, 'self_service': False}]}}, **kw)


def app_cred(id_, **kw):
    return dict({'id': id_, 'name': f'a-{id_[:8]}', 'description': None,
                 'user_id': _id(), 'project_id': _id(), 'system': None,
                 'secret_hash': '$2b$04$' + 'b' * 53, 'expires_at': None,
                 'unrestricted': False, 'roles': [], 'access_rules': []},
                **kw)


def idp(id_, **kw):
    return dict({'id': id_, 'enabled': True, 'description': None,
                 'domain_id': 'default', 'authorization_ttl': None,
                 'remote_ids': []}, **kw)


def grant(**kw):
    rep = dict({'type': 'UserProject', 'actor_id': _id(),
                'target_id': _id(), 'role_id': _id(), 'inherited': False},
               **kw)
    rep['id'] = ':'.join([rep['type'], rep['actor_id'], rep['target_id'],
                          rep['role_id'], '0'])
    return rep


# (type, representation, what the message must say); the id is the
# representation's.
MALFORMED = [
    ('project', lambda: project(_id(), name='n' * 200), 'too long'),
    ('project', lambda: project(_id(), tags=['a,b']), 'tags/0'),
    ('project', lambda: project(_id(), surprise=1), 'surprise'),
    ('project', lambda: project(_id(), enabled='yes'), "'boolean'"),
    ('domain', lambda: domain(_id(), name='n' * 65), 'too long'),
    ('domain', lambda: domain('my-domain'), 'hex'),
    ('role', lambda: role(_id(), description='d' * 256), 'too long'),
    ('role', lambda: role(_id(), name='   '), 'name'),
    ('role', lambda: role('a' * 31), 'hex'),
    ('group', lambda: group(_id(), name='g' * 65), 'too long'),
    ('user', lambda: user(_id(), hash_=LONG_HASH), 'secret, not shown'),
    ('user', lambda: user(_id(), created=BAD_DATE), 'created_at'),
    ('user', lambda: user(_id(), name='x'), "cannot store 'name'"),
    # A field or resource option this site's Keystone does not have (one
    # a later release may add): refused as such, naming the release.
    ('project', lambda: project(_id(), newer=1), ') cannot store'),
    ('project', lambda: project(_id(), options={'newer': True}),
     "(options): this site (Keystone "),
    ('role', lambda: role(_id(), options={'newer': True}),
     "cannot store 'newer'"),
    ('user', lambda: user(_id(), extra={'k': 'a\x00b'}), 'NUL'),
    ('role_assignment', lambda: grant(type='UserGalaxy'), 'type'),
    ('role_assignment', lambda: grant(actor_id='a\u202eb'), 'U+202E'),
    ('role_assignment', lambda: grant(role_id='r' * 32), 'hex'),
    ('application_credential',
     lambda: app_cred(_id(), secret_hash=LONG_HASH), 'secret_hash'),
    ('application_credential',
     lambda: app_cred(_id(), expires_at=BAD_DATE), 'expires_at'),
    ('identity_provider',
     lambda: idp(f'idp-{_id()[:8]}', authorization_ttl=2 ** 40),
     'authorization_ttl'),
    ('mapping', lambda: {'id': f'm-{_id()[:8]}', 'rules': [],
                         'schema_version': '1' * 6}, 'schema_version'),
]


def _no_secret(text):
    hits = secrets.scan_lines(text.splitlines(), {LONG_HASH: 'hash'},
                              'error body')
    assert not hits, hits


@pytest.mark.parametrize('type_,make,says', MALFORMED)
def test_put_and_batch_refuse_alike(call, type_, make, says):
    bad = make()
    resp = call('PUT', _url(type_, bad['id']), json={'resource': bad},
                headers=ORIGIN)
    assert resp.status_code == 400, resp.text
    put_error = resp.json()['error']
    assert says in put_error['message'], put_error
    _no_secret(resp.text)
    call('GET', _url(type_, bad['id']), 404)

    good = _id()
    body = {'items': [
        {'op': 'upsert', 'type': type_, 'id': bad['id'], 'resource': bad},
        {'op': 'upsert', 'type': 'project', 'id': good,
         'resource': project(good)}]}
    resp = call('POST', '/sync/batch', 200, json=body, headers=ORIGIN)
    _no_secret(resp.text)
    refused, applied = resp.json()['results']
    assert refused['status'] == 400
    assert refused['error']['message'] == put_error['message']
    assert applied['status'] == 201
    call('GET', _url(type_, bad['id']), 404)
    call('GET', f'/projects/{good}', 200)


BAD_IDS = ['a\x00b', '\u202eevil', '..', '.', '%2e%2e', 'a b', 'a\u2028b',
           'default']


@pytest.mark.parametrize('bad', BAD_IDS)
def test_bad_ids_are_400_on_every_write_path(call, api_site, bad):
    rep = project(bad)
    message = None
    if bad not in ('.', '..'):  # a URL cannot carry these as a segment
        resp = call('PUT', _url('project', bad), 400, json={'resource': rep})
        message = resp.json()['error']['message']
        assert message.startswith('invalid project id '), message
        assert bad not in message or bad.isprintable()
        resp = call('DELETE', _url('project', bad), 400)
        assert resp.json()['error']['message'] == message
    good = _id()
    results = call('POST', '/sync/batch', 200, json={'items': [
        {'op': 'upsert', 'type': 'project', 'id': bad, 'resource': rep},
        {'op': 'delete', 'type': 'project', 'id': bad},
        {'op': 'upsert', 'type': 'project', 'id': good,
         'resource': project(good)}]}).json()['results']
    assert [r['status'] for r in results] == [400, 400, 201]
    message = message or results[0]['error']['message']
    assert message.startswith('invalid project id '), message
    assert results[0]['error']['message'] == message
    assert results[1]['error']['message'] == message
    resp = call('POST', '/sync/rekey', 400, json={
        'type': 'project', 'from': good, 'to': bad})
    assert resp.json()['error']['message'] == message
    call('GET', f'/projects/{good}', 200)
    names = {p['id'] for p in call('GET', '/projects', 200).json()[
        'projects']}
    assert bad not in names


def test_ids_keystone_gives_still_pass(call):
    # A mapped (sha256) user id, an operator's identity provider and
    # mapping ids with dots and underscores, a protocol of them.
    uid = _id() + _id()
    call('PUT', _url('user', uid), 201, json={'resource': user(uid)})
    mid, iid = f'map_{_id()[:6]}', f'idp.example-{_id()[:6]}.org'
    call('PUT', _url('mapping', mid), 201, json={'resource': {
        'id': mid, 'schema_version': '1.0', 'rules': [{
            'local': [{'user': {'name': '{0}'}}],
            'remote': [{'type': 'REMOTE_USER'}]}]}})
    call('PUT', _url('identity_provider', iid), 201,
         json={'resource': idp(iid)})
    pid = f'{iid}:saml2'
    call('PUT', _url('federation_protocol', pid), 201, json={'resource': {
        'id': pid, 'idp_id': iid, 'protocol_id': 'saml2',
        'mapping_id': mid, 'remote_id_attribute': None}})
    call('DELETE', _url('federation_protocol', pid), 204)
    call('DELETE', _url('identity_provider', iid), 204)
    call('DELETE', _url('mapping', mid), 204)
    call('DELETE', _url('user', uid), 204)


def test_an_id_held_by_another_type_is_409_everywhere(call):
    d, p = _id(), _id()
    call('PUT', _url('domain', d), 201, json={'resource': domain(d)},
         headers=ORIGIN)
    call('PUT', _url('project', p), 201, json={'resource': project(p)},
         headers=ORIGIN)
    # A project under a domain's id, a domain under a project's.
    for type_, rep in (('project', project(d)), ('domain', domain(p))):
        resp = call('PUT', _url(type_, rep['id']), 409,
                    json={'resource': rep})
        message = resp.json()['error']['message']
        assert 'already used by' in message, message
        good = _id()
        results = call('POST', '/sync/batch', 200, json={'items': [
            {'op': 'upsert', 'type': 'project', 'id': good,
             'resource': project(good)},
            {'op': 'upsert', 'type': type_, 'id': rep['id'],
             'resource': rep}]}).json()['results']
        assert [r['status'] for r in results] == [201, 409], results
        assert results[1]['error']['message'] == message
        call('GET', f'/projects/{good}', 200)
    assert call('GET', f'/domains/{d}', 200).json()['domain']['name'] == \
        f'd-{d[:8]}'
    assert call('GET', f'/projects/{p}', 200).json()['project'][
        'name'] == f'p-{p[:8]}'
    # Re-key a project to a domain's id.
    other = _id()
    call('PUT', _url('project', other), 201,
         json={'resource': project(other)})
    resp = call('POST', '/sync/rekey', 409, json={
        'type': 'project', 'from': other, 'to': d})
    assert 'already used by domain' in resp.json()['error']['message']
    call('GET', f'/projects/{other}', 200)


def test_batch_with_a_default_project_applies_the_good_one(call):
    good = _id()
    results = call('POST', '/sync/batch', 200, json={'items': [
        {'op': 'upsert', 'type': 'project', 'id': good,
         'resource': project(good)},
        {'op': 'upsert', 'type': 'project', 'id': 'default',
         'resource': project('default')}]}).json()['results']
    assert [r['status'] for r in results] == [201, 400]
    assert 'invalid project id' in results[1]['error']['message']
    call('GET', f'/projects/{good}', 200)


def test_batch_refuses_an_over_long_name_as_put_does(call):
    new = _id()
    results = call('POST', '/sync/batch', 200, json={'items': [
        {'op': 'upsert', 'type': 'project', 'id': new,
         'resource': project(new, name='n' * 200)}]}).json()['results']
    assert results[0]['status'] == 400
    assert 'n' * 200 not in {p['name'] for p in call(
        'GET', '/projects', 200).json()['projects']}
