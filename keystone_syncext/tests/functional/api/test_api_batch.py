"""``POST /v3/sync/batch`` on a real Keystone: new resources written
set-wise get exactly the results, rows and notifications that writing
them one by one gives, judged through Keystone's ordinary v3 API, its
notification log and the per-item ``PUT``.

The site runs with ``max_project_tree_depth = 3`` and URL-safe project
names, so those rules of Keystone's are exercised as configured. Runs
once per database backend.
"""

import json
import re
import uuid

import pytest

from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests import personas

ORIGIN = {'OpenStack-Sync-Origin': 'hub-1'}
MAX_DEPTH = 3
EXTRA_CONFIG = (f'[DEFAULT]\nmax_project_tree_depth = {MAX_DEPTH}\n'
                '[resource]\nproject_name_url_safe = new\n'
                '[oslo_messaging_notifications]\ndriver = log\n')


@pytest.fixture(scope='module')
def batch_site(make_site, keystone_release):
    return make_site('batch', app=sites.SYNC_APP, extra_config=EXTRA_CONFIG,
                     venv=conftest.release_venv(keystone_release))


@pytest.fixture(scope='module')
def call(batch_site):
    return personas.checked_caller(batch_site)


def _id():
    return uuid.uuid4().hex


def project(id_, parent_id='default', name=None, domain_id='default',
            **kw):
    return dict({'id': id_, 'name': name or f'p-{id_[:8]}',
                 'description': '', 'enabled': True, 'domain_id': domain_id,
                 'parent_id': parent_id, 'tags': [], 'options': {},
                 'extra': {}}, **kw)


def role(id_, name=None, domain_id=None, **kw):
    return dict({'id': id_, 'name': name or f'r-{id_[:8]}',
                 'domain_id': domain_id, 'description': None,
                 'options': {}, 'extra': {}}, **kw)


def user(id_, name=None, **kw):
    return dict({'id': id_, 'domain_id': 'default', 'enabled': True,
                 'default_project_id': None, 'options': {}, 'extra': {},
                 'federated': [],
                 'local': {'name': name or f'u-{id_[:8]}',
                           'passwords': []}}, **kw)


def group(id_, name=None):
    return {'id': id_, 'domain_id': 'default', 'name': name or
            f'g-{id_[:8]}', 'description': None, 'extra': {}}


def upsert(type_, res):
    return {'op': 'upsert', 'type': type_, 'id': res['id'], 'resource': res}


def membership(user_id, group_id):
    return upsert('group_membership', {'id': f'{user_id}:{group_id}',
                                       'user_id': user_id,
                                       'group_id': group_id})


def grant(user_id, project_id, role_id):
    return upsert('role_assignment', {
        'id': f'UserProject:{user_id}:{project_id}:{role_id}:0',
        'type': 'UserProject', 'actor_id': user_id,
        'target_id': project_id, 'role_id': role_id, 'inherited': False})


def batch(call, items):
    results = call('POST', '/sync/batch', 200, json={'items': items},
                   headers=ORIGIN).json()['results']
    assert [r['index'] for r in results] == list(range(len(items)))
    return results


def statuses(results):
    return [r['status'] for r in results]


def test_created_resources_read_back_with_the_hash_reported(call):
    p, r, u, g = _id(), _id(), _id(), _id()
    items = [upsert('project', project(p, tags=['b', 'a'],
                                       options={'immutable': True})),
             upsert('role', role(r, options={'immutable': True},
                                 extra={'k': 1})),
             upsert('user', user(u, options={
                 'ignore_password_expiry': True})),
             upsert('group', group(g)), membership(u, g), grant(u, p, r)]
    results = batch(call, items)
    assert statuses(results) == [201] * 6
    for item, result in zip(items, results, strict=True):
        got = call('GET', f'/sync/resources/{item["type"]}/{item["id"]}',
                   200).json()
        assert result['hash'] == got['hash']
        if item['type'] != 'project':
            assert got['resource'] == item['resource']
    # Tags come back sorted, as from any other write.
    assert call('GET', f'/sync/resources/project/{p}', 200).json()[
        'resource'] == project(p, tags=['a', 'b'], options={'immutable': True})
    ks = call('GET', f'/projects/{p}', 200).json()['project']
    assert (ks['parent_id'], sorted(ks['tags']), ks['options']) == (
        'default', ['a', 'b'], {'immutable': True})
    call('HEAD', f'/groups/{g}/users/{u}', 204)
    call('HEAD', f'/projects/{p}/users/{u}/roles/{r}', 204)
    # Sent again: unchanged, same hashes, nothing written.
    again = batch(call, items)
    assert statuses(again) == [200] * 6
    assert [x['hash'] for x in again] == [x['hash'] for x in results]


