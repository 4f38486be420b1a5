"""Reconcile: repair a spoke by comparing its digests with the hub's.

When the hub's feed can no longer say what changed (the cursor is older
than the history it keeps), or drift is suspected, the agent compares, type
by type, the hub's and the spoke's ``GET /v3/sync/digest/{type}?prefix=P``:
hash buckets by the next character of the id. It starts at the root and
descends only into buckets whose (count, hash) differ, down to the ids and
their content hashes, so a few differences among a hundred thousand
resources cost a few dozen small requests, never a full listing. Where
every id at both sites shares a longer prefix (role assignments all start
``UserProject:``...), it skips straight to it. The walk goes a level at
a time with every type at once, and a site that offers
``POST /v3/sync/digests`` answers a whole level in one request: what a
small digest costs is mostly the site validating the request's token.

What it finds, per resource:

- at the hub, not at the spoke, or with another hash: upserted from the
  hub's current representation (``GET /v3/sync/resources/{type}/{id}``, or
  a listing of the prefix when a whole bucket is missing);
- at the spoke, not at the hub: deleted if the agent's state says the
  agent put it there (``agent_placed``), or if the hub has a tombstone
  for it (``POST /v3/sync/tombstones``): a spoke restored from a backup
  older than a delete holds the resource again, while the agent's record
  of placing it went with the delete, so only the hub's tombstone (kept
  for ``tombstone_retention_days``) tells it from the spoke's own.
  Everything else at the spoke is the spoke's own (its service users,
  what ``join`` excluded) and is never touched. The selection rules still
  apply to every delete.

The writes go through the agent's ordinary batch path (dependency order,
refused items kept as pending), and what was written is recorded as placed.
"""

from concurrent import futures
import dataclasses
import json
import logging
import os.path

from keystone_syncext.agent import client
from keystone_syncext.agent import passes
from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import writer as writer_mod

LOG = logging.getLogger(__name__)

# More wanted ids than this under one leaf: list the leaf (at most 64
# representations, one request) instead of reading each id on its own.
LEAF_LISTING = 8
# Digest and read requests in flight at once (each site answers them with
# its own workers).
WORKERS = 4


@dataclasses.dataclass
class TypeReport:
    """What a reconcile found and did for one type at one spoke."""

    type: str
    compared: int = 0        # digest nodes compared (a request per site)
    missing: int = 0         # at the hub only
    differ: int = 0          # at both, another hash
    upserts: int = 0         # written (or, dry run, to write)
    deletes: int = 0         # removed (or, dry run, to remove)
    kept_local: int = 0      # at the spoke only, not placed by the agent
    refused: int = 0         # the spoke refused (kept as pending)
    # Differences made at the spoke (drift): missing or changed there
    # while the agent had placed them, or back after the hub deleted
    # them. The others are hub changes on their way through the feed.
    drift: int = 0
    bytes: int = 0           # request and response bodies, both sites
    requests: int = 0


@dataclasses.dataclass
class _Diff:
    type: str
    compared: int = 0
    bytes: int = 0
    requests: int = 0
    # id -> the hub's item hash (None when only a bucket told us).
    missing: dict = dataclasses.field(default_factory=dict)
    differ: dict = dataclasses.field(default_factory=dict)
    # id -> the spoke's item hash, for those that differ (when known).
    spoke_hash: dict = dataclasses.field(default_factory=dict)
    extra: set = dataclasses.field(default_factory=set)
    # Prefixes the spoke has nothing under: every hub id there is missing.
    hub_only: list = dataclasses.field(default_factory=list)
    # Leaves with many wanted ids: (prefix, ids), read as one listing.
    leaves: list = dataclasses.field(default_factory=list)


def _node(d):
    """A digest as the walk uses it: items as a dict id -> hash."""
    if 'items' in d:
        d = dict(d, items={i['id']: i['hash'] for i in d['items']})
    return d


def _get_each(site, wanted):
    return [site.digest(t, p) for t, p in wanted]


def _get_many(site, wanted):
    """``POST /sync/digests`` of ``wanted``. A 404 or 405 there means the
    route is missing after all (an API node behind the same endpoint not
    upgraded yet, in a rolling upgrade): ask this site one node at a time
    from then on. An unknown type fails those requests as it should."""
    try:
        return site.digest_many(wanted)
    except client.SiteError as e:
        if e.status not in (404, 405):
            raise
        LOG.warning('%s: POST /sync/digests answered %s although the '
                    'site offers it; asking for one digest at a time',
                    site.name, e.status)
        site.max_digests = None
        return _get_each(site, wanted)


