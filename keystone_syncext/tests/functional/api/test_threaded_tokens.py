"""Each request judged with its own token, under threaded workers.

Keystone's token validation middleware keeps the token it validated in
an attribute of the one middleware object a worker process has, from
validating it to building the request's authorization context. Served
by threads, a request can be judged with the domain scope of another
caller's token: with Keystone 30's own entry point as with ours before
the fix, a project reader listed the users of a domain it has no role
on in 92 and 94 of 240 tries (doc/security.md). Our entry point keeps
the token per thread (keystone_syncext.wsgi.auth_busy).

The attack, as a tenant would try it: a member of a project keeps
asking for a domain's users while that domain's admin works (the
callers are tests/personas.py's).
"""

from concurrent import futures

import pytest
import requests

from keystone_syncext.testing import sites
from keystone_syncext.tests import personas

THREADS = 8     # the site's worker threads, and the callers'
TRIES = 40      # per caller thread


@pytest.fixture(scope='module')
def threaded(backend_name, make_site):
    if backend_name != 'sqlite':
        pytest.skip('the middleware is the same on every database')
    return make_site('threadtok', app=sites.SYNC_APP, processes=1,
                     threads=THREADS)


def test_a_project_reader_never_gets_a_domain_admins_scope(threaded):
    """A member (so a reader) of a project asks for the default domain's
    users, which needs a role on that domain, while the domain's admin
    asks too."""
    tokens = personas.make_tokens(threaded)
    url = f'{threaded.url}/users'

    def ask(persona):
        return [requests.get(url, params={'domain_id': 'default'},
                             headers=personas.headers(tokens[persona]),
                             timeout=60).status_code
                for _ in range(TRIES)]

    half = THREADS // 2
    with futures.ThreadPoolExecutor(THREADS) as pool:
        attacks = [pool.submit(ask, 'project_member') for _ in range(half)]
        work = [pool.submit(ask, 'domain_admin') for _ in range(half)]
        attacked = [s for f in attacks for s in f.result()]
        worked = [s for f in work for s in f.result()]
    assert worked == [200] * len(worked)
    assert attacked == [403] * len(attacked), \
        f'{attacked.count(200)} of {len(attacked)} answered 200'
