"""The HA part of agent_sync.py (``--members 1,2,3``): fan-out with 1, 2,
3... ``keystone-sync run`` members sharing the spokes, side by side in one
run, and the failover time of a member SIGKILLed.

Members are real processes with ``[coordination] backend_url`` on Redis
(tooz) and the agent's state database on MariaDB (a database of its own,
made for the run and dropped after it). Each member count in turn:

1. the members start and the bench waits until every spoke's claim and
   the feed's are held and have stayed with the same members for a few
   heartbeats (the hash ring settled);
2. a burst of ``--burst`` roles is made at the hub at once (its batch
   route), timed until every spoke holds all of them (agent_sync.fanout);
3. the members are stopped (SIGTERM: they release their claims).

Then, with the largest member count running once more, the member that
holds the most spokes is SIGKILLed, one role is made at the hub, and the
time from the kill until that role is committed at each of the dead member's
spokes (the spoke's ``changed_at``, a clock of this machine) is the
failover time: the lease runs out, the ring names another
member, which claims the spoke and applies the outbox. Its bound is the
lease (``--lease``, also the Redis membership timeout) plus a heartbeat
(doc/agent.md, "Bound on takeover").

Not a benchmark by itself; agent_sync.py runs it.
"""

import datetime
import os
import signal
import socket
import time
import uuid

import redis
import sqlalchemy as sa

from keystone_syncext.agent import state_tables
from keystone_syncext.testing import backends

# The members' tooz backend. Each run's members use a Redis namespace of
# their own (the state database's name): the group is named after the
# hub's cloud only (keystone-sync.hub), and anything else on this Redis
# with a hub cloud of that name -- the unit suite's test_members.py, tox
# -e ha, another bench -- would otherwise join the same hash ring, own
# some of the spokes in it and leave them undriven here.
REDIS = 'redis://127.0.0.1:6379'


def add_options(parser) -> None:
    parser.add_argument('--members', default='',
                        help='comma-separated member counts (e.g. 1,2,3): '
                        'then time the --burst fan-out with that many '
                        'keystone-sync run members on Redis (tooz) and a '
                        'MariaDB state database, and the failover after a '
                        "member's SIGKILL (agent_ha.py)")
    parser.add_argument('--lease', type=float, default=5.0,
                        help="the members' [coordination] lease, and the "
                        "Redis backend's membership timeout (seconds)")
    parser.add_argument('--heartbeat', type=float, default=0.5,
                        help="the members' [coordination] heartbeat")
    parser.add_argument('--scrape', default='',
                        help="scrape every member's /metrics each second "
                        'during the HA part into this file (JSON lines, '
                        'for bench/dashboard.py render)')


def counts(text: str) -> list[int]:
    return [int(n) for n in text.split(',') if n.strip()]


