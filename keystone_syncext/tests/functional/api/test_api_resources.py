"""Explicit-id writes, batch, re-key and digests through /v3/sync on a real
Keystone, judged through Keystone's ordinary v3 API and its database.

Covers domains, projects, roles and implied roles; the other types have
their own modules. Runs once per database backend.
"""

import uuid

import jsonschema
import pytest
import sqlalchemy as sa

from keystone_syncext.api import sync
from keystone_syncext.api import validation
from keystone_syncext.db import tables
from keystone_syncext.resources import base

ORIGIN = {'OpenStack-Sync-Origin': 'hub-1'}


def _id():
    return uuid.uuid4().hex


def domain(id_, name=None, **kw):
    return dict({'id': id_, 'name': name or f'd-{id_[:8]}',
                 'description': '', 'enabled': True, 'tags': [],
                 'options': {}, 'extra': {}}, **kw)


def project(id_, domain_id='default', parent_id=None, name=None, **kw):
    return dict({'id': id_, 'name': name or f'p-{id_[:8]}',
                 'description': '', 'enabled': True, 'domain_id': domain_id,
                 'parent_id': parent_id or domain_id, 'tags': [],
                 'options': {}, 'extra': {}}, **kw)


def role(id_, name=None, domain_id=None, **kw):
    return dict({'id': id_, 'name': name or f'r-{id_[:8]}',
                 'domain_id': domain_id, 'description': None,
                 'options': {}, 'extra': {}}, **kw)


def put(call, type_, res, expect=201, headers=None):
    return call('PUT', f'/sync/resources/{type_}/{res["id"]}', expect,
                json={'resource': res}, headers=headers or ORIGIN)


def db_state(site):
    """What a refused request must leave as it was."""
    with site.engine().connect() as conn:
        return (conn.execute(sa.select(sa.func.max(tables.change.c.id)))
                .scalar(),
                conn.execute(sa.text('SELECT COUNT(*) FROM project')).scalar(),
                conn.execute(sa.text('SELECT COUNT(*) FROM role')).scalar())


def test_put_creates_with_the_given_id_and_round_trips(call):
    d, p, r = _id(), _id(), _id()
    resp = put(call, 'domain', domain(d, tags=['x'], extra={'k': 1}))
    assert resp.json()['resource'] == domain(d, tags=['x'], extra={'k': 1})
    put(call, 'project', project(p, d, tags=['b', 'a'],
                                 description='first'))
    got = call('GET', f'/sync/resources/project/{p}', 200)
    body = got.json()
    assert body['resource'] == project(p, d, tags=['a', 'b'],
                                       description='first')
    assert got.headers['ETag'] == f'"{body["hash"]}"'
    assert body['hash'] == base.content_hash(body['resource'])
    put(call, 'role', role(r, options={'immutable': True}))

    # Keystone's own API sees them, with these ids.
    ks = call('GET', f'/projects/{p}', 200).json()['project']
    assert (ks['name'], ks['domain_id'], ks['parent_id'], sorted(ks['tags'])) \
        == (f'p-{p[:8]}', d, d, ['a', 'b'])
    assert call('GET', f'/domains/{d}', 200).json()['domain']['name'] \
        == f'd-{d[:8]}'
    assert call('GET', f'/roles/{r}', 200).json()['role']['options'] \
        == {'immutable': True}


def test_update_if_match_and_immutable(call):
    r = _id()
    put(call, 'role', role(r, options={'immutable': True}))
    etag = call('GET', f'/sync/resources/role/{r}', 200).headers['ETag']
    # The same representation again is a no-op with the same hash.
    again = put(call, 'role', role(r, options={'immutable': True}), 200)
    assert f'"{again.json()["hash"]}"' == etag
    # An immutable role still takes the hub's update, and stays immutable.
    changed = role(r, description='now described',
                   options={'immutable': True})
    resp = call('PUT', f'/sync/resources/role/{r}', 200,
                json={'resource': changed}, headers={'If-Match': etag})
    assert resp.json()['resource'] == changed
    assert call('GET', f'/roles/{r}', 200).json()['role']['description'] \
        == 'now described'
    # The old ETag no longer matches: 412 with the current hash, no write.
    stale = call('PUT', f'/sync/resources/role/{r}', 412,
                 json={'resource': role(r)}, headers={'If-Match': etag})
    assert stale.json()['error']['current_hash'] == resp.json()['hash']
    assert call('GET', f'/sync/resources/role/{r}', 200).json()['resource'] \
        == changed
    # If-None-Match: * creates only.
    call('PUT', f'/sync/resources/role/{r}', 412,
         json={'resource': role(r)}, headers={'If-None-Match': '*'})


