"""Keystone write throughput with and without change capture, in one run.

For each database backend this starts two real Keystone sites (uWSGI, the
same number of processes, Keystone's own WSGI entry point) that differ only
in capture: one had ``keystone-syncext-manage db_sync`` run (triggers and
``sync_*`` tables), the other did not. It then measures interleaved rounds,
alternating which site goes first (AB, BA, AB, ...) so that drift of a noisy
machine falls on both alike. A round is, through the ordinary v3 API with one
admin token issued beforehand: ``--ops`` project creates, as many updates
(PATCH description) and deletes, and ``--ops`` user creates and deletes.
Only the write requests are timed.

Definitions (per backend):

- ``ops_per_s_*``: median over rounds of writes / seconds spent in writes.
- ``capture_overhead_ratio``: median time per write with capture divided by
  median time per write without. 1.00 is free; the goal is <= 1.05.
- ``paired ratio``: median over rounds of that round's ratio; a cross-check
  that is less sensitive to slow drift, with a 95% bootstrap interval. The
  goal column says ``met`` when the ratio is <= 1.05 and the whole
  interval below 1.10 (the noise cannot hide an overhead of 10%),
  ``MISSED`` when the ratio is above 1.05 or the interval is all above
  1.10, ``unclear`` when the interval reaches past 1.10 around a ratio
  that meets the goal (more rounds decide it).

Before reporting, the benchmark checks that the capture site recorded at
least one ``sync_change`` row per measured write and that the plain site has
no ``sync_*`` table, so it cannot silently compare two identical setups.

The last line of output is one JSON object with the figures.

    python bench/capture_overhead.py --backend sqlite --backend mysql \\
        --rounds 12 --ops 2
"""

import argparse
import contextlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid

import sqlalchemy as sa

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites

BACKENDS = ('sqlite', 'mysql', 'postgresql')
GOAL = 1.05
# The paired 95% interval must lie entirely below this for ``met``.
GOAL_INTERVAL = 1.10
APPS = {'keystone': sites.KEYSTONE_APP, 'sync': sites.SYNC_APP}
# writes per round: project create, update, delete; user create, delete
WRITES_PER_OP = 5


class Client:
    """Write requests against one site, with a token issued up front."""

    def __init__(self, site: sites.Site):
        self.site = site
        self.session = site.admin_session()
        # Issue the token now: token issuance is not what we measure, and
        # keystoneauth reuses this one for every request below.
        self.session.get_token()
        self.spent = 0.0

    def _timed(self, method, path, **kw):
        start = time.perf_counter()
        resp = self.session.request(self.site.url + path, method, **kw)
        self.spent += time.perf_counter() - start
        return resp

    def round(self, ops: int) -> float:
        """One round of writes; returns seconds spent in write requests."""
        self.spent = 0.0
        tag = uuid.uuid4().hex[:8]
        projects = [
            self._timed('POST', '/projects', json={'project': {
                'name': f'bench-p-{tag}-{i}', 'domain_id': 'default'}}
            ).json()['project']['id']
            for i in range(ops)]
        for i, pid in enumerate(projects):
            self._timed('PATCH', f'/projects/{pid}', json={'project': {
                'description': f'round {tag} update {i}'}})
        for pid in projects:
            self._timed('DELETE', f'/projects/{pid}')
        users = [
            self._timed('POST', '/users', json={'user': {
                'name': f'bench-u-{tag}-{i}', 'domain_id': 'default',
                'password': f'Pass-{tag}-{i}'}}).json()['user']['id']
            for i in range(ops)]
        for uid in users:
            self._timed('DELETE', f'/users/{uid}')
        return self.spent


def sync_tables(site: sites.Site) -> list[str]:
    names = sa.inspect(site.engine()).get_table_names()
    return sorted(n for n in names if n.startswith('sync_'))


def last_change_id(site: sites.Site) -> int:
    with site.engine().connect() as conn:
        return conn.execute(sa.text('SELECT MAX(id) FROM sync_change')
                            ).scalar_one() or 0


def changes_since(site: sites.Site, after: int) -> dict[str, int]:
    """sync_change rows above id ``after``, counted by 'type/op'."""
    with site.engine().connect() as conn:
        rows = conn.execute(sa.text(
            'SELECT resource_type, op, COUNT(*) FROM sync_change '
            'WHERE id > :after GROUP BY resource_type, op'),
            {'after': after}).all()
    return {f'{t}/{op}': n for t, op, n in sorted(rows)}


def _in_parallel(*calls):
    """Run the calls in threads (site setup is mostly subprocess wait)."""
    errors = []

    def run(call):
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _median_ci(values: list[float], runs: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of the median (fixed seed: reproducible)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(runs))
    return medians[int(runs * 0.025)], medians[int(runs * 0.975) - 1]


