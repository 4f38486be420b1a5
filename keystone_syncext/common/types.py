"""The resource types of protocol v1: one table that every part reads.

For each type: where it goes in a batch (its rank: creates low to high,
deletes high to low), what contains it and what it refers to (the edges
the selection rules follow, and which a write needs at the site first),
its name (selection ``name:`` rules, join's natural key), the fields
holding hashes of secrets (redacted, fingerprinted, never echoed in an
error), the Keystone fields that are never synced (site-local, each with
why) and whether it flows up from spokes by default
(``spoke_originated_types``); and, for the extension's change capture,
which Keystone table rows make a change of it (SQL data, read by
``capture.spec``; the agent ignores it).

The change capture spec, the extension's resource classes and batch
order, the agent's order, selection rules, conflict records, join and the
secret redaction all read this table; adding a type starts here
(doc/types.md). A type that is not in it is an error wherever one is
met (:class:`UnknownType`), never sorted last or waved past a rule.
"""

from collections.abc import Callable
from collections.abc import Iterable
import copy
import dataclasses

from keystone_syncext.common import revocation
from keystone_syncext.common.capture import ROOT_DOMAIN_ID
from keystone_syncext.common.capture import Cascade
from keystone_syncext.common.capture import Child
from keystone_syncext.common.capture import Entry
from keystone_syncext.common.capture import Resource

# A role assignment's ``type`` -> (actor type, target type); the target
# of a system assignment is not a resource but ``SYSTEM_TARGET``.
SYSTEM_TARGET = 'system'   # Keystone's AssignmentManager._SYSTEM_SCOPE_TOKEN
ASSIGNMENT_ENDS = {
    'UserProject': ('user', 'project'),
    'GroupProject': ('group', 'project'),
    'UserDomain': ('user', 'domain'),
    'GroupDomain': ('group', 'domain'),
    'UserSystem': ('user', SYSTEM_TARGET),
    'GroupSystem': ('group', SYSTEM_TARGET),
}


class UnknownType(ValueError):
    """A type that is not in the table of protocol v1."""

    def __init__(self, name):
        super().__init__(f'unknown resource type {name!r}; protocol v1 '
                         f'types are: {", ".join(ORDER)}')
        self.type = name


@dataclasses.dataclass(frozen=True)
class Ref:
    """A field of a representation that holds another resource's id.

    :param path: dotted path to the field; a list met on the way is
        walked item by item (``federated.idp_id``: every federated
        identity's provider).
    :param types: the types it can name.
    :param choose: for a field that names one of several types, the type
        it names in a given representation (None: no resource).
    """

    path: str
    types: tuple[str, ...]
    choose: Callable[[dict], str | None] | None = None

    def type_in(self, resource: dict) -> str | None:
        return self.choose(resource) if self.choose else self.types[0]


def _actor(resource: dict) -> str | None:
    return ASSIGNMENT_ENDS.get(resource.get('type'), (None, None))[0]


def _target(resource: dict) -> str | None:
    target = ASSIGNMENT_ENDS.get(resource.get('type'), (None, None))[1]
    return None if target == SYSTEM_TARGET else target


