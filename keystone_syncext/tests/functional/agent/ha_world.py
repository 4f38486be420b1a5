"""The several-agents drill's world and evidence (test_agent_ha.py):
the members (``keystone-sync run`` processes) and the claims they hold in
the state database, a network namespace cutting one member off from
Redis only, a burst of creates and deletes at the hub, and the reading
of the members' and the spokes' logs that says who wrote what, when
(:func:`member_requests`, :func:`spoke_writes`, :func:`overlaps`)."""

import collections
import dataclasses
import datetime
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from keystone_syncext.agent import state_tables
from keystone_syncext.testing import backends
from keystone_syncext.tests import conftest
from keystone_syncext.tests.functional.agent import harness as base
from keystone_syncext.tests.functional.agent.harness import hex_id

LEASE = 5
HEARTBEAT = 0.5
REDIS_PORT = 6379
REDIS = f'redis://127.0.0.1:{REDIS_PORT}?timeout={LEASE}'
CONVERGE = 180
# Two log lines of one spoke written within this of each other are not
# ordered by their timestamps: the line is written after the batch
# commits, by any of the site's workers.
JITTER = datetime.timedelta(milliseconds=50)
KILLED_WITHIN = datetime.timedelta(seconds=10)
IN_FLIGHT = datetime.timedelta(seconds=5)
# Seconds between a member's lease check before a batch and its send.
SEND_SLACK = 0.5
SPECS = [('hub', conftest.CURRENT), ('spoke1', conftest.CURRENT),
         ('spoke2', conftest.PREVIOUS), ('spoke3', conftest.CURRENT),
         ('spoke4', conftest.CURRENT), ('spoke5', conftest.PREVIOUS),
         ('spoke6', conftest.CURRENT)]

_STAMP = r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) '
# A member's request log (--debug): "<site> POST /sync/batch -> 200".
# Its end and the time it took give its start.
SENT = re.compile(_STAMP + r'\d+ DEBUG \S+ \[(\S+) .*?\] (\S+) POST '
                  r'/sync/batch -> (\d+) in (\d+) ms')
TOOK = re.compile(_STAMP + r'.*now driving spoke (\S+) \(generation (\d+)\)')
PASS = re.compile(_STAMP.rstrip(' ') + r' \d+ \w+ \S+ \[(req-\S+) ')
# A spoke's own log: one INFO line per sync request, with the caller's
# request id.
GOT = re.compile(_STAMP + r'\d+ INFO keystone_syncext\.api\.sync \[(\S+) '
                 r'.*?\] POST /v3/sync/batch -> (\d+)')


def need_services():
    if 'mysql' not in backends.selected():
        pytest.skip('several agents need MariaDB: KSSYNC_BACKENDS has no '
                    'mysql')
    import redis
    try:
        redis.Redis(host='127.0.0.1', port=REDIS_PORT,
                    socket_timeout=3).ping()
    except redis.RedisError as e:
        pytest.fail(f'the HA suite needs Redis at 127.0.0.1:{REDIS_PORT} '
                    f'(tools/run-tests starts it): {e}')


def at(stamp):
    return datetime.datetime.fromisoformat(stamp)


def now():
    # The logs' clock: oslo.log's asctime, local time.
    return datetime.datetime.now()


def wait(check, within, what):
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


@dataclasses.dataclass
class Member:
    name: str
    proc: subprocess.Popen
    log: str
    netns: str | None = None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None


class Netns:
    """A network namespace for one member: veth ``a`` carries the sites'
    and the state database's traffic, veth ``b`` Redis's, each through a
    forwarder pair (keystone_syncext.testing.forward) so that the
    addresses are the same 127.0.0.1 ones inside."""

    def __init__(self, workdir, ports):
        k = os.getpid() % 250 + 1
        self.name = f'kss{os.getpid()}'
        self.a, self.b = f'kss{os.getpid()}a', f'kss{os.getpid()}b'
        self.root_a, self.root_b = f'10.213.{k}.1', f'10.213.{k}.5'
        self.ports = ports
        self.procs = []
        self.workdir = workdir

    def _ip(self, *argv, ns=False):
        cmd = ['ip', *(['netns', 'exec', self.name, 'ip'] if ns else []),
               *argv]
        out = subprocess.run(cmd, capture_output=True, text=True)
        assert out.returncode == 0, (cmd, out.stderr)

    def __enter__(self):
        self._ip('netns', 'add', self.name)
        self._ip('link', 'set', 'lo', 'up', ns=True)
        for veth, root in ((self.a, self.root_a), (self.b, self.root_b)):
            peer = veth + 'n'
            self._ip('link', 'add', veth, 'type', 'veth', 'peer', 'name',
                     peer)
            self._ip('link', 'set', peer, 'netns', self.name)
            self._ip('addr', 'add', f'{root}/30', 'dev', veth)
            inside = root.rsplit('.', 1)[0] + '.' + str(
                int(root.rsplit('.', 1)[1]) + 1)
            self._ip('addr', 'add', f'{inside}/30', 'dev', peer, ns=True)
            self._ip('link', 'set', veth, 'up')
            self._ip('link', 'set', peer, 'up', ns=True)
        fwd = [sys.executable, '-m', 'keystone_syncext.testing.forward']
        self._forward(fwd + [self.root_a] + [f'{p}=127.0.0.1'
                                             for p in self.ports])
        self._forward(fwd + [self.root_b, f'{REDIS_PORT}=127.0.0.1'])
        self._forward(['ip', 'netns', 'exec', self.name] + fwd + [
            '127.0.0.1', *(f'{p}={self.root_a}' for p in self.ports),
            f'{REDIS_PORT}={self.root_b}'])
        return self

    def _forward(self, cmd):
        log = open(os.path.join(self.workdir, f'forward{len(self.procs)}'
                                              '.log'), 'w')
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                stdin=subprocess.DEVNULL, text=True)
        log.close()
        self.procs.append(proc)
        assert proc.stdout.readline().strip() == 'ready', cmd

    def redis_link(self, up):
        self._ip('link', 'set', self.b, 'up' if up else 'down')

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for veth in (self.a, self.b):
            subprocess.run(['ip', 'link', 'del', veth], capture_output=True)
        subprocess.run(['ip', 'netns', 'del', self.name],
                       capture_output=True)