def test_delete_leaves_a_tombstone_with_the_origin(call, api_site):
    r = _id()
    put(call, 'role', role(r, options={'immutable': True}))
    call('DELETE', f'/sync/resources/role/{r}', 204, headers=ORIGIN)
    call('GET', f'/roles/{r}', 404)
    call('GET', f'/sync/resources/role/{r}', 404)
    call('DELETE', f'/sync/resources/role/{r}', 404)
    with api_site.engine().connect() as conn:
        t = tables.tombstone.c
        tomb = conn.execute(sa.select(t.resource_type, t.origin).where(
            t.resource_id == r)).all()
    assert [tuple(x) for x in tomb] == [('role', 'hub-1')]


def test_domain_delete_disables_first(call):
    d = _id()
    put(call, 'domain', domain(d))
    call('DELETE', f'/sync/resources/domain/{d}', 204)
    call('GET', f'/domains/{d}', 404)


def test_name_taken_under_another_id_is_409_with_that_id(call, api_site):
    first, second = _id(), _id()
    put(call, 'project', project(first, name=f'dup-{first[:6]}'))
    before = db_state(api_site)
    resp = put(call, 'project', project(second, name=f'dup-{first[:6]}'),
               409)
    err = resp.json()['error']
    assert err['existing_id'] == first
    assert f'dup-{first[:6]}' in err['message']
    assert db_state(api_site) == before


@pytest.mark.parametrize('bad,why', [
    (lambda i: project(i, domain_id='nope', parent_id='nope'), 'domain'),
    (lambda i: project(i, parent_id=_id()), 'parent_id'),
    (lambda i: role(i, domain_id='missing-domain'), 'domain'),
])
def test_missing_reference_is_400_and_nothing_written(call, api_site, bad,
                                                       why):
    id_ = _id()
    res = bad(id_)
    type_ = 'role' if 'parent_id' not in res else 'project'
    before = db_state(api_site)
    resp = put(call, type_, res, 400)
    assert why in resp.json()['error']['message']
    assert db_state(api_site) == before


@pytest.mark.parametrize('body', [
    {'resource': {'id': 'x'}},                          # fields missing
    {'resource': dict(role('ID'), name='')},            # empty name
    {'resource': dict(role('ID'), surprise=True)},      # unknown field
    {'resource': role('other-id')},                     # id mismatch
    {'resource': role('ID'), 'extra': 1},               # envelope
    ['not', 'an', 'object'],
])
def test_bad_bodies_are_400_and_nothing_written(call, api_site, body):
    id_ = _id()
    if isinstance(body, dict) and isinstance(body.get('resource'), dict) \
            and body['resource'].get('id') == 'ID':
        body = dict(body, resource=dict(body['resource'], id=id_))
    before = db_state(api_site)
    resp = call('PUT', f'/sync/resources/role/{id_}', 400, json=body)
    assert resp.json()['error']['message']
    assert db_state(api_site) == before
    # Not JSON at all.
    call('PUT', f'/sync/resources/role/{id_}', 400, data=b'{nope',
         headers={'Content-Type': 'application/json'})
    assert db_state(api_site) == before


def test_bad_queries_are_clear_4xx(call):
    assert 'unknown resource type' in call(
        'GET', '/sync/resources/bogus', 404).json()['error']['message']
    call('PUT', '/sync/resources/bogus/x', 404, json={'resource': {}})
    assert 'max_page_size' in call(
        'GET', '/sync/resources/role?limit=100000', 400
    ).json()['error']['message']
    call('GET', '/sync/resources/role?limit=zero', 400)
    call('GET', '/sync/changes?since=not-a-cursor', 400)
    call('GET', '/sync/changes?types=role,bogus', 404)
    call('GET', '/sync/changes?wait=soon', 400)
    call('PUT', '/sync/resources/role/x', 400, json={'resource': role('x')},
         headers={'OpenStack-Sync-Origin': 'not a site!'})


