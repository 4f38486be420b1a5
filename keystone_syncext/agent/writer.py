"""Writing changes to a site: order, chunk, guard, write, split.

:class:`Writer` is what every part that writes uses (the spokes' passes,
the seed, a reconcile, a conflict's settlement, the upward flow): changes
go in dependency order (:func:`order`), in batches bounded by items and
bytes, each write of a resource the agent placed at a spoke before made
conditional on what was placed (``if_match``: what changed there since
is settled by :mod:`keystone_syncext.agent.conflicts`). A batch the site
refuses as a whole for what may be one item's fault is split in halves
down to the item, which is returned as refused (the caller parks it as
pending) while the rest goes in.
"""

from keystone_syncext.agent import batch_body
from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.agent import conflicts as conflicts_mod
from keystone_syncext.agent import state as state_mod
from keystone_syncext.common import protocol
from keystone_syncext.common import types as type_table

# Creates go in this order, deletes in reverse: the type table's.
TYPE_ORDER = type_table.ORDER


def rank(type_name: str) -> int:
    """The type table's rank; :class:`type_table.UnknownType` for a type
    the agent does not know (never sorted last and written anyway)."""
    return type_table.rank(type_name)


def order(changes: list[state_mod.Change]) -> list[state_mod.Change]:
    """The newest change per resource, deletes first (dependents first),
    then upserts (dependencies first, parent projects before children)."""
    latest: dict = {}
    for c in changes:
        if c.key not in latest or c.seq >= latest[c.key].seq:
            latest[c.key] = c
    projects = {c.id: c.resource for c in latest.values()
                if c.type == 'project' and c.op != 'delete'}

    def depth(c):
        if c.type != 'project' or c.op == 'delete':
            return 0
        n, seen, parent = 0, set(), c.resource.get('parent_id')
        while parent in projects and parent not in seen:
            seen.add(parent)
            parent = projects[parent].get('parent_id')
            n += 1
        return n

    def key(c):
        if c.op == 'delete':
            return (0, -rank(c.type), c.seq)
        return (1, rank(c.type), depth(c), c.seq)

    return sorted(latest.values(), key=key)


# How a refused item's reason starts when the site holds another resource
# of the same name: what ``keystone-sync join`` resolves.
NAME_CLASH = 'name taken at the site by'


def refusal(c: state_mod.Change, status: int, err: dict) -> str:
    """The reason kept with a refused item: the site's status and
    message, and the id of the resource holding the name (409 with
    ``existing_id``) so that a name clash can be told apart."""
    clash = (f'{NAME_CLASH} {err["existing_id"]}: '
             if status == 409 and err.get('existing_id') else '')
    return f'{c.type} {c.id}: {status} {clash}{err.get("message", "")}'[:500]


# Where the release named in an unstorable refusal goes.
_UNSTORABLE_START = protocol.UNSTORABLE.split('{')[0]
_UNSTORABLE_END = protocol.UNSTORABLE.split('}')[1]


def _unstorable(reason: str) -> bool:
    """Whether a refusal says the site's release cannot store a field."""
    start = reason.find(_UNSTORABLE_START)
    return start >= 0 and _UNSTORABLE_END in reason[start:]


def held_back(c: state_mod.Change, site: client.Site) -> bool:
    """Whether pending item ``c`` was refused by ``site`` for a field its
    Keystone release cannot store, and the site still runs that release:
    sending it again cannot help, so it stays pending, visible with its
    reason, until the site is upgraded (or a newer change replaces it)."""
    if not c.last_error or not site.keystone_version:
        return False
    return protocol.UNSTORABLE.format(
        release=site.keystone_version) in c.last_error


def item_may_be_at_fault(e: client.SiteError) -> bool:
    """Whether a batch that failed as a whole is worth splitting to find
    the item at fault: a 4xx other than 401 and 408/429 (the site refused
    the request), or a 5xx other than 503 (the site broke on it, after the
    client's retries). Not an unreachable site, a timeout, a 401 or a busy
    database (503): those are the site's state, not an item's."""
    if isinstance(e, claims_mod.Fenced):  # the member, not an item
        return False
    if e.status is None or e.status in (401, 408, 429, 503):
        return False
    return not e.transient or e.status >= 500


