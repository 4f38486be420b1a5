"""What change capture watches: v1 resource tables, their child rows, cascades.

This is data, not SQL. ``keystone_syncext.capture.ddl`` turns it into
triggers for each database. SQL fragments here are written with two
placeholders: ``{r}`` is the row that changed (``NEW`` or ``OLD``) and
``{p}`` is the owning resource's table (or its alias).

The spec is versioned: triggers are named after ``VERSION``, so a later spec
can be installed beside this one before the old triggers are dropped (a
short window of double capture, which is harmless, instead of a gap).
"""

import dataclasses

from keystone_syncext.common import types

VERSION = 1

# Keystone keeps a sentinel row in ``project`` as the parent of all domains.
# It is not a resource and is never captured.
ROOT_DOMAIN_ID = '<<keystone.domain.root>>'

TIMESTAMPS = ('created_at', 'updated_at')


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


def _project_type(r='{r}'):
    return f"CASE WHEN {r}.is_domain THEN 'domain' ELSE 'project' END"


def _inherited(r='{r}'):
    return f"CASE WHEN {r}.inherited THEN '1' ELSE '0' END"


RESOURCES = (
    Resource(
        table='project',
        type_sql=_project_type(),
        id_parts=('{r}.id',),
        key=('id',),
        synced=('name', 'extra', 'description', 'enabled', 'domain_id',
                'parent_id', 'is_domain'),
        condition=f"{{r}}.id <> '{ROOT_DOMAIN_ID}'",
    ),
    Resource(
        table='user',
        type_sql="'user'",
        id_parts=('{r}.id',),
        key=('id',),
        synced=('extra', 'enabled', 'default_project_id', 'domain_id'),
    ),
    Resource(
        table='group',
        type_sql="'group'",
        id_parts=('{r}.id',),
        key=('id',),
        synced=('domain_id', 'name', 'description', 'extra'),
    ),
    Resource(
        table='user_group_membership',
        type_sql="'group_membership'",
        id_parts=('{r}.user_id', '{r}.group_id'),
        key=('user_id', 'group_id'),
        synced=(),
    ),
    Resource(
        table='role',
        type_sql="'role'",
        id_parts=('{r}.id',),
        key=('id',),
        synced=('name', 'extra', 'domain_id', 'description'),
    ),
    Resource(
        table='implied_role',
        type_sql="'implied_role'",
        id_parts=('{r}.prior_role_id', '{r}.implied_role_id'),
        key=('prior_role_id', 'implied_role_id'),
        synced=(),
    ),
    Resource(
        table='assignment',
        type_sql="'role_assignment'",
        id_parts=('{r}.type', '{r}.actor_id', '{r}.target_id', '{r}.role_id',
                  _inherited()),
        key=('type', 'actor_id', 'target_id', 'role_id', 'inherited'),
        synced=(),
    ),
    Resource(
        table='system_assignment',
        type_sql="'role_assignment'",
        id_parts=('{r}.type', '{r}.actor_id', '{r}.target_id', '{r}.role_id',
                  _inherited()),
        key=('type', 'actor_id', 'target_id', 'role_id', 'inherited'),
        synced=(),
    ),
    Resource(
        table='application_credential',
        type_sql="'application_credential'",
        id_parts=('{r}.id',),
        key=('id',),
        synced=('name', 'secret_hash', 'description', 'user_id',
                'project_id', 'expires_at', 'system', 'unrestricted'),
    ),
    Resource(
        table='identity_provider',
        type_sql="'identity_provider'",
        id_parts=('{r}.id',),
        key=('id',),
        synced=('enabled', 'description', 'domain_id', 'authorization_ttl'),
    ),
    Resource(
        table='mapping',
        type_sql="'mapping'",
        id_parts=('{r}.id',),
        key=('id',),
        synced=('rules', 'schema_version'),
    ),
    Resource(
        table='federation_protocol',
        type_sql="'federation_protocol'",
        id_parts=('{r}.idp_id', '{r}.id'),
        key=('idp_id', 'id'),
        synced=('mapping_id', 'remote_id_attribute'),
    ),
)

_USER_OF_LOCAL_USER = (
    '{p}.id = (SELECT lu.user_id FROM local_user lu '
    'WHERE lu.id = {r}.local_user_id)'
)
_APP_CRED_OF = '{p}.internal_id = {r}.application_credential_id'

CHILDREN = (
    Child('project_tag', 'project', '{p}.id = {r}.project_id',
          ('project_id',), ('name',)),
    Child('project_option', 'project', '{p}.id = {r}.project_id',
          ('project_id',), ('option_id', 'option_value')),
    Child('local_user', 'user', '{p}.id = {r}.user_id',
          ('user_id',), ('domain_id', 'name')),
    Child('password', 'user', _USER_OF_LOCAL_USER,
          ('local_user_id',),
          ('password_hash', 'expires_at', 'expires_at_int', 'self_service',
           'created_at', 'created_at_int')),
    Child('federated_user', 'user', '{p}.id = {r}.user_id',
          ('user_id',),
          ('idp_id', 'protocol_id', 'unique_id', 'display_name')),
    Child('nonlocal_user', 'user', '{p}.id = {r}.user_id',
          ('user_id',), ('domain_id', 'name')),
    Child('user_option', 'user', '{p}.id = {r}.user_id',
          ('user_id',), ('option_id', 'option_value')),
    Child('role_option', 'role', '{p}.id = {r}.role_id',
          ('role_id',), ('option_id', 'option_value')),
    Child('application_credential_role', 'application_credential',
          _APP_CRED_OF, ('application_credential_id',), ('role_id',)),
    Child('application_credential_access_rule', 'application_credential',
          _APP_CRED_OF, ('application_credential_id',), ('access_rule_id',)),
    Child('idp_remote_ids', 'identity_provider', '{p}.id = {r}.idp_id',
          ('idp_id',), ('remote_id',)),
)

CASCADES = (
    Cascade('role', 'implied_role',
            '{c}.prior_role_id = {r}.id OR {c}.implied_role_id = {r}.id'),
    Cascade('identity_provider', 'federation_protocol', '{c}.idp_id = {r}.id'),
    Cascade('identity_provider', 'federated_user', '{c}.idp_id = {r}.id'),
    Cascade('federation_protocol', 'federated_user',
            '{c}.idp_id = {r}.idp_id AND {c}.protocol_id = {r}.id'),
)

RESOURCE_BY_TABLE = {res.table: res for res in RESOURCES}
CHILD_BY_TABLE = {child.table: child for child in CHILDREN}

# Every v1 type that capture produces, in dependency order (creates go in
# this order, deletes in reverse): the type table's.
TYPES = types.ORDER