def test_listing_is_sorted_paginated_and_hashed(call):
    ids = sorted(_id() for _ in range(5))
    for i in ids:
        put(call, 'role', role(i))
    seen, marker = [], None
    while True:
        q = '/sync/resources/role?limit=2' + (f'&marker={marker}'
                                              if marker else '')
        page = call('GET', q, 200).json()
        for item in page['items']:
            assert item['hash'] == base.content_hash(item['resource'])
        seen += [i['id'] for i in page['items']]
        marker = page['next_marker']
        if not marker:
            break
    assert seen == sorted(seen)
    assert set(ids) <= set(seen)
    assert [i['id'] for i in call(
        'GET', f'/sync/resources/role?prefix={ids[0][:6]}', 200
    ).json()['items']] == [i for i in seen if i.startswith(ids[0][:6])]


def test_batch_orders_by_dependency_and_reports_per_item(call, api_site):
    d, parent, child, r1, r2 = _id(), _id(), _id(), _id(), _id()
    dup = _id()
    items = [
        {'op': 'upsert', 'type': 'implied_role', 'id': f'{r1}:{r2}',
         'resource': {'id': f'{r1}:{r2}', 'prior_role_id': r1,
                      'implied_role_id': r2}},
        {'op': 'upsert', 'type': 'project', 'id': child,
         'resource': project(child, d, parent)},
        {'op': 'upsert', 'type': 'project', 'id': parent,
         'resource': project(parent, d)},
        {'op': 'upsert', 'type': 'role', 'id': r2, 'resource': role(r2)},
        {'op': 'upsert', 'type': 'role', 'id': r1, 'resource': role(r1)},
        {'op': 'upsert', 'type': 'domain', 'id': d, 'resource': domain(d)},
        # Refused by Keystone's rules: same name as r1, another id.
        {'op': 'upsert', 'type': 'role', 'id': dup,
         'resource': role(dup, name=f'r-{r1[:8]}')},
    ]
    results = call('POST', '/sync/batch', 200, json={'items': items},
                   headers=ORIGIN).json()['results']
    assert [r['index'] for r in results] == list(range(len(items)))
    assert [r['status'] for r in results] == [201] * 6 + [409]
    assert results[6]['error']['existing_id'] == r1
    assert call('GET', f'/projects/{child}', 200).json()['project'][
        'parent_id'] == parent
    assert call('GET', f'/roles/{r1}/implies/{r2}', 200)
    call('GET', f'/roles/{dup}', 404)
    with api_site.engine().connect() as conn:
        c = tables.change.c
        origins = set(conn.execute(sa.select(c.origin).where(
            c.resource_id.in_([d, parent, child, r1, r2]))).scalars())
    assert origins == {'hub-1'}

    # Deletes go first and in reverse dependency order, so a name freed
    # by a delete is reusable in the same batch, and the parent goes last.
    new_parent = _id()
    results = call('POST', '/sync/batch', 200, json={'items': [
        {'op': 'upsert', 'type': 'project', 'id': new_parent,
         'resource': project(new_parent, d, name=f'p-{parent[:8]}')},
        {'op': 'delete', 'type': 'project', 'id': parent},
        {'op': 'delete', 'type': 'project', 'id': child},
        {'op': 'delete', 'type': 'role', 'id': r2},
    ]}).json()['results']
    assert [r['status'] for r in results] == [201, 204, 204, 204]
    call('GET', f'/roles/{r1}/implies/{r2}', 404)


def test_batch_refuses_a_malformed_body_whole(call, api_site):
    good = _id()
    before = db_state(api_site)
    for body in (
            {'items': [{'op': 'upsert', 'type': 'role', 'id': good,
                        'resource': role(good)},
                       {'op': 'frobnicate', 'type': 'role', 'id': good}]},
            {'items': [{'op': 'upsert', 'type': 'role', 'resource': {}}]},
            {'items': 'role'},
            {'nothing': []}):
        resp = call('POST', '/sync/batch', 400, json=body)
        assert resp.json()['error']['message']
    assert db_state(api_site) == before
    call('GET', f'/roles/{good}', 404)


