"""``POST /v3/sync/batch``: many upserts and deletes in one transaction,
in dependency order, with a result per item.

Each item is checked (``ResourceType.validate`` / ``check_id``), judged and
applied as a ``PUT`` or ``DELETE`` of it alone would be
(``items.apply_upsert`` / ``apply_delete``, in a savepoint of its own):
it applies whole or not at all, and one item refused (malformed, refused
by Keystone's rules or by the database) does not stop the others; its
result carries the 4xx a ``PUT`` or ``DELETE`` of it would answer.
New resources of the common types go the faster way of
``keystone_syncext.resources.bulk`` (checked and inserted set-wise, with
the same result per item); everything else, and any run the set-wise
path cannot judge exactly, goes item by item.
"""


from keystone import exception as ks_exception
import keystone.conf

from keystone_syncext import dberrors
from keystone_syncext import exception
from keystone_syncext import resources
from keystone_syncext.resources import base
from keystone_syncext.resources.bulk import creators
from keystone_syncext.writes import caching
from keystone_syncext.writes import fence as fence_mod
from keystone_syncext.writes import items as item_writes
from keystone_syncext.writes import notify
from keystone_syncext.writes import transaction

CONF = keystone.conf.CONF


def apply(body, origin=None, fence=None) -> list[dict]:
    """Apply many upserts and deletes in dependency order.

    A body that is not a batch (its envelope fails the route's schema,
    ``api.schemas.batch_request_body``, or it is too long) is refused
    whole with 400. Each item is then checked
    as a ``PUT`` or ``DELETE`` of it checks it (type, id form, the
    representation): a malformed item gets that 4xx as its result and is
    left out. Each other item is applied whole or not at all, and one
    refused by Keystone's rules (a name conflict, a missing reference) or
    by the database does not stop the others. Deletes go first,
    dependents before what they depend on, so a name freed by a delete
    can be reused by a create in the same batch; then upserts,
    dependencies first (projects parents first).

    ``fence`` (``(group, generation)`` from the agent's fencing header)
    is checked in the same transaction before any item is written
    (:func:`keystone_syncext.writes.fence.check`): a superseded one
    refuses the whole batch with 409.
    """
    items = body['items']
    if len(items) > CONF.sync.max_page_size:
        raise exception.BadRequest(
            f'a batch may carry at most {CONF.sync.max_page_size} items '
            f'([sync] max_page_size), not {len(items)}')
    refused = {}
    for n, item in enumerate(items):
        try:
            check_item(item)
        except exception.SyncError as e:
            refused[n] = e
    with transaction.writing(origin) as (session, conn), \
            notify.catalog_read_once(), notify.audits_built_only_if_heard():
        fence_mod.check(conn, fence)
        return _Applier(session, conn, items, refused).run()


def check_item(item) -> None:
    """The checks ``PUT`` or ``DELETE`` make before writing, with their
    errors: unknown type (404), id form, representation (400)."""
    rtype = resources.get(item['type'])
    if item['op'] == 'delete':
        rtype.check_id(item['id'])
    elif 'resource' not in item:
        rtype.check_id(item['id'])
        raise exception.BadRequest(
            f'{rtype.name} {item["id"]}: an upsert needs resource')
    else:
        rtype.validate(item['id'], item['resource'])


