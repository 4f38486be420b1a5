"""What the /v3/sync routes do, without Flask: reads, explicit-id writes,
re-key, digests and the change feed (batches: ``keystone_syncext.batch``).

Every write runs in one database transaction (Keystone's own
``session_for_write``; the managers called inside join it), attributed to
the origin site with :func:`keystone_syncext.origin.written_by`, and
followed, after commit, by invalidation of what it made stale in
Keystone's caches (``keystone_syncext.caching``), so the ordinary API
serves the new state at once on every API node.
"""

import contextlib
import hashlib
import os.path
import time
import typing

from keystone.common import sql
import keystone.conf
import sqlalchemy as sa

from keystone_syncext import caching
from keystone_syncext import changes as change_log
from keystone_syncext import cursors
from keystone_syncext import dberrors
from keystone_syncext import digests
from keystone_syncext import history
from keystone_syncext import origin as origin_mod
from keystone_syncext import resources
from keystone_syncext.db import tables
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import references

CONF = keystone.conf.CONF

# A digest lists the items of a bucket itself once it is this small.
DIGEST_LEAF_SIZE = 64
# How often a long-poll looks for new changes. A look is one indexed read
# (changes.news), so it can be frequent; the stamp, a write, runs only
# when there is something to stamp.
POLL_INTERVAL = 0.05


@contextlib.contextmanager
def writing(origin: str | None):
    """A write transaction whose captured changes carry ``origin``.

    What the writes inside record with ``caching.touched`` is invalidated
    after the transaction ends, also when it fails: a manager called
    inside may have cached what was rolled back."""
    stale = None
    try:
        with sql.session_for_write() as session:
            stale = caching.begin(session)
            # The types that judge a write by who sent it read it here.
            session.info[origin_mod.SESSION_KEY] = origin
            conn = session.connection()
            ctx = (origin_mod.written_by(conn, origin) if origin
                   else contextlib.nullcontext())
            with ctx:
                yield session, conn
                session.flush()
    finally:
        if stale is not None:
            stale.invalidate()


def check_limit(limit: int | None, default: int) -> int:
    """``limit`` (an integer from 1, by the route's query schema), at most
    ``[sync] max_page_size``."""
    if limit is None:
        return default
    if limit > CONF.sync.max_page_size:
        raise base.BadRequest(
            f'limit must be between 1 and {CONF.sync.max_page_size} '
            f'([sync] max_page_size), not {limit}')
    return limit


# --- reads ------------------------------------------------------------------

def read(type_name: str, id_: str) -> dict:
    rtype = resources.get(type_name)
    with sql.session_for_read() as session:
        item = rtype.get(session.connection(), id_)
    if item is None:
        raise base.NotFound(f'{type_name} {id_} does not exist at this site')
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


# --- writes -----------------------------------------------------------------

