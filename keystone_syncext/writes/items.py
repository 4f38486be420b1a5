"""Explicit-id writes of one resource: ``PUT`` and ``DELETE``.

:func:`apply_upsert` and :func:`apply_delete` are what a batch applies per
item too (``keystone_syncext.writes.batch``), inside its own transaction;
:func:`put` and :func:`delete` run one of them in a transaction of their
own (:func:`keystone_syncext.writes.transaction.writing`).
"""

from keystone_syncext import dberrors
from keystone_syncext import exception
from keystone_syncext import resources
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.writes import caching
from keystone_syncext.writes import transaction


def _check_preconditions(type_name, id_, old, if_match, if_none_match):
    current = base.content_hash(base.strip_meta(old)) if old else None
    if if_match is not None:
        wanted = {t.strip().strip('"') for t in if_match.split(',')}
        if current is None or ('*' not in wanted and current not in wanted):
            raise exception.PreconditionFailed(
                f'{type_name} {id_} is '
                + (f'at hash {current}' if current else 'absent')
                + f', not {if_match}', current_hash=current)
    if if_none_match is not None and current is not None:
        wanted = {t.strip().strip('"') for t in if_none_match.split(',')}
        if '*' in wanted or current in wanted:
            raise exception.PreconditionFailed(
                f'{type_name} {id_} exists (hash {current})',
                current_hash=current)


def apply_upsert(session, conn, rtype, id_, resource, if_match=None,
                 if_none_match=None) -> tuple[int, dict]:
    """Create or update; returns (HTTP status, envelope). The caller has
    validated ``resource``."""
    old = rtype.get(conn, id_)
    _check_preconditions(rtype.name, id_, old, if_match, if_none_match)
    if old is not None and base.strip_meta(old) == resource:
        return 200, base.envelope(rtype.name, old)
    if old is None:
        holder = rtype.id_holder(conn, id_)
        if holder is not None:
            raise common.id_taken(rtype.name, id_, holder)
    caching.touched(session, rtype, id_, old, resource)
    if old is None:
        rtype.create(session, conn, id_, resource)
        status = 201
    else:
        rtype.update(session, conn, id_, old, resource)
        status = 200
    session.flush()
    return status, base.envelope(rtype.name, rtype.get(conn, id_))


def apply_delete(session, conn, rtype, id_, if_match=None) -> None:
    old = rtype.get(conn, id_)
    _check_preconditions(rtype.name, id_, old, if_match, None)
    if old is None:
        raise exception.NotFound(f'{rtype.name} {id_} does not exist at this '
                                 'site')
    caching.touched(session, rtype, id_, old, None)
    rtype.delete(session, conn, id_, old)
    session.flush()


def put(type_name, id_, resource, if_match=None, if_none_match=None,
        origin=None) -> tuple[int, dict]:
    rtype = resources.get(type_name)
    rtype.validate(id_, resource)
    # Outermost: also what the commit flushes.
    with dberrors.refused_as_4xx(f'{type_name} {id_}'), \
            transaction.writing(origin) as (session, conn):
        return apply_upsert(session, conn, rtype, id_, resource, if_match,
                            if_none_match)


def delete(type_name, id_, if_match=None, origin=None) -> None:
    rtype = resources.get(type_name)
    rtype.check_id(id_)
    with dberrors.refused_as_4xx(f'{type_name} {id_}'), \
            transaction.writing(origin) as (session, conn):
        apply_delete(session, conn, rtype, id_, if_match)
