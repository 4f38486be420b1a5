"""Several agents, one job, with real processes: two ``keystone-sync run``
members on Redis (tooz) and a MariaDB state database drive the world's
spokes (spoke1 on Keystone 30.0, spoke2 on 29.1). The member holding the
most spokes is SIGKILLed during a burst of changes at the hub; the other
takes its spokes over, and everything converges: nothing lost, nothing
deleted comes back, nothing differs, and no spoke was written by the dead
member after the survivor took it (the members' own logs).

Slow (a takeover waits out a lease): runs in ``tox -e ha``
(``KSSYNC_HA=1``), not in the default suite.
"""

import datetime
import os
import re
import signal
import subprocess
import time

import pytest
import sqlalchemy as sa

from keystone_syncext.agent import state_tables
from keystone_syncext.testing import backends
from keystone_syncext.tests import conftest
from keystone_syncext.tests.functional.agent import harness as base
from keystone_syncext.tests.functional.agent.harness import hex_id

pytestmark = pytest.mark.skipif(
    not os.environ.get('KSSYNC_HA'),
    reason='the HA suite runs in tox -e ha (KSSYNC_HA=1)')

world = base.world
LEASE = 5
REDIS = f'redis://127.0.0.1:6379?timeout={LEASE}'
CONVERGE = 240
LINE = re.compile(r'^(\S+ \S+) .*?spoke (\S+): applied up to outbox')
TAKEN = re.compile(r'^(\S+ \S+) .*?now driving spoke (\S+)')


def _member(world, conf, log):
    err = open(log + '.stderr', 'w')
    proc = subprocess.Popen(
        [*base.AGENT, '--config-file', conf, '--log-file', log, 'run'],
        env=world.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=err)
    err.close()
    proc.stderr_path, proc.log = log + '.stderr', log
    return proc


def _claims(engine):
    try:
        with engine.connect() as conn:
            return {r.name: r for r in conn.execute(
                sa.select(state_tables.claim).where(
                    state_tables.claim.c.member.is_not(None)))}
    except sa.exc.DBAPIError:  # not migrated yet
        return {}


def _wait(check, within, what):
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, what
        time.sleep(1)


def _roles(world, n, delete=()):
    """``n`` new roles at the hub, and ``delete`` deleted there."""
    made = [hex_id() for _ in range(n)]
    items = [{'op': 'upsert', 'type': 'role', 'id': r, 'resource': {
        'id': r, 'name': f'ha-{r}', 'domain_id': None, 'description': None,
        'options': {}, 'extra': {}}} for r in made]
    items += [{'op': 'delete', 'type': 'role', 'id': r} for r in delete]
    sess = world.hub.admin_session()
    results = sess.post(world.hub.url + '/sync/batch',
                        json={'items': items}).json()['results']
    assert all(r['status'] in (200, 201, 204) for r in results), results
    return made


def _times(path, pattern):
    out = {}
    with open(path) as f:
        for line in f:
            m = pattern.match(line)
            if m:
                when = datetime.datetime.fromisoformat(m.group(1)[:23])
                out.setdefault(m.group(2), []).append(when)
    return out


def test_a_member_killed_during_a_burst(world, tmp_path, sqlite_dir):
    db = backends.get('mysql', sqlite_dir)
    dbname = conftest.unique_name('agent_ha')
    url = db.create(dbname)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    conf = str(tmp_path / 'ha.conf')
    world.write_conf(conf, state=url)
    with open(conf, 'a') as f:
        f.write(f'[coordination]\nbackend_url = {REDIS}\n'
                f'heartbeat = 0.5\nlease = {LEASE}\n')
    procs = [_member(world, conf, str(tmp_path / f'member{n}.log'))
             for n in range(2)]
    try:
        names = {f'spoke:{s.name}' for s in world.spokes} | {'feed'}
        _wait(lambda: names <= set(_claims(engine)), 120,
              'the members never held every spoke and the feed')
        assert all(p.poll() is None for p in procs)  # both members up
        first = _roles(world, 30)
        gone = first[:10]
        _roles(world, 0, delete=gone)
        held = _claims(engine)
        pids = [held[n].pid for n in names]
        victim = next(p for p in procs
                      if p.pid == max(set(pids), key=pids.count))
        survivor = next(p for p in procs if p is not victim)
        more = _roles(world, 30)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed = datetime.datetime.now()
        gone += more[:10]
        _roles(world, 30, delete=more[:10])
        _wait(lambda: all(h.pid == survivor.pid
                          for n, h in _claims(engine).items()
                          if n in names), 4 * LEASE + 30,
              'the survivor never took every spoke over')

        def converged():
            # What the hub holds is everywhere (0 lost, 0 divergent), and
            # what it deleted is nowhere (0 resurrected): a spoke still
            # being seeded holds the listing, not yet the deletes after it.
            world.assert_converged(types=('role', 'project'))
            for spoke in world.spokes:
                have = world.sync_items(spoke, 'role')
                assert not set(gone) & set(have), spoke.name
            return True
        _wait(converged, CONVERGE, 'never converged')
        # No spoke written by two members at once: the dead member's last
        # write to a spoke came before the survivor drove it.
        dead = _times(victim.log, LINE)
        took = _times(survivor.log, TAKEN)
        for spoke, writes in dead.items():
            if spoke in took:
                assert max(writes) < max(took[spoke]), spoke
            assert max(writes) <= killed, spoke
        base.terminate(survivor)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        engine.dispose()
        db.drop(dbname)
