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
from keystone_syncext.tests.functional.test_api_resources import project
from keystone_syncext.tests.functional.test_api_resources import role

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


def test_writes_invalidate_keystone_caches(cached_site):
    sess = cached_site.admin_session()

    def call(method, path, **kw):
        resp = sess.request(cached_site.url + path, method, **kw)
        return resp.json() if resp.content else None

    p = _id()
    call('PUT', f'/sync/resources/project/{p}',
         json={'resource': project(p, extra={'owner': 'a'})})
    assert call('GET', f'/projects/{p}')['project']['owner'] == 'a'
    # Only `extra` changes: written by us, not by a manager that would
    # invalidate its own entry.
    call('PUT', f'/sync/resources/project/{p}',
         json={'resource': project(p, extra={'owner': 'b'})})
    assert call('GET', f'/projects/{p}')['project']['owner'] == 'b'
    # Re-key: the old id must not be served from the cache.
    r, new = _id(), _id()
    call('PUT', f'/sync/resources/role/{r}', json={'resource': role(r)})
    assert call('GET', f'/roles/{r}')['role']['id'] == r
    call('POST', '/sync/rekey', json={'type': 'role', 'from': r, 'to': new})
    assert sess.get(f'{cached_site.url}/roles/{r}',
                    raise_exc=False).status_code == 404