def _digest_jobs(site, wanted):
    """The requests that fetch the digest nodes ``wanted`` ((type,
    prefix) pairs) at ``site``, as (function, args, nodes): as few
    ``POST /sync/digests`` as the site's limit allows, or, at a site that
    predates that route, a ``GET /sync/digest/{type}`` each."""
    most = site.max_digests
    if not most:
        return [(_get_each, (site, [w]), [w]) for w in wanted]
    return [(_get_many, (site, wanted[n:n + most]), wanted[n:n + most])
            for n in range(0, len(wanted), most)]


def _shares(total, weights):
    """``total`` split in proportion to ``weights``, in whole parts that
    add up to it exactly."""
    whole = sum(weights) or 1
    out = [total * w // whole for w in weights]
    if out:
        out[-1] += total - sum(out)
    return out


def _fetch_level(pool, hub, spoke, level):
    """Both sites' digest nodes the ``level`` of the walk does not know
    yet, fetched side by side. Returns ``{(site, type, prefix): node}``
    and, per type, the bytes and requests spent (a request that carried
    several types is shared out by the size of each one's answer)."""
    jobs = []
    for i, site in enumerate((hub, spoke)):
        wanted = [(t, node[0]) for t, node in level
                  if node[1 + i] is None]
        jobs += [(i, nodes, fn, args)
                 for fn, args, nodes in _digest_jobs(site, wanted)]
    got, cost = {}, {}
    for (i, nodes, _fn, _args), (answers, nbytes, nreq) in zip(
            jobs, pool.map(passes.carry_pass(
                lambda j: _run_metered(j[2], j[3])), jobs),
            strict=True):
        weights = [len(json.dumps(a)) for a in answers]
        whole = sum(weights) or 1
        for (t, prefix), answer, share, w in zip(
                nodes, answers, _shares(nbytes, weights), weights,
                strict=True):
            got[(i, t, prefix)] = _node(answer)
            spent = cost.setdefault(t, [0, 0.0])
            spent[0] += share
            spent[1] += nreq * w / whole
    return got, cost


def _buckets(node, prefix):
    """The node's buckets by prefix; from its items when it has them."""
    if 'items' in node:
        out = {}
        for id_, h in node['items'].items():
            out.setdefault(id_[:len(prefix) + 1], {'items': {}})[
                'items'][id_] = h
        return out
    return {b['prefix']: b for b in node.get('buckets', ())}


def _common_prefix(prefix, h, s):
    """The prefix every id under ``prefix`` at both sites shares, when
    both sites tell theirs (``common_prefix``, from protocol 1's later
    servers) and it is more than a character longer than ``prefix``: the
    levels in between would each hold one bucket, the same everywhere.
    None otherwise (and for nodes that list their items: nothing to
    skip)."""
    if 'items' in h or 'items' in s:
        return None
    theirs = h.get('common_prefix'), s.get('common_prefix')
    if None in theirs:
        return None
    common = os.path.commonprefix(list(theirs))
    if len(common) <= len(prefix) + 1 or not common.startswith(prefix):
        return None
    return common


def _same(h, s) -> bool:
    """Whether two digest nodes both carry a hash, and agree."""
    return bool(h and s and 'hash' in h and 'hash' in s and
                (h['count'], h['hash']) == (s['count'], s['hash']))


def _visit(type_name, prefix, h, s):
    """Compare the two sites' digest nodes at ``prefix``; returns (a
    partial diff, child nodes)."""
    part = _Diff(type_name)
    part.compared = 1
    children = []
    if _same(h, s):
        return part, children
    skip_to = _common_prefix(prefix, h, s)
    if skip_to is not None:
        return part, [(skip_to, None, None)]
    if 'items' in h and 'items' in s:
        _compare_items(part, prefix, h['items'], s['items'])
        return part, children
    hb, sb = _buckets(h, prefix), _buckets(s, prefix)
    for key in sorted(set(hb) | set(sb)):
        hk, sk = hb.get(key), sb.get(key)
        if _same(hk, sk):
            continue
        if key == prefix and not (hk and 'items' in hk and
                                  sk and 'items' in sk):
            # An id equal to the prefix itself: descending would ask for
            # the same node again. Upserting an equal one is a no-op.
            _note_prefix_id(part, key, hk, sk)
            continue
        child = _bucket(part, key, hk, sk)
        if child is not None:
            children.append(child)
    return part, children


def _compare_items(part, prefix, hi, si) -> None:
    """Compare two leaves' item listings (id -> hash) into ``part``."""
    wanted = []
    for id_, hh in hi.items():
        if id_ not in si:
            part.missing[id_] = hh
            wanted.append(id_)
        elif si[id_] != hh:
            part.differ[id_] = hh
            part.spoke_hash[id_] = si[id_]
            wanted.append(id_)
    part.extra.update(i for i in si if i not in hi)
    if len(wanted) > LEAF_LISTING:
        part.leaves.append((prefix, wanted))


def _note_prefix_id(part, key, hk, sk) -> None:
    """Note an id equal to the prefix itself as differing, missing at the
    spoke or extra there."""
    if hk and sk:
        part.differ[key] = None
    elif hk:
        part.missing[key] = None
    else:
        part.extra.add(key)


def _bucket(part, key, hk, sk):
    """Compare one child bucket whose hashes differ: what is settled goes
    into ``part``; returns the child node to descend into, or None."""
    if sk is None:
        if 'items' in hk:
            part.missing.update(hk['items'])
        else:
            part.hub_only.append(key)
        return None
    if hk is None:
        if 'items' in sk:
            part.extra.update(sk['items'])
            return None
        return (key, {}, None)
    return (key, hk.get('items'), sk.get('items'))


def _merge(into: _Diff, part: _Diff) -> None:
    into.compared += part.compared
    into.bytes += part.bytes
    into.requests += part.requests
    into.missing.update(part.missing)
    into.differ.update(part.differ)
    into.spoke_hash.update(part.spoke_hash)
    into.extra.update(part.extra)
    into.hub_only += part.hub_only
    into.leaves += part.leaves


def compare(hub, spoke, type_names, workers: int = WORKERS) -> dict:
    """Walk the digests of ``type_names`` at both sites, level by level
    with every type at once (at a site that takes ``POST /sync/digests``,
    a level is a request or two); returns type -> :class:`_Diff`."""
    diffs = {t: _Diff(t) for t in type_names}
    level = [(t, ('', None, None)) for t in type_names]
    with futures.ThreadPoolExecutor(workers) as pool:
        while level:
            got, cost = _fetch_level(pool, hub, spoke, level)
            for t, (nbytes, nreq) in cost.items():
                diffs[t].bytes += nbytes
                diffs[t].requests += nreq
            children = []
            for t, (prefix, *known) in level:
                # A node of at most 64 items lists them: its parent told.
                h, s = (got[(i, t, prefix)] if items is None
                        else {'count': len(items), 'items': items}
                        for i, items in enumerate(known))
                part, below = _visit(t, prefix, h, s)
                _merge(diffs[t], part)
                children += [(t, c) for c in below]
            level = children
    return diffs


def _fetch_one(hub, type_name, id_):
    env = hub.envelope(type_name, id_)
    return [env] if env else []


def _fetch_listing(hub, type_name, prefix, only=None):
    out, marker = [], None
    while True:
        page = hub.listing_prefix(type_name, prefix, marker=marker)
        out += [i for i in page['items'] if only is None or i['id'] in only]
        marker = page.get('next_marker')
        if not marker:
            return out


def fetch(hub, diff: _Diff, workers: int = WORKERS) -> tuple[list, int]:
    """The hub's current envelopes of everything ``diff`` wants, and how
    many of them came from prefixes only the hub has; ids the hub deleted
    meanwhile are left out (their delete is in the feed)."""
    listed = set()
    jobs = []
    for prefix, ids in diff.leaves:
        listed.update(ids)
        jobs.append((False, _fetch_listing,
                     (hub, diff.type, prefix, set(ids))))
    for prefix in diff.hub_only:
        jobs.append((True, _fetch_listing, (hub, diff.type, prefix)))
    for id_ in list(diff.missing) + list(diff.differ):
        if id_ not in listed:
            jobs.append((False, _fetch_one, (hub, diff.type, id_)))
    out, from_hub_only = [], 0
    with futures.ThreadPoolExecutor(workers) as pool:
        for whole, (got, nbytes, nreq) in pool.map(passes.carry_pass(
                lambda job: (job[0], _run_metered(job[1], job[2]))), jobs):
            out += got
            from_hub_only += len(got) if whole else 0
            diff.bytes += nbytes
            diff.requests += nreq
    return out, from_hub_only


def _run_metered(fn, args):
    with client.metered() as m:
        got = fn(*args)
    return got, m.bytes, m.requests


def reconcile_spoke(agent, writer, site,
                    dry_run: bool = False) -> list[TypeReport]:
    """Reconcile ``site`` with ``agent.hub`` for every type both sync
    (``agent``: the run's :class:`keystone_syncext.agent.context.
    Context`); writes through ``writer``
    (:meth:`keystone_syncext.agent.writer.Writer.apply`) unless
    ``dry_run``."""
    types = [t for t in sorted(agent.hub_types, key=writer_mod.rank)
             if t in agent.spoke_types.get(site.name, ())]
    diffs = compare(agent.hub, site, types)
    reports, changes = {}, []
    for t in types:
        diff = diffs[t]
        rep = reports[t] = TypeReport(t, compared=diff.compared,
                                      missing=len(diff.missing),
                                      differ=len(diff.differ))
        placed = set(agent.state.placed_at(site.name, t, diff.extra))
        placed |= _deleted_at_hub(agent.hub, diff, placed)
        rep.deletes = len(placed)
        rep.kept_local = len(diff.extra) - len(placed)
        if dry_run:
            # Whole missing buckets: the hub's digest counts them.
            rep.missing += _hub_only_count(agent.hub, diff)
            rep.upserts = rep.missing + rep.differ
        else:
            envs, whole = fetch(agent.hub, diff)
            rep.missing += whole
            changes += [state_mod.Change(
                0, t, env['id'], 'upsert', None, env['resource'],
                state_mod.parse_time(env.get('updated_at')),
                hash_=env['hash']) for env in envs]
            changes += [state_mod.Change(0, t, id_, 'delete')
                        for id_ in sorted(placed)]
            rep.drift = _drift(agent.state, site.name, diff, envs, placed)
        rep.bytes, rep.requests = diff.bytes, round(diff.requests)
    if dry_run or not changes:
        return list(reports.values())
    with client.metered() as meter:
        done, failed, written = writer.apply(site, changes)
        agent.state.record(site.name, None, done, failed, written)
    for t, rep in reports.items():
        rep.upserts = sum(1 for c in written
                          if c.type == t and c.op != 'delete')
        rep.deletes = sum(1 for c in written
                          if c.type == t and c.op == 'delete')
        rep.refused = sum(1 for c, _ in failed if c.type == t)
    # The writes' bytes, shared out by the number of items of each type.
    total = len(changes) or 1
    for t, rep in reports.items():
        share = sum(1 for c in changes if c.type == t) / total
        rep.bytes += int(meter.bytes * share)
        rep.requests += round(meter.requests * share)
    return list(reports.values())


def _drift(state, spoke, diff, envs, deletes) -> int:
    """How many of the differences the spoke made (the rest are the
    hub's changes the feed has not brought yet): judged against what
    the agent placed there (the base), as a conflict is. Missing at the
    spoke while placed, changed there from what was placed (or never
    placed), or back there after the hub deleted it (a delete not of
    the agent's record)."""
    upserts = {env['id'] for env in envs} | set(diff.differ)
    base = state.placed_at(spoke, diff.type, upserts)
    drift = sum(1 for id_ in upserts - set(diff.differ) if id_ in base)
    drift += sum(1 for id_ in diff.differ
                 if diff.spoke_hash.get(id_) is None or
                 base.get(id_) != diff.spoke_hash[id_])
    placed = set(state.placed_at(spoke, diff.type, deletes))
    return drift + len(set(deletes) - placed)


def _deleted_at_hub(hub, diff, placed) -> set[str]:
    """The ids only the spoke holds, not placed there by the agent, that
    the hub deleted (its tombstones). A hub whose extension predates the
    lookup cannot say: nothing more is deleted, as before."""
    unknown = set(diff.extra) - set(placed)
    if not unknown or not hub.tombstone_lookup:
        return set()
    with client.metered() as meter:
        found = hub.deleted(diff.type, unknown)
    diff.bytes += meter.bytes
    diff.requests += meter.requests
    if found:
        LOG.info('%(n)d %(type)s resources the hub deleted are back at the '
                 'spoke (restored from backup?): deleting them again',
                 {'n': len(found), 'type': diff.type})
    return found


def _hub_only_count(hub, diff) -> int:
    """Ids under the prefixes only the hub has (dry run: counted from the
    hub's digest of each, no representation read)."""
    n = 0
    for prefix in diff.hub_only:
        with client.metered() as meter:
            n += hub.digest(diff.type, prefix)['count']
        diff.bytes += meter.bytes
        diff.requests += meter.requests
    return n
