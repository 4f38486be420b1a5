"""Re-key: give a resource another id, and every reference to it."""

import sqlalchemy as sa

from keystone_syncext import dberrors
from keystone_syncext import exception
from keystone_syncext import resources
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import references
from keystone_syncext.writes import caching
from keystone_syncext.writes import transaction


def rekey(body, origin=None) -> dict:
    """Give resource ``from`` the id ``to``, and every reference to it,
    in one transaction.

    This is how a Keystone bootstrapped on its own adopts the hub's ids
    for its admin/member/reader roles, admin user and admin project. The
    row is copied under the new id (a name it must keep unique is parked
    on a temporary value meanwhile), every referencing column is
    repointed, and the old row is deleted: capture records a delete of
    the old id and a create of the new one. Which columns hold the id:
    :mod:`keystone_syncext.resources.references`.
    """
    rtype = resources.get(body['type'])
    old_id, new_id = body['from'], body['to']
    if not rtype.rekey_refs:
        raise exception.BadRequest(f'{rtype.name} cannot be re-keyed; re-key '
                                   f'supports: {", ".join(rekeyable())}')
    for id_ in (old_id, new_id):
        rtype.check_id(id_)
    if old_id == new_id:
        raise exception.BadRequest('from and to are the same id')
    with dberrors.refused_as_4xx(
            f're-key of {rtype.name} {old_id} to {new_id}'), \
            transaction.writing(origin) as (session, conn):
        caching.everything(session)
        if rtype.get(conn, old_id) is None:
            raise exception.NotFound(
                f'{rtype.name} {old_id} does not exist at this site')
        if rtype.exists(conn, new_id):
            raise exception.NameConflict(
                f'{rtype.name} {new_id} already exists at this site',
                existing_id=new_id)
        holder = rtype.id_holder(conn, new_id)
        if holder is not None:
            raise common.id_taken(rtype.name, new_id, holder)
        moved = _rekey_rows(conn, rtype, old_id, new_id)
        item = rtype.get(conn, new_id)
    return {'type': rtype.name, 'from': old_id, 'to': new_id,
            'references': moved, 'resource': base.envelope(rtype.name, item)}


def rekeyable() -> list[str]:
    return [n for n, t in resources.TYPES.items() if t.rekey_refs]


def _rekey_rows(conn, rtype, old_id, new_id) -> dict[str, int]:
    t = base.table(conn, rtype.table_name)
    row = dict(conn.execute(sa.select(t).where(t.c.id == old_id))
               .mappings().one())
    unique = getattr(rtype, 'rekey_unique', ())
    if unique:
        conn.execute(t.update().where(t.c.id == old_id).values(
            {c: ('~' + old_id)[:64] for c in unique}))
    conn.execute(t.insert().values(dict(row, id=new_id)))
    moved = {}
    for table_name, column in references.columns(conn, rtype):
        if not base.has_table(conn, table_name):
            continue
        ref = base.table(conn, table_name)
        if column not in ref.c:
            continue
        count = conn.execute(ref.update().where(ref.c[column] == old_id)
                             .values({column: new_id})).rowcount
        if count:
            moved[f'{table_name}.{column}'] = count
    for table_name, column in references.JSON_LIST_REFERENCES.get(
            rtype.name, ()):
        if not base.has_table(conn, table_name):
            continue
        count = references.move_in_json_lists(
            conn, base.table(conn, table_name), column, old_id, new_id)
        if count:
            moved[f'{table_name}.{column}'] = count
    conn.execute(t.delete().where(t.c.id == old_id))
    return moved
