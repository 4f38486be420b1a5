"""Sync writes invalidate Keystone's caches, so the ordinary API serves
them at once.

One worker with Keystone's cache on (in-process backend), so a stale entry
would be served: a write the managers do not see (``extra``, re-key) must
still invalidate. Caching is Keystone's, not SQL: the first selected
database backend is enough.
"""

import uuid

import pytest

from keystone_syncext.testing import sites
from keystone_syncext.tests.functional.api.test_api_resources import project
from keystone_syncext.tests.functional.api.test_api_resources import role

pytestmark = pytest.mark.backend_independent


def _id():
    return uuid.uuid4().hex


@pytest.fixture(scope='module')
def cached_site(make_site):
    """One worker with Keystone's cache on (in-process backend), so a
    stale cache entry would be served."""
    return make_site('cached', app=sites.SYNC_APP, processes=1,
                     extra_config='[cache]\nenabled = true\n'
                     'backend = oslo_cache.dict\n'
                     '[resource]\ncaching = true\n'
                     '[role]\ncaching = true\n')


def _caller(site, sess=None):
    """``call(method, path, **kw)`` as the site's admin (through ``sess``
    when given): the JSON body, None if empty."""
    sess = sess or site.admin_session()

    def call(method, path, **kw):
        resp = sess.request(site.url + path, method, **kw)
        return resp.json() if resp.content else None
    return call


def _put_then_get(call, type_name, make, rid, field, value):
    """PUT ``make(rid)`` with ``extra`` ``{field: value}`` through the
    sync API; the ``field`` Keystone's own API (its cache) then serves."""
    call('PUT', f'/sync/resources/{type_name}/{rid}',
         json={'resource': make(rid, extra={field: value})})
    return call('GET', f'/{type_name}s/{rid}')[type_name][field]


def test_writes_invalidate_keystone_caches(cached_site):
    sess = cached_site.admin_session()
    call = _caller(cached_site, sess)
    p = _id()
    assert _put_then_get(call, 'project', project, p, 'owner', 'a') == 'a'
    # Only `extra` changes: written by us, not by a manager that would
    # invalidate its own entry.
    assert _put_then_get(call, 'project', project, p, 'owner', 'b') == 'b'
    # Re-key: the old id must not be served from the cache.
    r, new = _id(), _id()
    call('PUT', f'/sync/resources/role/{r}', json={'resource': role(r)})
    assert call('GET', f'/roles/{r}')['role']['id'] == r
    call('POST', '/sync/rekey', json={'type': 'role', 'from': r, 'to': new})
    assert sess.get(f'{cached_site.url}/roles/{r}',
                    raise_exc=False).status_code == 404


def test_role_writes_invalidate_the_role(cached_site):
    """A role write drops the role's own entry: Keystone's create_role
    caches the role before we set its ``extra``, and an ``extra``-only
    update goes past the manager."""
    call = _caller(cached_site)
    r = _id()
    assert _put_then_get(call, 'role', role, r, 'colour', 'red') == 'red'
    assert _put_then_get(call, 'role', role, r, 'colour', 'blue') == 'blue'
    # Through a batch, item by item (an update) and set-wise (a create).
    r2 = _id()
    call('POST', '/sync/batch', json={'items': [
        {'op': 'upsert', 'type': 'role', 'id': r,
         'resource': role(r, extra={'colour': 'green'})},
        {'op': 'upsert', 'type': 'role', 'id': r2, 'resource': role(r2)}]})
    assert call('GET', f'/roles/{r}')['role']['colour'] == 'green'
    assert call('GET', f'/roles/{r2}')['role']['id'] == r2


def test_new_membership_invalidates_computed_assignments(cached_site):
    """A membership created set-wise (no manager call) still drops the
    computed assignments Keystone caches: the user's effective roles
    include the group's at once."""
    call = _caller(cached_site)
    user = call('POST', '/users', json={'user': {
        'name': f'u-{_id()[:8]}', 'domain_id': 'default'}})['user']
    group = call('POST', '/groups', json={'group': {
        'name': f'g-{_id()[:8]}', 'domain_id': 'default'}})['group']
    p, r = _id(), _id()
    call('PUT', f'/sync/resources/project/{p}', json={'resource': project(p)})
    call('PUT', f'/sync/resources/role/{r}', json={'resource': role(r)})
    call('PUT', f'/projects/{p}/groups/{group["id"]}/roles/{r}')
    path = f'/role_assignments?user.id={user["id"]}&effective'
    assert call('GET', path)['role_assignments'] == []
    membership = f'{user["id"]}:{group["id"]}'
    results = call('POST', '/sync/batch', json={'items': [
        {'op': 'upsert', 'type': 'group_membership', 'id': membership,
         'resource': {'id': membership, 'user_id': user['id'],
                      'group_id': group['id']}}]})['results']
    assert results[0]['status'] == 201, results
    found = call('GET', path)['role_assignments']
    assert [(a['role']['id'], a['scope']['project']['id']) for a in found] \
        == [(r, p)]


def test_role_writes_keep_other_entries_cached(cached_site):
    """Why invalidation is targeted: a role write leaves the cached
    project (and the token, user and role entries every request needs)
    in place. Shown by a change made behind Keystone's back, in the
    database: the cached project is still served after the role write,
    and a project write drops it."""
    call = _caller(cached_site)
    p = _id()
    call('PUT', f'/sync/resources/project/{p}',
         json={'resource': project(p, description='one')})
    assert call('GET', f'/projects/{p}')['project']['description'] == 'one'
    with cached_site.engine().begin() as conn:
        conn.exec_driver_sql(
            "UPDATE project SET description = 'behind' WHERE id = ?"
            if conn.dialect.name == 'sqlite' else
            "UPDATE project SET description = 'behind' WHERE id = %s",
            (p,))
    r = _id()
    call('PUT', f'/sync/resources/role/{r}', json={'resource': role(r)})
    assert call('GET', f'/projects/{p}')['project']['description'] == \
        'one'
    call('PUT', f'/sync/resources/project/{p}',
         json={'resource': project(p, description='two')})
    assert call('GET', f'/projects/{p}')['project']['description'] == 'two'