@dataclasses.dataclass(frozen=True)
class TypeInfo:
    """One type of the table.

    :param name: the type name in URLs, the feed, batches and rules.
    :param contained_in: what contains it (its domain, its parent
        project): a ``domain:``/``project:`` rule covers it, an excluded
        container excludes it.
    :param refers_to: what it refers to: an excluded reference excludes
        it, and a write of it needs the references at the site.
    :param needs: types a write of it needs at the site besides the
        references the rules follow (a federated user needs its
        protocol); ordering only.
    :param dependent: it exists only between others (a grant, a
        membership): selected when all it refers to is.
    :param name_field: dotted path to its name (``name:TYPE:GLOB`` rules),
        or None: the type has no name.
    :param natural_key: paths whose values make a resource "the same" at
        two sites (join), the name last, or empty: never joined.
    :param secrets: dotted paths to fields carrying hashes of secrets
        (list items walked, as for ``Ref.path``).
    :param site_local: Keystone fields of this resource that are never
        synced, with why.
    :param flows_up: in ``spoke_originated_types`` by default.
    :param capture: what change capture watches for it
        (:mod:`keystone_syncext.common.capture`): the ``Resource`` table(s)
        whose rows are its resources, the ``Child`` tables whose rows
        belong to one, and the ``Cascade``s of a foreign key that remove
        its rows.
    """

    name: str
    contained_in: tuple[Ref, ...] = ()
    refers_to: tuple[Ref, ...] = ()
    needs: tuple[str, ...] = ()
    dependent: bool = False
    name_field: str | None = None
    natural_key: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    site_local: dict = dataclasses.field(default_factory=dict)
    flows_up: bool = False
    capture: tuple[Entry, ...] = ()

    @property
    def rank(self) -> int:
        return rank(self.name)

    def edges(self) -> tuple[str, ...]:
        """Every type it can be contained in or refer to."""
        return tuple(dict.fromkeys(
            t for ref in self.contained_in + self.refers_to
            for t in ref.types))

    def containers(self, resource: dict) -> tuple[tuple[str, str], ...]:
        """``(type, id)`` of what contains ``resource``. An id met twice
        is kept once: a project whose parent is its domain is contained
        in the domain only (domains and projects share one id space)."""
        out = []
        for ref in self.contained_in:
            for value in values(resource, ref.path):
                if value and value not in (i for _, i in out):
                    out.append((ref.type_in(resource), value))
        return tuple(out)

    def references(self, resource: dict) -> tuple[tuple[str, str], ...]:
        """``(type, id)`` of what ``resource`` refers to."""
        out = []
        for ref in self.refers_to:
            type_name = ref.type_in(resource)
            if type_name is None:
                continue
            out += [(type_name, v) for v in values(resource, ref.path) if v]
        return tuple(out)

    def name_of(self, resource: dict) -> str | None:
        if self.name_field is None:
            return None
        found = values(resource, self.name_field)
        return found[0] if found else None

    def natural_key_of(self, resource: dict) -> tuple | None:
        """What makes ``resource`` "the same" at two sites, or None (no
        natural key, or no name: a user without a local identity)."""
        if not self.natural_key:
            return None
        key = tuple(next(iter(values(resource, p)), None)
                    for p in self.natural_key)
        return None if key[-1] is None else key


_DOMAIN = Ref('domain_id', ('domain',))

# SQL of the capture entries ({r}: the changed row, {p}: its owner).
_OF_PROJECT = '{p}.id = {r}.project_id'
_OF_USER = '{p}.id = {r}.user_id'
_USER_OF_LOCAL_USER = (
    '{p}.id = (SELECT lu.user_id FROM local_user lu '
    'WHERE lu.id = {r}.local_user_id)'
)
_APP_CRED_OF = '{p}.internal_id = {r}.application_credential_id'
_ASSIGNMENT_ID = ('{r}.type', '{r}.actor_id', '{r}.target_id',
                  '{r}.role_id',
                  "CASE WHEN {r}.inherited THEN '1' ELSE '0' END")
_ASSIGNMENT_KEY = ('type', 'actor_id', 'target_id', 'role_id', 'inherited')


def _id_table(table, synced, type_name=None) -> Resource:
    """A table of one type whose key is its ``id`` column."""
    return Resource(table=table, type_sql=f"'{type_name or table}'",
                    id_parts=('{r}.id',), key=('id',), synced=synced)


