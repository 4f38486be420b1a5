"""Resources applied per second through ``POST /v3/sync/batch`` into a fresh
Keystone, against the ordinary API's create rate, in one run.

One real Keystone 30 site (uWSGI, 2 processes, our WSGI entry point) on the
chosen backend. Rounds alternate (native, batch, native, batch...) so that
drift of a noisy machine falls on both alike:

- a *native* round creates ``--native`` resources one request at a time
  through Keystone's ordinary API (``POST /v3/projects``, ``/v3/roles``,
  and, when this tree syncs them, ``/v3/users``, ``/v3/groups``, group
  memberships and role grants), with one admin token issued beforehand;
- a *batch* round applies ``--resources`` new resources of the same mix,
  with their dependencies (a project and a role per user...), through
  ``POST /v3/sync/batch`` in chunks of ``--chunk`` items.

Every batch result must be 201 and every resource must then be readable
through the ordinary API (checked on a sample), or the run fails.

- ``batch_resources_per_s``: median over rounds of resources / seconds.
- ``native_creates_per_s``: median over rounds of creates / seconds.
- ``batch_vs_native_ratio``: their quotient. Goals: >= 1000 resources/s on
  SQLite, ratio >= 50.

The last line of output is one JSON object with the figures.

    python bench/batch_rate.py --backend sqlite --rounds 3
"""

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid

from keystone_syncext import resources
from keystone_syncext.testing import backends
from keystone_syncext.testing import sites

GOAL_RATE = 1000
GOAL_RATIO = 50
EXTRA_CONFIG = '[oslo_middleware]\nmax_request_body_size = 67108864\n'
# Keystone's cache as production runs it (memcached there; a per-process
# memory backend here): token validation and the catalog reads of every
# notification come from it, for the native rounds as for the batch ones.
CACHE_CONFIG = ('[cache]\nenabled = true\n'
                'backend = dogpile.cache.memory\n')


def _hex():
    return uuid.uuid4().hex


def batch_items(count: int) -> list[dict]:
    """``count`` new resources of the mix, dependencies before dependents
    (the batch orders them anyway)."""
    types = resources.TYPES
    items = []

    def add(type_, res):
        items.append({'op': 'upsert', 'type': type_, 'id': res['id'],
                      'resource': res})

    while len(items) < count:
        p, r = _hex(), _hex()
        add('project', {'id': p, 'name': f'bp-{p}', 'description': '',
                        'enabled': True, 'domain_id': 'default',
                        'parent_id': 'default', 'tags': [], 'options': {},
                        'extra': {}})
        add('role', {'id': r, 'name': f'br-{r}', 'domain_id': None,
                     'description': None, 'options': {}, 'extra': {}})
        if 'user' in types and 'group' in types:
            u, g = _hex(), _hex()
            add('user', {'id': u, 'domain_id': 'default', 'enabled': True,
                         'default_project_id': None, 'options': {},
                         'extra': {}, 'federated': [],
                         'local': {'name': f'bu-{u}', 'passwords': []}})
            add('group', {'id': g, 'domain_id': 'default',
                          'name': f'bg-{g}', 'description': '',
                          'extra': {}})
            if 'group_membership' in types:
                add('group_membership', {'id': f'{u}:{g}', 'user_id': u,
                                         'group_id': g})
            if 'role_assignment' in types:
                aid = f'UserProject:{u}:{p}:{r}:0'
                add('role_assignment', {
                    'id': aid, 'type': 'UserProject', 'actor_id': u,
                    'target_id': p, 'role_id': r, 'inherited': False})
    return items[:count]