class _Applier:
    """Walks the items in batch order. Consecutive new resources of a type
    that ``bulk`` handles gather into a *run*, applied set-wise when the
    walk leaves it; any other item ends the run before it and is applied
    alone, so every item sees the site as the items before it left it,
    exactly as when all go one by one."""

    def __init__(self, session, conn, items, refused):
        self.session, self.conn, self.items = session, conn, items
        self.results: list[dict | None] = [None] * len(items)
        self.refused = refused  # index -> the error of a malformed item
        self.valid: list[int] = []
        self.current: dict[str, dict] = {}  # type -> id -> as it is here
        self.seen: set[tuple[str, str]] = set()
        self.run_: list[int] = []

    def run(self) -> list[dict]:
        for n, error in self.refused.items():
            body = _error_result(error)
            self._result(n, status=body['code'], error=body)
        self.valid = [n for n in range(len(self.items))
                      if n not in self.refused]
        for n in _order(self.conn, self.items, self.valid):
            if self.run_ and self.items[self.run_[0]]['type'] != \
                    self.items[n]['type']:
                self._flush()
            kind = self._kind(self.items[n])
            if kind == 'unchanged':
                self._unchanged(n)
            elif kind == 'create':
                self.run_.append(n)
            else:
                self._flush()
                self._one(n)
        self._flush()
        return self.results

    def _kind(self, item) -> str | None:
        """'create' (for a run), 'unchanged', or None (item by item)."""
        if item['op'] != 'upsert' or 'if_match' in item:
            return None
        key = (item['type'], item['id'])
        if key in self.seen:  # its first upsert may have changed it
            return None
        self.seen.add(key)
        old = self._current(item['type']).get(item['id'])
        if old is not None:
            return ('unchanged' if base.strip_meta(old) == item['resource']
                    else None)
        creator = creators.CREATORS.get(item['type'])
        if creator is not None and creator.eligible(item['resource']):
            return 'create'
        return None

    def _current(self, type_name) -> dict:
        """The upserted ids of ``type_name`` as this site has them, read
        once when the walk reaches the type: the deletes and the types
        before it are applied by then, and an upsert changes no other id
        of its type."""
        found = self.current.get(type_name)
        if found is None:
            ids = sorted({self.items[n]['id'] for n in self.valid
                          if self.items[n]['type'] == type_name
                          and self.items[n]['op'] == 'upsert'})
            found = {i['id']: i for i in
                     resources.get(type_name).fetch(self.conn, ids=ids)}
            self.current[type_name] = found
        return found

    def _result(self, n, **fields) -> None:
        item = self.items[n]
        self.results[n] = dict({'index': n, 'op': item['op'],
                                'type': item['type'], 'id': item['id']},
                               **fields)

    def _unchanged(self, n) -> None:
        item = self.items[n]
        old = self.current[item['type']][item['id']]
        self._result(n, status=200,
                     hash=base.content_hash(base.strip_meta(old)))

    def _one(self, n) -> None:
        """One item in its own savepoint, through the per-item path."""
        item = self.items[n]
        rtype = resources.get(item['type'])
        try:
            # Outermost: also what the savepoint's release flushes.
            with dberrors.refused_as_4xx(f'{item["type"]} {item["id"]}'), \
                    self.session.begin_nested():
                if item['op'] == 'delete':
                    item_writes.apply_delete(self.session, self.conn, rtype,
                                         item['id'], item.get('if_match'))
                    self._result(n, status=204)
                else:
                    status, env = item_writes.apply_upsert(
                        self.session, self.conn, rtype, item['id'],
                        item['resource'], item.get('if_match'))
                    self._result(n, status=status, hash=env['hash'])
        except ks_exception.Error as e:
            err = _error_result(e)
            self._result(n, status=err['code'], error=err)

    def _flush(self) -> None:
        """Apply the gathered run set-wise, or item by item when the
        set-wise path cannot judge it exactly."""
        run, self.run_ = self.run_, []
        if not run:
            return
        type_name = self.items[run[0]]['type']
        rtype = resources.get(type_name)
        entries = [(self.items[n]['id'], self.items[n]['resource'])
                   for n in run]
        for id_, resource in entries:
            caching.touched(self.session, rtype, id_, None, resource)
        self.session.flush()
        try:
            with self.session.begin_nested():
                creator = creators.CREATORS[type_name](self.conn)
                errors = creator.check(entries)
                accepted = [e for e, err in zip(entries, errors, strict=True)
                            if err is None]
                creator.write(accepted)
                written = {i['id']: i for i in rtype.fetch(
                    self.conn, ids=[id_ for id_, _ in accepted])}
        except exception.BulkFallback:
            for n in run:
                self._one(n)
            return
        except dberrors.DB_ERRORS as e:
            # A row the set-wise checks did not foresee (a concurrent
            # writer, a collation that folds case, a value this database
            # refuses): rolled back to the savepoint; item by item, each
            # gets its own answer.
            if dberrors.refusal(e, type_name) is None:
                raise
            for n in run:
                self._one(n)
            return
        # Keystone's ORM objects of this transaction must not outlive the
        # rows written under them (a later manager call would use them).
        self.session.expire_all()
        creator.notify(accepted)
        for n, (id_, _), err in zip(run, entries, errors, strict=True):
            if err is None:
                self._result(n, status=201, hash=base.content_hash(
                    base.strip_meta(written[id_])))
            else:
                body = _error_result(err)
                self._result(n, status=body['code'], error=body)


def _error_result(exc: ks_exception.Error) -> dict:
    return base.error_body(exc)['error']


def _order(conn, items, valid) -> list[int]:
    """Indexes ``valid`` of ``items`` in the order to apply them: deletes
    first, dependents before what they depend on (children before
    parents, as this site has them); then upserts, dependencies first
    (parents before children, as the batch has them)."""
    upserts: dict[str, dict] = {}
    deletes: dict[str, dict] = {}
    for item in (items[n] for n in valid):
        if item['op'] == 'upsert':
            upserts.setdefault(item['type'], {})[item['id']] = \
                item['resource']
        else:
            deletes.setdefault(item['type'], {})[item['id']] = None
    for type_name, ids in deletes.items():
        rtype = resources.get(type_name)
        for found in rtype.fetch(conn, ids=sorted(ids)):
            ids[found['id']] = found

    def key(n):
        item = items[n]
        rtype = resources.get(item['type'])
        if item['op'] == 'delete':
            known = deletes[item['type']]
            return (0, -resources.rank(item['type']),
                    -rtype.sort_key(known.get(item['id']), known), n)
        return (1, resources.rank(item['type']),
                rtype.sort_key(item['resource'], upserts[item['type']]), n)

    return sorted(valid, key=key)
