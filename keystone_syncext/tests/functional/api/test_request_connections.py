"""SQLite connections reused within a request ([sync]
sqlite_request_connections, keystone_syncext.wsgi.request_pool), with
real Keystone served by our WSGI entry point, as worker processes and as
threads: what a connection that outlived its request could get wrong
(a stale read snapshot) must not happen, and capture must stay complete.

Requests are sent several at once so that they reach every worker
process or thread; uWSGI does not say which one answered.
"""

from concurrent import futures
import uuid

import pytest

from keystone_syncext.testing import sites
from keystone_syncext.tests.capture_oracle import Recorder

PARALLEL = 8


@pytest.fixture(scope='module', params=['processes', 'threads'])
def pooled(request, backend_name, make_site):
    if backend_name != 'sqlite':
        pytest.skip('request-scoped connections are for SQLite files only')
    return make_site(f'rc{request.param}', app=sites.SYNC_APP,
                     server=request.param)


@pytest.fixture(scope='module')
def admin(pooled):
    return pooled.admin_session()


def _many(fn, n=PARALLEL):
    with futures.ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda _: fn(), range(n)))


def test_the_pool_is_in_use(pooled, admin):
    admin.get(pooled.url + '/roles')
    with open(f'{pooled.dir}/keystone.log') as f:
        assert 'reused within a request' in f.read()


def test_revoked_token_is_refused_at_once_by_every_worker(pooled, admin):
    for _ in range(3):
        victim = pooled.admin_session()
        token = victim.get_token()

        def validate(token=token):
            return admin.get(pooled.url + '/auth/tokens',
                             headers={'X-Subject-Token': token},
                             raise_exc=False).status_code

        assert _many(validate) == [200] * PARALLEL
        resp = admin.delete(pooled.url + '/auth/tokens',
                            headers={'X-Subject-Token': token})
        assert resp.status_code == 204
        assert _many(validate, 2 * PARALLEL) == [404] * (2 * PARALLEL)


def test_role_created_is_listed_by_the_next_request(pooled, admin):
    for _ in range(3):
        name = f'rc-{uuid.uuid4().hex[:8]}'
        # Every worker reads the roles first, so none answers from
        # nothing but a fresh start.
        _many(lambda: admin.get(pooled.url + '/roles'))
        role = admin.post(pooled.url + '/roles',
                          json={'role': {'name': name}}).json()['role']

        def listed(name=name):
            roles = admin.get(pooled.url + '/roles',
                              params={'name': name}).json()['roles']
            return [r['id'] for r in roles]

        assert _many(listed) == [[role['id']]] * PARALLEL
        admin.delete(pooled.url + f'/roles/{role["id"]}')
        assert _many(listed) == [[]] * PARALLEL


def test_capture_records_every_write(pooled, admin):
    rec = Recorder(pooled.engine())
    with rec:
        role = admin.post(pooled.url + '/roles', json={
            'role': {'name': f'rc-{uuid.uuid4().hex[:8]}'}}).json()['role']
        admin.patch(pooled.url + f'/roles/{role["id"]}',
                    json={'role': {'description': 'changed'}})
        project = admin.post(pooled.url + '/projects', json={
            'project': {'name': f'rc-{uuid.uuid4().hex[:8]}',
                        'domain_id': 'default'}}).json()['project']
        admin.delete(pooled.url + f'/roles/{role["id"]}')
    rec.check()
    assert rec.ops('role', role['id']) == ['create', 'update', 'delete']
    assert rec.ops('project', project['id']) == ['create']
