"""One spoke's thread: seed or reconcile when needed, then apply the
outbox.

Each spoke applies the outbox through ``POST /v3/sync/batch`` in
dependency order (:mod:`keystone_syncext.agent.writer`) and moves its
checkpoint only after the spoke answered; a spoke that is down or slow
backs off on its own and never holds the others back. A spoke seen for
the first time is seeded (:mod:`keystone_syncext.agent.seeding`); one
marked for a reconcile (the hub's feed restarted, or the spoke lost its
history) is reconciled by digest (:mod:`keystone_syncext.agent.reconcile`)
before it follows the outbox again. A spoke caught up is audited when
due (:mod:`keystone_syncext.agent.audit`). In ``--once``, the thread ends when
the spoke settled (:class:`keystone_syncext.agent.once.Outcomes`).
"""

import contextlib
import logging
import threading

from keystone_syncext.agent import audit as audit_mod
from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.agent import connect as connect_mod
from keystone_syncext.agent import context as context_mod
from keystone_syncext.agent import once as once_mod
from keystone_syncext.agent import passes
from keystone_syncext.agent import reconcile as reconcile_mod
from keystone_syncext.agent import seeding as seeding_mod
from keystone_syncext.agent import writer as writer_mod

LOG = logging.getLogger(__name__)

# Outbox rows a spoke takes in one pass.
PASS_ROWS = 5000

# A running spoke that wrote checks its history (connect.py) once no news
# came for this long, not after every pass: the check is two requests,
# each validating the agent's token at the spoke, and a change arriving
# during it waited for both (at two changes a second, most passes were
# followed by one). ``--once`` checks after every pass that wrote, as
# before; a run checks at least every connect.HISTORY_CHECK_SECONDS too.
CHECK_QUIET_SECONDS = 1.0