class Writer:
    """Writes for one run (:class:`keystone_syncext.agent.context.
    Context`): its sites' types and page sizes, its selections and
    conflict rules, its state."""

    def __init__(self, ctx):
        self.ctx = ctx

    @property
    def hub(self) -> client.Site:
        return self.ctx.hub

    @property
    def state(self):
        return self.ctx.state

    @property
    def resolver(self) -> conflicts_mod.Resolver:
        return self.ctx.resolver

    def apply(self, site: client.Site, changes, guard: bool = True):
        """Write hub ``changes`` to spoke ``site`` in batches; returns
        (done, failed with reasons, written: what the spoke accepted, a
        subset of done). A pass that leaves some refused while others
        went in retries the refused once more: what they needed may have
        been written later in the same pass. With ``guard``, a resource
        the agent placed there before is written only if the spoke still
        holds what was placed; what changed there since is settled by the
        conflict rules (:mod:`keystone_syncext.agent.conflicts`)."""
        known = set(self.ctx.spoke_types.get(site.name, ()))
        done, failed, written = [], [], []
        selection = self.ctx.selections.get(site.name)
        if selection:
            # Left alone by the rules: never written, never retried.
            changes, skipped = selection.filter(
                site.name, changes, self.hub.resource, site.resource)
            done += [c for c, _ in skipped]
        todo = []
        for c in changes:
            if c.type not in known:
                failed.append((c, f'spoke does not sync type {c.type}'))
            elif c.op != 'delete' and c.resource is None:
                # Deleted at the hub since (its delete follows in the
                # feed), or a resource the hub does not represent.
                done.append(c)
            else:
                todo.append(c)
        if guard:
            self.guard(site, todo)
        stale = []
        for attempt in range(3):
            ok, bad, changed = self.write(site, todo)
            done += ok
            written += ok
            stale += changed
            # What the site's release cannot store is not sent again.
            failed += [(c, why) for c, why in bad if _unstorable(why)]
            bad = [(c, why) for c, why in bad if not _unstorable(why)]
            if not bad or not ok or attempt == 2:
                failed += bad
                break
            todo = [c for c, _ in bad]
        if stale:
            s_done, s_failed, s_written = conflicts_mod.settle(
                self, site, stale)
            done += s_done
            failed += s_failed
            written += s_written
        return done, failed, written

    def guard(self, site, changes) -> None:
        """Make each write of a resource placed at ``site`` before
        conditional on what was placed (its base)."""
        by_type: dict = {}
        for c in changes:
            by_type.setdefault(c.type, []).append(c)
        for type_name, group in by_type.items():
            base = self.state.placed_at(site.name, type_name,
                                        {c.id for c in group})
            for c in group:
                c.if_match = base.get(c.id)

    def write(self, site, changes, origin=None):
        """Write ``changes`` to ``site`` in :func:`order`, as is (no
        selection, no guard); (written, refused with reasons, stale:
        conditional writes the site refused because it holds another
        version, with its hash). ``origin``: the site the changes come
        from (the hub's by default)."""
        ok, bad, stale = [], [], []
        origin = origin or self.state.hub().site_id
        # Uncompressed bytes per batch: batch_bytes, or for a site that
        # takes compressed batches what compresses to about that at the
        # ratio of the batch sent before it.
        def budget():
            return site.compression.budget(self.ctx.conf.batch_bytes)
        for chunk in batch_body.chunks(order(changes), self.max_items(site),
                                       budget,
                                       as_item=state_mod.Change.item):
            self.ctx.check_stop()
            self._write_chunk(site, chunk, origin, ok, bad, stale)
        self.ctx.metrics.applied(site.name, len(ok))
        return ok, bad, stale

    def max_items(self, site) -> int:
        """The most items one batch to ``site`` carries."""
        conf = self.ctx.conf
        return min(conf.batch_items,
                   self.ctx.spoke_max_items.get(site.name) or
                   conf.batch_items)

    def _write_chunk(self, site, chunk, origin, ok, bad, stale):
        # Every batch, a split's halves too: none begun once this
        # member's count of its claim's lease says it may not.
        self.ctx.check_lease(site)
        try:
            results = claims_mod.fenced_batch(
                site, [c.item() for c in chunk], origin=origin,
                max_bytes=self.ctx.conf.batch_bytes)
        except client.SiteError as e:
            if not item_may_be_at_fault(e):
                raise
            # The spoke refused the whole batch (one item failed its
            # schema there, the body was too large, or one item made it
            # fail with a 5xx): find the item, park it, go on.
            if len(chunk) == 1:
                bad.append((chunk[0], f'{chunk[0].type} {chunk[0].id}: '
                                      f'{e}'[:500]))
                return
            half = len(chunk) // 2
            self._write_chunk(site, chunk[:half], origin, ok, bad, stale)
            self._write_chunk(site, chunk[half:], origin, ok, bad, stale)
            return
        by_index = {r.get('index'): r for r in results}
        if sorted(by_index) != list(range(len(chunk))):
            raise client.SiteError(site.name, 'batch answered '
                                   f'{len(results)} results for '
                                   f'{len(chunk)} items')
        for n, c in enumerate(chunk):
            r = by_index[n]
            status = r.get('status', 500)
            if 200 <= status < 300 or (c.op == 'delete' and status == 404
                                        and not c.if_match):
                ok.append(c)
            elif status == 412 and c.if_match:
                stale.append((c, (r.get('error') or {}).get('current_hash')))
            else:
                bad.append((c, refusal(c, status, r.get('error') or {})))