class StateDB:
    """A MariaDB database of the run's own for the agent's state."""

    def __init__(self, workdir: str):
        self.backend = backends.get('mysql', workdir)
        self.name = f'kssync_bench_{uuid.uuid4().hex[:10]}'
        self.url = self.backend.create(self.name)
        self.engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)

    def claims(self) -> dict:
        """Live claims: name -> (member, pid)."""
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        c = state_tables.claim.c
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(state_tables.claim).where(
                    c.member.is_not(None), c.expires_at > now)).all()
        except sa.exc.DBAPIError:   # not migrated yet
            return {}
        return {r.name: (r.member, r.pid) for r in rows}

    def drop(self) -> None:
        self.engine.dispose()
        self.backend.drop(self.name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Members:
    """``n`` ``keystone-sync run`` members of one group."""

    def __init__(self, agent, workdir, n, args, tag, namespace):
        self.procs, self.ports = [], []
        for i in range(n):
            port = free_port()
            conf = f'{workdir}/member-{tag}-{i}.conf'
            with open(conf, 'w') as f:
                f.write(f'[DEFAULT]\nlog_file = {workdir}/member-{tag}-{i}'
                        f'.log\n[coordination]\nbackend_url = {REDIS}'
                        f'?timeout={args.lease:g}&namespace={namespace}'
                        f'\nheartbeat = '
                        f'{args.heartbeat:g}\nlease = {args.lease:g}\n'
                        f'[metrics]\nlisten = 127.0.0.1:{port}\n')
            self.procs.append(agent.start('run', conf=[conf]))
            self.ports.append(port)

    @property
    def targets(self) -> list[str]:
        return [f'http://127.0.0.1:{p}/metrics' for p in self.ports]

    def check(self) -> None:
        dead = [p.pid for p in self.procs if p.poll() is not None]
        if dead:
            raise SystemExit(f'members exited: {dead} (see member-*.log)')

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except Exception:
                p.kill()
                p.wait()


def joined(namespace: str) -> int:
    """Members in the tooz group (tooz's Redis layout: a hash per group
    under the namespace, a field per member)."""
    client = redis.Redis.from_url(REDIS)
    try:
        return len([k for k in client.hkeys(
            f'{namespace}_group:keystone-sync.hub') if k != b'__created__'])
    finally:
        client.close()


def settled(db, members, spokes, heartbeat, within=180) -> dict:
    """Wait until every member joined the group and every spoke's claim
    and the feed's are held by the members, unchanged for 6 heartbeats
    (at least 3 s); the claims."""
    names = {f'spoke:{s.name}' for s in spokes} | {'feed'}
    pids = {p.pid for p in members.procs}
    deadline = time.monotonic() + within
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        members.check()
        held = {k: v for k, v in db.claims().items() if k in names}
        if set(held) != names or {v[1] for v in held.values()} - pids \
                or joined(db.name) != len(pids):
            last = None
        elif held != last:
            last, since = held, time.monotonic()
        elif time.monotonic() - since >= max(3.0, 6 * heartbeat):
            return held
        time.sleep(heartbeat / 2)
    raise SystemExit(f'the members never settled on the spokes: '
                     f'{db.claims()}')


def spread(held, members) -> list[int]:
    """Spokes each member drives, in the members' order."""
    return [sum(1 for k, v in held.items()
                if k.startswith('spoke:') and v[1] == p.pid)
            for p in members.procs]


def run(args, agent, workdir, db, hub, spokes, fanout, make_role,
        session, until_everywhere, heads) -> dict:
    """The HA part; its figures."""
    scraper = None
    if args.scrape:
        import dashboard
        scraper = dashboard.Scraper(args.scrape)
        scraper.start()
    out = {'members': counts(args.members), 'fanout_s': {},
           'spokes_per_member': {}}
    try:
        for n in out['members']:
            members = Members(agent, workdir, n, args, f'{n}', db.name)
            if scraper:
                scraper.targets = members.targets
            try:
                held = settled(db, members, spokes, args.heartbeat)
                out['spokes_per_member'][n] = spread(held, members)
                print(f'{n} member(s): spokes per member '
                      f'{out["spokes_per_member"][n]}', flush=True)
                out['fanout_s'][n] = fanout(hub, spokes, args.burst)
                members.check()
            finally:
                members.stop()
        out.update(failover(args, agent, workdir, db, hub, spokes,
                            make_role, session, until_everywhere, heads,
                            scraper))
    finally:
        if scraper:
            scraper.stop()
    return out


def failover(args, agent, workdir, db, hub, spokes, make_role, session,
             until_everywhere, heads, scraper) -> dict:
    n = max(max(counts(args.members)), 2)
    members = Members(agent, workdir, n, args, 'failover', db.name)
    if scraper:
        scraper.targets = members.targets
    try:
        held = settled(db, members, spokes, args.heartbeat)
        per = spread(held, members)
        victim = members.procs[per.index(max(per))]
        theirs = [s for s in spokes
                  if held[f'spoke:{s.name}'][1] == victim.pid]
        leader = held['feed'][1] == victim.pid
        since = heads(theirs)
        sess = session(hub)
        killed_at = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.perf_counter()
        victim.wait()
        role = make_role(hub, sess)
        committed = {}

        def arrived(name, changes):
            for c in changes:
                if c['id'] == role:
                    committed[name] = datetime.datetime.fromisoformat(
                        c['changed_at'].replace('Z', '+00:00')).timestamp()
            return name in committed

        if until_everywhere(theirs, since, arrived, 10 * args.lease + 120,
                            0.2):
            raise SystemExit('after the kill the change never reached '
                             'the dead member\'s spokes')
        seen = time.perf_counter() - killed
        # The spokes' own commit times (their database clock, this
        # machine's): what the bench can read lags behind them while the
        # dead member's long-polls still hold the spokes' workers.
        took = max(committed.values()) - killed_at
        print(f'failover: member {victim.pid} of {n} SIGKILLed '
              f'(drove {len(theirs)} spoke(s)'
              f'{", and read the feed" if leader else ""}); a hub change '
              f'made after the kill was committed at its spokes '
              f'{took:.1f} s after the kill, seen there by the bench after '
              f'{seen:.1f} s (lease {args.lease:g} s, heartbeat '
              f'{args.heartbeat:g} s)', flush=True)
        if scraper:
            # A little of the aftermath for the dashboard picture.
            time.sleep(5)
        return {'failover_members': n, 'failover_s': round(took, 2),
                'failover_seen_s': round(seen, 2),
                'failover_victim_spokes': len(theirs),
                'failover_victim_was_leader': leader}
    finally:
        members.stop()
