"""Who drives what: one agent, or several on a tooz backend.

:class:`Solo` (no ``[coordination] backend_url``): the agent takes the
single-agent lock (the ``agent`` claim) at start and then every spoke's
claim and the feed's; a second agent on the same state database finds
the lock held under a live lease and is refused with one line naming the
first (host, pid, since when). A lock whose lease ran out (the first
agent crashed or hung) is taken over, with a warning.

:class:`Member` (``[coordination] backend_url`` set): the members join a
tooz group named after the hub and the state database's agent group
id; a consistent hash ring over the group's live members (tooz's
``hashring``, made from the member list each heartbeat reads) gives each
spoke to one member, which claims
it (a new fencing generation) once the claim is free or its lease ran
out, and releases the spokes the ring gives to another. The member
tooz elects leader claims the feed and reads the hub's feed into the
shared outbox; the others apply the outbox to their spokes, looking at it
every heartbeat. A member that cannot reach the backend releases
everything and drives nothing until it can again.

Either way a heartbeat thread renews the leases; every write is fenced
by the claims (:mod:`keystone_syncext.agent.claims`).
"""

import logging
import os
import socket

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import context as context_mod

LOG = logging.getLogger(__name__)

AGENT, FEED, spoke_claim = (claims_mod.AGENT, claims_mod.FEED,
                            claims_mod.spoke_claim)


def describe(row) -> str:
    """A claim's holder, for an operator."""
    return (f'{row.member} (host {row.host}, pid {row.pid}, since '
            f'{row.since:%Y-%m-%d %H:%M:%S} UTC, lease until '
            f'{row.expires_at:%Y-%m-%d %H:%M:%S} UTC)')


def gone(row) -> bool:
    """Whether ``row``'s holder was a process of this host that is no
    longer running (a crashed agent restarted at once need not wait out
    its lease). A pid reused since is taken as alive: the lease decides."""
    if row is None or row.member is None or \
            row.host != socket.gethostname() or not row.pid:
        return False
    try:
        os.kill(row.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Solo:
    """One agent: everything is this member's."""

    def __init__(self, ctx: context_mod.Context):
        self.ctx = ctx
        conf = ctx.conf.coordination
        self.heartbeat = conf.heartbeat
        self.claims = claims_mod.Claims(ctx.state.engine, ctx.member_id,
                                        conf.lease)

    def start(self) -> None:
        """Take the single-agent lock (SystemExit when another agent holds
        it), then the feed and every spoke."""
        self.lock()
        self.ctx.state.claims = self.claims
        self.claims.acquire(FEED, take_over=True)
        for site in self.ctx.spokes:
            self.claim_spoke(site, take_over=True)

    def lock(self) -> None:
        before = self.claims.holder(AGENT)
        if not self.claims.acquire(AGENT, take_over=gone(before)):
            raise SystemExit(
                f'keystone-sync: another agent already runs on this state '
                f'database: {describe(self.claims.holder(AGENT))}; stop '
                f'it first, or configure [coordination] to run several')
        # The claims of the agent this one replaced are not others'.
        others = [r for r in self.live_others()
                  if before is None or r.member != before.member]
        if others:
            self.claims.release(AGENT)
            raise SystemExit(
                f'keystone-sync: agents with [coordination] run on this '
                f'state database ({describe(others[0])} holds '
                f'{others[0].name}); configure [coordination] here too')
        if before is not None and before.member not in (
                None, self.ctx.member_id):
            LOG.warning('took the state database over from agent '
                        '%(old)s: %(why)s', {'old': describe(before), 'why': (
                            'its process is gone' if gone(before) else
                            'its lease ran out (it crashed or hung)')})

    def live_others(self) -> list:
        """Claims other members hold under a live lease."""
        rows = self.claims.live()
        return [r for r in rows if r.member != self.ctx.member_id]

    def claim_spoke(self, site, take_over: bool = False) -> bool:
        if not self.claims.acquire(spoke_claim(site.name), take_over):
            return False
        site.fence = (self.claims.group(),
                      self.claims.generation(spoke_claim(site.name)))
        return True

    def tick(self) -> None:
        """Renew the leases; a lost lock stops the run (another agent
        took the state database over while this one hung)."""
        for name in self.claims.renew():
            LOG.error('lost claim %(name)s (this agent hung past its '
                      'lease, and another took it over)', {'name': name})
            if name == AGENT:
                self.ctx.stop.set()

    def owns(self, name: str) -> bool:
        return self.claims.holds(spoke_claim(name))

    def is_leader(self) -> bool:
        return self.claims.holds(FEED)

    def lost(self, name: str) -> None:
        """Spoke ``name`` was found taken over (a fenced write)."""
        self.claims.forget(spoke_claim(name))

    def idle_wait(self) -> float:
        return self.ctx.conf.poll_wait + 5

    def stop(self) -> None:
        self.claims.release_all()

    def feed(self, feed) -> None:
        """The feed thread."""
        feed.run()


def heartbeat_loop(ctx: context_mod.Context, membership) -> None:
    """The heartbeat thread: a tick every ``heartbeat`` seconds."""
    while not ctx.stop.wait(membership.heartbeat):
        try:
            membership.tick()
        except Exception:
            LOG.exception('agent heartbeat failed; retrying')