def _check_preconditions(type_name, id_, old, if_match, if_none_match):
    current = base.content_hash(base.strip_meta(old)) if old else None
    if if_match is not None:
        wanted = {t.strip().strip('"') for t in if_match.split(',')}
        if current is None or ('*' not in wanted and current not in wanted):
            raise base.PreconditionFailed(
                f'{type_name} {id_} is '
                + (f'at hash {current}' if current else 'absent')
                + f', not {if_match}', current_hash=current)
    if if_none_match is not None and current is not None:
        wanted = {t.strip().strip('"') for t in if_none_match.split(',')}
        if '*' in wanted or current in wanted:
            raise base.PreconditionFailed(
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
        raise base.NotFound(f'{rtype.name} {id_} does not exist at this '
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
            writing(origin) as (session, conn):
        return apply_upsert(session, conn, rtype, id_, resource, if_match,
                            if_none_match)


def delete(type_name, id_, if_match=None, origin=None) -> None:
    rtype = resources.get(type_name)
    rtype.check_id(id_)
    with dberrors.refused_as_4xx(f'{type_name} {id_}'), \
            writing(origin) as (session, conn):
        apply_delete(session, conn, rtype, id_, if_match)


# --- re-key -----------------------------------------------------------------

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
        raise base.BadRequest(f'{rtype.name} cannot be re-keyed; re-key '
                              f'supports: {", ".join(rekeyable())}')
    for id_ in (old_id, new_id):
        rtype.check_id(id_)
    if old_id == new_id:
        raise base.BadRequest('from and to are the same id')
    with dberrors.refused_as_4xx(
            f're-key of {rtype.name} {old_id} to {new_id}'), \
            writing(origin) as (session, conn):
        caching.everything(session)
        if rtype.get(conn, old_id) is None:
            raise base.NotFound(
                f'{rtype.name} {old_id} does not exist at this site')
        if rtype.exists(conn, new_id):
            raise base.NameConflict(
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


def _require_capture() -> None:
    """503 while capture is incomplete: the feed would miss the changes
    going unlogged, and digests compared against hashes the log keeps
    current could be stale."""
    with sql.session_for_read() as session:
        history.require_capture(session.connection())


# --- digests ----------------------------------------------------------------

def _bucket_hash(pairs) -> str:
    h = hashlib.sha256()
    for id_, item_hash in pairs:
        h.update(f'{id_} {item_hash}\n'.encode())
    return h.hexdigest()


def digest(type_name: str, prefix: str = '') -> dict:
    """Hash buckets of the ids starting with ``prefix``, one per next
    character, so two sites compare a type in a few small requests and
    drill down only where the buckets differ. A bucket (or the whole
    prefix) small enough lists its ``(id, hash)`` pairs directly. The
    pairs come from the stored hashes (``keystone_syncext.digests``).

    ``common_prefix`` is the longest prefix all those ids share (absent
    when there are none): ids such as role assignments'
    ``UserProject:<user>:...`` share a dozen characters, and a reader
    that sees both sites' common prefixes can skip the levels in
    between instead of asking for each (an older reader ignores it)."""
    rtype = resources.get(type_name)
    prefix = prefix or ''
    _require_capture()
    return _digest_of(type_name, prefix, digests.pairs(rtype, [prefix])[0])


def _digest_of(type_name: str, prefix: str, pairs: list[tuple]) -> dict:
    """The digest node of ``pairs``, the ids under ``prefix``."""
    buckets: dict[str, list] = {}
    for id_, h in pairs:
        key = id_[:len(prefix) + 1]
        buckets.setdefault(key, []).append((id_, h))
    out = {
        'type': type_name,
        'prefix': prefix,
        'count': len(pairs),
        'hash': _bucket_hash(pairs),
        'buckets': [{'prefix': key, 'count': len(v), 'hash': _bucket_hash(v)}
                    for key, v in sorted(buckets.items(),
                                         key=lambda kv: kv[0].encode())],
    }
    if pairs:
        # Ordered by bytes: the first and the last id share what all do.
        out['common_prefix'] = os.path.commonprefix([pairs[0][0],
                                                     pairs[-1][0]])
    if len(pairs) <= DIGEST_LEAF_SIZE:
        out['items'] = [{'id': i, 'hash': h} for i, h in pairs]
    return out


def digest_many(body) -> list[dict]:
    """:func:`digest` of each ``{"type", "prefix"}`` in ``body``, in
    order: a reconcile asks for a whole level of its walk, every type at
    once, in one request instead of one per node. The whole body is
    checked before anything is read; each answer is exactly what
    ``GET /v3/sync/digest/{type}?prefix=P`` gives."""
    nodes = body['digests']
    most = CONF.sync.max_digests_per_request
    if len(nodes) > most:
        raise base.BadRequest(
            f'one request may ask for at most {most} digests ([sync] '
            f'max_digests_per_request), not {len(nodes)}')
    at: dict[str, list[int]] = {}   # type -> where its nodes are
    for n, node in enumerate(nodes):
        resources.get(node['type'])
        at.setdefault(node['type'], []).append(n)
    _require_capture()
    out: list = [None] * len(nodes)
    for type_name, where in at.items():
        prefixes = [nodes[n].get('prefix', '') for n in where]
        found = digests.pairs(resources.get(type_name), prefixes)
        for n, prefix, pairs in zip(where, prefixes, found, strict=True):
            out[n] = _digest_of(type_name, prefix, pairs)
    return out


# --- tombstones -------------------------------------------------------------

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
        raise base.BadRequest(
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


# --- the change feed --------------------------------------------------------

def _parse_types(types) -> list[str] | None:
    if not types:
        return None
    names = [t for t in types.split(',') if t]
    for name in names:
        resources.get(name)
    return names


def changes(since=None, limit=None, types=None, wait=None) -> dict:
    """Changes after cursor ``since``, in feed order, with the current
    representation of each; long-polls up to ``wait`` seconds (capped by
    ``[sync] max_wait_seconds``) when there are none.

    503 while capture is incomplete (the feed would silently miss
    changes); 410 for a cursor this log cannot continue (see
    ``keystone_syncext.history``)."""
    try:
        cursor = cursors.decode(since) if since else None
    except ValueError as e:
        raise base.BadRequest(f'since: {e}') from None
    limit = check_limit(limit, min(500, CONF.sync.max_page_size))
    names = _parse_types(types)
    deadline = time.monotonic() + min(wait or 0.0,
                                      CONF.sync.max_wait_seconds)
    _require_capture()
    page = _read_feed(cursor, limit, names)
    if not page.rows and time.monotonic() < deadline:
        page = _wait_for_news(cursor, limit, names, page, deadline)
    with sql.session_for_read() as session:
        items = _feed_items(session.connection(), page.history, page.rows)
    full = len(page.rows) == limit
    return {'changes': items,
            'next': items[-1]['cursor'] if full else page.head,
            'head': page.head, 'more': full}


def _wait_for_news(cursor, limit, names, page, deadline):
    """Look for news every ``POLL_INTERVAL`` until there is some or the
    deadline passes; then read the feed again.

    The looks share one connection, kept for the whole wait: a new one
    per look would, on SQLite (oslo.db gives it no pool), reconnect and
    parse the whole schema, triggers included, twenty times a second for
    every waiting long-poll, which costs an idle site a large share of a
    core. Each look ends its read transaction, so no writer waits behind
    it and the next look sees what committed meanwhile (REPEATABLE READ
    would otherwise keep showing the first snapshot). On SQLite a look
    first asks whether anything committed at all.
    """
    with sql.session_for_read() as session:
        engine = session.get_bind()
    version = None
    with engine.connect() as conn:
        while not page.rows and time.monotonic() < deadline:
            time.sleep(min(POLL_INTERVAL,
                           max(0.0, deadline - time.monotonic())))
            if conn.dialect.name == 'sqlite':
                # Changes only when another connection commits: a look
                # without a statement for SQLAlchemy or a transaction.
                # The first look always reads (the baseline comes after
                # whatever _read_feed saw).
                now = conn.connection.driver_connection.execute(
                    'PRAGMA data_version').fetchone()[0]
                if now == version:
                    continue
                version = now
            try:
                fresh = change_log.news(conn, page.top, names)
            finally:
                conn.rollback()
            if fresh:
                page = _read_feed(cursor, limit, names)
    return page


def stamp_if_needed() -> None:
    """Stamp the committed, unstamped changes, if there are any.

    A look first, in a read transaction; the stamp, a write, only when
    the look found something. A write on every feed read or capabilities
    request would take the database's write lock for nothing on SQLite,
    making Keystone's own writers wait for it, and every commit of it
    fails any Keystone transaction that has read before it writes
    (SQLite's deferred transaction cannot upgrade to a write over a
    snapshot that another commit made stale: "database is locked" at
    once, whatever the busy timeout). The stamp's transaction begins with
    its write, so on SQLite it waits for the lock as long as the busy
    timeout allows instead of failing at once.
    """
    with sql.session_for_read() as session:
        if not change_log.unstamped(session.connection()):
            return
    with sql.session_for_write() as session:
        change_log.stamp(session.connection())  # first: see changes.py


def feed_bounds() -> dict:
    """The change feed's history id, oldest valid and head cursors, the
    head covering every change committed before the call."""
    stamp_if_needed()
    with sql.session_for_read() as session:
        return _bounds(session.connection())


def _bounds(conn) -> dict:
    hist = history.current(conn)
    return {'history_id': cursors.history_text(hist),
            'oldest_valid_cursor': history.cursor_at(
                conn, hist, change_log.purged_through(conn)),
            'head_cursor': history.cursor_at(conn, hist,
                                             change_log.head(conn))}


class _Page(typing.NamedTuple):
    rows: list
    top: int        # the head position
    history: int    # the history id the rows belong to
    head: str       # the head cursor


def _read_feed(cursor, limit, names) -> _Page:
    """The rows after ``cursor`` (None: from the start), with the head,
    read in one read transaction after stamping.

    A cursor that shows this database went back in time renews the
    history id, committed before the 410 is raised."""
    stamp_if_needed()
    with sql.session_for_read() as session:
        conn = session.connection()
        # One snapshot: no row above this head is visible in it.
        top = change_log.head(conn)
        oldest = change_log.purged_through(conn)
        hist = history.current(conn)
        cursor = cursor or cursors.Cursor(hist, 0)
        refused = history.refusal(conn, cursor, hist, oldest, top)
        if refused is None:
            rows = conn.execute(_feed_query(cursor.position, limit,
                                            names)).all()
            return _Page(rows, top, hist, history.cursor_at(conn, hist, top))
    if refused.rewound:
        with sql.session_for_write() as session:
            change_log.renew_history(session.connection())
    with sql.session_for_read() as session:
        bounds = _bounds(session.connection())
    raise base.Gone(
        f'{refused.message}: reconcile (compare digests), then follow '
        'the feed from the head cursor', reconcile=True,
        rewound=refused.rewound,
        oldest_valid_cursor=bounds['oldest_valid_cursor'],
        head_cursor=bounds['head_cursor'])


def _feed_query(position, limit, names):
    c = tables.change.c
    query = (sa.select(c.id, c.position, c.resource_type, c.resource_id,
                       c.op, c.changed_at, c.origin)
             .where(c.position > position).order_by(c.position)
             .limit(limit))
    if names:
        query = query.where(c.resource_type.in_(names))
    return query


def _feed_items(conn, hist, rows) -> list[dict]:
    wanted: dict[str, set] = {}
    for r in rows:
        if r.op != 'delete' and r.resource_type in resources.TYPES:
            wanted.setdefault(r.resource_type, set()).add(r.resource_id)
    current = {}
    for type_name, ids in wanted.items():
        for item in resources.get(type_name).fetch(conn, ids=sorted(ids)):
            current[(type_name, item['id'])] = item
    out = []
    for r in rows:
        item = current.get((r.resource_type, r.resource_id))
        env = base.envelope(r.resource_type, item) if item else None
        out.append({
            'cursor': cursors.encode(hist, r.position, history.row_mark(r)),
            'type': r.resource_type,
            'id': r.resource_id,
            'op': r.op,
            'changed_at': base.iso(r.changed_at),
            'origin': r.origin,
            'hash': env['hash'] if env else None,
            'resource': env['resource'] if env else None,
        })
    return out
