"""The agent's state database: everything it needs to resume after a crash.

- ``agent_hub``: the hub and the feed cursor read up to.
- ``agent_outbox``: changes read from the hub's feed, in feed order
  (``seq``), with the representation the feed gave. A change is stored
  *with* the cursor advance that read it, in one transaction, so a crash
  either keeps both or neither.
- ``agent_spoke``: per spoke, the outbox ``seq`` applied up to
  (``applied_seq``), its seeding state, last success and last error.
- ``agent_pending``: per spoke, items a spoke refused (a name taken, a
  missing reference); retried on every pass until they apply or a newer
  change of the same resource replaces them. Items the hub refused from a
  spoke (two-way sync) are kept the same way under ``up_key(spoke)``.
- ``agent_upward``: per spoke, the cursor of the spoke's own feed read up
  to, for the types that flow up (``spoke_originated_types``). It moves
  only after the hub answered for what was read.
- ``agent_placed``: per spoke, every resource the agent wrote there, with
  the hub's content hash of what it wrote. A reconcile removes from a spoke
  only what is recorded here; everything else at the spoke is its own. The
  hash is also the base of the three-way conflict check
  (:mod:`keystone_syncext.agent.conflicts`).
- ``agent_conflict``: every conflict resolved (a resource changed at the hub
  and at a spoke since the base): both versions, the winner and why. The
  hashes of secrets in the versions are kept as keyed fingerprints (the
  key in ``agent_key``), and records older than the retention are pruned.

A spoke's checkpoint moves only after the spoke answered for every item up
to it, so a crash re-applies at most one pass, and re-applying is harmless:
every write is an upsert or delete by id. Outbox rows every spoke has
applied are pruned.

Fencing: with :attr:`State.claims` set (``keystone-sync run``), every
write that moves a spoke's checkpoint, cursor or state checks, in its own
transaction, that this member still holds its claim on the spoke (the
feed's claim for the hub's cursor), and raises
:class:`keystone_syncext.agent.claims.ClaimLost` otherwise
(:mod:`keystone_syncext.agent.claims`).

SQLite by default, or any SQLAlchemy URL; our own alembic tree
(``keystone_syncext/agent/migrations``, version table
``keystone_sync_alembic_version``).
"""

import json

from alembic import command as alembic_command
import sqlalchemy as sa

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import state_conflicts
from keystone_syncext.agent import state_report
from keystone_syncext.agent import state_tables

# The tables and helpers, by the names the rest of the agent uses.
VERSION_TABLE = state_tables.VERSION_TABLE
metadata = state_tables.metadata
hub, outbox, spoke = state_tables.hub, state_tables.outbox, state_tables.spoke
pending, placed = state_tables.pending, state_tables.placed
conflict, key, upward = (state_tables.conflict, state_tables.key,
                         state_tables.upward)
FINGERPRINT_KEY = state_tables.FINGERPRINT_KEY
Change = state_tables.Change
up_key, now, parse_time = (state_tables.up_key, state_tables.now,
                           state_tables.parse_time)


def _delete_keys(conn, table, name, keys) -> None:
    """Delete spoke ``name``'s rows of ``table`` (keyed by spoke, type
    and resource id) for ``keys`` ((type, id)), in one statement."""
    if keys:
        conn.execute(table.delete().where(
            table.c.spoke == name,
            table.c.type == sa.bindparam('b_type'),
            table.c.resource_id == sa.bindparam('b_id')),
            [{'b_type': t, 'b_id': i} for t, i in keys])


def _placed_already(conn, name, keys) -> list[tuple[str, str]]:
    """Those of ``keys`` ((type, id)) placed at spoke ``name``, read in
    a few statements (per type, a few hundred ids each)."""
    by_type: dict = {}
    for type_name, id_ in keys:
        by_type.setdefault(type_name, []).append(id_)
    there = []
    for type_name, ids in by_type.items():
        for n in range(0, len(ids), 500):
            there += [(type_name, i) for i in conn.execute(
                sa.select(placed.c.resource_id).where(
                    placed.c.spoke == name, placed.c.type == type_name,
                    placed.c.resource_id.in_(ids[n:n + 500]))).scalars()]
    return there