class Client:
    def __init__(self, site):
        self.site = site
        self.session = site.admin_session()
        self.session.get_token()

    def call(self, method, path, **kw):
        return self.session.request(self.site.url + path, method, **kw)

    def native_round(self, count: int) -> float:
        """Seconds to create ``count`` resources through the ordinary API
        (projects, roles, users, groups, memberships, grants in turn)."""
        start = time.perf_counter()
        made = 0
        while made < count:
            tag = _hex()
            p = self.call('POST', '/projects', json={'project': {
                'name': f'np-{tag}', 'domain_id': 'default'}}
            ).json()['project']['id']
            r = self.call('POST', '/roles', json={'role': {
                'name': f'nr-{tag}'}}).json()['role']['id']
            made += 2
            if 'user' in resources.TYPES and made < count:
                u = self.call('POST', '/users', json={'user': {
                    'name': f'nu-{tag}', 'domain_id': 'default'}}
                ).json()['user']['id']
                g = self.call('POST', '/groups', json={'group': {
                    'name': f'ng-{tag}', 'domain_id': 'default'}}
                ).json()['group']['id']
                self.call('PUT', f'/groups/{g}/users/{u}')
                self.call('PUT', f'/projects/{p}/users/{u}/roles/{r}')
                made += 4
        return time.perf_counter() - start, made

    def batch_round(self, count: int, chunk: int) -> float:
        items = batch_items(count)
        start = time.perf_counter()
        results = []
        for i in range(0, len(items), chunk):
            resp = self.call('POST', '/sync/batch',
                             json={'items': items[i:i + chunk]})
            results += resp.json()['results']
        spent = time.perf_counter() - start
        bad = [r for r in results if r['status'] != 201]
        if bad:
            raise SystemExit(f'batch items failed: {bad[:3]}')
        for item in random.sample(items, min(10, len(items))):
            if item['type'] in ('project', 'role', 'user', 'group'):
                self.call('GET', f'/{item["type"]}s/{item["id"]}')
        return spent, len(items)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backend', default='sqlite',
                        choices=('sqlite', 'mysql', 'postgresql'))
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--resources', type=int, default=2000,
                        help='resources per batch round')
    parser.add_argument('--native', type=int, default=30,
                        help='creates per native round')
    parser.add_argument('--chunk', type=int, default=500)
    parser.add_argument('--cache', action='store_true',
                        help='run Keystone with its cache on (an in-memory '
                        'backend per process), as production runs it with '
                        'memcached; the test sites run it off')
    args = parser.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix='kssync-bench-batch-')
    backend = backends.get(args.backend, workdir)
    dbname = f'bench_batch_{_hex()[:8]}'
    site = sites.Site('bench', f'{workdir}/site', backend.create(dbname),
                      app=sites.SYNC_APP)
    try:
        site.setup(EXTRA_CONFIG + (CACHE_CONFIG if args.cache else ''))
        site.start()
        client = Client(site)
        native, batch = [], []
        for n in range(args.rounds):
            secs, made = client.native_round(args.native)
            native.append(made / secs)
            secs, made = client.batch_round(args.resources, args.chunk)
            batch.append(made / secs)
            print(f'round {n + 1}: native {native[-1]:8.1f} creates/s   '
                  f'batch {batch[-1]:8.1f} resources/s', flush=True)
    finally:
        site.stop()
        backend.drop(dbname)
        shutil.rmtree(workdir, ignore_errors=True)
    rate = statistics.median(batch)
    native_rate = statistics.median(native)
    ratio = rate / native_rate
    print(f'\nbackend {args.backend}: batch {rate:.1f} resources/s '
          f'(goal >= {GOAL_RATE}: {"met" if rate >= GOAL_RATE else "MISSED"})'
          f', native {native_rate:.1f} creates/s, ratio {ratio:.1f} '
          f'(goal >= {GOAL_RATIO}: '
          f'{"met" if ratio >= GOAL_RATIO else "MISSED"})')
    print(json.dumps({
        'backend': args.backend, 'keystone_cache': args.cache,
        'chunk': args.chunk,
        'types': sorted({i['type'] for i in batch_items(12)}),
        'batch_resources_per_s': round(rate, 1),
        'native_creates_per_s': round(native_rate, 2),
        'batch_vs_native_ratio': round(ratio, 1),
        'rounds': args.rounds, 'resources_per_round': args.resources,
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
