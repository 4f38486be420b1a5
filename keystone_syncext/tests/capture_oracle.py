"""Judge change capture from the outside: what exists, and what was logged.

A ``Recorder`` snapshots every v1 resource in a Keystone database (computed
from Keystone's own tables with the same type/id rules as the triggers) and
the change log position, lets the test act, then compares. It checks the
properties capture promises whatever the operation was:

- every resource that appeared has a 'create' change, and no tombstone;
- every resource that disappeared has a 'delete' change and a tombstone;
- no change is logged for a resource that neither appeared, disappeared
  nor was touched by the test.
"""

import sqlalchemy as sa

from keystone_syncext.capture import ddl
from keystone_syncext.capture import spec
from keystone_syncext.db import tables


def snapshot(conn) -> set[tuple[str, str]]:
    """(type, id) of every v1 resource in the database."""
    gen = ddl.for_dialect(conn.dialect.name)
    out = set()
    for res in spec.RESOURCES:
        where = gen.cond(res, 'r')
        sql = (f'SELECT {gen.res_type(res, "r")}, {gen.res_id(res, "r")} '
               f'FROM {gen.quote(res.table)} r'
               + (f' WHERE {where}' if where else ''))
        out.update(tuple(row) for row in conn.exec_driver_sql(sql))
    return out


def last_change_id(conn) -> int:
    return conn.execute(sa.select(sa.func.max(tables.change.c.id))).scalar() \
        or 0


def changes_after(conn, change_id: int) -> list[tuple]:
    c = tables.change.c
    return conn.execute(
        sa.select(c.resource_type, c.resource_id, c.op, c.origin)
        .where(c.id > change_id).order_by(c.id)).all()


def tombstones(conn) -> dict[tuple[str, str], tuple]:
    t = tables.tombstone.c
    return {(r.resource_type, r.resource_id): r for r in conn.execute(
        sa.select(t.resource_type, t.resource_id, t.origin, t.change_id))}


def collapse(ops):
    """Drop consecutive repeats: several child rows changing in one
    operation log several 'update' rows, all meaning the same thing."""
    out = []
    for op in ops:
        if not out or out[-1] != op:
            out.append(op)
    return out


class Recorder:
    def __init__(self, engine):
        self.engine = engine

    def __enter__(self):
        with self.engine.connect() as conn:
            self.before = snapshot(conn)
            self.start = last_change_id(conn)
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        with self.engine.connect() as conn:
            self.after = snapshot(conn)
            self.changes = changes_after(conn, self.start)
            self.tombstones = tombstones(conn)
        return False

    @property
    def appeared(self):
        return self.after - self.before

    @property
    def disappeared(self):
        return self.before - self.after

    def ops(self, rtype: str, rid: str) -> list[str]:
        """Collapsed ops logged for one resource, in capture order."""
        return collapse(op for t, i, op, _ in self.changes
                        if (t, i) == (rtype, rid))

    def touched(self) -> set[tuple[str, str]]:
        return {(t, i) for t, i, _, _ in self.changes}

    def check(self) -> None:
        """Assert the properties every capture must have (see module doc)."""
        for key in sorted(self.appeared):
            ops = self.ops(*key)
            assert ops and ops[0] == 'create', (key, ops)
            assert key not in self.tombstones, key
        for key in sorted(self.disappeared):
            ops = self.ops(*key)
            assert ops and ops[-1] == 'delete', (key, ops)
            assert key in self.tombstones, key
        for key in self.touched() - self.appeared - self.disappeared:
            # Touched but neither created nor deleted overall: it must still
            # exist (an update), or have come and gone within the test.
            ops = self.ops(*key)
            exists = key in self.after
            assert exists or ops[-1] == 'delete', (key, ops)
