"""The sync loop: the hub's feed, read once, fanned out to every spoke.

One thread reads the hub's change feed (long-polling when caught up) and
stores what it reads in the outbox, with the cursor, in one transaction.
Each spoke has its own thread that applies the outbox to that spoke through
``POST /v3/sync/batch``, in dependency order, and moves the spoke's
checkpoint only after the spoke answered; a spoke that is down or slow
backs off on its own and never holds the others back. A spoke seen for the
first time is seeded from the hub's listings first. When the hub no longer
holds the history after the cursor (410), the feed restarts at the hub's
head and every seeded spoke is reconciled by digest
(:mod:`keystone_syncext.agent.reconcile`) before it follows the outbox
again.

Two-way: for the types that flow up (``spoke_originated_types``), one more
thread per spoke reads that spoke's own feed and writes the changes made
there (origin unset: not the agent's writes) to the hub, carrying the
spoke as their origin; the hub's feed then brings them to every other
spoke, and never back to the one they came from.

Nothing is lost to a crash: the outbox and checkpoints are durable, and
anything re-applied after a crash is an upsert or delete by id.

The parts, each a module with a public interface, share one
:class:`~keystone_syncext.agent.context.Context` (this :class:`Agent`):

- :mod:`~keystone_syncext.agent.writer`: order, chunk, guard, write, split
  a refused batch down to the item (used by every part that writes, and
  by :mod:`~keystone_syncext.agent.conflicts` and
  :mod:`~keystone_syncext.agent.reconcile`);
- :mod:`~keystone_syncext.agent.hubfeed`: the hub's feed thread;
- :mod:`~keystone_syncext.agent.connect`: a spoke's capabilities and
  history checks;
- :mod:`~keystone_syncext.agent.seeding`: seeding with read-ahead;
- :mod:`~keystone_syncext.agent.spokes`: each spoke's thread;
- :mod:`~keystone_syncext.agent.upward`: the spokes' own changes, up;
- :mod:`~keystone_syncext.agent.once`: the ``--once`` outcomes and report.

This module wires them and runs their threads.
"""

import logging
import threading
import time

import tenacity

from keystone_syncext.agent import client
from keystone_syncext.agent import connect as connect_mod
from keystone_syncext.agent import context as context_mod
from keystone_syncext.agent import coordination
from keystone_syncext.agent import hubfeed as hubfeed_mod
from keystone_syncext.agent import members
from keystone_syncext.agent import once as once_mod
from keystone_syncext.agent import seeding as seeding_mod
from keystone_syncext.agent import service as service_mod
from keystone_syncext.agent import spokes as spokes_mod
from keystone_syncext.agent import upward as upward_mod
from keystone_syncext.agent import writer as writer_mod

LOG = logging.getLogger(__name__)


