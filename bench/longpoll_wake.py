"""How soon a site's waiting long-poll answers after a change commits
there: the hub's share of propagation, without the agent or the spokes.

One real Keystone 30 site on SQLite (uWSGI, our WSGI entry point),
served as ``--server`` says: ``processes``, two single-threaded workers
(the long-poll holds one, so every write lands in the other process);
``threads``, one process of four threads (a write lands in the waiting
long-poll's own process). A client long-polls ``GET
/v3/sync/changes?types=role&wait=30`` in a loop, as the agent's feed
thread follows the hub, while ``--changes`` roles are made through the
ordinary API at ``--rate`` per second. Per role: the seconds from its
commit (``changed_at`` in the feed: the database's clock, this machine's)
to the arrival at the client of the answer that carried it.

Each request goes out on a new connection (uWSGI's ``--http-socket``
closes them anyway), and the token is taken once: what is timed is the
site's wait and answer.

    python bench/longpoll_wake.py --server processes --changes 60 --rate 2

``--idle S`` first measures, for S seconds, what the site's processes
spend (CPU seconds, from ``/proc``) while the client's long-poll waits
and nothing changes: the cost of a waiting long-poll's looks.
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid

from agent_sync import _time
from agent_sync import percentile
from batch_rate import CACHE_CONFIG
from batch_rate import EXTRA_CONFIG
from profile_seed import tree_cpu
import requests

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--server', choices=sorted(sites.SERVERS),
                        default='processes')
    parser.add_argument('--changes', type=int, default=60)
    parser.add_argument('--rate', type=float, default=2.0)
    parser.add_argument('--cache', action='store_true')
    parser.add_argument('--idle', type=float, default=0.0,
                        help='seconds to measure the site\'s CPU while '
                        'the long-poll waits and nothing changes, first')
    return parser.parse_args(argv)


def follow(url, headers, since, stop, arrived):
    """Long-poll from ``since`` until ``stop`` is set; ``arrived``: role
    id -> (arrival time, changed_at)."""
    while not stop.is_set():
        try:
            page = requests.get(f'{url}/sync/changes', headers=headers,
                                params={'since': since, 'types': 'role',
                                        'wait': 30, 'limit': 500},
                                timeout=60).json()
        except requests.ConnectionError:
            if stop.is_set():   # the site stopped under the last poll
                return
            raise
        now = time.time()
        for c in page['changes']:
            if c['op'] == 'create':
                arrived[c['id']] = (now, _time(c['changed_at']))
        since = page['next']


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix='kssync-bench-wake-')
    db = backends.get('sqlite', workdir)
    site = sites.Site('hub', f'{workdir}/hub', db.create('hub'),
                      app=sites.SYNC_APP, server=args.server)
    stop = threading.Event()
    try:
        site.setup(EXTRA_CONFIG + (CACHE_CONFIG if args.cache else ''))
        site.start()
        token = site.admin_session().get_token()
        headers = {'X-Auth-Token': token}
        since = requests.get(f'{site.url}/sync', headers=headers).json()[
            'sync']['head_cursor']
        arrived: dict = {}
        poller = threading.Thread(target=follow, daemon=True, args=(
            site.url, headers, since, stop, arrived))
        poller.start()
        time.sleep(2)
        idle_share = None
        if args.idle > 0:
            before, t_idle = tree_cpu(site.proc.pid), time.monotonic()
            time.sleep(args.idle)
            idle_share = ((tree_cpu(site.proc.pid) - before)
                          / (time.monotonic() - t_idle))
        made = []
        t0 = time.monotonic()
        for n in range(args.changes):
            delay = t0 + n / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            role = {'role': {'name': f'w-{uuid.uuid4().hex}'}}
            made.append(requests.post(f'{site.url}/roles', headers=headers,
                                      json=role).json()['role']['id'])
        deadline = time.monotonic() + 60
        while set(made) - set(arrived) and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
    finally:
        site.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    missing = set(made) - set(arrived)
    if missing:
        raise SystemExit(f'{len(missing)} roles never arrived')
    lat = [arrived[i][0] - arrived[i][1] for i in made]
    figures = {'server': args.server, 'changes': args.changes,
               'rate': args.rate,
               'wake_p50_s': round(percentile(lat, 0.5), 4),
               'wake_p90_s': round(percentile(lat, 0.9), 4),
               'wake_p99_s': round(percentile(lat, 0.99), 4),
               'wake_max_s': round(max(lat), 4),
               'wake_mean_s': round(statistics.mean(lat), 4),
               'idle_cpu_share': (round(idle_share, 4)
                                  if idle_share is not None else None)}
    print(f'{args.server}: commit to long-poll answer over {args.changes} '
          f'roles: p50 {figures["wake_p50_s"]:.3f} s, p90 '
          f'{figures["wake_p90_s"]:.3f} s, p99 {figures["wake_p99_s"]:.3f}'
          f' s, max {figures["wake_max_s"]:.3f} s')
    if idle_share is not None:
        print(f'idle, one long-poll waiting: the site used '
              f'{100 * idle_share:.1f}% of a core over {args.idle:.0f} s')
    print(json.dumps(figures))
    return 0


if __name__ == '__main__':
    sys.exit(main())
