"""Two-way: the spokes' own changes, up to the hub.

For the types that flow up (``spoke_originated_types``), one thread per
spoke reads that spoke's own feed and writes the changes made there
(origin unset: not the agent's writes) to the hub, carrying the spoke as
their origin; the hub's feed then brings them to every other spoke, and
never back to the one they came from. What the hub refuses waits in
pending under ``state.up_key(spoke)``, retried each read. When a spoke's
own feed lost its history (410), :mod:`keystone_syncext.agent.
upward_recovery` sends up by digest what the gap held.

In ``--once`` one thread brings every spoke's changes up side by side
(:meth:`Upward.once`) before the hub's feed is read to its end.
"""

import concurrent.futures
import logging
import threading

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.agent import connect as connect_mod
from keystone_syncext.agent import context as context_mod
from keystone_syncext.agent import passes
from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import upward_recovery
from keystone_syncext.agent import writer as writer_mod

LOG = logging.getLogger(__name__)


class Upward:
    """The upward flow of one run (a :class:`context.Context`)."""

    def __init__(self, ctx: context_mod.Context, writer: writer_mod.Writer,
                 connector: connect_mod.Connector):
        self.ctx, self.writer, self.connector = ctx, writer, connector
        # Per spoke: the head its own feed was restarted at after a 410.
        self.restarted: dict[str, str] = {}

    def types(self, site: client.Site) -> list[str]:
        """The types that flow up from ``site``."""
        ctx = self.ctx
        return [t for t in ctx.conf.spoke_originated_types
                if t in ctx.hub_types
                and t in ctx.spoke_types.get(site.name, ())]

    def once(self) -> None:
        """--once: bring every spoke's own changes to the hub, all spokes
        side by side; a spoke that fails is reported, the others go on.

        The hub's feed is read to the end once every spoke has *settled*:
        sent what it had, or failed once. A spoke that is down is still
        retried (and reported), but never holds the others back; what it
        sends after settling reaches the other spokes on the next run."""
        ctx, out = self.ctx, self.ctx.outcomes
        unsettled = {s.name for s in ctx.spokes}
        lock = threading.Lock()

        def settle(site):
            with lock:
                unsettled.discard(site.name)
                if not unsettled:
                    out.upward_done.set()

        workers = min(len(ctx.spokes), ctx.conf.max_parallel_spokes) or 1
        try:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda site: self._send_once(site, settle),
                              ctx.spokes))
        finally:
            out.upward_done.set()

    def _send_once(self, site: client.Site, settle) -> None:
        """--once: bring spoke ``site``'s own changes to the hub, retried
        while transient; ``settle(site)`` after every attempt."""
        ctx, out = self.ctx, self.ctx.outcomes
        failures = 0
        while True:
            try:
                cursor = ctx.state.upward_cursor(site.name)
                while self.push(site):
                    pass
                self._sent_once(site, failures, cursor)
                return
            except client.SiteError as e:
                failures += 1
                if not e.transient or \
                        failures >= ctx.conf.once_attempts:
                    out.up_outcome[site.name] = (
                        f'its own changes could not be read or sent to '
                        f'the hub: {e}')
                    return
                site.site_id = None
                try:
                    ctx.sleep(ctx.backoff(failures))
                except context_mod.Stopped:
                    return
            except context_mod.Stopped:
                return
            except Exception as e:
                # A bug, not the spoke: say where, report the spoke.
                LOG.exception('spoke %(spoke)s: unexpected error while '
                              'sending its own changes to the hub',
                              {'spoke': site.name})
                out.up_outcome[site.name] = (
                    f'its own changes: agent error: {type(e).__name__}')
                return
            finally:
                settle(site)

    def _sent_once(self, site: client.Site, failures: int, cursor) -> None:
        """--once, ``site``'s own changes sent: note them as late when
        they went after the hub's feed was last read, and what the hub
        refused."""
        ctx, out = self.ctx, self.ctx.outcomes
        if failures and out.last_read.is_set() and \
                ctx.state.upward_cursor(site.name) != cursor:
            # Read and sent after the hub's feed was read for
            # the last time: the other spokes lack it.
            out.late_up.append(site.name)
        if ctx.state.pending_for(state_mod.up_key(site.name)):
            out.up_outcome[site.name] = (
                'its own changes were refused by the hub: ' +
                ctx.state.report_pending(
                    state_mod.up_key(site.name)))

    def loop(self, site: client.Site) -> None:
        """Spoke ``site``'s upward thread, until the run stops."""
        ctx = self.ctx
        failures = 0
        try:
            while not ctx.stop.is_set():
                if not ctx.owns(site.name):  # another member drives it
                    ctx.sleep(ctx.idle_wait())
                    continue
                try:
                    self.push(site, wait=ctx.conf.poll_wait)
                    failures = 0
                except claims_mod.ClaimLost as e:
                    LOG.warning('spoke %(spoke)s: %(err)s',
                                {'spoke': site.name, 'err': e})
                except client.SiteError as e:
                    failures += 1
                    ctx.metrics.error(site.name, e)
                    LOG.warning('spoke %(spoke)s: reading its own changes '
                                'for the hub failed (%(n)d in a row): '
                                '%(err)s', {'spoke': site.name,
                                            'n': failures, 'err': e})
                    site.site_id = None
                    ctx.sleep(ctx.backoff(failures))
                except Exception:
                    failures += 1
                    LOG.exception('spoke %(spoke)s: unexpected error while '
                                  'sending its own changes to the hub',
                                  {'spoke': site.name})
                    ctx.sleep(ctx.backoff(failures))
        except context_mod.Stopped:
            return

    def push(self, site: client.Site, wait: float = 0) -> bool:
        """One pass upward (one request id): :meth:`_push`."""
        with passes.one_pass():
            return self._push(site, wait)

    def _push(self, site: client.Site, wait: float = 0) -> bool:
        """One read of spoke ``site``'s feed, for the types that flow up;
        what was made at the spoke itself goes to the hub with the spoke as
        its origin, and what the hub refuses waits in pending (retried
        each time). The cursor moves only after the hub answered. Returns
        whether the spoke's feed has more right away."""
        ctx = self.ctx
        self.connector.connect(site)
        types = self.types(site)
        if not types:
            if wait:
                ctx.sleep(wait)   # nothing flows up from this spoke
            return False
        cursor = ctx.state.upward_cursor(site.name)
        if cursor is None:
            # First sight of this spoke: what it made before is its own.
            ctx.state.set_upward_cursor(
                site.name, site.capabilities()['head_cursor'])
            return True
        try:
            page = site.changes(since=cursor,
                                limit=ctx.conf.feed_page_size, wait=wait,
                                types=types)
        except client.Gone as e:
            self._recover(site, types, cursor, e)
            return True
        key = state_mod.up_key(site.name)
        retry = ctx.state.pending_for(key)
        base = max((c.seq for c in retry), default=0) + 1
        # Origin set: written there by the agent (from the hub); only what
        # the spoke made itself goes up.
        mine = [state_mod.Change(base + n, c['type'], c['id'], c['op'],
                                 None, c.get('resource'))
                for n, c in enumerate(page['changes'])
                if c.get('origin') is None]
        if retry or mine:
            done, failed = self.send(site, retry + mine)
            ctx.state.record(key, None, done, failed)
            if mine:
                LOG.info('spoke %(spoke)s: sent %(ok)d of its own changes '
                         'to hub %(hub)s (%(bad)d refused)',
                         {'spoke': site.name, 'hub': ctx.hub.name,
                          'ok': len(done), 'bad': len(failed)})
        ctx.state.set_upward_cursor(site.name, page['next'])
        return bool(page['more'])

    def _recover(self, site, types, cursor, gone) -> None:
        """The spoke's own feed lost the history after ``cursor``: follow
        it from its head and send up by digest what the gap held
        (:mod:`keystone_syncext.agent.upward_recovery`)."""
        ctx = self.ctx
        if self.restarted.get(site.name) == cursor:
            raise client.SiteError(site.name, 'its own feed answered 410 '
                                   '(Gone) again at the head it gave')
        head = (gone.body.get('head_cursor') or
                site.capabilities(speaks=ctx.hub_versions)['head_cursor'])
        self.restarted[site.name] = head
        report = upward_recovery.recover(ctx, self.send, site, types, head)
        if report.held and ctx.once:
            ctx.outcomes.up_held[site.name] = (
                f'its own feed lost its history; {report.held} of its own '
                'resources are held differently at the hub (the hub\'s '
                'kept: see keystone-sync conflicts)')

    def send(self, site: client.Site, changes):
        """Write changes made at spoke ``site`` to the hub, with the
        spoke as their origin; (done, failed with reasons)."""
        ctx = self.ctx
        done = []
        selection = ctx.selections.get(site.name)
        if selection:
            # Judged as the other way round: upserts on the spoke's
            # representation, deletes on the hub's copy.
            changes, skipped = selection.filter(
                site.name, changes, site.resource, ctx.hub.resource)
            done += [c for c, _ in skipped]
        todo = []
        for c in changes:
            if c.op != 'delete' and c.resource is None:
                done.append(c)   # deleted since: its delete follows
            else:
                todo.append(c)
        ok, bad, _ = self.writer.write(ctx.hub, todo, origin=site.site_id)
        if bad:
            # The hub's reason (it never names a secret): what an operator
            # must see to tell a refused attack from a missing dependency.
            # Once per item; its retries are in status.
            known = {c.key for c in ctx.state.pending_for(
                state_mod.up_key(site.name))}
            for c, why in bad:
                LOG.log(logging.DEBUG if c.key in known else logging.WARNING,
                        'hub %(hub)s refused a change made at spoke '
                        '%(spoke)s: %(why)s', {'hub': ctx.hub.name,
                                               'spoke': site.name,
                                               'why': why})
        return done + ok, bad