def test_batch_refuses_a_malformed_item_alone(call, api_site):
    """Each malformed item gets the answer its PUT or DELETE would; the
    others apply."""
    good, bad = _id(), _id()
    results = call('POST', '/sync/batch', 200, json={'items': [
        {'op': 'upsert', 'type': 'role', 'id': good, 'resource': role(good)},
        {'op': 'upsert', 'type': 'role', 'id': bad, 'resource': {'id': bad}},
        {'op': 'upsert', 'type': 'bogus', 'id': bad, 'resource': {}},
        {'op': 'upsert', 'type': 'role', 'id': bad},
        {'op': 'delete', 'type': 'bogus', 'id': bad},
    ]}).json()['results']
    assert [r['status'] for r in results] == [201, 400, 404, 400, 404]
    put_error = call('PUT', f'/sync/resources/role/{bad}', 400,
                     json={'resource': {'id': bad}}).json()['error']
    assert results[1]['error'] == put_error
    assert results[2]['error'] == call(
        'PUT', f'/sync/resources/bogus/{bad}', 404,
        json={'resource': {}}).json()['error']
    call('GET', f'/roles/{good}', 200)
    call('GET', f'/roles/{bad}', 404)


def test_rekey_moves_the_id_and_every_reference(call, api_site):
    old, new, implied, user_project = _id(), _id(), _id(), _id()
    put(call, 'role', role(old, name=f'adopt-{old[:6]}',
                           options={'immutable': True}))
    put(call, 'role', role(implied))
    put(call, 'implied_role', {'id': f'{old}:{implied}',
                               'prior_role_id': old,
                               'implied_role_id': implied})
    put(call, 'project', project(user_project))
    admin_id = call('GET', '/users?name=admin', 200).json()['users'][0]['id']
    call('PUT', f'/projects/{user_project}/users/{admin_id}/roles/{old}', 204)

    resp = call('POST', '/sync/rekey', 200, headers=ORIGIN, json={
        'type': 'role', 'from': old, 'to': new}).json()['rekey']
    assert resp['references'] == {'implied_role.prior_role_id': 1,
                                  'role_option.role_id': 1,
                                  'assignment.role_id': 1}
    got = call('GET', f'/roles/{new}', 200).json()['role']
    assert (got['name'], got['options']) == (f'adopt-{old[:6]}',
                                             {'immutable': True})
    call('GET', f'/roles/{old}', 404)
    call('GET', f'/roles/{new}/implies/{implied}', 200)
    call('HEAD', f'/projects/{user_project}/users/{admin_id}/roles/{new}',
         204)
    # Conflicts and unknowns.
    call('POST', '/sync/rekey', 404, json={'type': 'role', 'from': old,
                                           'to': _id()})
    assert call('POST', '/sync/rekey', 409, json={
        'type': 'role', 'from': new, 'to': implied}
    ).json()['error']['existing_id'] == implied
    call('POST', '/sync/rekey', 400, json={'type': 'implied_role',
                                           'from': 'a', 'to': 'b'})
    call('POST', '/sync/rekey', 400, json={'type': 'role', 'from': new})


def test_digest_buckets_drill_down_to_the_difference(call):
    d = call('GET', '/sync/digest/role', 200).json()['digest']
    listed = {}
    marker = None
    while True:
        page = call('GET', '/sync/resources/role?limit=1000' + (
            f'&marker={marker}' if marker else ''), 200).json()
        listed.update({i['id']: i['hash'] for i in page['items']})
        marker = page['next_marker']
        if not marker:
            break
    assert d['count'] == len(listed)
    assert sum(b['count'] for b in d['buckets']) == d['count']
    # Change one role: only its bucket's hash moves.
    target = sorted(listed)[0]
    current = call('GET', f'/sync/resources/role/{target}', 200).json()
    before = {b['prefix']: b['hash'] for b in d['buckets']}
    put(call, 'role', dict(current['resource'],
                           description=f'x-{uuid.uuid4().hex}'), 200)
    after_doc = call('GET', '/sync/digest/role', 200).json()['digest']
    after = {b['prefix']: b['hash'] for b in after_doc['buckets']}
    assert [p for p in before if before[p] != after[p]] == [target[0]]
    # Drilling into that bucket narrows it, down to the items.
    sub = call('GET', f'/sync/digest/role?prefix={target[:2]}', 200).json()[
        'digest']
    assert {i['id'] for i in sub['items']} == {
        i for i in listed if i.startswith(target[:2])}


