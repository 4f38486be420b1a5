"""Set-wise creates: how ``POST /v3/sync/batch`` writes many new resources
of one type at once.

The per-item path (``writes.items.apply_upsert`` in a savepoint, through
Keystone's managers) costs tens of milliseconds a resource: a project
create alone loads its parent five times through the ORM. Seeding a site
is thousands of creates, so for the common types the batch hands a *run*
(consecutive new resources of one type, in batch order) to a creator here,
which

1. reads the facts the rules need for the whole run at once (a query per
   kind of fact, not per item),
2. judges each item in order, against the site *and* the items of the run
   accepted before it (so two new projects with one name: the first wins,
   the second gets the 409 the per-item path would give),
3. writes the accepted ones with one multi-row insert per table, and
4. sends, after the write, the notifications Keystone's manager sends.

Every item gets the result the per-item path would give it, with the same
error class and message. Where the set-wise read cannot be sure, a creator
raises ``BulkFallback`` and the batch applies the whole run item by item:
a reference it did not find is looked up again with the per-item path's
own query before it is refused (an id differing only in letter case
matches on MySQL), and a name it thought free but the database's unique
constraint refuses (a collation that folds case) rolls the run back to
its savepoint first (as does any other error the database raises for
bad data). Types, items and representations not handled here
(``eligible``) always take the per-item path.

Before any of it, the batch has checked every item with the type's
``validate``, as ``PUT`` does (id form, schema with Keystone's column
limits, the type's own rules): this path never sees a representation the
per-item path would refuse on its form. First of the rules below, as in
``writes.items.apply_upsert``: an id held by a row of another type in the
same table (a domain's for a project) is a 409 naming it.

Keystone's rules written out here are the same in Keystone 29.1 and 30.0;
each type's module lists them: :mod:`.project`, :mod:`.role`,
:mod:`.identity` (users, groups, memberships), :mod:`.assignment`.
:mod:`.core` holds what they share, :mod:`.creators` which type has one.

What the creates make stale in Keystone's caches is invalidated after the
batch's transaction (``writes.transaction.writing``, ``writes.caching``),
and capture triggers record every inserted row with the batch's origin,
as for any other write.
"""
