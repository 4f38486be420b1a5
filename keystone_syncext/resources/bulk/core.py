"""What the set-wise creators share: reads by id sets, names in use,
options, inserts, and the :class:`Creates` interface."""

import json

from keystone import exception as ks_exception
from keystone import notifications
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext import resources
from keystone_syncext.resources import base
from keystone_syncext.resources import common

# Keeps every IN list well below each database's limit on bound values.
_IN_CHUNK = 500


def select_in(conn, column, values, *columns, where=None):
    """Rows of ``columns`` whose ``column`` is one of ``values``."""
    values = sorted({v for v in values if v is not None})
    rows = []
    for i in range(0, len(values), _IN_CHUNK):
        rows += conn.execute(sa.select(*columns).where(
            column.in_(values[i:i + _IN_CHUNK]),
            sa.true() if where is None else where)).all()
    return rows


def existing(conn, type_name, ids) -> set[str]:
    """Which of ``ids`` are resources of ``type_name`` here (as the type's
    ``exists`` judges: same table, same filter), compared exactly."""
    rtype = resources.get(type_name)
    t = base.table(conn, rtype.table_name)
    wanted = set(ids)
    return {r.id for r in select_in(conn, t.c.id, wanted, t.c.id,
                                    where=rtype.where(t))} & wanted


def confirm_missing(conn, type_name, id_, what, field=None):
    """Refuse with the per-item path's own check (and message), or fall
    back when that check finds what the set-wise read did not."""
    common.require(conn, type_name, id_, what, field)
    raise exception.BulkFallback(
        f'{type_name} {id_} found by the per-item check only')


class Names:
    """Names in use per scope: at the site, then by accepted items."""

    def __init__(self, conn, holder, scope, name, wanted):
        self.held = {}
        scopes = {s for s, _ in wanted}
        for row in select_in(conn, name, {n for _, n in wanted},
                             holder, scope, name,
                             where=scope.in_(sorted(scopes))):
            self.held[(row[1], row[2])] = row[0]

    def holder(self, scope, name):
        return self.held.get((scope, name))

    def claim(self, scope, name, id_):
        self.held[(scope, name)] = id_


def options_ok(registry, options) -> bool:
    """Options the bulk insert stores exactly as Keystone's model would:
    known names, non-null values its validators accept."""
    by_name = registry.options_by_name
    for name, value in options.items():
        opt = by_name.get(name)
        if opt is None or value is None:
            return False
        try:
            opt.validator(value)
        except Exception:  # whatever it is, the per-item path reports it
            return False
    return True


def option_rows(registry, fk, entries):
    by_name = registry.options_by_name
    return [{fk: id_, 'option_id': by_name[name].option_id,
             'option_value': json.dumps(value)}
            for id_, r in entries for name, value in r['options'].items()]


def insert(conn, table_name, rows):
    if rows:
        conn.execute(base.table(conn, table_name).insert(), rows)


class Creates:
    """Set-wise creates of one type, for one run of one batch (an instance
    holds what it read for that run). ``entries`` are ``(id, resource)``
    pairs of validated representations of ids absent at this site, in
    batch order."""

    type_name = ''

    def __init__(self, conn):
        self.conn = conn

    @classmethod
    def eligible(cls, resource: dict) -> bool:
        """Whether this path writes ``resource`` exactly as the per-item
        path would."""
        return True

    def check(self, entries) -> list[ks_exception.Error | None]:
        """Keystone's rules for each entry in order; None for accepted.
        Raises exception.BulkFallback when it cannot judge exactly."""
        held = self._held(entries)
        self.prepare(entries)
        out = []
        for id_, r in entries:
            if id_ in held:
                # As writes.items.apply_upsert, before any other rule.
                out.append(common.id_taken(self.type_name, id_, held[id_]))
                continue
            try:
                self.accept(id_, r)
            except ks_exception.Error as e:
                out.append(e)
            else:
                out.append(None)
        return out

    def _held(self, entries) -> dict[str, str]:
        """The ids of ``entries`` held by another type's row (a domain
        for a project...), with what holds each."""
        holders = getattr(resources.get(self.type_name), 'holders', None)
        if holders is None:
            return {}
        return holders(self.conn, [id_ for id_, _ in entries])

    def prepare(self, entries) -> None:
        """Read what ``accept`` needs, for all entries at once."""
        raise NotImplementedError

    def accept(self, id_, r) -> None:
        """Raise the per-item path's error, or record ``r`` as accepted."""
        raise NotImplementedError

    def write(self, entries) -> None:
        """Insert the accepted entries."""
        raise NotImplementedError

    def notify(self, entries) -> None:
        for id_, _r in entries:
            notifications.Audit.created(self.type_name, id_)
