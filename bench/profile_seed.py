"""Where a spoke spends a seed: py-spy samples one spoke's uWSGI workers
while ``keystone-sync run --once`` seeds it, and this prints the frames
that hold most samples.

The sites and the seed are ``agent_sync.py``'s (its options apply; one
spoke by default). py-spy (``pip install py-spy``) records the spoke's
uWSGI master and its workers (``--subprocesses``) from the start of the
seed to its end, and the agent's process (``run --once``) from its start
to its end, threads apart, in py-spy's collapsed-stack format, kept as
``--output`` and ``--output``.agent. Printed: the seed's rate, then per
process the share of samples whose stack holds each frame (inclusive),
for the ``--top`` frames of this project's code and of everything; idle
samples count too (a uWSGI worker waiting for a request, an agent thread
waiting for an answer). Not part of ``bench/run.py``: it
explains a figure, it is not one.

``--cpu`` samples nothing and prints instead where the machine's CPU
went during the seed: the CPU seconds of the hub's and of each spoke's
uWSGI master and workers (``/proc``), and of the agent's process, with
each one's share.

    python bench/profile_seed.py --resources 5000 --cache \
        --output /tmp/seed.txt
"""

import collections
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

import agent_bench
import agent_sync

SPY = shutil.which('py-spy') or os.path.join(
    os.path.dirname(sys.executable), 'py-spy')
# Sampling without stopping the process (--nonblocking): a blocking
# sampler at this rate would slow what it measures.
RECORD = [SPY, 'record', '--nonblocking', '--rate', '100', '--format',
          'raw']


def record(pid: int, output: str) -> subprocess.Popen:
    """Sample process ``pid`` and its children (a site's uWSGI master
    and workers), idle frames included, until interrupted."""
    return subprocess.Popen(
        RECORD + ['--pid', str(pid), '--subprocesses', '--idle',
                  '--output', output],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def shares(path: str) -> tuple[int, collections.Counter, collections.Counter]:
    """Samples in all, and per frame the samples whose stack holds it, for
    every frame and for this project's."""
    total, every, ours = 0, collections.Counter(), collections.Counter()
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip('\n').rpartition(' ')
            if not stack or not count.isdigit():
                continue
            n = int(count)
            # Only busy samples: a worker waiting for its next request
            # sits in uWSGI's accept, outside Python.
            frames = set(stack.split(';'))
            total += n
            for frame in frames:
                every[frame] += n
                if 'keystone_syncext' in frame:
                    ours[frame] += n
    return total, every, ours


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its children so
    far: a site's uWSGI master and its workers."""
    tick = os.sysconf('SC_CLK_TCK')
    spent = 0
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                fields = f.read().rpartition(')')[2].split()
        except OSError:
            continue   # ended meanwhile
        # after the name: state, ppid, ..., utime (12th), stime (13th)
        if int(entry) == pid or int(fields[1]) == pid:
            spent += int(fields[11]) + int(fields[12])
    return spent / tick


def cpu_split(agent, hub, spokes, resources) -> int:
    """Seed without sampling; print each process's CPU seconds."""
    sites_ = [hub] + spokes
    marks = {}

    def started():
        # agent_sync.seed fills the hub first: counted from the agent's
        # start, so the fill's writes are not the hub's share of a seed.
        marks['before'] = {s.name: tree_cpu(s.proc.pid) for s in sites_}
        marks['own'] = resource.getrusage(resource.RUSAGE_CHILDREN)

    total, seed_s, _ = agent_sync.seed(agent, hub, spokes, resources,
                                       started=started)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, own = marks['before'], marks['own']
    spent = {s.name: tree_cpu(s.proc.pid) - before[s.name] for s in sites_}
    spent['agent'] = (after.ru_utime + after.ru_stime
                      - own.ru_utime - own.ru_stime)
    cpus = os.cpu_count()
    whole = sum(spent.values())
    print(f'seed {total} resources to each of {len(spokes)} spokes in '
          f'{seed_s:.1f} s; {whole:.1f} CPU seconds in all, of '
          f'{seed_s * cpus:.1f} the {cpus} CPUs had')
    for who, sec in spent.items():
        print(f'  {who:<8} {sec:7.1f} s  {100 * sec / whole:5.1f}%  '
              f'{1e6 * sec / total:8.0f} us per resource')
    print(json.dumps({'seed_resources': total, 'seed_s': round(seed_s, 2),
                      'cpu_s': {k: round(v, 2) for k, v in spent.items()}}))
    return 0


def main(argv=None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    only_cpu = '--cpu' in argv
    if only_cpu:
        argv.remove('--cpu')
    output, top = '/tmp/kssync-seed-profile.txt', 25
    for flag in ('--output', '--top'):
        if flag in argv:
            i = argv.index(flag)
            value = argv.pop(i + 1)
            argv.pop(i)
            output, top = ((value, top) if flag == '--output'
                           else (output, int(value)))
    if '--spokes' not in argv:
        argv += ['--spokes', '1']
    args = agent_sync.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix='kssync-bench-profile-')
    hub, spokes = agent_sync.make_sites(args, workdir)
    agent = agent_bench.Agent(
        workdir, [s.name for s in spokes], args.debug,
        f'batch_items = {args.batch_items}\n'
        f'batch_bytes = {args.batch_bytes}\n')
    try:
        agent_sync.join(agent, hub, spokes, args.cache)
        if only_cpu:
            return cpu_split(agent, hub, spokes, args.resources)
        # The agent's own process, sampled from its start to its end.
        agent_bench.AGENT[:0] = RECORD + ['--idle', '--threads', '--output',
                                          output + '.agent', '--']
        spy = record(spokes[0].proc.pid, output)
        total, seed_s, _ = agent_sync.seed(agent, hub, spokes,
                                           args.resources)
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=120)
    finally:
        agent_bench.clean_up([hub] + spokes, workdir, args.keep)
    print(f'seed {total} resources in {seed_s:.1f} s')
    for who, path in ((spokes[0].name, output), ('agent', output + '.agent')):
        samples, every, ours = shares(path)
        print(f'\n== {who}: {samples} samples ({path})')
        for title, counter in (('this project', ours),
                               ('everything', every)):
            print(f'{title}: share of samples whose stack holds the frame')
            for frame, n in counter.most_common(top):
                print(f'  {100 * n / samples:5.1f}%  {frame[:160]}')
    print(json.dumps({'samples': samples, 'seed_resources': total,
                      'seed_s': round(seed_s, 2), 'profile': output}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
