"""Several agents on a tooz backend (``[coordination] backend_url``).

See :mod:`keystone_syncext.agent.coordination` for what each member
does; this is the :class:`Member` that does it through tooz: group
membership and a consistent hash ring of the members (tooz's
``hashring``, made again from the group's members whenever they change)
share the spokes out, tooz's election names the member that reads the
hub's feed, and the claims in the state database fence every write.

Not tooz's ``Partitioner``: it keeps its ring by the join and leave
events its watchers see, from a first member list read apart from the
one the watchers start from. A member that joins between the two reads
is in the watchers' list and not in the ring; when it leaves, removing
it from the ring raises ``UnknownNode`` on every later ``run_watchers``,
so the member that saw it never balances again (seen in CI: two members
of three inert, holding nothing, after a third was killed). A ring made
from the member list the tick reads anyway is the same at every member
that reads the same list, and cannot drift.
"""

from concurrent import futures
import importlib
import logging
import threading
import time

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.agent import context as context_mod
from keystone_syncext.agent import coordination

LOG = logging.getLogger(__name__)


class Member(coordination.Solo):
    """One of several agents sharing the spokes."""

    def __init__(self, ctx: context_mod.Context):
        super().__init__(ctx)
        self.url = ctx.conf.coordination.backend_url
        self.group_id = None
        self.coord = None
        self.ring = None
        # The backend is read in a thread of its own (see _read_group):
        # the read under way, and since when.
        self._reading = None
        self.elected = False
        self.healthy = False

    def start(self) -> None:
        if self.ctx.state.engine.dialect.name == 'sqlite':
            raise SystemExit(
                'keystone-sync: [coordination] needs a state database every '
                'member reaches (MariaDB or PostgreSQL), not SQLite; set '
                '[DEFAULT] state to a mysql+pymysql:// or postgresql:// URL')
        holder = self.claims.holder(claims_mod.AGENT)
        if any(r.name == claims_mod.AGENT for r in self.claims.live()):
            raise SystemExit(
                f'keystone-sync: an agent without [coordination] runs on '
                f'this state database: {coordination.describe(holder)}; '
                f'stop it, or configure [coordination] there too')
        self.ctx.state.claims = self.claims
        # One tooz group per state database (its agent group id), not per
        # hub name: two agent groups on one backend, whose hubs are both
        # called "hub" in their clouds.yaml, would otherwise share one
        # ring and one election, and leave spokes undriven.
        self.group_id = (f'keystone-sync.{self.ctx.hub.name}.'
                         f'{self.claims.group()}').encode()
        tooz_coordination = _tooz_coordination()
        self.coord = tooz_coordination.get_coordinator(
            self.url, self.ctx.member_id.encode())
        self.coord.start(start_heart=True)
        self.coord.join_group_create(self.group_id,
                                    capabilities={'weight': 1})
        self.coord.watch_elected_as_leader(self.group_id, self._elected)
        LOG.info('member %(me)s of agent group %(group)s on %(url)s',
                 {'me': self.ctx.member_id, 'group': self.group_id.decode(),
                  'url': self.url.split('://')[0]})
        self.tick()

    def _elected(self, event) -> None:
        LOG.info('elected leader: reading the hub\'s feed')
        self.elected = True

    def tick(self) -> None:
        """Look at the group (members, leader), renew the leases, claim
        what the ring gives this member and release the rest; on a
        backend error, or no answer within the lease less its margin,
        release everything."""
        members = self._read_group()
        if members is None:
            return
        self.healthy = True
        self._set_ring(members)
        self._renew()
        self._balance()
        self._lead()

    def _read_group(self):
        """The group's members, read by the reader thread; None while
        the read is under way (once it has waited ``lease - margin``, the
        member is cut off) or when it failed (cut off).

        A read of an unreachable backend does not fail fast: redis-py
        retries each command ten times, each up to the URL's timeout,
        and tooz retries a refused connection again, so a member whose
        link to Redis went down noticed only after a minute or more (the
        HA drill, under load), well past its lease. Waiting on the read
        at most a heartbeat per tick bounds that by this member's own
        lease, whatever the client's retries."""
        if self._reading is None:
            self._reading = (_in_thread(self._group_members),
                             time.monotonic())
        future, since = self._reading
        try:
            members = future.result(timeout=self.heartbeat)
        except futures.TimeoutError:
            # No renewal meanwhile, as when the tick waited on the read
            # itself: a member cut off stops writing at ``lease - margin``
            # after its last renewal, which came before the cut, and the
            # others may take over ``lease`` after it. (Renewing while the
            # read hangs would hold the spokes up to ``lease - margin``
            # longer, and let the cut-off member write that much later.)
            waited = time.monotonic() - since
            if waited >= self.claims.lease - self.claims.margin:
                self._cut_off(f'no answer in {waited:.0f} s')
            return None
        except Exception as e:  # noqa: BLE001 - the backend, any error
            # tooz wraps most of its backend's errors in ToozError, not
            # all: the Redis driver lets a refused connection through as
            # redis' own ConnectionError. Either way the member is cut
            # off; letting it through skipped the release.
            self._reading = None
            self._cut_off(e)
            return None
        self._reading = None
        return members

    def _group_members(self) -> set:
        """Run tooz's watchers (the election) and read the group's
        members, rejoining when this member's membership expired."""
        self.coord.run_watchers()
        members = set(self.coord.get_members(self.group_id).get())
        me = self.ctx.member_id.encode()
        if me not in members:
            # Our membership expired (we were cut off or paused).
            LOG.warning('rejoining the group %s', self.group_id)
            self.coord.join_group(self.group_id, {'weight': 1}).get()
            members.add(me)
        return members

    def _renew(self) -> None:
        for name in self.claims.renew():
            LOG.warning('lost claim %(name)s (this member was paused or '
                        'cut off past its lease)', {'name': name})

    def _set_ring(self, members) -> None:
        """The ring of ``members`` (the group's, just read), made again
        when they changed."""
        if self.ring is None or set(members) != set(self.ring.nodes):
            self.ring = _tooz_hashring().HashRing(members)

    def _mine(self, name: str) -> bool:
        """Whether the ring gives spoke ``name`` to this member."""
        return self.ctx.member_id.encode() in self.ring.get_nodes(
            name.encode('utf-8'))

    def _cut_off(self, error) -> None:
        if self.healthy:
            LOG.error('coordination backend unreachable (%(err)s): '
                      'releasing every spoke until it answers again',
                      {'err': error})
        self.healthy = False
        # ``elected`` stays: tooz's Redis driver tells a member once that
        # it was elected, and its heart thread keeps the leader lock for
        # as long as it reaches Redis; a member that forgot it (cut off
        # by a slow read while its heart still beat) would never be told
        # again, and no member would read the feed. The feed's claim,
        # released here, is what says who reads it: a member that was
        # elected claims it again only once it is free.
        self.claims.release_all()

    def _balance(self) -> None:
        """Claim the spokes the ring gives this member; release others."""
        ready = self.ctx.state.hub() is not None and \
            self.ctx.state.hub().cursor is not None
        for site in self.ctx.spokes:
            name = coordination.spoke_claim(site.name)
            mine = ready and self._mine(site.name)
            if mine and not self.claims.holds(name):
                if self.claim_spoke(site):
                    LOG.info('now driving spoke %(spoke)s (generation '
                             '%(gen)s)', {'spoke': site.name,
                                          'gen': site.fence[1]})
                    self.ctx.announce()
            elif not mine and self.claims.holds(name):
                self.claims.release(name)
                LOG.info('spoke %(spoke)s handed over to another member',
                         {'spoke': site.name})

    def _lead(self) -> None:
        if self.elected and not self.claims.holds(claims_mod.FEED):
            if self.claims.acquire(claims_mod.FEED):
                LOG.info('reading the hub\'s feed (generation %s)',
                         self.claims.generation(claims_mod.FEED))

    def idle_wait(self) -> float:
        return self.heartbeat

    def feed(self, feed) -> None:
        """The feed thread: follow the hub's feed while leader."""
        ctx = self.ctx
        try:
            while not ctx.stop.is_set():
                if not self.is_leader():
                    ctx.sleep(self.heartbeat)
                    continue
                try:
                    if ctx.state.hub().cursor is None:
                        ctx.state.restart_feed(
                            ctx.hub.capabilities()['head_cursor'])
                    feed.follow()
                except claims_mod.ClaimLost as e:
                    LOG.warning('%s', e)
                except client.SiteError as e:
                    LOG.warning('hub %(hub)s: %(err)s',
                                {'hub': ctx.hub.name, 'err': e})
                    ctx.sleep(ctx.backoff(3))
                except context_mod.Stopped:
                    raise
                except Exception:
                    # The state database (reading the cursor), or a bug:
                    # as the feed itself does (hubfeed.HubFeed.broke).
                    LOG.exception('reading the feed of hub %(hub)s: '
                                  'unexpected error; trying again after '
                                  'a backoff', {'hub': ctx.hub.name})
                    ctx.sleep(ctx.backoff(3))
        except context_mod.Stopped:
            return

    def stop(self) -> None:
        super().stop()
        if self.coord is not None:
            try:
                self.coord.leave_group(self.group_id).get()
                self.coord.stop()
            except Exception as e:  # noqa: BLE001 - see tick()
                LOG.warning('leaving the group: %s', e)


def _in_thread(fn) -> futures.Future:
    """``fn()`` run in a daemon thread of its own: its future. (Not an
    executor's thread: those are joined at exit, and a read hanging on an
    unreachable backend would hold up the agent's exit.)"""
    future = futures.Future()

    def run():
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed over
                future.set_exception(e)
    threading.Thread(target=run, name='coordination', daemon=True).start()
    return future


def _tooz_coordination():
    """tooz's coordination module, imported only where a member is made:
    tooz imports futurist, which imports eventlet where it is installed
    (beside Keystone) and warns about it, at every start of every agent
    otherwise."""
    return importlib.import_module('tooz.coordination')


def _tooz_hashring():
    """tooz's hashring module (see :func:`_tooz_coordination`)."""
    return importlib.import_module('tooz.hashring')


def start(ctx: context_mod.Context) -> coordination.Solo:
    """The membership of this run, started (SystemExit when refused): a
    :class:`Member` with ``[coordination] backend_url`` (not in
    ``--once``), else a :class:`coordination.Solo`."""
    if ctx.conf.coordination.backend_url and not ctx.once:
        membership = Member(ctx)
    else:
        membership = coordination.Solo(ctx)
    membership.start()
    ctx.membership = membership
    return membership
