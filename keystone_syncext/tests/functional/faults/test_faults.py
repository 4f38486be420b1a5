"""Fault injection: processes killed and restarted under the sync, and every
trial ends converged with nothing lost.

The sites are real Keystone processes, as in ``agent/test_agent.py``: a hub on
Keystone 30.0 (SQLite), spoke1 on 30.0 whose database is a private MariaDB
server this module starts (so that a trial can stop and kill it), and
spoke2 on 29.1 (SQLite). The agent is the real command line, run as a
subprocess. Each trial breaks something while changes flow -- the agent
(SIGKILL at random points), a spoke (SIGKILL and restart), the hub
(restart during a long-poll of its feed), spoke1's database server (clean
restart and SIGKILL) -- and then judges the outcome the same way
(``Judge``): after a final ``keystone-sync run --once``, every hub
resource of every synced type is at every spoke with the same id and the
same content hash (0 lost, 0 divergent), nothing the hub deleted is left
at a spoke, and a sample of resources reads the same through Keystone's
ordinary v3 API. At the end, every log any process wrote is scanned for
the secrets the suite used.

Budgets come from the environment (doc/testing.md): ``KSSYNC_FAULT_SEED``
(random seed; printed), ``KSSYNC_FAULT_KILLS`` (agent kills, default 20),
``KSSYNC_FAULT_RESOURCES`` (the seed's size, default 2000) and
``KSSYNC_FAULT_TIMEOUT`` (longest wait for any one condition, default 90
s). ``tox -e faults`` runs a bigger budget.

A trial is a test function taking ``world`` (the sites and the agent's
command line: ``world.py``), ``judge`` (``judge.py``) and ``rng``, the
fixtures of this subpackage's ``conftest.py``, and making ``Changes`` at
the hub (``changes.py``); a new one (a partition with edits on both
sides, say) follows the same shape: break, change, heal, then
``judge.converged(...)``.
"""

import os
import re
import signal
import threading
import time

import psutil
import pytest

from keystone_syncext.testing import secrets as scanning
from keystone_syncext.tests.functional.faults.changes import Changes
from keystone_syncext.tests.functional.faults.world import FOLLOWING
from keystone_syncext.tests.functional.faults.world import KILLS
from keystone_syncext.tests.functional.faults.world import RESOURCES
from keystone_syncext.tests.functional.faults.world import TIMEOUT
from keystone_syncext.tests.functional.faults.world import kill_site
from keystone_syncext.tests.functional.faults.world import log_has
from keystone_syncext.tests.functional.faults.world import wait_for

# -- trial 1: the agent killed at random points -------------------------

_PHASE_LINES = (
    ('read', re.compile(r'read \d+ changes from hub')),
    ('applied', re.compile(r'spoke \S+: applied up to outbox')),
    ('following', FOLLOWING),
)


def kill_phase(log_path: str, live: bool) -> str:
    """Where a killed run was: ``startup`` (its log does not say it follows
    the hub yet), ``seeding`` (a spoke not seeded yet: ``live`` False,
    read from the state database just before the kill), ``applying``
    (the log's last word is changes read from the feed, not yet applied)
    or ``feed`` (caught up: waiting on the hub's feed)."""
    last, followed = None, False
    if os.path.exists(log_path):
        with open(log_path) as f:
            for line in f:
                for name, pattern in _PHASE_LINES:
                    if pattern.search(line):
                        if name == 'following':
                            followed = True
                        elif name in ('read', 'applied'):
                            last = name
                        break
    if not followed:
        return 'startup'
    if not live:
        return 'seeding'
    return 'applying' if last == 'read' else 'feed'

_BUSY = re.compile(r'seeding spoke|read \d+ changes from hub')
# When a run is killed: a random delay after one of these moments, picked
# at random per run (with these weights), so that the kills land in
# start-up, seeding, reading the feed and applying it alike. ``start``:
# the process started; ``following``: it follows the hub; ``busy``: it
# began a seed or read changes; ``live``: every spoke is seeded (a seed
# cut short starts over, so without these runs a big seed might never
# finish and no kill would land after it). The first quarter of the runs
# never wait for ``live``, and the middle one does if no run finished the
# seed yet.
MOMENTS = (('start', 2), ('following', 3), ('busy', 3), ('live', 2))
AFTER = {'start': (0.2, 3.0), 'following': (0.0, 2.0), 'busy': (0.0, 1.5),
         'live': (0.0, 1.5)}


