"""Helpers shared by the type modules: listing a table by id, child rows,
resource options, existence and name checks."""

import json

from keystone import exception as ks_exception
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.resources import base


def meta(row) -> dict:
    m = row._mapping
    return {'created_at': base.iso(m.get('created_at')),
            'updated_at': base.iso(m.get('updated_at'))}


def filter_ids(items, *, ids=None, marker=None, limit=None, prefix=None):
    """The same filters as SQL applies, for ids computed in Python."""
    out = sorted(items, key=lambda i: i['id'].encode('utf-8'))
    if ids is not None:
        wanted = set(ids)
        out = [i for i in out if i['id'] in wanted]
    if marker is not None:
        out = [i for i in out if i['id'].encode('utf-8') >
               marker.encode('utf-8')]
    if prefix:
        out = [i for i in out if i['id'].startswith(prefix)]
    return out[:limit] if limit is not None else out


def id_window(conn, query, id_expr, *, marker=None, prefix=None):
    """``query`` narrowed in SQL to the ids (``id_expr``) after ``marker``
    that start with ``prefix``, both compared bytewise as Python compares
    them. Not LIKE: it ignores case on SQLite and MySQL, so a page cut by
    LIMIT before a Python re-check would come back short, and every
    listing keeps its LIMIT in SQL (a reconcile lists whole buckets page
    by page: without it each page would read every matching row)."""
    if marker is not None:
        query = query.where(base.binary(conn, id_expr) > marker)
    if prefix:
        query = query.where(base.binary(
            conn, sa.func.substr(id_expr, 1, len(prefix))) == prefix)
    return query


def page(conn, query, id_expr, *, ids=None, marker=None, limit=None,
         prefix=None):
    """``query`` (rows of a synthetic type whose id SQL computes as
    ``id_expr``) filtered by marker and prefix, ordered by id and cut at
    ``limit`` in SQL. With ``ids`` the caller has narrowed the rows to
    those ids' owners and ``filter_ids`` keeps the exact ones."""
    query = id_window(conn, query, id_expr, marker=marker, prefix=prefix)
    query = query.order_by(base.binary(conn, id_expr))
    if limit is not None and ids is None:
        query = query.limit(limit)
    return query


def pair_filter(query, first, second, ids):
    """``query`` narrowed to the rows whose ``first:second`` is one of
    ``ids`` (synthetic ids of two parts), or None when no id has two."""
    pairs = [i.split(':', 1) for i in ids if ':' in i]
    if not pairs:
        return None
    return query.where(sa.or_(*(sa.and_(first == a, second == b)
                                for a, b in pairs)))


class IdTable:
    """A type stored one row per resource in ``table_name``, keyed by
    ``id``. Subclasses give ``where`` (which rows are this type) and
    ``load`` (rows -> representations)."""

    id_column = 'id'

    @property
    def table_name(self) -> str:
        """Keystone's table of the type: by default named as the type; a
        subclass stored elsewhere sets ``table_name`` itself."""
        return self.name

    def where(self, t):
        return sa.true()

    def load(self, conn, rows) -> list[dict]:
        raise NotImplementedError

    def fetch(self, conn, *, ids=None, marker=None, limit=None,
              prefix=None):
        t = base.table(conn, self.table_name)
        col = t.c[self.id_column]
        query = sa.select(t).where(self.where(t))
        if ids is not None:
            query = query.where(col.in_(list(ids)))
        query = id_window(conn, query, col, marker=marker, prefix=prefix)
        query = query.order_by(base.binary(conn, col))
        if limit is not None:
            query = query.limit(limit)
        return self.load(conn, conn.execute(query).all())

    def exists(self, conn, id_) -> bool:
        t = base.table(conn, self.table_name)
        return conn.execute(sa.select(sa.literal(1)).where(
            t.c[self.id_column] == id_, self.where(t))).first() is not None

    def holders(self, conn, ids) -> dict[str, str]:
        """Those of ``ids`` that a row of this type's table holds without
        being a resource of this type (a domain for a project...), with
        what holds each: a create under such an id would break the
        table's key."""
        wanted = set(ids)
        if not wanted:
            return {}
        t = base.table(conn, self.table_name)
        col = t.c[self.id_column]
        found = {r._mapping[self.id_column]: r for r in conn.execute(
            sa.select(t).where(col.in_(sorted(wanted))))}
        found = {k: r for k, r in found.items() if k in wanted}
        if not found:
            return {}
        mine = set(conn.execute(sa.select(col).where(
            col.in_(sorted(found)), self.where(t))).scalars())
        return {k: self.held_by(r) for k, r in found.items()
                if k not in mine}

    def held_by(self, row) -> str:
        """What a row of the table that is not of this type is."""
        return f'a {self.table_name} row that is not a synced {self.name}'

    def id_holder(self, conn, id_) -> str | None:
        return self.holders(conn, [id_]).get(id_)