# In dependency order: creates go top to bottom, deletes bottom to top.
# Everything a type is contained in, refers to or needs is above it.
TABLE = (
    # Keystone keeps domains in its project table: the project row's
    # capture is both types'.
    TypeInfo('domain', name_field='name'),
    TypeInfo('project', contained_in=(_DOMAIN,
                                      Ref('parent_id', ('project',))),
             name_field='name', natural_key=('domain_id', 'name'),
             capture=(
                 Resource(
                     table='project',
                     type_sql="CASE WHEN {r}.is_domain THEN 'domain' "
                              "ELSE 'project' END",
                     id_parts=('{r}.id',), key=('id',),
                     synced=('name', 'extra', 'description', 'enabled',
                             'domain_id', 'parent_id', 'is_domain'),
                     condition=f"{{r}}.id <> '{ROOT_DOMAIN_ID}'"),
                 Child('project_tag', 'project', _OF_PROJECT,
                       ('project_id',), ('name',)),
                 Child('project_option', 'project', _OF_PROJECT,
                       ('project_id',), ('option_id', 'option_value')))),
    TypeInfo('role', contained_in=(_DOMAIN,), name_field='name',
             natural_key=('domain_id', 'name'),
             capture=(
                 _id_table('role', ('name', 'extra', 'domain_id',
                                    'description')),
                 Child('role_option', 'role', '{p}.id = {r}.role_id',
                       ('role_id',), ('option_id', 'option_value')))),
    TypeInfo('implied_role', dependent=True,
             refers_to=(Ref('prior_role_id', ('role',)),
                        Ref('implied_role_id', ('role',))),
             capture=(
                 Resource(table='implied_role', type_sql="'implied_role'",
                          id_parts=('{r}.prior_role_id',
                                    '{r}.implied_role_id'),
                          key=('prior_role_id', 'implied_role_id'),
                          synced=()),
                 Cascade('role', 'implied_role',
                         '{c}.prior_role_id = {r}.id OR '
                         '{c}.implied_role_id = {r}.id'))),
    TypeInfo('mapping', name_field='id',
             capture=(_id_table('mapping', ('rules', 'schema_version')),)),
    TypeInfo('identity_provider', contained_in=(_DOMAIN,), name_field='id',
             capture=(
                 _id_table('identity_provider',
                           ('enabled', 'description', 'domain_id',
                            'authorization_ttl')),
                 Child('idp_remote_ids', 'identity_provider',
                       '{p}.id = {r}.idp_id', ('idp_id',), ('remote_id',)))),
    TypeInfo('federation_protocol', dependent=True,
             refers_to=(Ref('idp_id', ('identity_provider',)),
                        Ref('mapping_id', ('mapping',))),
             capture=(
                 Resource(table='federation_protocol',
                          type_sql="'federation_protocol'",
                          id_parts=('{r}.idp_id', '{r}.id'),
                          key=('idp_id', 'id'),
                          synced=('mapping_id', 'remote_id_attribute')),
                 Cascade('identity_provider', 'federation_protocol',
                         '{c}.idp_id = {r}.id'))),
    # A federated user needs its identity provider and protocol at the
    # site (the write is refused otherwise), so all three come first.
    TypeInfo(
        'user', contained_in=(_DOMAIN,),
        refers_to=(Ref('federated.idp_id', ('identity_provider',)),),
        needs=('federation_protocol',),
        name_field='local.name', natural_key=('domain_id', 'local.name'),
        secrets=('local.passwords.hash',),
        site_local={
            'last_active_at': 'inactivity is judged at each site',
            'local.failed_auth_count': 'lockout counts failed logins at '
                                       'this site',
            'local.failed_auth_at': 'lockout counts failed logins at this '
                                    'site',
            'expiring group memberships': 'made by federation mapping '
                                          'rules at each login',
            'nonlocal_user': 'LDAP/non-SQL shadow users are not synced; '
                             'each site shadows them from its own '
                             'directory',
        },
        capture=(
            _id_table('user', ('extra', 'enabled', 'default_project_id',
                               'domain_id')),
            Child('local_user', 'user', _OF_USER, ('user_id',),
                  ('domain_id', 'name')),
            Child('password', 'user', _USER_OF_LOCAL_USER,
                  ('local_user_id',),
                  ('password_hash', 'expires_at', 'expires_at_int',
                   'self_service', 'created_at', 'created_at_int')),
            Child('federated_user', 'user', _OF_USER, ('user_id',),
                  ('idp_id', 'protocol_id', 'unique_id', 'display_name')),
            Child('nonlocal_user', 'user', _OF_USER, ('user_id',),
                  ('domain_id', 'name')),
            Child('user_option', 'user', _OF_USER, ('user_id',),
                  ('option_id', 'option_value')),
            Cascade('identity_provider', 'federated_user',
                    '{c}.idp_id = {r}.id'),
            Cascade('federation_protocol', 'federated_user',
                    '{c}.idp_id = {r}.idp_id AND {c}.protocol_id = {r}.id'),
        )),
    TypeInfo('group', contained_in=(_DOMAIN,), name_field='name',
             natural_key=('domain_id', 'name'),
             capture=(_id_table('group', ('domain_id', 'name', 'description',
                                          'extra')),)),
    TypeInfo('group_membership', dependent=True,
             refers_to=(Ref('user_id', ('user',)),
                        Ref('group_id', ('group',))),
             capture=(Resource(table='user_group_membership',
                               type_sql="'group_membership'",
                               id_parts=('{r}.user_id', '{r}.group_id'),
                               key=('user_id', 'group_id'), synced=()),)),
    TypeInfo('role_assignment', dependent=True,
             refers_to=(Ref('actor_id', ('user', 'group'), _actor),
                        Ref('role_id', ('role',)),
                        Ref('target_id', ('project', 'domain'), _target)),
             capture=tuple(
                 Resource(table=table, type_sql="'role_assignment'",
                          id_parts=_ASSIGNMENT_ID, key=_ASSIGNMENT_KEY,
                          synced=())
                 for table in ('assignment', 'system_assignment'))),
    TypeInfo(
        'application_credential', dependent=True,
        refers_to=(Ref('user_id', ('user',)),
                   Ref('project_id', ('project',))),
        name_field='name', secrets=('secret_hash',),
        site_local={
            'internal_id': "the row's key in this database; the id is "
                           "Keystone's public one",
        },
        flows_up=True,
        capture=(
            _id_table('application_credential',
                      ('name', 'secret_hash', 'description', 'user_id',
                       'project_id', 'expires_at', 'system', 'unrestricted')),
            Child('application_credential_role', 'application_credential',
                  _APP_CRED_OF, ('application_credential_id',),
                  ('role_id',)),
            Child('application_credential_access_rule',
                  'application_credential', _APP_CRED_OF,
                  ('application_credential_id',), ('access_rule_id',)))),
    # Token revocation events: made at every site (a password change, a
    # disabled user, a logout), honoured at every site. Named by what they
    # are (common/revocation.py), since Keystone's integer id is each
    # site's own; never changed in place (every column is in the id), and
    # deleted by Keystone's own purge of expired events, which is synced
    # like any delete. They name ids without depending on them (an event
    # outlives the project it revoked), so no selection rule reaches them.
    TypeInfo(
        'revocation_event', flows_up=True,
        site_local={
            'integer id column': "Keystone's autoincrement row number at "
                                 'this site; the synced id is made of the '
                                 'columns',
        },
        capture=(Resource(table='revocation_event',
                          type_sql="'revocation_event'",
                          id_parts=revocation.ID_PARTS,
                          key=revocation.COLUMNS, synced=()),)),
)

