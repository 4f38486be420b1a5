"""What ``keystone-sync status`` and the metrics read from the state
database (:class:`StatusReport`, a part of
:class:`keystone_syncext.agent.state.State`)."""

import sqlalchemy as sa

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import state_tables as tables


class StatusReport:
    """The status of the hub and of each spoke (``self.engine``: the
    state database)."""

    def report(self) -> dict:
        """The hub and, per spoke, what ``keystone-sync status`` and the
        metrics show: ``lag_seconds`` is the age of the oldest change (or
        pending item) the spoke has not applied, 0 when it has none;
        ``owner`` the agent (member) whose claim on the spoke is live,
        None when none is."""
        when = tables.now()
        with self.engine.connect() as conn:
            hub_row = conn.execute(sa.select(tables.hub)).one_or_none()
            owners = {r.name: r for r in conn.execute(
                sa.select(tables.claim).where(
                    tables.claim.c.expires_at > when))}
            out = [_spoke_report(conn, r, when, owners.get(
                claims_mod.spoke_claim(r.name)))
                for r in conn.execute(sa.select(tables.spoke).order_by(
                    tables.spoke.c.name))]
        return {'hub': dict(hub_row._mapping) if hub_row else None,
                'spokes': out}

    def pending_errors(self, name: str) -> list[str]:
        """The reasons of spoke ``name``'s refused items, oldest first."""
        with self.engine.connect() as conn:
            return list(conn.execute(_oldest_pending([name])).scalars())

    def report_pending(self, name: str) -> str | None:
        """The oldest refused item of spoke ``name``, with its reason."""
        with self.engine.connect() as conn:
            return conn.execute(_oldest_pending([name]).limit(1)).scalar()


def _oldest_pending(keys):
    pending = tables.pending
    return (sa.select(pending.c.last_error)
            .where(pending.c.spoke.in_(keys))
            .order_by(pending.c.since, pending.c.seq))


def _spoke_report(conn, r, when, claim) -> dict:
    """Spoke row ``r``'s status; ``claim`` its live claim or None."""
    outbox, pending = tables.outbox, tables.pending
    behind = (sa.select(sa.func.count(), sa.func.min(outbox.c.changed_at))
              .where(outbox.c.seq > r.applied_seq))
    if r.site_id:
        behind = behind.where(sa.or_(outbox.c.origin.is_(None),
                                     outbox.c.origin != r.site_id))
    count, oldest = conn.execute(behind).one()
    keys = [r.name, tables.up_key(r.name)]
    npending, first = conn.execute(
        sa.select(sa.func.count(), sa.func.min(pending.c.since))
        .where(pending.c.spoke.in_(keys))).one()
    nconflicts = conn.execute(sa.select(sa.func.count()).where(
        tables.conflict.c.spoke == r.name)).scalar()
    return {'spoke': r.name, 'site_id': r.site_id, 'state': r.state,
            'lag_changes': count, 'oldest_unapplied': oldest,
            'pending': npending, 'pending_since': first,
            'pending_reason': conn.execute(
                _oldest_pending(keys).limit(1)).scalar(),
            'conflicts': nconflicts,
            'last_success_at': r.last_success_at,
            'last_reconcile_at': r.last_reconcile_at,
            'last_error': r.last_error, 'last_error_at': r.last_error_at,
            'failures': r.failures, 'last_audit_at': r.last_audit_at,
            'audit_found': r.audit_found,
            'audit_repaired': r.audit_repaired,
            'owner': claim.member if claim is not None else None,
            'lag_seconds': _lag_seconds(when, count, npending, oldest,
                                        first)}


def _lag_seconds(when, count, npending, oldest, pending_since) -> float:
    """Seconds since the oldest change or pending item not applied."""
    if not (count or npending):
        return 0.0
    since = min([t for t in (oldest, pending_since) if t] or [when])
    return round((when - since).total_seconds(), 1)