def _summary(times: list[float], writes: int) -> dict:
    rates = [writes / t for t in times]
    return {'median_s_per_write': statistics.median(times) / writes,
            'ops_per_s': statistics.median(rates),
            'min_ops_per_s': min(rates), 'max_ops_per_s': max(rates),
            'rounds': rates}


def _check_tables(pair: dict) -> None:
    """The capture site has the sync tables, the plain one none."""
    cap_tables = sync_tables(pair['capture'])
    plain_tables = sync_tables(pair['plain'])
    if 'sync_change' not in cap_tables:
        raise RuntimeError(f'capture site has no sync_change table: '
                           f'{cap_tables}')
    if plain_tables:
        raise RuntimeError(f'plain site has sync tables: {plain_tables}')


def _timed_rounds(clients: dict, rounds: int, ops: int, log) -> dict:
    """Seconds of each round at each site, the order alternating so that
    neither site always goes first."""
    times = {'capture': [], 'plain': []}
    for r in range(rounds):
        order = ('capture', 'plain') if r % 2 == 0 else ('plain', 'capture')
        for label in order:
            times[label].append(clients[label].round(ops))
        log(f'round {r + 1}/{rounds}: '
            f'capture {times["capture"][-1]:.2f}s, '
            f'plain {times["plain"][-1]:.2f}s')
    return times


def _check_captured(by_op: dict, writes: int) -> None:
    """Every write is captured at least once (a user create also records
    its password and local_user rows as updates)."""
    captured = sum(by_op.values())
    expected = {'project/create', 'project/update', 'project/delete',
                'user/create', 'user/delete'}
    if captured < writes or not expected <= set(by_op):
        raise RuntimeError(f'capture site recorded only {captured} '
                           f'changes for {writes} writes: {by_op}')