def test_names_taken_in_the_batch_or_at_the_site_are_409(call):
    taken = call('POST', '/projects', 201, json={'project': {
        'name': f'taken-{_id()[:8]}', 'domain_id': 'default'}}
    ).json()['project']
    first, second, third = _id(), _id(), _id()
    r1, r2, u1, u2, g1, g2 = (_id() for _ in range(6))
    name = f'twice-{first[:8]}'
    results = batch(call, [
        upsert('project', project(first, name=name)),
        upsert('project', project(second, name=f'  {name} ')),
        upsert('project', project(third, name=taken['name'])),
        upsert('role', role(r1, name=name)),
        upsert('role', role(r2, name=name)),
        upsert('user', user(u1, name=name)),
        upsert('user', user(u2, name=name)),
        upsert('group', group(g1, name=name)),
        upsert('group', group(g2, name=name)),
    ])
    assert statuses(results) == [201, 409, 409, 201, 409, 201, 409, 201,
                                 409]
    assert [results[n]['error']['existing_id'] for n in (1, 2, 4, 6, 8)] \
        == [first, taken['id'], r1, u1, g1]
    assert f'  {name} ' in results[1]['error']['message']
    for type_, id_ in (('projects', second), ('projects', third),
                       ('roles', r2), ('users', u2), ('groups', g2)):
        call('GET', f'/{type_}/{id_}', 404)


def test_a_name_the_database_folds_is_judged_as_the_database_does(call):
    """Two names differing only in letter case: on a database whose
    collation folds case, Keystone refuses the second (the unique
    constraint, met by the multi-row insert, sends the run item by item);
    elsewhere both are fine."""
    tag = _id()[:8]
    call('POST', '/roles', 201, json={'role': {'name': f'Fold-{tag}'}})
    folds = call('POST', '/roles', json={'role': {'name': f'FOLD-{tag}'}}
                 ).status_code == 409
    a, b, c = _id(), _id(), _id()
    results = batch(call, [upsert('role', role(a, name=f'case-{tag}')),
                           upsert('role', role(b, name=f'CASE-{tag}')),
                           upsert('role', role(c))])
    assert statuses(results) == [201, 409 if folds else 201, 201]
    call('GET', f'/roles/{b}', 404 if folds else 200)


def test_parents_in_the_batch_come_first_and_a_refused_one_stops_its_children(
        call):
    top, mid, leaf, dup, orphan = (_id() for _ in range(5))
    name = f'dup-{top[:8]}'
    results = batch(call, [
        upsert('project', project(leaf, mid)),
        upsert('project', project(orphan, dup)),
        upsert('project', project(mid, top)),
        upsert('project', project(top, name=name)),
        upsert('project', project(dup, name=name)),
    ])
    assert statuses(results) == [201, 400, 201, 201, 409]
    assert 'parent_id' in results[1]['error']['message']
    assert call('GET', f'/projects/{leaf}?parents_as_ids', 200).json()[
        'project']['parents'] == {mid: {top: {'default': None}}}


