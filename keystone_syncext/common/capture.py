"""The shapes of change capture's data: which Keystone table rows make a
change of a type.

Each row of the type table (:mod:`keystone_syncext.common.types`) carries
its own entries in ``TypeInfo.capture``; ``keystone_syncext.capture.spec``
collects them and ``keystone_syncext.capture.ddl`` turns them into
triggers for each database. Pure data, importable without Keystone (the
type table is read by the agent too).

SQL fragments are written with two placeholders: ``{r}`` is the row that
changed (``NEW`` or ``OLD``) and ``{p}`` is the owning resource's table
(or its alias).
"""

import dataclasses

# Keystone keeps a sentinel row in ``project`` as the parent of all domains.
# It is not a resource and is never captured.
ROOT_DOMAIN_ID = '<<keystone.domain.root>>'


@dataclasses.dataclass(frozen=True)
class Resource:
    """A table whose rows are resources of one (or, for project, two) types.

    :param table: Keystone table name.
    :param type_sql: SQL expression (with ``{r}``) giving the resource type.
    :param id_parts: SQL expressions (with ``{r}``) joined with ':' into the
        resource id; one part for real ids, several for synthetic ids.
    :param key: columns making up the id; changing one is a re-key, captured
        as a delete of the old id and a create of the new one.
    :param synced: other columns whose change is a change of the resource;
        columns not listed are site-local (failed-login counters,
        last_active_at) and never make a change.
    :param condition: SQL (with ``{r}``) that a row must satisfy to be a
        resource at all, or None.
    """

    table: str
    type_sql: str
    id_parts: tuple[str, ...]
    key: tuple[str, ...]
    synced: tuple[str, ...]
    condition: str | None = None


@dataclasses.dataclass(frozen=True)
class Child:
    """Rows that belong to a resource: a change to them changes the owner.

    :param table: Keystone table name.
    :param parent: the owning ``Resource`` table.
    :param match: SQL with ``{p}`` (owner) and ``{r}`` (this row) selecting
        the owner of the row.
    :param link: columns of this table that ``match`` reads.
    :param synced: columns whose change is a change of the owner.
    """

    table: str
    parent: str
    match: str
    link: tuple[str, ...]
    synced: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Cascade:
    """An ``ON DELETE CASCADE`` from ``parent`` into a captured ``child``.

    MySQL and MariaDB do not fire triggers for rows removed by a foreign key
    action, so on those databases the parent's delete trigger records what
    the cascade is about to remove. SQLite and PostgreSQL fire the child's
    own triggers and need nothing extra.

    :param match: SQL with ``{c}`` (child row alias) and ``{r}`` (the parent
        row being deleted) selecting the child rows that will go.
    """

    parent: str
    child: str
    match: str


Entry = Resource | Child | Cascade