class SpokeSync:
    """The spokes' threads of one run (a :class:`context.Context`)."""

    def __init__(self, ctx: context_mod.Context, writer: writer_mod.Writer,
                 connector: connect_mod.Connector,
                 seeder: seeding_mod.Seeder):
        self.ctx, self.writer = ctx, writer
        self.connector, self.seeder = connector, seeder
        # At most max_parallel_spokes spokes write at a time.
        self.writers = threading.BoundedSemaphore(
            ctx.conf.max_parallel_spokes)
        # The periodic audit, run by a spoke's thread once caught up.
        self.auditor = audit_mod.Auditor(ctx, writer)
        # Spokes written to since their last history check, and those
        # whose owed check is due (no news for CHECK_QUIET_SECONDS); each
        # name is touched only by its spoke's thread.
        self._check_owed: set[str] = set()
        self._check_due: set[str] = set()

    def loop(self, site: client.Site) -> None:
        """Spoke ``site``'s thread: passes until the run stops (in
        ``--once``: until the spoke settled)."""
        ctx = self.ctx
        name = site.name
        failures = 0
        # --once: passes in a row that ended caught up but with refused
        # items; unlike failures, not reset by a pass that went through.
        refused_passes = 0
        try:
            while not ctx.stop.is_set():
                seen = ctx.news()
                if not ctx.owns(name):  # another member drives it
                    ctx.wait_for_news(seen, ctx.idle_wait())
                    continue
                progressed, failures, end = self._attempt(site, failures)
                if end:
                    return
                # None: the pass failed, or reading the state after it.
                read = progressed is not None and \
                    self._read_state(name, failures)
                if not read:
                    continue
                row, npending = read
                if ctx.once:
                    step, refused_passes = self._once_step(
                        name, row, progressed, npending, refused_passes)
                    if step == 'end':
                        return
                    if step == 'again':
                        continue
                if not progressed:
                    self._idle(name, seen, npending)
        except context_mod.Stopped:
            return

    def _idle(self, name: str, seen: int, npending: int) -> None:
        """After a pass that applied nothing: wait for news (``seen``:
        the generation before the pass). A spoke owed a history check
        waits only CHECK_QUIET_SECONDS, and the check is due at the next
        pass if no news came."""
        ctx = self.ctx
        if name in self._check_owed and not ctx.once:
            ctx.wait_for_news(seen, CHECK_QUIET_SECONDS)
            if ctx.news() == seen:
                self._check_due.add(name)
            return
        delay = ctx.backoff(3) if npending else ctx.idle_wait()
        ctx.wait_for_news(seen, delay)

    def _attempt(self, site: client.Site,
                 failures: int) -> tuple[bool | None, int, bool]:
        """One pass, a failure handled: (whether it progressed, None
        when it failed; the failures in a row; whether ``--once`` gave the
        spoke up)."""
        try:
            with self.writers, self._selection_scope(site), \
                    passes.one_pass():
                progressed = self.sync(site)
            return progressed, self._went_through(site.name, failures), \
                False
        except context_mod.Stopped:
            raise
        except (claims_mod.ClaimLost, claims_mod.Fenced) as e:
            self._lost(site.name, e)
            return None, failures, False
        except context_mod.Lapsed as e:
            # Not a failure and not a loss: what the pass committed
            # stays, and the next one starts once the lease is renewed.
            LOG.warning('%s', e)
            return None, failures, False
        except Exception as e:
            failures += 1
            return None, failures, self._failed(site, e, failures)

    def _lost(self, name: str, e: Exception) -> None:
        """Another member took spoke ``name`` over: stop work on it."""
        LOG.warning('spoke %(spoke)s: %(err)s', {'spoke': name, 'err': e})
        if self.ctx.membership is not None:
            self.ctx.membership.lost(name)

    def _read_state(self, name: str, failures: int):
        """After a pass: spoke ``name``'s row and how many items it has
        pending; None, after a backoff, when the state database failed
        (not in ``--once``, where that ends the spoke's thread as any
        error of the agent's own does)."""
        ctx = self.ctx
        try:
            return ctx.state.spoke(name), len(ctx.state.pending_for(name))
        except Exception:
            if ctx.once:
                raise
            LOG.exception('spoke %(spoke)s: reading its state failed; '
                          'trying again after a backoff', {'spoke': name})
            ctx.sleep(ctx.backoff(failures + 1))
            return None

    def _note(self, name: str, message: str | None) -> None:
        """Note spoke ``name``'s last error (None: it went through) in
        the state; a state database that fails it is logged, not the end
        of the spoke's thread (its next pass notes it again)."""
        try:
            self.ctx.state.spoke_error(name, message)
        except Exception as e:
            LOG.warning('spoke %(spoke)s: could not note its state in the '
                        'state database (%(err)s)',
                        {'spoke': name, 'err': type(e).__name__})

    def _went_through(self, name: str, failures: int) -> int:
        """Note a pass that went through; the failures in a row (none)."""
        if failures:
            LOG.info('spoke %(spoke)s is back', {'spoke': name})
        self._note(name, None)
        return 0

    def _failed(self, site: client.Site, e: Exception,
                failures: int) -> bool:
        """Note a failed pass (called while handling ``e``); True when
        ``--once`` gives the spoke up, else after the backoff."""
        ctx, name = self.ctx, site.name
        if not isinstance(e, client.SiteError):
            # A bug, not the spoke: say where, keep going.
            LOG.exception('spoke %(spoke)s: unexpected error',
                          {'spoke': name})
            e = client.SiteError(name, f'agent error: '
                                 f'{type(e).__name__}')
        self._note(name, str(e))
        ctx.metrics.error(name, e)
        LOG.warning('spoke %(spoke)s: %(err)s (%(n)d failures in '
                    'a row)', {'spoke': name, 'err': e,
                               'n': failures})
        if ctx.once and (not e.transient or
                         failures >= ctx.conf.once_attempts):
            ctx.outcomes.outcome[name] = str(e)
            return True
        site.site_id = None  # ask for capabilities again
        ctx.sleep(ctx.backoff(failures))
        return False

    def _once_step(self, name: str, row, progressed: bool, npending: int,
                   refused_passes: int) -> tuple[str | None, int]:
        """``--once``, after a pass: ``('end', n)`` when the spoke settled
        (its outcome is set), ``('again', n)`` to pass again after a
        backoff, ``(None, n)`` to go on; ``n`` the refused passes in a
        row so far."""
        ctx, out = self.ctx, self.ctx.outcomes
        if out.hub_failure and not progressed:
            out.outcome[name] = once_mod.HUB_UNREAD
            return 'end', refused_passes
        if not out.reached(row):
            return None, refused_passes
        if not npending:
            out.outcome[name] = None
            return 'end', refused_passes
        refused_passes += 1
        if refused_passes >= ctx.conf.once_attempts:
            out.outcome[name] = once_mod.refused(
                ctx.state, ctx.hub.name, name, npending)
            return 'end', refused_passes
        ctx.sleep(ctx.backoff(refused_passes))
        return 'again', refused_passes

    def _selection_scope(self, site):
        selection = self.ctx.selections.get(site.name)
        if not selection:
            return contextlib.nullcontext()
        return selection.scope(self.ctx.hub.resource)

    def sync(self, site: client.Site) -> bool:
        """One pass: seed or reconcile if needed, then apply the outbox;
        returns whether anything was applied."""
        ctx = self.ctx
        self.connector.connect(site)
        row = ctx.state.spoke(site.name)
        progressed = False
        if row.state in ('reconcile', 'reconciling'):
            self.reconcile(site)
            progressed = True
        elif row.state != 'live':
            self.seeder.seed(site)
            progressed = True
        first, wrote = True, progressed
        while not ctx.stop.is_set():
            row = ctx.state.spoke(site.name)
            rows = ctx.state.outbox_after(row.applied_seq, PASS_ROWS)
            retry = [c for c in ctx.state.pending_for(site.name)
                     if not writer_mod.held_back(c, site)] if first else []
            first = False
            if not rows and not retry:
                break
            work = [c for c in retry + rows
                    if c.origin is None or c.origin != site.site_id]
            done, failed, written = self.writer.apply(site, work)
            # Echoes and replaced pending items count as done.
            by_key = {c.key for c in work}
            done += [c for c in retry + rows if c.key not in by_key]
            ctx.state.record(site.name, rows[-1].seq if rows else None,
                             done, failed, written)
            progressed = progressed or bool(rows) or bool(done)
            wrote = wrote or bool(written)
            if rows:
                LOG.info('spoke %(spoke)s: applied up to outbox %(seq)d '
                         '(%(ok)d written, %(bad)d refused)',
                         {'spoke': site.name, 'seq': rows[-1].seq,
                          'ok': len(done), 'bad': len(failed)})
            if not rows:
                break
        if not progressed and not ctx.stop.is_set():
            # Caught up: the spoke's turn for the audit, if due.
            wrote = bool(self.auditor.maybe(site)) or wrote
        if wrote:
            self._check_owed.add(site.name)
        if site.name in self._check_owed and (
                ctx.once or site.name in self._check_due):
            # A marker past what the agent wrote: a restore of the spoke
            # to a backup from before these writes is then caught by the
            # next check (the marker is above the restored head, or names
            # another change), whenever the restore happens. In a run it
            # waits for a quiet moment (CHECK_QUIET_SECONDS).
            self.connector.check_history(site)
            self._check_owed.discard(site.name)
        self._check_due.discard(site.name)
        return progressed

    def reconcile(self, site: client.Site) -> None:
        """Reconcile a spoke by digest after the feed was restarted at
        the hub's head (it lost the history after our cursor)."""
        ctx = self.ctx
        ctx.state.start_reconcile(site.name)
        LOG.info('reconciling spoke %(spoke)s with hub %(hub)s by digest',
                 {'spoke': site.name, 'hub': ctx.hub.name})
        reports = reconcile_mod.reconcile_spoke(ctx, self.writer, site)
        ctx.state.finish_reconcile(site.name)
        total = reconcile_mod.TypeReport('all')
        for r in reports:
            if r.missing or r.differ or r.deletes or r.refused:
                LOG.info('reconciled %(type)s at spoke %(spoke)s: %(cmp)d '
                         'digest buckets compared, %(miss)d missing, '
                         '%(diff)d different, %(up)d upserted, %(del)d '
                         'deleted, %(local)d site-local kept, %(bytes)d '
                         'bytes', {'type': r.type, 'spoke': site.name,
                                   'cmp': r.compared, 'miss': r.missing,
                                   'diff': r.differ, 'up': r.upserts,
                                   'del': r.deletes, 'local': r.kept_local,
                                   'bytes': r.bytes})
            for f in ('compared', 'upserts', 'deletes', 'kept_local',
                      'refused', 'bytes'):
                setattr(total, f, getattr(total, f) + getattr(r, f))
        LOG.info('reconciled spoke %(spoke)s: %(cmp)d digest buckets '
                 'compared, %(up)d upserted, %(del)d deleted, %(local)d '
                 'site-local kept, %(bad)d refused (pending), %(bytes)d '
                 'bytes', {'spoke': site.name, 'cmp': total.compared,
                           'up': total.upserts, 'del': total.deletes,
                           'local': total.kept_local, 'bad': total.refused,
                           'bytes': total.bytes})
