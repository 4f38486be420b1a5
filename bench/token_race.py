"""Whether a threaded Keystone judges a request with another request's
token: the attack of tests/functional/api/test_threaded_tokens.py,
counted, against Keystone's own entry point or ours.

One real Keystone 30 site on SQLite, one uWSGI process of ``--threads``
threads. A reader of a project in Default and the admin of another
domain D each ask ``--tries`` times, from ``--threads`` / 2 client
threads each, for D's users. The reader must get 403 every time; each
200 is a request judged with the admin's domain scope.

    python bench/token_race.py --app keystone
    python bench/token_race.py --app sync
"""

import argparse
import collections
from concurrent import futures
import json
import shutil
import sys
import tempfile
import uuid

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites

APPS = {'keystone': sites.KEYSTONE_APP, 'sync': sites.SYNC_APP}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--app', choices=sorted(APPS), default='sync')
    parser.add_argument('--threads', type=int, default=8)
    parser.add_argument('--tries', type=int, default=60,
                        help='per client thread')
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix='kssync-bench-race-')
    db = backends.get('sqlite', work)
    site = sites.Site('race', f'{work}/s', db.create('race'),
                      app=APPS[args.app], processes=1, threads=args.threads,
                      capture=args.app == 'sync')
    seen = collections.Counter()
    try:
        site.setup()
        site.start()
        s, url = site.admin_session(), site.url

        def role(name):
            return s.get(url + '/roles', params={'name': name}).json()[
                'roles'][0]['id']

        tag = uuid.uuid4().hex[:8]
        dom = s.post(url + '/domains', json={'domain': {
            'name': f'd-{tag}'}}).json()['domain']['id']
        proj = s.post(url + '/projects', json={'project': {
            'name': f'p-{tag}', 'domain_id': 'default'}}).json()[
            'project']['id']
        users = {}
        for who, domain in (('reader', 'default'), ('owner', dom)):
            users[who] = s.post(url + '/users', json={'user': {
                'name': f'{who}-{tag}', 'domain_id': domain,
                'password': f'pw-{tag}-{who}'}}).json()['user']['id']
        s.put(f'{url}/projects/{proj}/users/{users["reader"]}/roles/'
              f'{role("reader")}')
        s.put(f'{url}/domains/{dom}/users/{users["owner"]}/roles/'
              f'{role("admin")}')
        callers = {
            'reader': v3.Password(auth_url=url, username=f'reader-{tag}',
                                  password=f'pw-{tag}-reader',
                                  user_domain_id='default',
                                  project_id=proj),
            'owner': v3.Password(auth_url=url, username=f'owner-{tag}',
                                 password=f'pw-{tag}-owner',
                                 user_domain_id=dom, domain_id=dom)}
        sessions = {who: ks_session.Session(auth=auth, connect_retries=3)
                    for who, auth in callers.items()}
        for sess in sessions.values():
            sess.get_token()

        def ask(who):
            for _ in range(args.tries):
                seen[(who, sessions[who].get(
                    url + '/users', params={'domain_id': dom},
                    raise_exc=False).status_code)] += 1

        with futures.ThreadPoolExecutor(args.threads) as pool:
            jobs = [pool.submit(ask, who) for who in sessions
                    for _ in range(args.threads // 2)]
            for job in jobs:
                job.result()
    finally:
        site.stop()
        shutil.rmtree(work, ignore_errors=True)
    wrong = seen[('reader', 200)]
    asked = sum(n for (who, _), n in seen.items() if who == 'reader')
    print(f'{args.app} entry point, {args.threads} threads: the reader got '
          f'200 in {wrong} of {asked} tries (must be 0); answers '
          f'{dict(sorted(seen.items()))}')
    print(json.dumps({'app': args.app, 'reader_200': wrong,
                      'reader_tries': asked}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