ORDER: tuple[str, ...] = tuple(t.name for t in TABLE)
"""Every type, in dependency order."""
BY_NAME: dict[str, TypeInfo] = {t.name: t for t in TABLE}
_RANK = {name: n for n, name in enumerate(ORDER)}

NAMED = tuple(t.name for t in TABLE if t.name_field)
DEPENDENTS = tuple(t.name for t in TABLE if t.dependent)
JOINED = tuple(t.name for t in TABLE if t.natural_key)
WITH_SECRETS = tuple(t.name for t in TABLE if t.secrets)
FLOWS_UP = tuple(t.name for t in TABLE if t.flows_up)


def lookup(name: str) -> TypeInfo:
    """The type called ``name``; :class:`UnknownType` for anything else."""
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise UnknownType(name) from None


def rank(name: str) -> int:
    """Position in dependency order (creates go low to high, deletes high
    to low); :class:`UnknownType` for a type not in the table."""
    try:
        return _RANK[name]
    except (KeyError, TypeError):
        raise UnknownType(name) from None


def order(names: Iterable[str]) -> list[str]:
    """``names`` in dependency order; :class:`UnknownType` if one is not
    a type."""
    return sorted(names, key=rank)


def reaches(name: str) -> frozenset:
    """Every type whose exclusion can exclude a ``name`` (itself, what
    contains it and what it refers to, transitively)."""
    seen, todo = {name}, [name]
    while todo:
        for n in lookup(todo.pop()).edges():
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return frozenset(seen)


def problems(table: Iterable[TypeInfo] = TABLE) -> list[str]:
    """What is inconsistent in ``table`` (by default the table): a name
    twice, an edge to a type that is not in it, or one to a type ranked
    after it (a batch would apply them in the wrong order)."""
    table = tuple(table)
    ranks = {info.name: n for n, info in enumerate(table)}
    out = [f'{name} is in the table twice' for name in ranks
           if sum(info.name == name for info in table) > 1]
    for info in table:
        for other in info.edges() + info.needs:
            if other not in ranks:
                out.append(f'{info.name} depends on {other!r}, not a type')
            elif other != info.name and ranks[other] > ranks[info.name]:
                out.append(f'{info.name} depends on {other}, which is '
                           'ranked after it')
    return out


# --- walking representations ------------------------------------------------

def values(resource, path: str) -> list:
    """The values at dotted ``path`` in ``resource``, every item of a list
    met on the way walked (``federated.idp_id``: one per identity);
    missing keys and nulls give nothing."""
    nodes = [resource]
    for key in path.split('.'):
        found = []
        for node in nodes:
            for item in node if isinstance(node, list) else (node,):
                if isinstance(item, dict) and item.get(key) is not None:
                    found.append(item[key])
        nodes = found
    out = []
    for node in nodes:
        out += node if isinstance(node, list) else [node]
    return out


def replace_secrets(name: str, resource: dict | None,
                    how: Callable) -> dict | None:
    """A copy of ``resource`` with each non-null secret field of type
    ``name`` replaced by ``how(value)`` (the resource itself when the
    type has none)."""
    paths = lookup(name).secrets
    if resource is None or not paths:
        return resource
    out = copy.deepcopy(resource)

    def walk(node, keys):
        if isinstance(node, list):
            for item in node:
                walk(item, keys)
        elif isinstance(node, dict) and keys[0] in node:
            if len(keys) > 1:
                walk(node[keys[0]], keys[1:])
            elif node[keys[0]] is not None:
                node[keys[0]] = how(node[keys[0]])

    for path in paths:
        walk(out, path.split('.'))
    return out
