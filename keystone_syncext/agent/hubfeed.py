"""The hub's feed: read once, stored in the outbox for every spoke.

One thread follows the hub's change feed (long-polling when caught up,
except in ``--once``) and stores what it reads in the outbox, with the
cursor, in one transaction; each read that brings changes wakes the
spokes. When the hub no longer holds the history after the cursor (410),
the feed restarts at the hub's head and every seeded spoke is marked for
a reconcile by digest; a second 410 at the head the hub gave is the hub
not being well. In ``--once`` the feed is read to its end (after the
spokes' own changes went up), then the spokes are told where the end is
(:class:`keystone_syncext.agent.once.Outcomes`).
"""

import logging

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.agent import context as context_mod
from keystone_syncext.agent import passes

LOG = logging.getLogger(__name__)


class HubFeed:
    """The reader of the hub's feed for one run (a :class:`context.
    Context`)."""

    def __init__(self, ctx: context_mod.Context):
        self.ctx = ctx

    def run(self) -> None:
        """The feed thread: follow the feed until the run stops (or, in
        ``--once``, until it is read to its end or given up)."""
        ctx = self.ctx
        try:
            self.follow()
        except Exception as e:
            # A bug, not the hub: say where, and let --once end (the
            # spokes wait for the feed otherwise).
            LOG.exception('reading the feed of hub %(hub)s: unexpected '
                          'error', {'hub': ctx.hub.name})
            ctx.outcomes.give_up_hub(f'agent error: {type(e).__name__}')
            ctx.announce()

    def follow(self) -> None:
        ctx = self.ctx
        failures = 0
        gone = False    # the last read answered 410
        try:
            while not ctx.stop.is_set():
                try:
                    with passes.one_pass():
                        more = self.read()
                    failures, gone = 0, False
                except client.Gone as e:
                    gone, failures, end = self.answered_gone(e, gone,
                                                             failures)
                    if end:
                        return
                    continue
                except Exception as e:
                    failures += 1
                    if self.failed_read(e, failures):
                        return
                    continue
                if not more and ctx.once and self.read_to_end():
                    return
        except context_mod.Stopped:
            return

    def answered_gone(self, e: client.Gone, gone: bool,
                      failures: int) -> tuple[bool, int, bool]:
        """The feed answered 410 (``gone``: the read before did too);
        (whether this one counts as the 410 already met, the failures in
        a row, whether the feed gives up). A first 410 restarts the feed
        at the head it gave; one that could not be restarted (the state
        database) is a failure, and the next 410 is a first one again."""
        if not gone:
            try:
                self.restart(e.body.get('head_cursor'))
                return True, failures, False
            except Exception as error:
                return False, failures + 1, self.failed_read(
                    error, failures + 1)
        # Again, at the head it gave: the hub is not well.
        return True, failures + 1, self.failed(client.SiteError(
            self.ctx.hub.name, 'its feed answered 410 (Gone) again at the '
            'head it gave'), failures + 1)

    def failed_read(self, e: Exception, failures: int) -> bool:
        """A read of the feed that failed with ``e`` (not a 410): the
        hub's failure (:meth:`failed`), or, not in ``--once``, an error of
        the agent's own (:meth:`broke`); True when the feed gives up.
        Raises what ends the feed here: a stop, a lost claim, and in
        ``--once`` an error of the agent's own (``run`` gives the hub up,
        and says why)."""
        if isinstance(e, client.SiteError):
            return self.failed(e, failures)
        if isinstance(e, (context_mod.Stopped, claims_mod.ClaimLost)) or \
                self.ctx.once:
            raise e
        self.broke(e, failures)
        return False

    def read_to_end(self) -> bool:
        """``--once``, and the feed caught up: True when it is read to its
        end (the spokes are told where that is); False to read again,
        once the spokes' own changes are in."""
        ctx, out = self.ctx, self.ctx.outcomes
        if not out.upward_done.is_set():
            # Read again once the spokes' own changes are in.
            while not out.upward_done.wait(0.2):
                ctx.check_stop()
            out.last_read.set()
            return False
        out.hub_read(ctx.state.top())
        ctx.announce()
        return True

    def restart(self, head) -> None:
        """Follow the feed from ``head`` on: the hub lost the history
        after the cursor; every seeded spoke is reconciled."""
        LOG.error('hub %(hub)s no longer holds the history after our '
                  'cursor; following its feed from the head and '
                  'reconciling every spoke by digest',
                  {'hub': self.ctx.hub.name})
        self.ctx.state.restart_feed(head)
        self.ctx.announce()

    def failed(self, e: client.SiteError, failures: int) -> bool:
        """Note a failed read of the hub's feed; True when --once gives
        the hub up, else after the backoff."""
        ctx = self.ctx
        ctx.hub_error(str(e))
        ctx.metrics.error(ctx.hub.name, e)
        # Lost capture is the hub broken, not busy: loud.
        log = (LOG.error if isinstance(e, client.CaptureIncomplete)
               else LOG.warning)
        log('reading the feed of hub %(hub)s failed (%(n)d in a row): '
            '%(err)s', {'hub': ctx.hub.name, 'n': failures, 'err': e})
        if ctx.once and (not e.transient or
                         failures >= ctx.conf.once_attempts):
            ctx.outcomes.give_up_hub(str(e))
            ctx.announce()
            return True
        ctx.sleep(ctx.backoff(failures))
        return False

    def broke(self, e: Exception, failures: int) -> None:
        """Not ``--once``: note an error of the agent's own while
        reading the feed (the state database failing a write, a bug), with
        its traceback, and wait before reading again. The feed thread is
        every spoke's only source: ending it would leave a running agent
        that no longer reads the hub."""
        ctx = self.ctx
        LOG.exception('reading the feed of hub %(hub)s: unexpected error '
                      '(%(n)d in a row); reading again after a backoff',
                      {'hub': ctx.hub.name, 'n': failures})
        ctx.hub_error(f'agent error: {type(e).__name__}')
        ctx.metrics.error(ctx.hub.name, e)
        ctx.sleep(ctx.backoff(failures))

    def read(self) -> bool:
        """One read; returns whether the hub has more right away."""
        ctx = self.ctx
        cursor = ctx.state.hub().cursor
        wait = 0 if ctx.once else ctx.conf.poll_wait
        page = ctx.hub.changes(since=cursor, limit=ctx.conf.feed_page_size,
                               wait=wait)
        changes = self.known(page['changes'])
        ctx.state.append(changes, page['next'], page['head'])
        if changes:
            LOG.info('read %(n)d changes from hub %(hub)s',
                     {'n': len(changes), 'hub': ctx.hub.name})
            ctx.announce()
        pruned = ctx.state.prune([s.name for s in ctx.spokes])
        if pruned:
            LOG.debug('pruned %d outbox rows every spoke applied', pruned)
        return bool(page['more'])

    def known(self, changes: list[dict]) -> list[dict]:
        """``changes`` less those of types the agent does not know (a hub
        newer than the agent): skipped, never written, and the cursor
        moves on past them (warned of once a run, naming the types)."""
        known, unknown = self.ctx.known_types(c['type'] for c in changes)
        if unknown:
            LOG.warning("hub's feed carries changes (skipped) of types "
                        'this agent does not know: %(types)s; upgrade the '
                        'agent to sync them', {'types': ', '.join(unknown)})
        known = set(known)
        return [c for c in changes if c['type'] in known]
