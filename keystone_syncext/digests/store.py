"""Digests from stored content hashes.

A digest (``GET /v3/sync/digest/{type}?prefix=P``) hashes the ``(id,
content hash)`` pairs of every resource of a type under a prefix. Reading
and hashing every representation for each request made the top of a
reconcile cost as much as a full listing, at both sites. So each site
keeps the pairs in ``sync_digest_hash``, and brings them up to date from
its own change log before it answers a digest:

- ``sync_digest_state`` says, per type, the feed position the stored
  hashes are current through, and what computed them (:func:`version`).
- A digest first looks (one indexed read, as a long-poll does) whether
  anything of its type was captured after that position. If not, it
  reads the stored pairs, an index range.
- Otherwise it catches up in a write transaction: it stamps the change
  log (the stamp's lock serializes catching up, as it serializes
  stampers), re-reads the representations of just the ids changed since
  the stored position, and moves the position to the new head.
- It rebuilds the type from Keystone's tables instead when there is no
  state yet (the first digest after the upgrade), when the log has been
  purged past the stored position (changes it would need are gone), or
  when another release computed the hashes.

Why the stored hash is never older than its position says: every change
at or below the head was committed before the stamp that handed out the
head, so the representations read after the stamp, in the same
transaction, include it. A write that commits meanwhile may already show
in what is read; its change is above the head and is read again next
time, which is harmless. Capture records a change of the resource for
every write that changes its representation (that is what the feed relies
on too), so between two catch-ups nothing else can make a stored hash
stale.
"""

import functools
import hashlib
import importlib.metadata

from keystone.common import sql
import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.feed import changes as change_log
from keystone_syncext.resources import base

_hash = tables.digest_hash
_state = tables.digest_state
_change = tables.change

# Changed ids re-read with one query while catching up.
CHUNK = 500
# Raise to make every site rebuild its stored hashes, for a change of
# representation inside a release (a release change rebuilds anyway).
REPRESENTATION = 1


@functools.cache
def version() -> str:
    """What computes the hashes here: this extension and Keystone, by
    release. Stored hashes from any other are rebuilt."""
    text = ' '.join([str(REPRESENTATION)] + [
        f'{dist} {importlib.metadata.version(dist)}'
        for dist in ('keystone_syncext', 'keystone')])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _state_of(conn, type_name):
    return conn.execute(
        sa.select(_state.c.position, _state.c.version)
        .where(_state.c.resource_type == type_name)).one_or_none()


def _must_rebuild(conn, state) -> bool:
    return (state is None or state.version != version()
            or change_log.purged_through(conn) > state.position)


def is_current(conn, type_name: str) -> bool:
    """Whether the stored hashes of ``type_name`` can answer a digest as
    they are: a read, never a lock."""
    state = _state_of(conn, type_name)
    if _must_rebuild(conn, state):
        return False
    return not change_log.news(conn, state.position, [type_name])


def _store(conn, type_name, items) -> None:
    # One row per id: Keystone can hold two rows that are one resource
    # by its id (two identical token revocation events of one second,
    # named by their columns: keystone_syncext.common.revocation), whose
    # representations, and so hashes, are the same.
    rows = list({i['id']: {
        'resource_type': type_name, 'resource_id': i['id'],
        'hash': base.content_hash(base.strip_meta(i))} for i in items
    }.values())
    for n in range(0, len(rows), CHUNK):
        conn.execute(_hash.insert(), rows[n:n + CHUNK])


def catch_up(conn, rtype) -> dict:
    """Bring the stored hashes of ``rtype`` up to date, in the caller's
    write transaction, which must not have read anything yet (it starts
    with :func:`keystone_syncext.feed.changes.stamp`). Returns what it did:
    ``{'rebuilt': bool, 'ids': n, 'position': head}``."""
    name = rtype.name
    top = change_log.stamp(conn)
    state = _state_of(conn, name)
    rebuilt = _must_rebuild(conn, state)
    if rebuilt:
        conn.execute(_hash.delete().where(_hash.c.resource_type == name))
        items = rtype.fetch(conn)
        _store(conn, name, items)
        count = len(items)
    elif state.position >= top:
        return {'rebuilt': False, 'ids': 0, 'position': top}
    else:
        ids = conn.execute(
            sa.select(_change.c.resource_id).distinct()
            .where(_change.c.resource_type == name,
                   _change.c.position > state.position,
                   _change.c.position <= top)).scalars().all()
        for n in range(0, len(ids), CHUNK):
            chunk = ids[n:n + CHUNK]
            conn.execute(_hash.delete().where(
                _hash.c.resource_type == name,
                _hash.c.resource_id.in_(chunk)))
            _store(conn, name, rtype.fetch(conn, ids=chunk))
        count = len(ids)
    values = {'position': top, 'version': version()}
    if rebuilt:
        values['built_at'] = tables.UtcNow()
    if state is None:
        conn.execute(_state.insert().values(resource_type=name, **values))
    else:
        conn.execute(_state.update()
                     .where(_state.c.resource_type == name).values(values))
    return {'rebuilt': rebuilt, 'ids': count, 'position': top}


def _successor(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (by
    code point, as the binary collation orders), None if there is none."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:   # surrogates are never stored
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def stored_pairs(conn, type_name: str, prefix: str = '') -> list[tuple]:
    """The stored ``(id, hash)`` pairs of ids starting with ``prefix``,
    ordered by the ids' bytes."""
    c = _hash.c
    upper = _successor(prefix)
    if conn.dialect.name == 'mysql':
        # Keystone's MySQL tables and connection are utf8 (3 bytes): no id
        # has a character beyond U+FFFF, and such a parameter is an error.
        if any(ord(ch) > 0xFFFF for ch in prefix):
            return []
        if upper is not None and ord(upper[-1]) > 0xFFFF:
            upper = None
    query = (sa.select(c.resource_id, c.hash)
             .where(c.resource_type == type_name)
             .order_by(c.resource_id))
    if prefix:
        query = query.where(c.resource_id >= prefix)
        if upper is not None:
            query = query.where(c.resource_id < upper)
    # The range is exact with the binary collation; the check in Python
    # also keeps MySQL's trailing-space padding out.
    pairs = [(i, h) for i, h in conn.execute(query) if i.startswith(prefix)]
    pairs.sort(key=lambda p: p[0].encode())
    return pairs


def pairs(rtype, prefixes: list[str]) -> list[list[tuple]]:
    """Current ``(id, hash)`` pairs of ``rtype`` under each of
    ``prefixes``: caught up first when the change log says anything of
    the type changed. One look at the log and one read session serve
    every prefix (a reconcile asks for many of one type at once)."""
    with sql.session_for_read() as session:
        conn = session.connection()
        if is_current(conn, rtype.name):
            return [stored_pairs(conn, rtype.name, p) for p in prefixes]
    with sql.session_for_write() as session:
        catch_up(session.connection(), rtype)
    with sql.session_for_read() as session:
        conn = session.connection()
        return [stored_pairs(conn, rtype.name, p) for p in prefixes]
