"""Each request judged with its own token, under threaded workers.

Keystone's token validation middleware keeps the token it validated in
an attribute of the one middleware object a worker process has, from
validating it to building the request's authorization context. Served
by threads, a request can be judged with the domain scope of another
caller's token: with Keystone 30's own entry point as with ours before
the fix, a project reader listed the users of a domain it has no role
on in 92 and 94 of 240 tries (doc/security.md). Our entry point keeps
the token per thread (keystone_syncext.wsgi.auth_busy).

The attack, as a tenant would try it: a reader of a project keeps
asking for another domain's users while that domain's admin works.
"""

from concurrent import futures
import uuid

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
import pytest

from keystone_syncext.testing import sites

THREADS = 8     # the site's worker threads, and the callers'
TRIES = 40      # per caller thread


@pytest.fixture(scope='module')
def threaded(backend_name, make_site):
    if backend_name != 'sqlite':
        pytest.skip('the middleware is the same on every database')
    return make_site('threadtok', app=sites.SYNC_APP, processes=1,
                     threads=THREADS)


def _session(site, **auth):
    return ks_session.Session(auth=v3.Password(auth_url=site.url, **auth),
                              connect_retries=3)


def test_a_project_reader_never_gets_a_domain_admins_scope(threaded):
    site, admin = threaded, threaded.admin_session()
    url = site.url

    def role(name):
        return admin.get(url + '/roles', params={'name': name}).json()[
            'roles'][0]['id']

    tag = uuid.uuid4().hex[:8]
    domain = admin.post(url + '/domains', json={'domain': {
        'name': f'victim-{tag}'}}).json()['domain']['id']
    project = admin.post(url + '/projects', json={'project': {
        'name': f'tenant-{tag}', 'domain_id': 'default'}}).json()[
        'project']['id']
    reader = admin.post(url + '/users', json={'user': {
        'name': f'reader-{tag}', 'domain_id': 'default',
        'password': f'pw-{tag}-r'}}).json()['user']['id']
    owner = admin.post(url + '/users', json={'user': {
        'name': f'owner-{tag}', 'domain_id': domain,
        'password': f'pw-{tag}-o'}}).json()['user']['id']
    admin.put(f'{url}/projects/{project}/users/{reader}/roles/'
              f'{role("reader")}')
    admin.put(f'{url}/domains/{domain}/users/{owner}/roles/'
              f'{role("admin")}')
    attacker = _session(site, username=f'reader-{tag}',
                        password=f'pw-{tag}-r', user_domain_id='default',
                        project_id=project)
    victim = _session(site, username=f'owner-{tag}', password=f'pw-{tag}-o',
                      user_domain_id=domain, domain_id=domain)
    attacker.get_token()
    victim.get_token()

    def ask(sess):
        return [sess.get(url + '/users', params={'domain_id': domain},
                         raise_exc=False).status_code
                for _ in range(TRIES)]

    half = THREADS // 2
    with futures.ThreadPoolExecutor(THREADS) as pool:
        attacks = [pool.submit(ask, attacker) for _ in range(half)]
        work = [pool.submit(ask, victim) for _ in range(half)]
        attacked = [s for f in attacks for s in f.result()]
        worked = [s for f in work for s in f.result()]
    assert worked == [200] * len(worked)
    assert attacked == [403] * len(attacked), \
        f'{attacked.count(200)} of {len(attacked)} answered 200'