def test_missing_references_are_400_naming_the_field(call):
    p, u, g, r = _id(), _id(), _id(), _id()
    missing = _id()
    results = batch(call, [
        upsert('project', project(p, missing)),
        upsert('project', project(_id(), domain_id=missing,
                                  parent_id=missing)),
        upsert('role', role(r, domain_id=missing)),
        upsert('user', user(u, domain_id=missing)),
        upsert('group', dict(group(g), domain_id=missing)),
        membership(missing, g),
        grant(missing, 'default', missing),
    ])
    assert statuses(results) == [400] * 7
    messages = [x['error']['message'] for x in results]
    for n, field in enumerate(['parent_id', 'domain_id', 'domain_id',
                               'domain_id', 'domain_id', 'user_id',
                               'actor_id']):
        assert missing in messages[n] and field in messages[n], messages[n]


def test_depth_limit_and_disabled_parents_as_keystone_rules(call):
    chain = [_id() for _ in range(MAX_DEPTH + 1)]
    off, below_off = _id(), _id()
    dom = call('POST', '/domains', 201, json={'domain': {
        'name': f'off-{off[:8]}', 'enabled': False}}).json()['domain']['id']
    items = [upsert('project', project(pid, parent))
             for pid, parent in zip(chain, ['default'] + chain[:-1],
                                    strict=True)]
    items += [upsert('project', project(off, enabled=False)),
              upsert('project', project(below_off, off)),
              upsert('project', project(_id(), dom, domain_id=dom)),
              upsert('project', project(_id(), chain[0],
                                        domain_id=dom))]
    results = batch(call, items)
    assert statuses(results) == [201] * MAX_DEPTH + [403, 201, 400, 400,
                                                     400]
    assert f'Max hierarchy depth reached for {chain[-2]} branch' in \
        results[MAX_DEPTH]['error']['message']
    assert f'disabled project: {off}' in results[-3]['error']['message']
    assert f'disabled project: {dom}' in results[-2]['error']['message']
    assert 'parent in a different domain' in results[-1]['error']['message']
    # Keystone's own API refuses the same.
    call('POST', '/projects', 403, json={'project': {
        'name': f'deep-{_id()[:8]}', 'domain_id': 'default',
        'parent_id': chain[-2]}})
    call('POST', '/projects', 400, json={'project': {
        'name': f'below-{_id()[:8]}', 'domain_id': 'default',
        'parent_id': off}})


def test_url_unsafe_names_hashes_and_role_domains_per_keystone(call):
    p, u = _id(), _id()
    dom_role, proj, sys_user = _id(), _id(), _id()
    domain_id = call('POST', '/domains', 201, json={'domain': {
        'name': f'd-{_id()[:8]}'}}).json()['domain']['id']
    results = batch(call, [
        upsert('project', project(p, name=f'a/b-{p[:6]}')),
        upsert('project', project(proj)),
        upsert('role', role(dom_role, domain_id=domain_id)),
        upsert('user', user(u, local={'name': f'u-{u[:8]}', 'passwords': [
            {'hash': 'not-a-hash', 'created_at': '2026-01-01T00:00:00.'
             '000000Z', 'expires_at': None, 'self_service': False}]})),
        upsert('user', user(sys_user)),
        grant(sys_user, proj, dom_role),
        upsert('role_assignment', {
            'id': f'UserSystem:{sys_user}:system:{dom_role}:0',
            'type': 'UserSystem', 'actor_id': sys_user,
            'target_id': 'system', 'role_id': dom_role,
            'inherited': False}),
    ])
    assert statuses(results) == [400, 201, 201, 400, 201, 403, 400]
    assert 'reserved characters' in results[0]['error']['message']
    assert 'password hash' in results[3]['error']['message']
    assert 'not-a-hash' not in json.dumps(results)
    assert 'same domain as the role' in results[5]['error']['message']
    assert 'domain-specific role' in results[6]['error']['message']
    call('POST', '/projects', 400, json={'project': {
        'name': 'a/b', 'domain_id': 'default'}})