def _wait_moment(world, proc, moment) -> None:
    """Wait (bounded) for ``moment`` of the run ``proc``; a run that has
    nothing to do never gets ``busy``, which is then given up quietly."""
    if moment == 'start':
        return
    wait_for('the agent to follow the hub', lambda: log_has(
        proc.log, _PHASE_LINES[-1][1]), interval=0.05)
    if moment == 'busy':
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None and \
                not log_has(proc.log, _BUSY):
            time.sleep(0.05)
    elif moment == 'live':
        # A seed is the slowest part (minutes on a loaded machine).
        wait_for('every spoke seeded', world.all_live, interval=0.1,
                 timeout=TIMEOUT * 3)


def test_agent_sigkilled_at_random_points_converges(world, judge, rng):
    """SIGKILL of the agent at ``KSSYNC_FAULT_KILLS`` random points while
    it seeds a few thousand resources to both spokes (a seed cut short
    starts over) and then follows the hub's feed, with live changes at the
    hub between kills: creates, updates and deletes of projects and roles
    (deleting the seed's and earlier rounds'), and users with passwords,
    groups, memberships and grants, updates of users and deletes of users
    and groups made earlier. Beyond ``test_agent``'s kill test: the agent
    runs continuously (so every run is killed, never done), changes come
    between the kills, the kill points are spread over start-up, seed,
    feed and apply by a random delay after a random moment, and each kill's
    phase is read from the run's log and counted."""
    started = time.monotonic()
    changes = Changes(world, rng)
    changes.bulk(RESOURCES)
    changes.base()
    phases = {}
    moments, weights = zip(*MOMENTS, strict=True)
    for n in range(KILLS):
        moment = rng.choices(moments, weights)[0]
        while moment == 'live' and n < KILLS // 4:
            # The first quarter never waits for the seed to finish: their
            # kills are the ones that can land in it.
            moment = rng.choices(moments, weights)[0]
        if n == KILLS // 2 and not world.all_live():
            # Half the kills are done and the seed never finished: let
            # this run finish it, so that the other half land after it.
            moment = 'live'
        delay = rng.uniform(*AFTER[moment])
        proc = world.start_agent_conf('killed')
        ran = time.monotonic()
        try:
            _wait_moment(world, proc, moment)
            time.sleep(delay)
            live = world.all_live()
            assert proc.poll() is None, (
                f'the agent exited by itself ({proc.returncode})')
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        ran = time.monotonic() - ran
        phase = kill_phase(proc.log, live)
        phases[phase] = phases.get(phase, 0) + 1
        stepped = time.monotonic()
        if n < KILLS - 1:
            changes.step(identity=n % 3 == 0)
        print(f'kill {n + 1}: {delay:.2f}s after {moment} ({ran:.1f}s '
              f'in all), in {phase}; changes took '
              f'{time.monotonic() - stepped:.1f}s')
    print(f'{KILLS} kills by phase: {phases}; changes {changes.counts} '
          f'({changes.retried} batches retried); '
          f'{time.monotonic() - started:.1f}s')
    assert sum(phases.values()) == KILLS
    # The random points reach past start-up into the seed and beyond.
    assert phases.get('seeding', 0) >= 1, phases
    assert phases.get('feed', 0) + phases.get('applying', 0) >= 1, phases
    judge.converged('agent kills', changes, rng)


# -- trial 2: a spoke killed while the agent applies to it -------------