def test_every_route_is_in_json_home(api_site):
    import requests
    home = requests.get(api_site.url, timeout=30,
                        headers={'Accept': 'application/json-home'}).json()
    rel = ('https://docs.openstack.org/api/openstack-identity/3/ext/SYNC/'
           '1.0/rel/')
    ours = {k[len(rel):]: v for k, v in home['resources'].items()
            if k.startswith(rel)}
    # Keystone's JSON-home hrefs are relative to /v3, as its own are.
    assert ours == {
        'sync': {'href': '/sync'},
        'sync_status': {'href': '/sync/status'},
        'sync_changes': {'href': '/sync/changes'},
        'sync_batch': {'href': '/sync/batch'},
        'sync_rekey': {'href': '/sync/rekey'},
        'sync_resources': {
            'href-template': '/sync/resources/{type_name}',
            'href-vars': {'type_name': rel.replace('/rel/', '/param/')
                          + 'type'}},
        'sync_resource': {
            'href-template': '/sync/resources/{type_name}/{resource_id}',
            'href-vars': {
                'type_name': rel.replace('/rel/', '/param/') + 'type',
                'resource_id': rel.replace('/rel/', '/param/') + 'id'}},
        'sync_digest': {
            'href-template': '/sync/digest/{type_name}',
            'href-vars': {'type_name': rel.replace('/rel/', '/param/')
                          + 'type'}},
        'sync_digests': {'href': '/sync/digests'},
        'sync_tombstones': {'href': '/sync/tombstones'},
    }



def test_every_answer_matches_the_schema_its_route_declares(call):
    """A real answer of each route validates against the response schema
    its handler declares (what doc/openapi.json says), and a schema that
    does not fit is caught: the check is not a rubber stamp."""
    def declared(resource, method):
        schema = validation.declared(getattr(resource, method),
                                     'response_body')
        return jsonschema.Draft202012Validator(schema)

    r, gone = _id(), _id()
    put(call, 'role', role(gone))
    call('DELETE', f'/sync/resources/role/{gone}', 204, headers=ORIGIN)
    answers = [
        (sync.ResourceItemResource, 'put', put(call, 'role', role(r))),
        (sync.ResourceItemResource, 'get',
         call('GET', f'/sync/resources/role/{r}', 200)),
        (sync.SyncResource, 'get', call('GET', '/sync', 200)),
        (sync.StatusResource, 'get', call('GET', '/sync/status', 200)),
        (sync.ChangesResource, 'get',
         call('GET', '/sync/changes?limit=50', 200)),
        (sync.ResourceListResource, 'get',
         call('GET', '/sync/resources/role?limit=5', 200)),
        (sync.DigestResource, 'get', call('GET', '/sync/digest/role', 200)),
        (sync.DigestsResource, 'post', call(
            'POST', '/sync/digests', 200,
            json={'digests': [{'type': 'role'}, {'type': 'project'}]})),
        (sync.TombstonesResource, 'post', call(
            'POST', '/sync/tombstones', 200,
            json={'type': 'role', 'ids': [gone, r]})),
        (sync.BatchResource, 'post', call(
            'POST', '/sync/batch', 200, headers=ORIGIN, json={'items': [
                {'op': 'upsert', 'type': 'role', 'id': r,
                 'resource': role(r)},
                {'op': 'delete', 'type': 'role', 'id': gone}]})),
        (sync.RekeyResource, 'post', call(
            'POST', '/sync/rekey', 200, headers=ORIGIN,
            json={'type': 'role', 'from': r, 'to': _id()})),
    ]
    for resource, method, resp in answers:
        errors = list(declared(resource, method).iter_errors(resp.json()))
        assert not errors, (resource.__name__, method, errors[0].message)
    tombstones = answers[8][2].json()['tombstones']
    assert [t['id'] for t in tombstones] == [gone]
    # The status answer against the capabilities schema: refused.
    assert list(declared(sync.SyncResource, 'get').iter_errors(
        answers[3][2].json()))
