"""The agent's records of resolved conflicts (``agent_conflict``), with
the secrets in the versions kept as keyed fingerprints (the key in
``agent_key``): the part of :class:`keystone_syncext.agent.state.State`
that ``keystone-sync conflicts`` reads."""

import datetime
import secrets

import sqlalchemy as sa

from keystone_syncext.agent import secret_fields
from keystone_syncext.agent import state_tables as tables

conflict, key = tables.conflict, tables.key
FINGERPRINT_KEY, now = tables.FINGERPRINT_KEY, tables.now


class ConflictRecords:
    """Conflict records in the database of ``self.engine``."""

    _fingerprint_key: bytes | None = None

    def fingerprint_key(self) -> bytes:
        """The key of the fingerprints of secrets in conflict records,
        made on first use (the migration makes it for an existing
        database)."""
        if self._fingerprint_key is None:
            with self.engine.begin() as conn:
                value = conn.execute(sa.select(key.c.value).where(
                    key.c.name == FINGERPRINT_KEY)).scalar()
                if value is None:
                    value = secrets.token_hex(32)
                    conn.execute(key.insert().values(name=FINGERPRINT_KEY,
                                                     value=value))
            self._fingerprint_key = bytes.fromhex(value)
        return self._fingerprint_key

    def add_conflict(self, record: dict) -> bool:
        """Keep one resolved conflict; the same one judged again (its
        change retried) is kept once. Returns whether it was new. The
        versions (JSON text) are kept with the hashes of secrets
        fingerprinted."""
        record = dict(record)
        for side in ('hub_version', 'spoke_version'):
            record[side] = secret_fields.fingerprinted_json(
                self.fingerprint_key(), record['type'], record.get(side))
        same = [conflict.c[k] == record.get(k) for k in (
            'spoke', 'type', 'resource_id', 'hub_hash', 'spoke_hash',
            'winner')]
        with self.engine.begin() as conn:
            if conn.execute(sa.select(conflict.c.id)
                            .where(*same).limit(1)).first():
                return False
            conn.execute(conflict.insert().values(
                detected_at=now(), **record))
        return True

    def prune_conflicts(self, days: int) -> int:
        """Remove conflict records older than ``days``; how many."""
        cutoff = now() - datetime.timedelta(days=days)
        with self.engine.begin() as conn:
            return conn.execute(conflict.delete().where(
                conflict.c.detected_at < cutoff)).rowcount

    def conflicts(self, spoke_name: str | None = None,
                  limit: int | None = None) -> list:
        """Resolved conflicts, newest first."""
        query = sa.select(conflict).order_by(conflict.c.id.desc())
        if spoke_name:
            query = query.where(conflict.c.spoke == spoke_name)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return conn.execute(query).all()