class Cluster:
    """The members, the state database and the claims in it."""

    def __init__(self, world, workdir, conf, engine):
        self.world, self.dir, self.conf = world, workdir, conf
        self.engine = engine
        self.members = []
        self.names = {f'spoke:{s.name}' for s in world.spokes} | {'feed'}
        self.started = now()
        self.events = []  # (what, when), for the report
        self.kills = []  # (member, when)
        self.unlogged = collections.Counter()

    def start(self, netns=None):
        name = f'm{len(self.members) + 1}'
        log = os.path.join(self.dir, f'{name}.log')
        err = open(log + '.stderr', 'w')
        cmd = [*base.AGENT, '--config-file', self.conf, '--log-file', log,
               '--debug', 'run']
        if netns:
            cmd = ['ip', 'netns', 'exec', netns, *cmd]
        proc = subprocess.Popen(cmd, env=self.world.env,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        proc.stderr_path = log + '.stderr'
        member = Member(name, proc, log, netns)
        self.members.append(member)
        return member

    def live(self):
        return [m for m in self.members if m.alive()]

    def claims(self):
        """name -> holder's pid, the claims held under a live lease."""
        try:
            with self.engine.connect() as conn:
                return {r.name: r.pid for r in conn.execute(
                    sa.select(state_tables.claim).where(
                        state_tables.claim.c.member.is_not(None),
                        state_tables.claim.c.expires_at >
                        state_tables.now()))}
        except sa.exc.ProgrammingError:  # not migrated yet
            return {}

    def all_live(self):
        with self.engine.connect() as conn:
            states = dict(conn.execute(sa.select(
                state_tables.spoke.c.name, state_tables.spoke.c.state)).all())
        assert all(states.get(s.name) == 'live'
                   for s in self.world.spokes), states
        return True

    def written_by_others(self, claims, member, since):
        """Each spoke of ``claims`` took a batch from a member other
        than ``member`` after ``since`` (the spoke's own log)."""
        by_id, _ = member_requests(self)
        for spoke in self.world.spokes:
            if f'spoke:{spoke.name}' in claims:
                assert any(w > since and m is not member and s == 200
                           for w, m, s in spoke_writes(self, spoke, by_id,
                                                        strict=False)), \
                    spoke.name
        return True

    def spokes_of(self, member):
        return sorted(n for n, pid in self.claims().items()
                      if pid == member.pid and n != 'feed')

    def leader(self):
        pid = self.claims().get('feed')
        return next((m for m in self.members if m.pid == pid), None)

    def wait_held_by(self, members, within, what):
        """Every spoke and the feed held by one of ``members``."""
        pids = {m.pid for m in members}

        def held():
            claims = self.claims()
            assert self.names <= set(claims), claims
            assert set(claims[n] for n in self.names) <= pids, claims
            return True
        wait(held, within, what)

    def kill(self, member, sig=signal.SIGKILL):
        member.proc.send_signal(sig)
        member.proc.wait()
        self.events.append((f'{member.name} SIGKILLed', now()))
        self.kills.append((member, now()))


class Burst:
    """Creates and deletes of roles at the hub, in a thread, until the
    block ends: ``made`` and ``gone`` (deleted) ids."""

    def __init__(self, world, made, gone):
        self.world, self.made, self.gone = world, made, gone
        self.sess = world.hub.admin_session()
        self.stop = threading.Event()
        self.error = None
        self.rounds = 0

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        try:
            while not self.stop.wait(1):
                alive = [r for r in self.made if r not in self.gone]
                dead = random.sample(alive, min(2, len(alive)))
                self.made += roles(self.world, self.sess, 4, dead)
                self.gone += dead
                self.rounds += 1
        except Exception as e:  # noqa: BLE001 - raised in __exit__
            self.error = e

    def __exit__(self, *exc):
        deadline = time.monotonic() + 60
        while self.rounds < 3 and self.error is None and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        self.stop.set()
        self.thread.join(60)
        if self.error is not None and exc[0] is None:
            raise self.error
        assert self.rounds >= 3, 'the burst hardly ran'


def roles(world, sess, n, delete=()):
    """``n`` new roles at the hub, and ``delete`` deleted there."""
    made = [hex_id() for _ in range(n)]
    items = [{'op': 'upsert', 'type': 'role', 'id': r, 'resource': {
        'id': r, 'name': f'ha-{r}', 'domain_id': None, 'description': None,
        'options': {}, 'extra': {}}} for r in made]
    items += [{'op': 'delete', 'type': 'role', 'id': r} for r in delete]
    # A busy hub (SQLite, several writers) answers 503, nothing applied,
    # "retry": as the agent does, this client does (CI saw one).
    results = sess.post(world.hub.url + '/sync/batch',
                        json={'items': items}, status_code_retries=5,
                        retriable_status_codes=[503]).json()['results']
    assert all(r['status'] in (200, 201, 204) for r in results), results
    return made


def member_requests(cluster):
    """request id -> (member, status) from the members' request logs;
    member -> spoke -> [(since, generation)], the claims each took."""
    by_id, tenures = {}, collections.defaultdict(
        lambda: collections.defaultdict(list))
    for m in cluster.members:
        with open(m.log) as f:
            for line in f:
                sent = SENT.match(line)
                if sent:
                    by_id[sent.group(2)] = (m, sent.group(3))
                    continue
                # Any line of a pass carries its id: a batch sent just
                # before a SIGKILL has no request line of its own.
                passed = PASS.match(line)
                if passed:
                    by_id.setdefault(passed.group(2), (m, None))
                took = TOOK.match(line)
                if took:
                    tenures[m.name][took.group(2)].append(
                        (at(took.group(1)), int(took.group(3))))
    return by_id, tenures


def batches_begun(member):
    """[(begun, site, status)]: each batch ``member`` sent, when it was
    sent (its request log's line, written when the answer came, less the
    time the request took)."""
    out = []
    with open(member.log) as f:
        for line in f:
            sent = SENT.match(line)
            if sent:
                end = at(sent.group(1))
                out.append((end - datetime.timedelta(
                    milliseconds=int(sent.group(5))), sent.group(3),
                    int(sent.group(4))))
    return out


def spoke_writes(cluster, spoke, by_id, strict=True):
    """The batches ``spoke`` took from the members: [(when, member,
    status)] from its own log; any batch from an unknown request id after
    the members started fails."""
    out, unknown = [], []
    with open(os.path.join(spoke.dir, 'keystone.log')) as f:
        for line in f:
            got = GOT.match(line)
            if not got:
                continue
            when, rid, status = at(got.group(1)), got.group(2), \
                int(got.group(3))
            if rid in by_id:
                out.append((when, by_id[rid][0], status))
                continue
            # A pass that logged nothing before its member was SIGKILLed
            # (or a batch the spoke finished after the sender died): the
            # member that held the spoke then, killed within seconds.
            _, tenures = member_requests(cluster) if strict else ({}, {})
            dying = [m for m, k in cluster.kills
                     if when - IN_FLIGHT <= k <= when + KILLED_WITHIN and any(
                         since <= when for since, _ in
                         tenures.get(m.name, {}).get(spoke.name, []))]
            if dying:
                out.append((when, dying[0], status))
                cluster.unlogged[dying[0].name] += 1
            elif when > cluster.started and strict:
                unknown.append(line)
    assert not unknown, (spoke.name, unknown[:3])
    return out


def overlaps(writes, tenures):
    """No spoke written by two members at once, precisely: each
    successful batch at the spoke (its own log's time) belongs to the
    generation its sender had claimed last before it (the sender's "now
    driving spoke" line); the interval of a (member, generation) runs
    from its first successful batch to its last; two such intervals of
    one spoke must not overlap (by more than the log's ``JITTER``), and
    they come in the order of their generations. Refused batches (409,
    the fence) are not writes: counted apart. Returns the intervals and
    the 409s by member; a successful batch with no claim before it
    fails."""
    intervals, refused = {}, collections.Counter()
    for when, member, status in writes:
        if status == 409:
            refused[member.name] += 1
            continue
        if status != 200:
            continue
        mine = [g for since, g in tenures[member.name] if since <= when]
        assert mine, (member.name, 'wrote without a claim', when)
        key = (mine[-1], member.name)
        first, last = intervals.get(key, (when, when))
        intervals[key] = (min(first, when), max(last, when))
    ordered = sorted(intervals.items(), key=lambda kv: kv[1][0])
    for (k1, (_, end)), (k2, (start, _)) in itertools.pairwise(ordered):
        assert start + JITTER >= end, ('overlap', k1, k2, end, start)
        assert k2[0] > k1[0], ('generations out of order', k1, k2)
    return ordered, refused
