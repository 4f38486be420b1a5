"""What one request of the sync agent costs a Keystone: SQL statements,
database connections and time, per request, in-process.

One real Keystone 30 site on SQLite (config, schema and bootstrap as the
other benchmarks make them; ``--cache``: Keystone's cache on, an in-memory
backend), served in this process through Keystone's whole WSGI stack
(middleware, token validation, policy) with Flask's test client, so that
SQLAlchemy's events count every statement and connection. The caller is an
agent account as the benchmarks make it: a user with the admin role on
the system, with a system-scoped token, as ``keystone-sync`` uses.

Each round makes, in order, the requests the agent makes at a spoke under
a steady change rate:

- ``changes``: ``GET /v3/sync/changes`` with nothing new (a long-poll
  that finds nothing, without waiting);
- ``batch``: ``POST /v3/sync/batch`` with one new role, right after
  ``changes``;
- ``batch_after_batch``: the same again, right after the first batch
  (a spoke receiving one change after another);
- ``changes_after_write``: ``GET /v3/sync/changes`` after the batch.

Reported per request kind: the median over ``--rounds`` rounds (the first
round, which warms the caches, is not counted) of statements, new
connections (oslo.db does not pool SQLite: each is a new one), wall
milliseconds and CPU milliseconds of this process. CPU time is what the
request costs whatever else runs on the machine; wall time is what a
client waits here.

    python bench/request_cost.py --cache --rounds 10
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

from batch_rate import CACHE_CONFIG

from keystone_syncext.testing import sites

KINDS = ('changes', 'batch', 'batch_after_batch', 'changes_after_write')


class Counter:
    """Statements and new connections of every engine of this process."""

    def __init__(self):
        import sqlalchemy as sa
        self.statements = self.connects = 0
        sa.event.listen(sa.engine.Engine, 'before_cursor_execute',
                        self._statement)
        sa.event.listen(sa.pool.Pool, 'connect', self._connect)

    def _statement(self, *args):
        self.statements += 1

    def _connect(self, *args):
        self.connects += 1


def _role_item():
    i = uuid.uuid4().hex
    return {'op': 'upsert', 'type': 'role', 'id': i,
            'resource': {'id': i, 'name': f'cost-{i}', 'domain_id': None,
                         'description': None, 'options': {}, 'extra': {}}}


class Client:
    """Keystone's application in this process, and the agent's token."""

    def __init__(self, site):
        os.environ['OS_KEYSTONE_CONFIG_FILES'] = site.conf
        sys.argv[1:] = []  # Keystone parses the command line
        from keystone_syncext.wsgi import api
        self.app = api.application.test_client()
        self.counter = Counter()
        admin = self._token('admin', site.admin_password)
        password = uuid.uuid4().hex
        user = self._call('POST', '/v3/users', admin, json={'user': {
            'name': 'keystone-sync', 'domain_id': 'default',
            'password': password}})['user']
        role = self._call('GET', '/v3/roles?name=admin', admin)['roles'][0]
        self._call('PUT', f'/v3/system/users/{user["id"]}/roles/'
                   f'{role["id"]}', admin)
        self.token = self._token('keystone-sync', password)
        self.head = self._call('GET', '/v3/sync', self.token)['sync'][
            'head_cursor']

    def _token(self, name, password):
        resp = self.app.post('/v3/auth/tokens', json={'auth': {
            'identity': {'methods': ['password'], 'password': {'user': {
                'name': name, 'domain': {'id': 'default'},
                'password': password}}},
            'scope': {'system': {'all': True}}}})
        assert resp.status_code == 201, resp.status_code
        return resp.headers['X-Subject-Token']

    def _call(self, method, path, token, **kw):
        resp = self.app.open(path, method=method, headers=dict(
            kw.pop('headers', {}), **{'X-Auth-Token': token}), **kw)
        assert resp.status_code < 300, (path, resp.status_code)
        return resp.json

    def measured(self, method, path, **kw) -> tuple[dict, dict]:
        c = self.counter
        s0, n0 = c.statements, c.connects
        w0, c0 = time.perf_counter(), time.thread_time()
        body = self._call(method, path, self.token, **kw)
        cost = {'statements': c.statements - s0,
                'connects': c.connects - n0,
                'wall_ms': (time.perf_counter() - w0) * 1000,
                'cpu_ms': (time.thread_time() - c0) * 1000}
        return body, cost

    def round(self) -> dict:
        changes = f'/v3/sync/changes?limit=500&since={self.head}'
        batch = {'headers': {'OpenStack-Sync-Origin': 'hub'}}
        out = {}
        _, out['changes'] = self.measured('GET', changes)
        _, out['batch'] = self.measured(
            'POST', '/v3/sync/batch', json={'items': [_role_item()]},
            **batch)
        _, out['batch_after_batch'] = self.measured(
            'POST', '/v3/sync/batch', json={'items': [_role_item()]},
            **batch)
        body, out['changes_after_write'] = self.measured('GET', changes)
        self.head = body['next']
        return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--cache', action='store_true',
                        help="Keystone's cache on (see batch_rate.py)")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix='kssync-bench-cost-')
    try:
        site = sites.Site('spoke', workdir, f'sqlite:///{workdir}/db.sqlite',
                          app=sites.SYNC_APP)
        site.setup(CACHE_CONFIG if args.cache else '')
        client = Client(site)
        rounds = [client.round() for _ in range(args.rounds + 1)][1:]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {'keystone_cache': args.cache, 'rounds': args.rounds}
    for kind in KINDS:
        med = {k: round(statistics.median(r[kind][k] for r in rounds), 1)
               for k in rounds[0][kind]}
        result[kind] = med
        print(f'{kind:20s} {med["statements"]:5.0f} statements '
              f'{med["connects"]:4.0f} connections {med["wall_ms"]:7.1f} ms '
              f'wall {med["cpu_ms"]:7.1f} ms CPU (medians)')
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