class State(state_conflicts.ConflictRecords, state_report.StatusReport):
    """The state database at ``url``; conflict records older than
    ``conflict_retention_days`` (None: kept) go with :meth:`prune`."""

    def __init__(self, url: str, conflict_retention_days: int | None = None):
        self.url = url
        self.engine = state_tables.engine(url)
        self.conflict_retention_days = conflict_retention_days
        self._fingerprint_key = None
        # This member's claims (keystone-sync run): writes are fenced.
        self.claims: claims_mod.Claims | None = None

    def _fence(self, conn, name: str | None) -> None:
        """In ``conn``'s transaction: this member still holds spoke
        ``name`` (None: the feed), when claims are in force."""
        if self.claims is None:
            return
        if name is not None and name.endswith(up_key('')):
            name = name[:-len(up_key(''))]  # the spoke's own, to the hub
        self.claims.check(conn, claims_mod.FEED if name is None
                          else claims_mod.spoke_claim(name))

    def migrate(self, revision: str = 'head') -> None:
        # Members of an HA agent starting together: one migrates, the
        # others wait for it, then find the schema at head. The lock is
        # taken on a connection of its own and let go only after the
        # migration's transaction committed: let go before (MariaDB
        # commits each DDL at once, but the version row with the
        # transaction), a waiting member read the version the migration
        # had not committed yet and ran its last step again.
        with self.engine.connect() as lock, \
                state_tables.migration_lock(lock):
            with self.engine.begin() as conn:
                alembic_command.upgrade(state_tables.config(conn), revision)

    def downgrade(self, revision: str = 'base') -> None:
        with self.engine.begin() as conn:
            alembic_command.downgrade(state_tables.config(conn), revision)

    # -- the hub ------------------------------------------------------

    def hub(self):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(hub).where(hub.c.id == 1)) \
                .one_or_none()

    def set_hub(self, name: str, site_id: str, cursor: str | None) -> None:
        """Point the state at hub ``name``. A state database follows one
        hub: pointing it at another is refused, since its cursors mean
        nothing there."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(hub).where(hub.c.id == 1)) \
                .one_or_none()
            if row is None:
                conn.execute(hub.insert().values(
                    id=1, name=name, site_id=site_id, cursor=cursor,
                    head=cursor))
            elif row.site_id != site_id:
                raise SystemExit(
                    f'keystone-sync: the state database follows hub site '
                    f'{row.site_id!r} (cloud {row.name!r}), not '
                    f'{site_id!r}; use another --state for another hub')
            elif row.name != name:
                conn.execute(hub.update().values(name=name))

    def hub_error(self, message: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(hub.update().values(
                last_error=message, last_error_at=now() if message else None))

    def append(self, changes: list[dict], cursor: str, head: str) -> int:
        """Store changes read from the feed, and the cursor after them, in
        one transaction; returns the newest outbox seq."""
        with self.engine.begin() as conn:
            self._fence(conn, None)
            if changes:
                conn.execute(outbox.insert(), [{
                    'cursor': c['cursor'], 'type': c['type'],
                    'resource_id': c['id'], 'op': c['op'],
                    'origin': c.get('origin'),
                    'changed_at': parse_time(c.get('changed_at')),
                    'hash': c.get('hash'),
                    'resource': (json.dumps(c['resource'])
                                 if c.get('resource') is not None
                                 else None)} for c in changes])
            conn.execute(hub.update().values(
                cursor=cursor, head=head, last_read_at=now(),
                last_error=None, last_error_at=None))
            return self._top(conn)

    def restart_feed(self, cursor: str) -> None:
        """The hub lost the history after our cursor: follow the feed from
        the hub's head (``cursor``) on, and reconcile every spoke that was
        seeded (or being seeded) against the hub's digests; a spoke never
        seeded still seeds. The reconcile starts after this cursor moved,
        so whatever changes at the hub after the head arrives through the
        feed, and nothing that changed before it is missed."""
        with self.engine.begin() as conn:
            self._fence(conn, None)
            conn.execute(hub.update().values(cursor=cursor, head=cursor))
            conn.execute(spoke.update().where(spoke.c.state != 'new')
                         .values(state='reconcile'))

    @staticmethod
    def _top(conn) -> int:
        return conn.execute(sa.select(sa.func.max(outbox.c.seq))) \
            .scalar() or 0

    def top(self) -> int:
        with self.engine.connect() as conn:
            return self._top(conn)

    # -- spokes -------------------------------------------------------

    def spoke(self, name: str):
        """Spoke ``name``'s row, created (state ``new``) on first use."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(spoke).where(spoke.c.name == name)) \
                .one_or_none()
            if row is None:
                conn.execute(spoke.insert().values(
                    name=name, state='new', applied_seq=0, failures=0))
                row = conn.execute(
                    sa.select(spoke).where(spoke.c.name == name)).one()
            elif row.state == 'live':
                # Rows it still needed were pruned while it was not
                # configured: what it missed is found by a reconcile.
                oldest = conn.execute(sa.select(sa.func.min(
                    outbox.c.seq))).scalar()
                if oldest is not None and row.applied_seq < oldest - 1:
                    self._fence(conn, name)
                    conn.execute(spoke.update()
                                 .where(spoke.c.name == name)
                                 .values(state='reconcile'))
                    row = conn.execute(
                        sa.select(spoke).where(spoke.c.name == name)).one()
            return row

    def set_site_id(self, name: str, site_id: str) -> None:
        with self.engine.begin() as conn:
            self._fence(conn, name)
            conn.execute(spoke.update().where(spoke.c.name == name)
                         .values(site_id=site_id))

    def note_history(self, name: str, history_id: str | None,
                     marker: str | None, rewound: bool = False) -> bool:
        """Record spoke ``name``'s feed ``history_id`` and a ``marker``
        cursor from its capabilities. When the history id differs from
        the one recorded before, or ``rewound`` (the old marker was
        refused), the spoke may have lost what the agent wrote there
        (restored from a backup, or its capture had a gap): a spoke that
        was seeded (or being seeded) is put in state ``reconcile``, as
        after the hub's 410. Returns whether it was."""
        with self.engine.begin() as conn:
            self._fence(conn, name)
            row = conn.execute(sa.select(spoke).where(spoke.c.name == name)) \
                .one()
            changed = rewound or (row.history_id is not None
                                  and history_id != row.history_id)
            values = {'history_id': history_id, 'history_marker': marker}
            if changed and row.state != 'new':
                values['state'] = 'reconcile'
            conn.execute(spoke.update().where(spoke.c.name == name)
                         .values(**values))
            return changed and row.state != 'new'

    def start_seed(self, name: str) -> int:
        """Mark a seed of ``name`` started; returns the outbox seq it
        covers. A seed redone after a crash keeps the first one's seq: the
        changes after it are still to be applied after the seed."""
        return self._start(name, 'seeding')

    def _start(self, name: str, state: str) -> int:
        """Put ``name`` in ``state`` (a seed or a reconcile) covering the
        outbox up to its top, or keep the seq of the one a crash cut
        short; pending items are dropped (the pass rewrites them all)."""
        with self.engine.begin() as conn:
            self._fence(conn, name)
            row = conn.execute(sa.select(spoke).where(spoke.c.name == name)) \
                .one()
            if row.state == state:
                return row.applied_seq
            top = self._top(conn)
            conn.execute(spoke.update().where(spoke.c.name == name).values(
                state=state, applied_seq=top))
            conn.execute(pending.delete().where(pending.c.spoke == name))
            return top

    def finish_seed(self, name: str) -> None:
        """Mark the seed of ``name`` done, unless the feed was restarted
        during it (state ``reconcile``): what the seed's listings read
        before the hub's head moved may miss deletes, which that reconcile
        finds."""
        with self.engine.begin() as conn:
            self._fence(conn, name)
            conn.execute(spoke.update().where(
                spoke.c.name == name,
                spoke.c.state.in_(('seeding', 'reconciling'))).values(
                state='live', last_success_at=now(), failures=0,
                last_error=None, last_error_at=None))

    def start_reconcile(self, name: str) -> int:
        """Mark a reconcile of ``name`` started; returns the outbox seq
        it covers. Outbox rows up to it are skipped: the reconcile reads
        the hub's current state, which includes them, and re-applying an
        old row after it could bring back what the hub deleted since."""
        return self._start(name, 'reconciling')

    def finish_reconcile(self, name: str) -> None:
        with self.engine.begin() as conn:
            self._fence(conn, name)
            values = {'last_reconcile_at': now()}
            conn.execute(spoke.update().where(spoke.c.name == name)
                         .values(**values))
        self.finish_seed(name)

    def audited(self, name: str, found: int, repaired: int) -> None:
        """A periodic audit of ``name`` finished: ``found`` differences,
        ``repaired`` writes."""
        with self.engine.begin() as conn:
            conn.execute(spoke.update().where(spoke.c.name == name)
                         .values(last_audit_at=now(), audit_found=found,
                                 audit_repaired=repaired))

    def reconciled(self, name: str) -> None:
        """A reconcile outside ``run`` (the command) finished."""
        with self.engine.begin() as conn:
            conn.execute(spoke.update().where(spoke.c.name == name)
                         .values(last_reconcile_at=now()))

    def placed_at(self, name: str, type_name: str, ids) -> dict:
        """Which of ``ids`` the agent wrote at spoke ``name``: id -> the
        hub's hash of what it wrote."""
        ids, out = list(ids), {}
        with self.engine.connect() as conn:
            for n in range(0, len(ids), 500):
                out.update(conn.execute(
                    sa.select(placed.c.resource_id, placed.c.hash).where(
                        placed.c.spoke == name, placed.c.type == type_name,
                        placed.c.resource_id.in_(ids[n:n + 500]))).all())
        return out

    def outbox_after(self, seq: int, limit: int) -> list[Change]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(outbox).where(outbox.c.seq > seq)
                .order_by(outbox.c.seq).limit(limit)).all()
        return [Change(r.seq, r.type, r.resource_id, r.op, r.origin,
                       json.loads(r.resource) if r.resource else None,
                       r.changed_at, r.hash) for r in rows]

    def pending_for(self, name: str) -> list[Change]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(pending)
                                .where(pending.c.spoke == name)).all()
        out = []
        for r in rows:
            c = Change(r.seq, r.type, r.resource_id, r.op, None,
                       json.loads(r.resource) if r.resource else None,
                       hash_=r.hash)
            c.last_error = r.last_error
            out.append(c)
        return out

    def record(self, name: str, applied_seq: int | None, done: list,
               failed: list[tuple[Change, str]],
               written: list[Change] = ()) -> None:
        """After a pass at spoke ``name``: drop what applied (or was
        replaced) from pending, keep what was refused, note what was
        ``written`` there (upserts placed, deletes no longer placed), and
        move the checkpoint, all in one transaction."""
        when = now()
        # One pending row per resource: of two refused changes of one
        # resource in a pass (its retry and a newer row, a create and
        # its delete), the latest, which supersedes the other.
        latest: dict = {}
        for c, err in failed:
            if c.key not in latest or \
                    (c.seq or 0) >= (latest[c.key][0].seq or 0):
                latest[c.key] = (c, err)
        failed = list(latest.values())
        with self.engine.begin() as conn:
            self._fence(conn, name)
            self._placed(conn, name, written)
            # What this spoke has pending (usually nothing, or a few): a
            # pass of thousands of changes deletes only the rows that
            # are there, in one statement, not one statement per change.
            before = {(r.type, r.resource_id): r for r in conn.execute(
                sa.select(pending.c.type, pending.c.resource_id,
                          pending.c.attempts, pending.c.since)
                .where(pending.c.spoke == name))}
            gone = {c.key for c in done} | {c.key for c, _ in failed}
            gone &= before.keys()
            _delete_keys(conn, pending, name, gone)
            if failed:
                conn.execute(pending.insert(), [{
                    'spoke': name, 'type': c.type, 'resource_id': c.id,
                    'seq': c.seq, 'op': c.op,
                    'resource': (json.dumps(c.resource)
                                 if c.resource is not None else None),
                    'attempts': (before[c.key].attempts + 1
                                 if c.key in before else 1),
                    'last_error': err[:1000],
                    'since': (before[c.key].since if c.key in before
                              else when),
                    'hash': c.hash} for c, err in failed])
            values = {}
            if applied_seq is not None:
                values['applied_seq'] = applied_seq
            if not failed:
                values.update(last_success_at=when)
            if values:
                conn.execute(spoke.update().where(spoke.c.name == name)
                             .values(**values))

    @staticmethod
    def _placed(conn, name, written) -> None:
        if not written:
            return
        latest = {}
        for c in written:
            latest[c.key] = c
        # Only the rows that are there are replaced: a seed of a new
        # spoke writes thousands, none placed before (a DELETE per
        # change was a tenth of the agent's CPU in a seed).
        _delete_keys(conn, placed, name,
                     _placed_already(conn, name, latest))
        rows = [{'spoke': name, 'type': c.type, 'resource_id': c.id,
                 'hash': c.hash} for c in latest.values()
                if c.op != 'delete']
        if rows:
            conn.execute(placed.insert(), rows)

    def spoke_error(self, name: str, message: str | None) -> None:
        with self.engine.begin() as conn:
            if message is None:
                conn.execute(spoke.update().where(spoke.c.name == name)
                             .values(failures=0, last_error=None,
                                     last_error_at=None,
                                     last_success_at=now()))
            else:
                conn.execute(spoke.update().where(spoke.c.name == name)
                             .values(failures=spoke.c.failures + 1,
                                     last_error=message[:1000],
                                     last_error_at=now()))

    # -- two-way: spokes' own changes, up to the hub ------------------

    def upward_cursor(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(upward.c.cursor)
                                .where(upward.c.spoke == name)).scalar()

    def set_upward_cursor(self, name: str, cursor: str) -> None:
        with self.engine.begin() as conn:
            self._fence(conn, name)
            values = {'cursor': cursor, 'last_read_at': now()}
            if conn.execute(upward.update().where(upward.c.spoke == name)
                            .values(**values)).rowcount == 0:
                conn.execute(upward.insert().values(spoke=name, **values))

    def prune(self, names: list[str]) -> int:
        """Remove outbox rows every one of ``names`` has applied (and
        conflict records past their retention)."""
        if self.conflict_retention_days:
            self.prune_conflicts(self.conflict_retention_days)
        with self.engine.begin() as conn:
            low = conn.execute(sa.select(sa.func.min(spoke.c.applied_seq))
                               .where(spoke.c.name.in_(names))).scalar()
            if low is None:
                return 0
            return conn.execute(outbox.delete()
                                .where(outbox.c.seq <= low)).rowcount