def children(conn, table_name, fk, ids, value_column) -> dict[str, list]:
    """``{owner id: [value, ...]}`` from a child table."""
    if not ids:
        return {}
    t = base.table(conn, table_name)
    out: dict[str, list] = {}
    for owner, value in conn.execute(
            sa.select(t.c[fk], t.c[value_column]).where(t.c[fk].in_(ids))):
        out.setdefault(owner, []).append(value)
    return out


def check_options(registry, what, options) -> None:
    """Option names this Keystone knows, values its validators accept
    (``null`` is not stored by Keystone, so it is not a value here). An
    option this release does not know is one it cannot store: refused as
    such (:func:`base.unstorable`), never dropped."""
    by_name = registry.options_by_name
    unknown = set(options) - set(by_name)
    if unknown:
        raise base.unstorable(f'{what} (options)', unknown)
    for name, value in options.items():
        if value is None:
            raise exception.BadRequest(
                f'{what}: option {name!r} is null; leave it out instead')
        try:
            by_name[name].validator(value)
        except (TypeError, ValueError, ks_exception.ValidationError):
            raise exception.BadRequest(
                f'{what}: invalid value for option {name!r}') from None


def options(conn, table_name, fk, ids, registry) -> dict[str, dict]:
    """Resource options by option *name* (ids are Keystone-internal)."""
    if not ids:
        return {}
    t = base.table(conn, table_name)
    out: dict[str, dict] = {}
    for owner, opt_id, value in conn.execute(
            sa.select(t.c[fk], t.c.option_id, t.c.option_value)
            .where(t.c[fk].in_(ids))):
        opt = registry.get_option_by_id(opt_id)
        name = opt.option_name if opt else opt_id
        out.setdefault(owner, {})[name] = base.json_load(value, None)
    return out


def require(conn, type_name, id_, what, field=None):
    """Raise a 400 naming ``what`` and the field when ``id_`` of
    ``type_name`` does not exist here."""
    from keystone_syncext import resources
    if not resources.get(type_name).exists(conn, id_):
        raise missing_reference(what, type_name, id_, field)


def check_name_free(rtype, conn, id_, resource):
    """409 with the existing id when another resource has this name in
    the same scope (Keystone would refuse it, without saying which)."""
    taken = [i for i in rtype.existing_named(conn, resource) if i != id_]
    if taken:
        raise name_conflict(rtype.name, resource['name'], taken[0])


def name_conflict(type_name, name, existing_id) -> exception.NameConflict:
    return exception.NameConflict(
        f'{type_name} name {name!r} is already used by {type_name} '
        f'{existing_id} at this site', existing_id=existing_id)


def id_taken(type_name, id_, holder) -> exception.IdTaken:
    return exception.IdTaken(
        f'{type_name} {id_}: the id is already used by {holder} at this '
        'site (Keystone keeps both in one table)', held_by=holder)


def missing_reference(what, type_name, id_,
                      field=None) -> exception.BadRequest:
    field = field or f'{type_name}_id'
    return exception.BadRequest(
        f'{what} refers to {type_name} {id_!r} ({field}), which does not '
        'exist at this site; sync it first')


def set_extra(conn, table_name, id_, extra: dict, id_column='id'):
    """Make the ``extra`` column exactly ``extra`` (Keystone's managers
    merge it, so a removed key would survive)."""
    t = base.table(conn, table_name)
    current = conn.execute(sa.select(t.c.extra).where(
        t.c[id_column] == id_)).scalar()
    if base.json_load(current, {}) != extra:
        conn.execute(t.update().where(t.c[id_column] == id_)
                     .values(extra=json.dumps(extra)))


def unlock_immutable(old, resource, update):
    """Keystone refuses any change to an immutable resource except one
    that clears ``immutable``; the site that changed it did the same, so
    clear it first and let the real update restore it."""
    if old.get('options', {}).get('immutable') and \
            base.strip_meta(old) != resource:
        update({'options': {'immutable': False}})
