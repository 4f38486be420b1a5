"""keystone-sync: time to seed fresh spokes, and hub-to-spoke propagation
latency under a steady change rate, in one run.

Real Keystone 30 sites on SQLite (uWSGI, 2 processes each, our WSGI entry
point): one hub and ``--spokes`` spokes, each bootstrapped on its own and
joined with ``keystone-sync join``; the agent is the real command line.

1. **Seed.** The hub is filled with ``--resources`` resources (projects,
   roles, users, groups, memberships, grants) through its own batch route;
   then ``keystone-sync run --once`` with a fresh state database seeds every
   spoke. Reported: seconds, and resources per second per spoke (every
   resource the hub lists, bootstrap ones included, written to every
   spoke).
2. **Propagation.** The agent runs (``keystone-sync run``, long-polling the
   hub), while ``--changes`` roles are created at the hub through the
   ordinary API at ``--rate`` per second. The latency of one change at one
   spoke is the spoke's commit time of the write (``changed_at`` in the
   spoke's own change feed) minus the hub's commit time (``changed_at`` in
   the hub's feed); both are database clocks of this machine. Goal: p99 <=
   1 s.
3. **Fan-out** (``--burst N``): N roles are made at the hub at once
   (through its batch route) while the agent runs; the time from the
   burst until every spoke holds all of them. Goal: <= 60 s.
4. **Several agents** (``--members 1,2,3``, with ``--burst``): the agent's
   state is then on MariaDB, and after the above the same fan-out is
   timed with 1, 2, 3 ``keystone-sync run`` members on Redis (tooz)
   sharing the spokes, side by side, then the failover time after a
   member's SIGKILL (agent_ha.py says how). Ratios: fan-out with N
   members / with the first count.

The agent's peak memory (maximum resident set of the ``run --once``
process that seeds every spoke) is reported as ``agent_rss_mb``.

The last line of output is one JSON object with the figures.

    python bench/agent_sync.py --spokes 3 --resources 3000 --changes 60
    python bench/agent_sync.py --cache --spokes 3 --resources 2000 \
        --changes 20 --burst 1000 --members 1,2,3
"""

import argparse
import concurrent.futures
import json
import resource
import statistics
import sys
import tempfile
import time
import uuid

import agent_bench
import agent_ha
from batch_rate import batch_items
import requests

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites

# Propagation's goal (issue 22; it was 1 s); a revocation's stays 1 s.
GOAL_P99 = 0.15
REVOCATION_GOAL_P99 = 1.0