def _bulk_in_background(changes, count):
    """``changes.bulk(count)`` in a thread, in rounds of 200, so that
    the agent applies while the hub still takes more."""
    def run():
        for _ in range(count // 200):
            changes.bulk(200)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _kill_while_applying(world, site, target_count, kill, timeout=TIMEOUT):
    """Call ``kill`` as soon as ``site`` holds more projects than before
    and fewer than ``target_count()``: the agent is in the middle of
    applying to it. Returns whether that moment was caught (False: the
    spoke was done first, and ``kill`` was not called)."""
    before = world.count(site, 'project')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = world.count(site, 'project')
        if now is not None and now > before:
            if now < target_count():
                kill()
                return True
            return False
        time.sleep(0.05)
    pytest.fail(f'{site.name} received nothing in {timeout}s')


def _catch_applying(world, changes, site, kill) -> bool:
    """A burst of 1,200 changes at the hub, and ``kill`` called while the
    agent applies it to ``site`` (``_kill_while_applying``); up to three
    bursts, since a spoke may be done before it is caught. Returns whether
    one was caught."""
    for _attempt in range(3):
        thread = _bulk_in_background(changes, 1200)
        caught = _kill_while_applying(
            world, site, lambda: world.count(world.hub, 'project') or 0,
            kill)
        thread.join(timeout=TIMEOUT)
        if caught:
            return True
    return False


def test_spoke_sigkilled_while_applying_and_restarted(world, judge, rng):
    """spoke2 (29.1) is SIGKILLed while the continuously running agent
    applies a burst to it; meanwhile spoke1 keeps receiving changes (the
    delay of each, from the hub's answer to spoke1's, is measured); after
    the restart spoke2 catches up and all converge."""
    world.sync()
    spoke1, spoke2 = world.spokes
    changes = Changes(world, rng)
    agent = world.start_agent_conf('spoke-killed')
    try:
        assert _catch_applying(world, changes, spoke2,
                               lambda: kill_site(spoke2)), \
            'spoke2 was never caught in the middle of applying'
        down = time.monotonic()
        delays = []
        for _ in range(3):
            path = changes.probe()
            made = time.monotonic()
            wait_for(f'{path} at spoke1 while spoke2 is down',
                     lambda p=path: world.has(spoke1, p), interval=0.05,
                     agent=agent)
            delays.append(time.monotonic() - made)
        changes.step()
        hub_projects = world.count(world.hub, 'project')
        wait_for('the burst at spoke1', lambda: world.count(
            spoke1, 'project') == hub_projects, agent=agent)
        print(f'spoke2 down: spoke1 got each probe in '
              f'{", ".join(f"{d:.2f}" for d in delays)} s; burst complete '
              f'at spoke1 {time.monotonic() - down:.1f}s after the kill')
        spoke2.start()
        back = time.monotonic()
        wait_for('spoke2 to catch up after its restart', lambda: world.count(
            spoke2, 'project') == hub_projects and all(
                world.has(spoke2, g) for g, _ in changes.grants), agent=agent)
        print(f'spoke2 caught up {time.monotonic() - back:.1f}s after its '
              'restart')
    finally:
        if spoke2.proc is None:
            spoke2.start()
        world.stop_agent(agent)
    judge.converged('spoke killed', changes, rng)


# -- trial 3: the hub restarted during a long-poll of its feed ---------


def _long_poll_in_flight(world, agent, port) -> bool:
    """Whether the agent holds a connection to ``port`` that stays open
    across half a second: the hub's uWSGI closes each connection after its
    answer (a closed one is no longer ESTABLISHED here), so a request to
    the hub that lasts that long is a long-poll of its feed."""
    def open_ports():
        try:
            conns = psutil.Process(agent.pid).net_connections(kind='tcp')
        except psutil.NoSuchProcess:
            pytest.fail('the agent exited')
        return {c.laddr.port for c in conns
                if c.raddr and c.raddr.port == port
                and c.status == psutil.CONN_ESTABLISHED}
    first = open_ports()
    if not first:
        return False
    time.sleep(0.5)
    return bool(first & open_ports())


def test_hub_restarted_during_a_long_poll(world, judge, rng):
    """With the agent waiting on the hub's feed (a 10 s long-poll), the
    hub is restarted: once cleanly (SIGTERM), once by SIGKILL of its
    uWSGI processes. A change made just before (it may wake the long-poll,
    or not be read before the hub goes) and one right after the restart
    reach both spokes."""
    world.sync()
    hub = world.hub
    changes = Changes(world, rng)
    agent = world.start_agent_conf('hub-restarted', poll_wait=10)
    watched = []
    try:
        for how in ('terminate', 'kill'):
            wait_for('a long-poll of the hub by the agent',
                     lambda: _long_poll_in_flight(world, agent, hub.port))
            before = changes.probe()
            if how == 'kill':
                kill_site(hub)
            else:
                hub.stop()
            stopped = time.monotonic()
            hub.start()
            after = changes.probe()
            up = time.monotonic()
            watched += [before, after]
            paths = (before, after)
            wait_for(f'changes around the hub restart ({how})',
                     lambda paths=paths: all(
                         world.has(s, p) for s in world.spokes
                         for p in paths), interval=0.1, agent=agent)
            print(f'hub {how}: down {up - stopped:.1f}s; the changes '
                  f'before and after reached both spokes '
                  f'{time.monotonic() - up:.1f}s after it was back')
    finally:
        if hub.proc is None:
            hub.start()
        world.stop_agent(agent)
    for path in watched:
        assert all(world.has(s, path) for s in world.spokes), path
    judge.converged('hub restarted', changes, rng)


# -- trial 4: spoke1's database server restarted -----------------------


def _refused_while_down(world, site) -> int:
    """The status ``site``'s Keystone answers while its database is down
    (it is up: only the database is not)."""
    resp = world.session(site).get(f'{site.url}/sync/digest/project',
                                   raise_exc=False, timeout=60)
    return resp.status_code


def test_database_restarted_under_a_running_keystone(world, judge, rng):
    """spoke1's MariaDB server is stopped cleanly and started again, then
    SIGKILLed and started again (InnoDB crash recovery), each time while
    the agent applies a burst to spoke1. Keystone is not restarted: it
    answers 5xx while the database is gone, serves again once it is back
    (oslo.db reconnects), and the agent delivers everything."""
    world.sync()
    spoke1 = world.spokes[0]
    keystone_pid = spoke1.proc.pid
    changes = Changes(world, rng)
    agent = world.start_agent_conf('db-restarted')
    try:
        for how in ('stop', 'kill'):
            assert _catch_applying(world, changes, spoke1,
                                   getattr(world.db, how)), \
                f'{how}: spoke1 never caught mid-apply'
            down = time.monotonic()
            status = _refused_while_down(world, spoke1)
            assert status >= 500, status
            changes.step(identity=False)
            time.sleep(max(0.0, 2 - (time.monotonic() - down)))
            world.db.start()
            restarted = time.monotonic()
            wait_for('spoke1 serving again', lambda: world.count(
                spoke1, 'project') is not None)
            recovered = time.monotonic() - restarted
            hub_projects = world.count(world.hub, 'project')
            wait_for('spoke1 to catch up', lambda n=hub_projects: world.count(
                spoke1, 'project') == n, agent=agent)
            print(f'database {how}: down {restarted - down:.1f}s, Keystone '
                  f'answered {status} meanwhile and served again '
                  f'{recovered:.1f}s after the restart; spoke1 caught up '
                  f'{time.monotonic() - restarted:.1f}s after it')
        assert spoke1.proc.pid == keystone_pid
        assert spoke1.proc.poll() is None
    finally:
        if world.db.proc is None:
            world.db.start()
        world.stop_agent(agent)
    judge.converged('database restarted', changes, rng)


# -- trial 5: the secret scan ------------------------------------------


def test_no_secret_in_any_log(world, secret_scan):
    """Every log any process of this suite wrote (Keystone's and uWSGI's
    of each site, every agent run's log and stderr, mariadbd's) holds none
    of the passwords, hashes, secrets and tokens the suite used. (The
    ``secret_scan`` fixture scans again once the processes have stopped.)
    """
    for site in world.every():
        secret_scan.hashes_of(site.engine())
    logs = scanning.log_files(world.dir)
    names = {os.path.relpath(p, world.dir) for p in logs}
    for site in world.every():
        assert f'{site.name}/keystone.log' in names, names
    assert 'mariadb/mariadbd.log' in names, names
    assert any(n.startswith('agent-') for n in names), names
    hits = secret_scan.scan()
    print(f'secret scan: {len(secret_scan.secrets)} secrets, {len(logs)} '
          f'logs, {len(hits)} hits')
    assert len(secret_scan.secrets) > 10
    assert hits == [], scanning.report(hits)
