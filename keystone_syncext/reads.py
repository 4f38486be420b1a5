"""Reads of the sync API: one resource, a page of a type, and tombstones.

Every read runs in one read transaction and answers canonical
representations (``keystone_syncext.resources``) in their envelope.
"""

from keystone.common import sql
import keystone.conf
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext import resources
from keystone_syncext.db import tables
from keystone_syncext.resources import base

CONF = keystone.conf.CONF


def check_limit(limit: int | None, default: int) -> int:
    """The page size asked for (``limit``, an integer from 1 by the
    route's query schema), or ``default`` when none is; 400 above
    ``[sync] max_page_size``. A listing's pages and the feed's use it."""
    if limit is None:
        return default
    if limit > CONF.sync.max_page_size:
        raise exception.BadRequest(
            f'limit must be between 1 and {CONF.sync.max_page_size} '
            f'([sync] max_page_size), not {limit}')
    return limit


def read(type_name: str, id_: str) -> dict:
    rtype = resources.get(type_name)
    with sql.session_for_read() as session:
        item = rtype.get(session.connection(), id_)
    if item is None:
        raise exception.NotFound(
            f'{type_name} {id_} does not exist at this site')
    return base.envelope(type_name, item)


def listing(type_name: str, marker=None, limit=None, prefix=None) -> dict:
    rtype = resources.get(type_name)
    limit = check_limit(limit, CONF.sync.max_page_size)
    with sql.session_for_read() as session:
        items = rtype.fetch(session.connection(), marker=marker,
                            limit=limit, prefix=prefix)
    out = [base.envelope(type_name, i) for i in items]
    return {'items': out,
            'next_marker': out[-1]['id'] if len(out) == limit else None}


def tombstones(body) -> list[dict]:
    """Which of ``body['ids']`` (of ``body['type']``) this site deleted:
    their tombstones, within ``[sync] tombstone_retention_days``.

    A reconcile asks the hub this for what a spoke holds and the hub
    lacks: a spoke restored from a backup older than a delete holds the
    resource again, and the agent's own record of placing it is gone with
    the delete, so only the hub's tombstone tells a resurrected resource
    from one the spoke made itself. A re-created id has no tombstone
    (capture removes it), so an answer is never stale."""
    rtype = resources.get(body['type'])
    ids = sorted(set(body['ids']))
    most = CONF.sync.max_page_size
    if len(ids) > most:
        raise exception.BadRequest(
            f'one request may ask for at most {most} ids ([sync] '
            f'max_page_size), not {len(ids)}')
    t = tables.tombstone.c
    with sql.session_for_read() as session:
        rows = session.connection().execute(
            sa.select(t.resource_id, t.deleted_at, t.origin)
            .where(t.resource_type == rtype.name, t.resource_id.in_(ids))
            .order_by(t.resource_id)).all()
    return [{'id': r.resource_id, 'deleted_at': base.iso(r.deleted_at),
             'origin': r.origin} for r in rows]