def measure(backend_name: str, workdir: str, rounds: int, ops: int,
            processes: int, log, capture_app: str = sites.KEYSTONE_APP,
            plain_app: str = sites.KEYSTONE_APP) -> dict:
    backend = backends.get(backend_name, workdir)
    reason = getattr(backend, 'available', lambda: None)()
    if reason:
        raise RuntimeError(f'backend unavailable: {reason}')
    suffix = uuid.uuid4().hex[:8]
    made = []
    try:
        pair = {}
        for label, capture in (('capture', True), ('plain', False)):
            dbname = f'ks_bench_{label}_{suffix}'
            url = backend.create(dbname)
            site = sites.Site(f'bench-{label}',
                              f'{workdir}/{backend_name}-{label}', url,
                              capture=capture, processes=processes,
                              app=capture_app if capture else plain_app)
            made.append((site, dbname))
            pair[label] = site
        log(f'[{backend_name}] setting up both sites')
        t0 = time.monotonic()
        _in_parallel(*(s.setup for s in pair.values()))
        _in_parallel(*(s.start for s in pair.values()))
        log(f'[{backend_name}] sites up in {time.monotonic() - t0:.0f}s')

        _check_tables(pair)

        clients = {label: Client(site) for label, site in pair.items()}
        # Warm-up: with --lazy-apps every uWSGI worker loads Keystone on its
        # first request; a short unmeasured round reaches all of them.
        for client in clients.values():
            client.round(max(2, ops // 4))

        before = last_change_id(pair['capture'])
        times = _timed_rounds(clients, rounds, ops,
                              lambda msg: log(f'[{backend_name}] {msg}'))
        by_op = changes_since(pair['capture'], before)
        captured = sum(by_op.values())
        writes = ops * WRITES_PER_OP
        _check_captured(by_op, writes * rounds)
        if sync_tables(pair['plain']):
            raise RuntimeError('plain site grew sync tables')

        cap = _summary(times['capture'], writes)
        plain = _summary(times['plain'], writes)
        per_round = [c / p for c, p in zip(times['capture'], times['plain'],
                                           strict=True)]
        return {
            'capture': cap, 'plain': plain,
            'ratio': cap['median_s_per_write'] / plain['median_s_per_write'],
            'paired_ratio': statistics.median(per_round),
            'paired_min': min(per_round), 'paired_max': max(per_round),
            'paired_ci95': _median_ci(per_round),
            'captured_changes': captured, 'captured_by_op': by_op,
            'measured_writes': writes * rounds,
        }
    finally:
        for site, dbname in made:
            with contextlib.suppress(Exception):
                site.stop()
            with contextlib.suppress(Exception):
                backend.drop(dbname)


def _verdict(res: dict) -> str:
    low, high = res['paired_ci95']
    if res['ratio'] > GOAL or low >= GOAL_INTERVAL:
        return 'MISSED'
    return 'met' if high < GOAL_INTERVAL else 'unclear'


def print_table(results: dict, rounds: int, ops: int, out) -> None:
    head = (f'{"backend":<11} {"ops/s capture":>13} {"ops/s plain":>11} '
            f'{"ratio":>6} {"paired":>6} {"paired 95% CI":>13} '
            f'{"capture min-max":>15} {"plain min-max":>13} {"goal":>7}')
    print(f'\nCapture overhead: {rounds} rounds x {ops * WRITES_PER_OP} '
          f'writes per site and round', file=out)
    print(head, file=out)
    print('-' * len(head), file=out)
    for name, res in results.items():
        cap, plain = res['capture'], res['plain']
        print(f'{name:<11} {cap["ops_per_s"]:>13.2f} '
              f'{plain["ops_per_s"]:>11.2f} {res["ratio"]:>6.3f} '
              f'{res["paired_ratio"]:>6.3f} '
              f'{_span(*res["paired_ci95"], 3):>13} '
              f'{_span(cap["min_ops_per_s"], cap["max_ops_per_s"]):>15} '
              f'{_span(plain["min_ops_per_s"], plain["max_ops_per_s"]):>13} '
              f'{_verdict(res):>7}', file=out)
    print(f'ratio = median time per write with capture / without (goal <= '
          f'{GOAL}, paired 95% interval below {GOAL_INTERVAL}); paired = '
          f'median of per-round ratios', file=out)
    for name, res in results.items():
        ops_seen = ', '.join(f'{k} {v}'
                             for k, v in res['captured_by_op'].items())
        print(f'{name}: per-round ratios '
              f'{_span(res["paired_min"], res["paired_max"], 3)}; '
              f'{res["captured_changes"]} sync_change rows for '
              f'{res["measured_writes"]} measured writes ({ops_seen}); '
              f'plain site has no sync_* tables', file=out)


def _span(low: float, high: float, digits: int = 2) -> str:
    return f'{low:.{digits}f}-{high:.{digits}f}'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--backend', action='append', choices=BACKENDS,
                        help='repeatable; default: all three')
    # Many short rounds cancel drift better than a few long ones.
    parser.add_argument('--rounds', type=int, default=12,
                        help='measured rounds per site (default 12)')
    parser.add_argument('--ops', type=int, default=2,
                        help=f'projects and users per round; a round is '
                        f'{WRITES_PER_OP} x ops writes (default 2)')
    parser.add_argument('--processes', type=int, default=2,
                        help='uWSGI processes per site (default 2)')
    parser.add_argument('--capture-app', choices=sorted(APPS),
                        default='keystone',
                        help='what serves the site with capture: '
                        'Keystone\'s own entry point (default; the '
                        'triggers alone) or ours, '
                        'keystone_syncext.wsgi.api:application, as a '
                        'deployment with the extension runs it (on SQLite '
                        'it reuses connections within a request); the '
                        'plain site runs --plain-app')
    parser.add_argument('--plain-app', choices=sorted(APPS),
                        default='keystone',
                        help='what serves the site without capture: '
                        'Keystone\'s own entry point (default: Keystone '
                        'as it runs without the extension) or ours over '
                        'a schema without capture, so that with '
                        '--capture-app sync the two sites differ in the '
                        'triggers alone')
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.ops < 1:
        parser.error('--rounds and --ops must be positive')

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    workdir = tempfile.mkdtemp(prefix='kssync-bench-')
    results = {}
    try:
        for name in args.backend or BACKENDS:
            results[name] = measure(
                name, workdir, args.rounds, args.ops, args.processes, log,
                APPS[args.capture_app], APPS[args.plain_app])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print_table(results, args.rounds, args.ops, sys.stdout)
    summary = {
        'capture_overhead_ratio': {n: round(r['ratio'], 3)
                                   for n, r in results.items()},
        'paired_ratio': {n: round(r['paired_ratio'], 3)
                         for n, r in results.items()},
        'paired_ratio_ci95': {n: [round(v, 3) for v in r['paired_ci95']]
                              for n, r in results.items()},
        'ops_per_s_capture': {n: round(r['capture']['ops_per_s'], 2)
                              for n, r in results.items()},
        'ops_per_s_plain': {n: round(r['plain']['ops_per_s'], 2)
                            for n, r in results.items()},
        'goal': {n: _verdict(r) for n, r in results.items()},
        'rounds': args.rounds,
        'writes_per_round': args.ops * WRITES_PER_OP,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