class Agent(context_mod.Context):
    """``keystone-sync run``: one hub, its spokes, one state database;
    the parts wired (see the module's docstring), and their threads."""

    def __init__(self, conf, hub: client.Site, spokes: list[client.Site],
                 state, once: bool = False, selections=None, resolver=None):
        super().__init__(conf, hub, spokes, state, once=once,
                         selections=selections, resolver=resolver)
        self.writer = writer_mod.Writer(self)
        self.connector = connect_mod.Connector(self)
        self.feed = hubfeed_mod.HubFeed(self)
        self.seeder = seeding_mod.Seeder(self, self.writer)
        self.spoke_sync = spokes_mod.SpokeSync(self, self.writer,
                                               self.connector, self.seeder)
        self.upward = upward_mod.Upward(self, self.writer, self.connector)
        # Metrics, systemd notifications, SIGHUP (service.py).
        self.service = service_mod.Service(self)
        # A run (not --once) that ended because a thread it needs ended.
        self.broken = False
        # The threads still in a request when the stop's bound ran out.
        self.left_behind: list[str] = []

    def connect(self, site: client.Site) -> None:
        """Connect to spoke ``site`` (:meth:`connect.Connector.connect`)."""
        self.connector.connect(site)

    def run(self) -> int:
        """Run until stopped (or, with ``once``, until every spoke
        settled); the exit code."""
        self.state.migrate()
        # Refused here (SystemExit) when another agent holds the state.
        membership = members.start(self)
        beat = threading.Thread(target=coordination.heartbeat_loop,
                                args=(self, membership), name='heartbeat',
                                daemon=True)
        beat.start()
        try:
            self.service.start()
            return self._run()
        finally:
            self.service.stop()
            self.stop.set()
            beat.join(timeout=membership.heartbeat + 10)
            membership.stop()

    def _run(self) -> int:
        try:
            caps = self._hub_capabilities()
        except context_mod.Stopped:
            return 0
        if caps is None:
            return self._report()
        self.adopt_hub(caps)
        if self.state.hub().cursor is None and self.is_leader():
            # First run: every spoke is seeded from the hub's listings, so
            # the feed is followed from the head on.
            self.state.restart_feed(caps['head_cursor'])
        LOG.info('following hub %(hub)s (site %(site)s, Keystone '
                 '%(version)s, sync protocol %(protocol)d) for %(n)d spokes',
                 {'hub': self.hub.name, 'site': caps['site_id'],
                  'version': caps['keystone_version'],
                  'protocol': self.hub.protocol_version,
                  'n': len(self.spokes)})
        for name in self.owned_spokes():
            self.state.spoke(name)
        threads = self._threads()
        for t in threads:
            t.start()
        self.service.ready()
        try:
            self._wait(threads)
        finally:
            self.stop.set()
            self.service.stopping()
            self.announce()
            self._join(threads)
        return self._report()

    def _join(self, threads: list[threading.Thread]) -> None:
        """Give the requests in flight ``poll_wait + 10`` seconds to
        finish, all threads together (one thread after another, each with
        that much, a stop with several sites hanging outlasted a service
        manager's stop timeout). What is still in flight then is left:
        nothing it did is recorded before its site answered, and whatever
        it sent is applied again, by id, at the next start."""
        deadline = time.monotonic() + self.conf.poll_wait + 10
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        self.left_behind = [t.name for t in threads if t.is_alive()]
        if self.left_behind:
            LOG.warning('stopping with requests still in flight in '
                        '%(threads)s; they are sent again at the next '
                        'start', {'threads': ', '.join(self.left_behind)})

    def _threads(self) -> list[threading.Thread]:
        """The run's threads, not started: the feed first, then (in
        ``--once``, with types that flow up) the upward one, the spokes',
        and (not ``--once``) each spoke's upward one."""
        threads = [threading.Thread(target=self.membership.feed,
                                    args=(self.feed,), name='feed',
                                    daemon=True)]
        if self.once and self.conf.spoke_originated_types:
            # Spokes' own changes go to the hub side by side with the
            # rest; the feed is not done until they are in (so this run
            # carries them on to the other spokes).
            self.outcomes.upward_done.clear()
            threads.append(threading.Thread(target=self.upward.once,
                                            name='up', daemon=True))
        threads += [threading.Thread(target=self.spoke_sync.loop, args=(s,),
                                     name=f'spoke-{s.name}', daemon=True)
                    for s in self.spokes]
        if not self.once and self.conf.spoke_originated_types:
            threads += [threading.Thread(target=self.upward.loop,
                                         args=(s,), name=f'up-{s.name}',
                                         daemon=True)
                        for s in self.spokes]
        return threads

    def _wait(self, threads: list[threading.Thread]) -> None:
        """Until the run ends: in ``--once`` every thread but the feed
        ended (the feed is then given 5 s); else until stopped, or until
        one of the run's threads ended (``broken``: exit code 1)."""
        if self.once:
            # The feed ends once read; the spokes once settled.
            for t in threads[1:]:
                t.join()
            self.stop.set()
            threads[0].join(timeout=5)
            return
        if not any(t.name.startswith('spoke-') for t in threads):
            return
        while not self.stop.wait(1):
            self.service.tick()
            ended = [t.name for t in threads if not t.is_alive()]
            if ended and not self.stop.is_set():
                # Each thread of a run goes on until the run stops; one
                # that ended met what it could not survive (logged where
                # it happened): the feed is every spoke's only source, a
                # spoke's thread its only writer. End the run with an
                # error for the service manager to restart the agent,
                # rather than go on with a part missing.
                LOG.error('thread %(threads)s ended while the run goes on; '
                          'stopping (exit code 1)',
                          {'threads': ', '.join(ended)})
                self.broken = True
                return

    def _hub_capabilities(self) -> dict | None:
        """The hub's capabilities, retried with backoff (tenacity); None
        when --once gave the hub up (:class:`context.Stopped` when
        stopped first)."""
        def failed(attempt):
            e = attempt.outcome.exception()
            self.hub_error(str(e))
            self.metrics.error(self.hub.name, e)

        def give_up(attempt) -> bool:
            e = attempt.outcome.exception()
            return self.once and (not e.transient or
                                  attempt.attempt_number >=
                                  self.conf.once_attempts)

        def gave_up(attempt) -> None:
            self.outcomes.hub_failure = str(attempt.outcome.exception())
            for s in self.spokes:
                self.outcomes.outcome[s.name] = once_mod.HUB_UNREAD

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(client.SiteError),
            after=failed, stop=give_up,
            wait=lambda attempt: self.backoff(attempt.attempt_number),
            sleep=self.sleep, retry_error_callback=gave_up,
        )(self.hub.capabilities)

    def _report(self) -> int:
        if not self.once:
            return 1 if self.broken else 0
        return self.outcomes.report(self.hub.name,
                                    [s.name for s in self.spokes])