def _time(value: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(value.replace('Z', '+00:00')).timestamp()


_SESSIONS = {}


def session(site):
    """One admin session per site, kept: a token per probe would cost
    each site a password check and crowd out what is being measured."""
    if site.name not in _SESSIONS:
        _SESSIONS[site.name] = site.admin_session()
    return _SESSIONS[site.name]


def feed(site, since, types='role'):
    """Every change of ``types`` after cursor ``since``, and the cursor
    after them (to ask from next time)."""
    sess, out = session(site), []
    while True:
        page = sess.get(f'{site.url}/sync/changes', params={
            'since': since, 'limit': 1000, 'types': types}).json()
        out += page['changes']
        since = page['next']
        if not page['more']:
            return out, since


def histogram(values, step=0.1, width=40) -> list[str]:
    """A text plot of the latency distribution: one line per ``step``
    seconds, a bar scaled to the fullest bucket, and its count."""
    buckets: dict[int, int] = {}
    for v in values:
        buckets[int(v / step)] = buckets.get(int(v / step), 0) + 1
    top = max(buckets.values())
    lines = []
    for n in range(min(buckets), max(buckets) + 1):
        count = buckets.get(n, 0)
        bar = '#' * max(1, round(width * count / top)) if count else ''
        lines.append(f'{n * step:4.1f}-{(n + 1) * step:4.1f} s | '
                     f'{bar:<{width}} {count}')
    return lines


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--spokes', type=int, default=3)
    parser.add_argument('--resources', type=int, default=3000)
    parser.add_argument('--changes', type=int, default=60)
    parser.add_argument('--rate', type=float, default=2.0,
                        help='hub changes per second during propagation')
    parser.add_argument('--revocations', type=int, default=0,
                        help='then revoke this many tokens at the hub '
                        '(logouts) at --rate per second and time each '
                        "revocation event's arrival at every spoke")
    parser.add_argument('--burst', type=int, default=0,
                        help='then make this many changes at once and time '
                        'until every spoke holds them (fan-out)')
    parser.add_argument('--processes', type=int, default=2,
                        help='uWSGI processes per spoke (1 lets more '
                        'spokes fit on a small machine)')
    parser.add_argument('--threads', type=int, default=1,
                        help='threads per uWSGI process of a spoke; a spoke '
                        'needs 2 workers in all, as the agent keeps a '
                        'long-poll open at each (for what flows upward) '
                        'and would otherwise hold its only worker')
    parser.add_argument('--keepalive', action='store_true',
                        help="serve every site through uWSGI's HTTP router "
                        'with keep-alive (--http --http-keepalive) instead '
                        'of --http-socket, which closes each connection '
                        'after its answer')
    parser.add_argument('--batch-items', type=int, default=1000,
                        help="the agent's batch_items (the spokes' "
                        'max_page_size, 1000, caps it)')
    parser.add_argument('--batch-bytes', type=int, default=100000,
                        help="the agent's batch_bytes (its default, under "
                        "Keystone's default body limit: the spokes take "
                        'compressed batches, so 1,000 items fit; the '
                        'spokes here accept bodies up to 64 MiB, for '
                        'larger values)')
    agent_bench.add_options(parser)
    agent_ha.add_options(parser)
    args = parser.parse_args(argv)
    if args.members and not args.burst:
        parser.error('--members needs --burst (the fan-out it times)')
    return args


def make_sites(args, workdir):
    """The hub and the spokes, each a copy of one database made by the
    db_syncs (they cost seconds each, which fifty spokes would feel); each
    is then bootstrapped on its own."""
    db = backends.get('sqlite', workdir)
    template = sites.Site('template', f'{workdir}/template',
                          db.create('template'))
    template.write_config()
    template.sync_schema()
    hub = sites.Site('hub', f'{workdir}/hub', db.clone('template', 'hub'),
                     app=sites.SYNC_APP, keepalive=args.keepalive)
    spokes = [sites.Site(f'spoke{n}', f'{workdir}/spoke{n}',
                         db.clone('template', f'spoke{n}'),
                         app=sites.SYNC_APP, processes=args.processes,
                         threads=args.threads, hub_site_id='hub',
                         keepalive=args.keepalive)
              for n in range(1, args.spokes + 1)]
    return hub, spokes


def join(agent, hub, spokes, cache):
    agent_bench.start([hub] + spokes, cache, schema=False)
    agent_bench.write_clouds(agent, hub, spokes)
    for s in spokes:
        agent('join', '--spoke', s.name)
    if cache:
        # Join re-keyed each spoke's admin user in one of its
        # processes. The in-memory cache backend is per process, so
        # another may still hold the admin under its old id and refuse
        # a login by name (401); in production the cache is shared
        # (memcached) and the invalidation reaches every process.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda s: s.restart(), spokes))


def seed(agent, hub, spokes, resources, started=None):
    """Fill the hub, seed every spoke with ``run --once``: the number of
    resources, the seconds, and the agent's peak memory (MiB).
    ``started()``, if given, is called right before the agent starts."""
    hs = session(hub)
    agent_bench.fill(hub, batch_items(resources), chunk=500, sess=hs)
    types = hs.get(f'{hub.url}/sync').json()['sync']['resource_types']
    total = sum(hs.get(f'{hub.url}/sync/digest/{t}').json()['digest']
                ['count'] for t in types)
    if started:
        started()
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    agent('run', '--once')
    seed_s = time.perf_counter() - start
    # ru_maxrss of children is the largest of any child so far (KiB):
    # the agent is the only child that can be larger than the join.
    rss_mb = max(before, resource.getrusage(
        resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    rate = total / seed_s
    print(f'seed: {total} resources to each of {len(spokes)} spokes '
          f'in {seed_s:.1f} s ({rate:.0f} resources/s per spoke, '
          f'{rate * len(spokes):.0f} resources/s in all)', flush=True)
    for s in spokes:
        # Joined and seeded: each spoke's admin is the hub's admin.
        s.admin_password = hub.admin_password
    # The seed changed each spoke admin's password, which revoked its
    # tokens as of that second; Keystone's revocation events have a
    # resolution of one second, so a token issued within it is
    # refused (401). Wait it out.
    time.sleep(1.1)
    return total, seed_s, rss_mb


def heads(spokes) -> dict[str, str]:
    """Each spoke's feed cursor now."""
    return {s.name: session(s).get(f'{s.url}/sync')
            .json()['sync']['head_cursor'] for s in spokes}


def until_everywhere(spokes, since, wanted, seconds, pause, types='role'):
    """Follow each spoke's feed from ``since`` until ``wanted`` (called
    with the spoke's name and its new changes; true once that spoke holds
    all it waits for) is true at every spoke, or ``seconds`` pass; the
    names of the spokes still waiting."""
    left = {s.name for s in spokes}
    deadline = time.monotonic() + seconds
    while left and time.monotonic() < deadline:
        for s in spokes:
            if s.name in left:
                changes, since[s.name] = feed(s, since[s.name], types)
                if wanted(s.name, changes):
                    left.discard(s.name)
        if left:
            time.sleep(pause)
    return left


def make_role(hub, sess):
    """One role made at the hub through the ordinary API; its id."""
    return sess.post(f'{hub.url}/roles', json={'role': {
        'name': f'lat-{uuid.uuid4().hex}'}}).json()['role']['id']


def make_revocation(hub, sess):
    """One revocation event at the hub: a fresh token of the admin,
    revoked through the ordinary API (a logout); None (the event's id is
    read from the hub's feed)."""
    token = requests.post(f'{hub.url}/auth/tokens', json={'auth': {
        'identity': {'methods': ['password'], 'password': {'user': {
            'name': sites.ADMIN_USER, 'domain': {'id': 'default'},
            'password': hub.admin_password}}},
        'scope': {'system': {'all': True}}}}).headers['X-Subject-Token']
    sess.delete(f'{hub.url}/auth/tokens',
                headers={'X-Subject-Token': token}).raise_for_status()


def propagation(hub, spokes, changes, rate, make=make_role, types='role'):
    """Make ``changes`` changes of ``types`` at the hub at ``rate`` per
    second (``make``: one of them, through the ordinary API); the latency
    of each at each spoke."""
    since = session(hub).get(f'{hub.url}/sync').json()['sync'][
        'head_cursor']
    spoke_since = heads(spokes)
    s = hub.admin_session()
    s.get_token()
    t0 = time.monotonic()
    for n in range(changes):
        delay = t0 + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        make(hub, s)
    hub_at = {c['id']: _time(c['changed_at'])
              for c in feed(hub, since, types)[0] if c['op'] == 'create'}
    if len(hub_at) < changes:
        raise SystemExit(f'the hub recorded {len(hub_at)} of {changes} '
                         f'{types} changes')
    latencies = {s.name: {} for s in spokes}

    def arrived(name, got):
        for c in got:
            if c['id'] in hub_at and c['op'] == 'create':
                latencies[name][c['id']] = \
                    _time(c['changed_at']) - hub_at[c['id']]
        return len(latencies[name]) == len(hub_at)

    if until_everywhere(spokes, spoke_since, arrived, 120, 1, types):
        raise SystemExit('changes never reached spokes: ' + str(
            {k: len(hub_at) - len(v) for k, v in latencies.items()
             if len(v) != len(hub_at)}))
    return [v for per in latencies.values() for v in per.values()]


def fanout(hub, spokes, burst):
    """Make ``burst`` roles at the hub at once; the seconds until every
    spoke holds them."""
    since = heads(spokes)
    items = []
    for _ in range(burst):
        i = uuid.uuid4().hex
        items.append({'type': 'role', 'id': i, 'op': 'upsert',
                      'resource': {'id': i, 'name': f'burst-{i}',
                                   'domain_id': None, 'description': None,
                                   'options': {}, 'extra': {}}})
    left = {s.name: {item['id'] for item in items} for s in spokes}
    start = time.perf_counter()
    agent_bench.fill(hub, items, chunk=500, sess=session(hub))

    def arrived(name, changes):
        left[name].difference_update(c['id'] for c in changes)
        return not left[name]

    if until_everywhere(spokes, since, arrived, 300, 0.5):
        raise SystemExit('burst never reached spokes: ' + str(
            {k: len(v) for k, v in left.items() if v}))
    fanout_s = time.perf_counter() - start
    print(f'fan-out: {burst} changes reached all '
          f'{len(spokes)} spokes in {fanout_s:.1f} s', flush=True)
    return fanout_s


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix='kssync-bench-agent-')
    hub, spokes = make_sites(args, workdir)
    # Several members need a state database every one of them reaches.
    state = agent_ha.StateDB(workdir) if args.members else None
    agent = agent_bench.Agent(
        workdir, [s.name for s in spokes], args.debug,
        # The agent's defaults: batches go compressed, 1,000 items within
        # 100,000 bytes. The spokes take bodies up to 64 MiB
        # (EXTRA_CONFIG), for --batch-bytes beyond Keystone's limit.
        f'batch_items = {args.batch_items}\n'
        f'batch_bytes = {args.batch_bytes}\n',
        state_url=state.url if state else None)
    runner = ha = None
    try:
        join(agent, hub, spokes, args.cache)
        total, seed_s, rss_mb = seed(agent, hub, spokes, args.resources)
        runner = agent.start('run')
        time.sleep(3)
        every = propagation(hub, spokes, args.changes, args.rate)
        revoked = (propagation(hub, spokes, args.revocations, args.rate,
                               make_revocation, 'revocation_event')
                   if args.revocations else None)
        fanout_s = fanout(hub, spokes, args.burst) if args.burst else None
        if args.members:
            runner.terminate()
            runner.wait(timeout=60)
            runner = None
            ha = agent_ha.run(args, agent, workdir, state, hub, spokes,
                              fanout, make_role, session, until_everywhere,
                              heads)
    finally:
        if runner:
            runner.terminate()
            runner.wait(timeout=60)
        agent_bench.clean_up([hub] + spokes, workdir, args.keep)
        if state:
            state.drop()
    rate = total / seed_s
    p50, p99 = percentile(every, 0.50), percentile(every, 0.99)
    print(f'propagation: {args.changes} changes at {args.rate}/s to '
          f'{len(spokes)} spokes: p50 {p50:.3f} s, p99 {p99:.3f} s, max '
          f'{max(every):.3f} s (goal p99 <= {GOAL_P99} s: '
          f'{"met" if p99 <= GOAL_P99 else "MISSED"})')
    if revoked:
        print(f'revocation propagation: {args.revocations} logouts at '
              f'{args.rate}/s to {len(spokes)} spokes: p50 '
              f'{percentile(revoked, 0.50):.3f} s, p99 '
              f'{percentile(revoked, 0.99):.3f} s (goal p99 <= '
              f'{REVOCATION_GOAL_P99} s)')
    print('latency distribution (every change at every spoke):')
    for line in histogram(every):
        print('    ' + line)
    figures = {}
    if ha:
        first = ha['members'][0]
        print(f'several agents: fan-out of {args.burst} changes to '
              f'{len(spokes)} spokes (lease {args.lease:g} s):')
        for n in ha['members']:
            print(f'    {n} member(s): {ha["fanout_s"][n]:.1f} s, '
                  f'{ha["fanout_s"][n] / ha["fanout_s"][first]:.2f}x of '
                  f'{first} (spokes per member '
                  f'{ha["spokes_per_member"][n]})')
        print(f'    failover after SIGKILL: {ha["failover_s"]:.1f} s '
              f'(lease {args.lease:g} s; seen by the bench after '
              f'{ha["failover_seen_s"]:.1f} s)')
        figures = {
            'ha_members': ha['members'],
            'ha_fanout_s': {str(n): round(t, 2)
                            for n, t in ha['fanout_s'].items()},
            'ha_fanout_ratio': {
                str(n): round(t / ha['fanout_s'][first], 3)
                for n, t in ha['fanout_s'].items()},
            'ha_spokes_per_member': {
                str(n): v for n, v in ha['spokes_per_member'].items()},
            'ha_lease_s': args.lease, 'ha_heartbeat_s': args.heartbeat,
            'failover_s': ha['failover_s'],
            'failover_seen_s': ha['failover_seen_s'],
            'failover_members': ha['failover_members'],
            'failover_victim_spokes': ha['failover_victim_spokes'],
            'failover_victim_was_leader': ha['failover_victim_was_leader'],
        }
    print(json.dumps({
        'spokes': len(spokes), 'keystone_cache': args.cache,
        'keepalive': args.keepalive,
        'seed_resources': total,
        'seed_s': round(seed_s, 2),
        'seed_resources_per_s_per_spoke': round(rate, 1),
        'propagation_changes': args.changes,
        'propagation_rate': args.rate,
        'propagation_p50_s': round(p50, 3),
        'propagation_p99_s': round(p99, 3),
        'propagation_max_s': round(max(every), 3),
        'propagation_mean_s': round(statistics.mean(every), 3),
        'agent_rss_mb': round(rss_mb, 1),
        'revocations': args.revocations or None,
        'revocation_p50_s': (round(percentile(revoked, 0.50), 3)
                             if revoked else None),
        'revocation_p99_s': (round(percentile(revoked, 0.99), 3)
                             if revoked else None),
        'fanout_changes': args.burst or None,
        'fanout_converge_s': (round(fanout_s, 2) if fanout_s is not None
                              else None),
        **figures,
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
