"""The benchmark suite: every figure the project claims, in one run.

Runs the benchmarks of this directory one after the other (never side by
side: each one's figures are ratios or times measured within itself, and a
second benchmark beside it would only add noise), reads the JSON object each
prints last, and prints, last, one JSON object with:

- ``capture_overhead_ratio``: Keystone API writes with the extension
  installed as a deployment runs it (capture triggers, our entry point) /
  the same Keystone without it (its own entry point, no triggers), on
  SQLite (capture_overhead.py --capture-app sync), with
  ``capture_overhead_ci95``, the paired 95% interval. Goal <= 1.05, the
  interval below 1.10.
- ``capture_triggers_ratio``: the same, with both sites served by our
  entry point, so that they differ in the triggers alone
  (``--plain-app sync``), with ``capture_triggers_ci95``. Same goal.
- ``seed_resources_per_s``: resources per second a fresh spoke is seeded
  with by ``keystone-sync run --once`` (agent_sync.py), three spokes at
  once. Goal >= 2,000 per spoke (issue 22; it was 1,000).
- ``seed_vs_native_api_ratio``: that rate / the ordinary API's create rate
  (batch_rate.py's native rounds, in this run). Goal >= 50.
- ``seed_ceiling_resources_per_s``: the same mix written straight into an
  empty Keystone database with the capture triggers, through SQLAlchemy
  Core multi-row inserts (seed_ceiling.py, in this run), and
  ``seed_vs_ceiling_ratio``: the seed rate / that ceiling. Goal >= 0.25.
- ``propagation_p50_s``, ``propagation_p99_s``: hub change to every spoke,
  three spokes, 2 changes/s (agent_sync.py). Goal p99 <= 0.15 s (issue
  22; it was 1 s).
- ``reconcile_bytes_ratio``, ``reconcile_s``: reconcile of a spoke with 10
  differences, bytes / a full listing's bytes (reconcile.py). Goals <= 0.01
  and <= 10 s.
- ``fanout_spokes``, ``fanout_converge_s``: that many real spokes converge
  after a burst of changes at the hub (agent_sync.py --burst). Goal <= 60 s.
- ``agent_rss_mb``: the agent's peak memory while seeding
  (``agent_rss_resources`` resources). Goal <= 200.
- ``batch_resources_per_s``: ``POST /v3/sync/batch`` into a fresh Keystone
  (batch_rate.py). Goal >= 1,000.

plus ``goals`` (each figure: met or MISSED), the sizes used, and how long
each part took. ``--quick`` uses small sizes (a few minutes on 2 cores);
``--smoke`` the least that runs every benchmark and reports every figure
(what CI runs, about three minutes on 2 cores); the full
run uses the sizes the goals name (100,000 resources, 50 spokes) and
takes much longer.

    python bench/run.py --quick
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# The extension as deployed against Keystone without it; then the
# triggers alone (both sites on our entry point).
DEPLOYED = ['--capture-app', 'sync']
TRIGGERS = ['--capture-app', 'sync', '--plain-app', 'sync']
QUICK = {
    'capture': ['--backend', 'sqlite', '--rounds', '6', '--ops', '2',
                *DEPLOYED],
    'triggers': ['--backend', 'sqlite', '--rounds', '6', '--ops', '2',
                 *TRIGGERS],
    'batch': ['--backend', 'sqlite', '--cache', '--rounds', '1',
              '--resources', '2000', '--chunk', '1000', '--native', '8'],
    'agent': ['--cache', '--spokes', '3', '--resources', '2000',
              '--changes', '40', '--rate', '2', '--burst', '1000'],
    'fanout': None,   # the agent run's own burst, with its spokes
    'reconcile': ['--cache', '--resources', '5000'],
    'ceiling': ['--backend', 'sqlite', '--rounds', '1', '--resources',
                '2000'],
}
# The least that still runs every benchmark end to end and reports every
# figure: what CI runs (test_bench_smoke.py), where the figures say
# nothing (two cores shared with the other tests) and only the suite's
# working is checked.
SMOKE = {
    'capture': ['--backend', 'sqlite', '--rounds', '3', '--ops', '2',
                *DEPLOYED],
    'triggers': ['--backend', 'sqlite', '--rounds', '3', '--ops', '2',
                 *TRIGGERS],
    'batch': ['--backend', 'sqlite', '--cache', '--rounds', '1',
              '--resources', '500', '--chunk', '250', '--native', '4'],
    'agent': ['--cache', '--spokes', '3', '--resources', '300',
              '--changes', '10', '--rate', '2', '--burst', '200'],
    'fanout': None,
    'reconcile': ['--cache', '--resources', '1000'],
    'ceiling': ['--backend', 'sqlite', '--rounds', '1', '--resources',
                '500'],
}
FULL = {
    'capture': ['--backend', 'sqlite', '--rounds', '20', '--ops', '2',
                *DEPLOYED],
    'triggers': ['--backend', 'sqlite', '--rounds', '20', '--ops', '2',
                 *TRIGGERS],
    'batch': ['--backend', 'sqlite', '--cache', '--rounds', '3',
              '--resources', '2000', '--chunk', '1000', '--native', '12'],
    'agent': ['--cache', '--spokes', '3', '--resources', '100000',
              '--changes', '100', '--rate', '2'],
    'reconcile': ['--cache', '--resources', '100000'],
    'ceiling': ['--backend', 'sqlite', '--rounds', '3', '--resources',
                '20000'],
    # Last: fifty spokes are the most the machine must hold at once.
    # One process of two threads per spoke: the agent's upward long-poll
    # holds one worker of every spoke.
    'fanout': ['--cache', '--spokes', '50', '--processes', '1',
               '--threads', '2', '--resources', '100', '--changes', '10',
               '--rate', '2', '--burst', '1000'],
}
SCRIPTS = {'capture': 'capture_overhead.py',
           'triggers': 'capture_overhead.py', 'batch': 'batch_rate.py',
           'agent': 'agent_sync.py', 'fanout': 'agent_sync.py',
           'reconcile': 'reconcile.py', 'ceiling': 'seed_ceiling.py'}
GOALS = {
    'capture_overhead_ratio': ('<=', 1.05),
    'capture_triggers_ratio': ('<=', 1.05),
    'seed_resources_per_s': ('>=', 2000),
    'seed_vs_native_api_ratio': ('>=', 50),
    'seed_vs_ceiling_ratio': ('>=', 0.25),
    'propagation_p99_s': ('<=', 0.15),
    'reconcile_bytes_ratio': ('<=', 0.01),
    'reconcile_s': ('<=', 10),
    'fanout_converge_s': ('<=', 60),
    'agent_rss_mb': ('<=', 200),
    'batch_resources_per_s': ('>=', 1000),
}

# Ratios whose paired 95% interval must also lie below a bound.
INTERVALS = {'capture_overhead_ratio': 1.10, 'capture_triggers_ratio': 1.10}


def run(name: str, argv: list[str]) -> tuple[dict, float]:
    """Run one benchmark, its output passed through; its last line, parsed
    (a benchmark that fails or prints no JSON stops the suite)."""
    cmd = [sys.executable, os.path.join(HERE, SCRIPTS[name]), *argv]
    print(f'==> {" ".join(cmd[1:])}', flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=HERE)
    last = ''
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.strip():
            last = line
    if proc.wait():
        raise SystemExit(f'{SCRIPTS[name]} failed (exit {proc.returncode})')
    return json.loads(last), time.monotonic() - start


def judge(figures: dict) -> dict:
    out = {}
    for key, (how, goal) in GOALS.items():
        value = figures.get(key)
        if value is None:
            continue
        ok = value <= goal if how == '<=' else value >= goal
        rule = f'{how} {goal}'
        interval = figures.get(key.replace('_ratio', '_ci95'))
        if key in INTERVALS and interval is not None:
            # The noise must not hide an overhead of 10%.
            ok = ok and interval[1] < INTERVALS[key]
            rule += f', 95% interval < {INTERVALS[key]}'
        out[key] = f'{"met" if ok else "MISSED"} ({rule})'
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--quick', action='store_true',
                      help='small sizes: a few minutes on 2 cores')
    size.add_argument('--smoke', action='store_true',
                      help='the least that runs every benchmark and '
                      'reports every figure (what CI runs; the figures '
                      'mean little at these sizes)')
    args = parser.parse_args(argv)
    mode = 'quick' if args.quick else 'smoke' if args.smoke else 'full'
    plan = {'quick': QUICK, 'smoke': SMOKE, 'full': FULL}[mode]
    took, raw = {}, {}
    for name, argv_ in plan.items():
        if argv_ is not None:
            raw[name], took[name] = run(name, argv_)
    capture, batch, agent = raw['capture'], raw['batch'], raw['agent']
    triggers = raw['triggers']
    fanout = raw.get('fanout', agent)
    reconcile = raw['reconcile']
    seed = agent['seed_resources_per_s_per_spoke']
    ceiling = raw['ceiling']['ceiling_resources_per_s']
    figures = {
        'capture_overhead_ratio': capture['capture_overhead_ratio']['sqlite'],
        'capture_overhead_ci95': capture['paired_ratio_ci95']['sqlite'],
        'capture_triggers_ratio': triggers['capture_overhead_ratio']['sqlite'],
        'capture_triggers_ci95': triggers['paired_ratio_ci95']['sqlite'],
        'seed_resources_per_s': seed,
        'seed_vs_native_api_ratio': round(
            seed / batch['native_creates_per_s'], 1),
        'seed_ceiling_resources_per_s': ceiling,
        'seed_vs_ceiling_ratio': round(seed / ceiling, 3),
        'propagation_p50_s': agent['propagation_p50_s'],
        'propagation_p99_s': agent['propagation_p99_s'],
        'reconcile_bytes_ratio': reconcile['reconcile_bytes_ratio'],
        'reconcile_s': reconcile['reconcile_s'],
        'fanout_spokes': fanout['spokes'],
        'fanout_converge_s': fanout['fanout_converge_s'],
        'agent_rss_mb': agent['agent_rss_mb'],
        'agent_rss_resources': agent['seed_resources'],
        'batch_resources_per_s': batch['batch_resources_per_s'],
    }
    figures['goals'] = judge(figures)
    figures['mode'] = mode
    figures['sizes'] = {name: ' '.join(a) for name, a in plan.items()
                        if a is not None}
    figures['seconds'] = {name: round(t) for name, t in took.items()}
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
