"""The agent's own share of propagation latency, without Keystone.

The real agent (``keystone-sync run``'s ``Agent``, continuous, not
``--once``) between in-memory fake sites
(:mod:`keystone_syncext.testing.fakesite`) served over HTTP on loopback,
the hub's feed long-polling as a real hub's does (a read that finds
nothing waits until a change is made or ``wait`` passes). Roles are
made at the hub at ``--rate`` per second; the latency of each at each
spoke is the time from the hub's write to the spoke holding it. What it
measures is what the agent adds (the feed thread, the outbox, the wake-up
of the spoke threads, the batch write), not Keystone's share, so that
two trees of the agent can be compared on a loaded machine in seconds.

The fake site's HTTP interface is the same since before issue 18's
restructuring, so the same script runs against either tree::

    PYTHONPATH=<tree> python bench/agent_latency.py --changes 40 --rate 4

The last line of output is one JSON object with the figures. Not part of
bench/run.py.
"""

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import threading
import time

from oslo_config import cfg

from keystone_syncext.agent import client
from keystone_syncext.agent import opts
from keystone_syncext.agent import runner
from keystone_syncext.agent import state as state_mod
from keystone_syncext.testing import fakesite


class _News:
    """Long-polling for the fake sites: a generation bumped by every
    write, waited on outside the site's lock (which a request holds)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.generation = 0

    def install(self):
        put, answer = fakesite.FakeSite.put, fakesite.FakeSite.answer
        news = self

        def noted_put(site, *args, **kwargs):
            put(site, *args, **kwargs)
            with news.cond:
                news.generation += 1
                news.cond.notify_all()

        def long_poll(site, method, path, query, body, headers):
            deadline = time.monotonic() + float(query.get('wait') or 0)
            while True:
                with news.cond:
                    seen = news.generation
                status, out, extra = answer(site, method, path, query, body,
                                            headers)
                left = deadline - time.monotonic()
                if status != 200 or not isinstance(out, dict) or \
                        'changes' not in out or out['changes'] or left <= 0:
                    return status, out, extra
                with news.cond:
                    news.cond.wait_for(
                        lambda seen=seen: news.generation != seen, left)

        fakesite.FakeSite.put, fakesite.FakeSite.answer = noted_put, long_poll


def _conf():
    conf = cfg.ConfigOpts()
    opts.register(conf)
    conf([], project='keystone-sync-bench', default_config_files=[])
    for k, v in dict(poll_wait=5, spoke_originated_types=[],
                     progress=False, request_timeout=10.0).items():
        conf.set_override(k, v)
    return conf


def _latencies(hub, spokes, changes, rate) -> list[float]:
    lat, t0 = [], time.monotonic()
    for n in range(changes):
        delay = t0 + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rid = f'lat{n}'
        start = time.monotonic()
        hub.put('role', {'id': rid, 'name': rid, 'domain_id': None})
        left = set(spokes)
        while left:
            for s in list(left):
                if rid in s.data['role']:
                    lat.append(time.monotonic() - start)
                    left.discard(s)
            time.sleep(0.002)
    return lat


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--spokes', type=int, default=3)
    parser.add_argument('--changes', type=int, default=40)
    parser.add_argument('--rate', type=float, default=4.0,
                        help='hub changes per second')
    args = parser.parse_args(argv)
    _News().install()
    conf = _conf()
    hub = fakesite.FakeSite('hub')
    spokes = [fakesite.FakeSite(f'spoke{n}')
              for n in range(1, args.spokes + 1)]
    hub.put('role', {'id': 'r0', 'name': 'r0', 'domain_id': None})
    workdir = tempfile.mkdtemp(prefix='kssync-bench-latency-')
    with contextlib.ExitStack() as stack:
        for s in [hub] + spokes:
            stack.enter_context(s.serve())
        agent = runner.Agent(
            conf, client.from_conf(conf, 'hub', cloud=hub.cloud()),
            [client.from_conf(conf, s.name, cloud=s.cloud())
             for s in spokes],
            state_mod.State(f'sqlite:///{workdir}/state.sqlite'))
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        while not all('r0' in s.data['role'] for s in spokes):
            time.sleep(0.01)      # seeded
        time.sleep(1)
        lat = sorted(_latencies(hub, spokes, args.changes, args.rate))
        agent.stop.set()
        thread.join(conf.poll_wait + 10)
    shutil.rmtree(workdir, ignore_errors=True)
    p50, p90 = statistics.median(lat), lat[int(0.9 * (len(lat) - 1))]
    print(f'agent latency: {args.changes} changes at {args.rate}/s to '
          f'{args.spokes} spokes: p50 {p50:.3f} s, p90 {p90:.3f} s, max '
          f'{lat[-1]:.3f} s')
    print(json.dumps({'agent_latency_p50_s': round(p50, 4),
                      'agent_latency_p90_s': round(p90, 4),
                      'agent_latency_max_s': round(lat[-1], 4),
                      'samples': len(lat)}))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