def test_updates_and_repeats_mixed_in_go_in_batch_order(call):
    """An update, a second upsert of one id and a create in one batch:
    each sees what the items before it left."""
    old, new, twice = _id(), _id(), _id()
    name = f'moved-{old[:8]}'
    call('PUT', f'/sync/resources/role/{old}', 201,
         json={'resource': role(old, name=name)})
    results = batch(call, [
        upsert('role', role(old, name=f'other-{old[:8]}')),  # frees name
        upsert('role', role(new, name=name)),
        upsert('role', role(twice)),
        upsert('role', role(twice, description='second')),
    ])
    assert statuses(results) == [200, 201, 201, 200]
    assert call('GET', f'/roles/{new}', 200).json()['role']['name'] == name
    assert call('GET', f'/roles/{twice}', 200).json()['role'][
        'description'] == 'second'


def _notified(site, ids) -> dict[str, list[str]]:
    """Per id, the event types of the notifications that name it."""
    out: dict[str, list[str]] = {i: [] for i in ids}
    with open(f'{site.dir}/keystone.log', encoding='utf-8') as log:
        for line in log:
            found = re.search(r'"event_type": "([\w.]+)"', line)
            if not found:
                continue
            for id_ in ids:
                if id_ in line:
                    out[id_].append(found.group(1))
    return {i: sorted(v) for i, v in out.items()}


def _observers(site, ids) -> set[str]:
    """The observer ids of the notifications naming any of ``ids``."""
    out = set()
    with open(f'{site.dir}/keystone.log', encoding='utf-8') as log:
        for line in log:
            if '"event_type"' in line and any(i in line for i in ids):
                found = re.search(r'"observer": \{[^}]*"id": "(\w+)"', line)
                out.add(found.group(1) if found else None)
    return out


def _outcomes(site, role_id) -> list[str]:
    """Outcomes of the role assignment notifications naming ``role_id``."""
    out = []
    with open(f'{site.dir}/keystone.log', encoding='utf-8') as log:
        for line in log:
            if 'identity.role_assignment.created' in line and \
                    role_id in line:
                out.append(re.search(r'"outcome": "(\w+)"', line).group(1))
    return out


def test_notifications_are_those_of_one_by_one_writes(call, batch_site):
    other = call('POST', '/domains', 201, json={'domain': {
        'name': f'n-{_id()[:8]}'}}).json()['domain']['id']

    def resources():
        p, r, u, g, dr = _id(), _id(), _id(), _id(), _id()
        return [upsert('project', project(p)), upsert('role', role(r)),
                upsert('user', user(u)), upsert('group', group(g)),
                upsert('role', role(dr, domain_id=other)),
                membership(u, g), grant(u, p, r),
                grant(u, p, dr)]  # refused inside Keystone's create_grant

    one_by_one, together = resources(), resources()
    for item in one_by_one:
        call('PUT', f'/sync/resources/{item["type"]}/{item["id"]}',
             json={'resource': item['resource']}, headers=ORIGIN)
    assert statuses(batch(call, together)) == [201] * 7 + [403]
    # The event types each resource's id appears in (a membership's
    # notification names its user and group, a grant's its actor, target
    # and role, with the outcome).
    seen_one = _notified(batch_site, [i['id'] for i in one_by_one[:5]])
    seen_batch = _notified(batch_site, [i['id'] for i in together[:5]])
    assert list(seen_one.values()) == list(seen_batch.values())
    assert _outcomes(batch_site, one_by_one[4]['id']) == \
        _outcomes(batch_site, together[4]['id']) == ['failure']
    assert 'identity.project.created' in seen_batch[together[0]['id']]
    # Each names the identity service as its observer, as Keystone's own
    # do (a batch reads the catalog once for all its notifications).
    identity = [s['id'] for s in call('GET', '/services', 200).json()[
        'services'] if s['type'] == 'identity']
    assert len(identity) == 1
    assert _observers(batch_site, [i['id'] for i in together[:5]]) == \
        _observers(batch_site, [i['id'] for i in one_by_one[:5]]) == \
        set(identity)
