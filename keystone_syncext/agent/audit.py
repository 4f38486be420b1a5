"""The periodic audit: each spoke compared with the hub by digest, in the
background, and what differs repaired.

Drift made directly at a spoke (someone edits it by hand) is not in the
hub's feed, so ``run`` would never see it; every ``audit_interval``
seconds each spoke the agent drives is compared with the hub by digest
(:func:`keystone_syncext.agent.reconcile.reconcile_spoke`: the same walk
and repair rules as ``keystone-sync reconcile``, so the spoke's own
resources are left alone and the selection and conflict rules apply).
When nothing differs an audit costs a root digest of every type at each
site: one ``POST /v3/sync/digests`` per site where the site offers it.

Throttled so that it never holds live changes back:

- it runs in the spoke's own thread, and only after a pass found nothing
  to apply (the spoke is caught up with the outbox), so it never races
  the spoke's outbox writes; changes arriving meanwhile are applied
  right after it, and they are newer than what it read;
- and only while the hub's feed is read to its head (the outbox holds
  everything the hub had at the last read: its cursor is the head it
  gave). A spoke caught up with an outbox that is itself behind (a
  start, a burst being read page by page) would otherwise write the
  feed's backlog through the audit's slower digest walk, and hold the
  next live change behind it: seen as a spoke that stopped receiving
  for as long as that walk took, on a busy machine minutes;
- one spoke at a time in this process, and audits start at most one per
  ``audit_interval / spokes driven`` seconds, so a hundred spokes are
  spread over the interval rather than audited at once.

Only what the spoke changed counts as found (drift), judged against what
the agent placed there, as a conflict is: a resource missing at the
spoke while placed, or changed there from what was placed, or back there
after the hub deleted it. A hub change the feed has not brought yet
(the audit reads the hub's current state) is written ahead of the feed
but is no drift. When it last ran, what it found and the writes it made
are kept in the state database (``keystone-sync status``), logged, and
exported as metrics (:mod:`keystone_syncext.agent.metrics`).
"""

import logging
import threading
import time

from keystone_syncext.agent import client
from keystone_syncext.agent import context as context_mod
from keystone_syncext.agent import reconcile as reconcile_mod
from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import writer as writer_mod

LOG = logging.getLogger(__name__)


class Auditor:
    """The audits of one run (a :class:`context.Context`)."""

    def __init__(self, ctx: context_mod.Context, writer: writer_mod.Writer):
        self.ctx, self.writer = ctx, writer
        # One audit at a time in this process.
        self._running = threading.Lock()
        # monotonic time before which no other audit starts.
        self._next_start = 0.0

    @property
    def interval(self) -> int:
        return 0 if self.ctx.once else self.ctx.conf.audit_interval

    def due(self, row) -> bool:
        """Whether spoke ``row`` (its state row) is to be audited now."""
        if not self.interval or row.state != 'live':
            return False
        if row.last_audit_at is not None and (
                state_mod.now() - row.last_audit_at).total_seconds() < \
                self.interval:
            return False
        # Due by time; the hub row is read only then, not on every pass
        # that found the spoke caught up. The feed's backlog first
        # (module docstring).
        feed = self.ctx.state.hub()
        return feed.cursor is not None and feed.cursor == feed.head

    def maybe(self, site: client.Site) -> int:
        """Audit ``site`` if it is due and no other audit holds the turn
        (called by the spoke's thread once a pass found it caught up);
        returns the writes made (0 when it did not run)."""
        ctx = self.ctx
        if not self.due(ctx.state.spoke(site.name)):
            return 0
        if time.monotonic() < self._next_start or \
                not self._running.acquire(blocking=False):
            return 0
        try:
            spread = self.interval / max(1, len(ctx.owned_spokes()))
            self._next_start = time.monotonic() + spread
            return self.audit(site)
        finally:
            self._running.release()

    def audit(self, site: client.Site) -> int:
        """Compare ``site`` with the hub and repair it; returns the
        writes made."""
        ctx = self.ctx
        reports = reconcile_mod.reconcile_spoke(ctx, self.writer, site)
        repaired = sum(r.upserts + r.deletes for r in reports)
        refused = sum(r.refused for r in reports)
        found = sum(r.drift for r in reports)
        ctx.state.audited(site.name, found, repaired)
        ctx.metrics.audit(site.name, repaired)
        compared = sum(r.compared for r in reports)
        nbytes = sum(r.bytes for r in reports)
        if not found:
            LOG.info('audit of spoke %(spoke)s: no drift from hub %(hub)s '
                     '(%(ahead)d hub changes on their way written ahead '
                     'of the feed, %(bad)d refused; %(cmp)d digest nodes '
                     'compared, %(bytes)d bytes)',
                     {'spoke': site.name, 'hub': ctx.hub.name,
                      'ahead': repaired, 'bad': refused,
                      'cmp': compared, 'bytes': nbytes})
            return repaired
        for r in reports:
            if r.drift:
                LOG.warning('audit of spoke %(spoke)s: %(type)s: %(drift)d '
                            'changed at the spoke; %(miss)d missing, '
                            '%(diff)d different, %(up)d upserted, %(del)d '
                            'deleted, %(bad)d refused',
                            {'spoke': site.name, 'type': r.type,
                             'drift': r.drift,
                             'miss': r.missing, 'diff': r.differ,
                             'up': r.upserts, 'del': r.deletes,
                             'bad': r.refused})
        LOG.warning('audit of spoke %(spoke)s found %(found)d differences '
                    'made at the spoke (drift from hub %(hub)s): %(fixed)d '
                    'writes, %(bad)d refused (pending); %(cmp)d digest '
                    'nodes compared, %(bytes)d bytes',
                    {'spoke': site.name, 'found': found,
                     'hub': ctx.hub.name, 'fixed': repaired,
                     'bad': refused, 'cmp': compared, 'bytes': nbytes})
        return repaired
