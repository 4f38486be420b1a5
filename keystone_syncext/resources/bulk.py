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

Keystone's rules written out here (the same in Keystone 29.1 and 30.0):

project (``keystone.resource.core.Manager.create_project``,
``_enforce_project_constraints``, ``_assert_regular_project_constraints``,
``_assert_max_hierarchy_depth``; the first three checks are this
extension's, in the order of ``resource.Project.create``):

- the name (stripped) is free in the domain: 409 with ``existing_id``;
- the domain exists: 400 naming ``domain_id``;
- a parent other than the domain is a project here: 400 naming
  ``parent_id`` (so a parent that is another domain is refused here, and
  Keystone's "parent acting as a domain but not this project's domain"
  cannot arise);
- with ``[resource] project_name_url_safe`` other than ``off``, the name
  (as given) has no URL-reserved character: Keystone's ValidationError;
- the name is stored stripped, a null description as ``''``;
- the parent's domain is the project's domain: Keystone's ValidationError;
- every project above it is enabled, checked in Keystone's order (the
  parent's ancestors from the nearest up to the domain, then the parent),
  the first disabled one named: Keystone's ValidationError;
- depth: the parent and its ancestors (domain included) plus one is at
  most ``[DEFAULT] max_project_tree_depth + 1``, or the unified-limit
  enforcement model's ``MAX_PROJECT_TREE_DEPTH + 1`` when smaller:
  Keystone's 403 ``Max hierarchy depth reached for <parent> branch.``;
- options: only names this Keystone knows, values its validators accept
  (anything else takes the per-item path, which does what the manager
  does with it); tags are rows of ``project_tag``;
- ``notifications.Audit.created('project', id)``.

role (``keystone.assignment.core.RoleManager.create_role``): the name is
free among the roles of the same domain (global roles share Keystone's
``<<null>>`` domain): 409; a domain-specific role's domain exists: 400;
options as for projects; ``Audit.created('role', id)``.

user and group (``keystone_syncext.resources.identity``, which already
writes them with Core and lists the manager's rules): domain exists, its
identity backend is SQL, a user's default project is not a domain, the
local name is free in the domain (409), every password hash is in a
format this Keystone verifies; ``Audit.created('user'|'group', id)``.
Users with a federated identity, or two passwords with one timestamp (the
row order breaks that tie), take the per-item path.

group membership (``keystone.identity.core.Manager.add_user_to_group``):
user and group exist (400 naming which);
``Audit.added_to('group', group_id, 'user', user_id)``. Only with the SQL
identity driver and no domain-specific drivers (otherwise the manager maps
ids, and the per-item path asks it).

role assignment (``AssignmentManager.create_grant`` and
``create_system_grant_for_user/group``): actor, target and role exist (an
actor missing from the SQL tables is asked of the identity manager, as
the per-item path does), a domain-specific role only on projects of its
domain (Keystone's 403 DomainSpecificRoleMismatch) and never on the
system (Keystone's ValidationError); for grants on a project or domain,
the notification of ``create_grant``'s decorator
(``identity.role_assignment.created``, failure outcome for a mismatch),
sent through that same decorator; system grants send none.

What the creates make stale in Keystone's caches is invalidated after
the batch's transaction (``writes.transaction.writing``, ``writes.caching``),
and capture triggers record every inserted row
with the batch's origin, as for any other write.
"""

import json

from keystone import exception as ks_exception
from keystone import i18n
from keystone import notifications
from keystone.common import provider_api
from keystone.common import utils as ks_utils
import keystone.conf
from oslo_utils import timeutils
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.capture import spec
from keystone_syncext.resources import assignment
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import identity
from keystone_syncext.resources import resource
from keystone_syncext.resources import role

CONF = keystone.conf.CONF
PROVIDERS = provider_api.ProviderAPIs

# Keeps every IN list well below each database's limit on bound values.
_IN_CHUNK = 500


def _select_in(conn, column, values, *columns, where=None):
    """Rows of ``columns`` whose ``column`` is one of ``values``."""
    values = sorted({v for v in values if v is not None})
    rows = []
    for i in range(0, len(values), _IN_CHUNK):
        rows += conn.execute(sa.select(*columns).where(
            column.in_(values[i:i + _IN_CHUNK]),
            sa.true() if where is None else where)).all()
    return rows


def _existing(conn, type_name, ids) -> set[str]:
    """Which of ``ids`` are resources of ``type_name`` here (as the type's
    ``exists`` judges: same table, same filter), compared exactly."""
    from keystone_syncext import resources
    rtype = resources.get(type_name)
    t = base.table(conn, rtype.table_name)
    wanted = set(ids)
    return {r.id for r in _select_in(conn, t.c.id, wanted, t.c.id,
                                     where=rtype.where(t))} & wanted


def _confirm_missing(conn, type_name, id_, what, field=None):
    """Refuse with the per-item path's own check (and message), or fall
    back when that check finds what the set-wise read did not."""
    common.require(conn, type_name, id_, what, field)
    raise exception.BulkFallback(
        f'{type_name} {id_} found by the per-item check only')


class _Names:
    """Names in use per scope: at the site, then by accepted items."""

    def __init__(self, conn, holder, scope, name, wanted):
        self.held = {}
        scopes = {s for s, _ in wanted}
        for row in _select_in(conn, name, {n for _, n in wanted},
                              holder, scope, name,
                              where=scope.in_(sorted(scopes))):
            self.held[(row[1], row[2])] = row[0]

    def holder(self, scope, name):
        return self.held.get((scope, name))

    def claim(self, scope, name, id_):
        self.held[(scope, name)] = id_


def _options_ok(registry, options) -> bool:
    """Options the bulk insert stores exactly as Keystone's model would:
    known names, non-null values its validators accept."""
    by_name = registry.options_by_name
    for name, value in options.items():
        opt = by_name.get(name)
        if opt is None or value is None:
            return False
        try:
            opt.validator(value)
        except Exception:  # whatever it is, the per-item path reports it
            return False
    return True


def _option_rows(registry, fk, entries):
    by_name = registry.options_by_name
    return [{fk: id_, 'option_id': by_name[name].option_id,
             'option_value': json.dumps(value)}
            for id_, r in entries for name, value in r['options'].items()]


def _insert(conn, table_name, rows):
    if rows:
        conn.execute(base.table(conn, table_name).insert(), rows)


class Creates:
    """Set-wise creates of one type, for one run of one batch (an instance
    holds what it read for that run). ``entries`` are ``(id, resource)``
    pairs of validated representations of ids absent at this site, in
    batch order."""

    type_name = ''

    def __init__(self, conn):
        self.conn = conn

    @classmethod
    def eligible(cls, resource: dict) -> bool:
        """Whether this path writes ``resource`` exactly as the per-item
        path would."""
        return True

    def check(self, entries) -> list[ks_exception.Error | None]:
        """Keystone's rules for each entry in order; None for accepted.
        Raises exception.BulkFallback when it cannot judge exactly."""
        held = self._held(entries)
        self.prepare(entries)
        out = []
        for id_, r in entries:
            if id_ in held:
                # As writes.items.apply_upsert, before any other rule.
                out.append(common.id_taken(self.type_name, id_, held[id_]))
                continue
            try:
                self.accept(id_, r)
            except ks_exception.Error as e:
                out.append(e)
            else:
                out.append(None)
        return out

    def _held(self, entries) -> dict[str, str]:
        """The ids of ``entries`` held by another type's row (a domain
        for a project...), with what holds each."""
        from keystone_syncext import resources
        holders = getattr(resources.get(self.type_name), 'holders', None)
        if holders is None:
            return {}
        return holders(self.conn, [id_ for id_, _ in entries])

    def prepare(self, entries) -> None:
        """Read what ``accept`` needs, for all entries at once."""
        raise NotImplementedError

    def accept(self, id_, r) -> None:
        """Raise the per-item path's error, or record ``r`` as accepted."""
        raise NotImplementedError

    def write(self, entries) -> None:
        """Insert the accepted entries."""
        raise NotImplementedError

    def notify(self, entries) -> None:
        for id_, _r in entries:
            notifications.Audit.created(self.type_name, id_)


class _Node:
    __slots__ = ('id', 'parent_id', 'domain_id', 'enabled', 'is_domain')

    def __init__(self, id_, parent_id, domain_id, enabled, is_domain):
        self.id, self.parent_id, self.domain_id = id_, parent_id, domain_id
        self.enabled, self.is_domain = enabled, is_domain


class ProjectCreates(Creates):
    type_name = 'project'

    @classmethod
    def eligible(cls, r):
        return _options_ok(resource.Project.registry, r['options'])

    def prepare(self, entries):
        conn = self.conn
        t = base.table(conn, 'project')
        self.names = _Names(conn, t.c.id, t.c.domain_id, t.c.name,
                            [(r['domain_id'], r['name'].strip())
                             for _, r in entries])
        self.domains = _existing(conn, 'domain',
                                 {r['domain_id'] for _, r in entries})
        new = {id_ for id_, _ in entries}
        self.nodes = self._hierarchy(t, self.domains | {
            r['parent_id'] for _, r in entries if r['parent_id'] not in new})
        self.max_depth = _max_depth()

    def _hierarchy(self, t, ids) -> dict[str, '_Node']:
        """The projects ``ids`` and every project above them, one query
        per level (Keystone's hidden root domain left out, as its driver
        hides it)."""
        nodes: dict[str, _Node] = {}
        wanted = set(ids)
        while wanted:
            for r in _select_in(self.conn, t.c.id, wanted, t.c.id,
                                t.c.parent_id, t.c.domain_id, t.c.enabled,
                                t.c.is_domain,
                                where=t.c.id != spec.ROOT_DOMAIN_ID):
                if r.id in wanted:
                    nodes[r.id] = _Node(r.id, r.parent_id, r.domain_id,
                                        bool(r.enabled), bool(r.is_domain))
            wanted = {n.parent_id for n in nodes.values()
                      if n.parent_id is not None
                      and n.parent_id not in nodes} - wanted
        return nodes

    def _above(self, parent: '_Node') -> list['_Node']:
        """Keystone's ``list_project_parents(parent)``, then the parent."""
        chain, seen, node = [], {parent.id}, parent
        while node.parent_id is not None:
            node = self.nodes.get(node.parent_id)
            if node is None or node.id in seen:
                raise exception.BulkFallback(
                    'project hierarchy not read whole')
            seen.add(node.id)
            chain.append(node)
        return chain + [parent]

    def accept(self, id_, r):
        what = f'project {id_}'
        name, domain_id = r['name'].strip(), r['domain_id']
        parent_id = r['parent_id']
        holder = self.names.holder(domain_id, name)
        if holder is not None:
            raise common.name_conflict('project', r['name'], holder)
        if domain_id not in self.domains:
            _confirm_missing(self.conn, 'domain', domain_id, what)
        parent = self.nodes.get(parent_id)
        if parent_id != domain_id and (parent is None or parent.is_domain):
            _confirm_missing(self.conn, 'project', parent_id, what,
                             'parent_id')
        if CONF.resource.project_name_url_safe != 'off' and \
                ks_utils.is_not_url_safe(r['name']):
            raise ks_exception.ValidationError(message=i18n._(
                '%(entity)s name cannot contain the following reserved '
                'characters: %(chars)s') % {
                    'entity': 'Project',
                    'chars': ks_utils.list_url_unsafe_chars(r['name'])})
        if not parent.is_domain and parent.domain_id != domain_id:
            raise ks_exception.ValidationError(message=i18n._(
                'Cannot create project, since it specifies its domain_id '
                '%(domain_id)s, but specifies a parent in a different '
                'domain (%(parent_domain_id)s).') % {
                    'domain_id': domain_id,
                    'parent_domain_id': parent.domain_id})
        above = self._above(parent)
        for ref in above:
            if not ref.enabled:
                raise ks_exception.ValidationError(message=i18n._(
                    'cannot create a project in a branch containing a '
                    'disabled project: %s') % ref.id)
        if len(above) + 1 > self.max_depth:
            raise ks_exception.ForbiddenNotSecurity(
                i18n._('Max hierarchy depth reached for %s branch.')
                % parent_id)
        self.names.claim(domain_id, name, id_)
        self.nodes[id_] = _Node(id_, parent_id, domain_id, r['enabled'],
                                False)

    def write(self, entries):
        _insert(self.conn, 'project', [{
            'id': id_, 'name': r['name'].strip(),
            'domain_id': r['domain_id'], 'parent_id': r['parent_id'],
            'description': r['description'] or '', 'enabled': r['enabled'],
            'is_domain': False, 'extra': json.dumps(r['extra']),
        } for id_, r in entries])
        _insert(self.conn, 'project_tag', [
            {'project_id': id_, 'name': tag}
            for id_, r in entries for tag in r['tags']])
        _insert(self.conn, 'project_option', _option_rows(
            resource.Project.registry, 'project_id', entries))


def _max_depth() -> int:
    """Keystone's ``_assert_max_hierarchy_depth`` limit."""
    limit = CONF.max_project_tree_depth + 1
    model = PROVIDERS.unified_limit_api.enforcement_model
    if model.MAX_PROJECT_TREE_DEPTH is not None:
        limit = min(limit, model.MAX_PROJECT_TREE_DEPTH + 1)
    return limit


class RoleCreates(Creates):
    type_name = 'role'
    registry = role.role_ro.ROLE_OPTIONS_REGISTRY

    @classmethod
    def eligible(cls, r):
        return _options_ok(cls.registry, r['options'])

    @staticmethod
    def _scope(r):
        return r['domain_id'] or role.NULL_DOMAIN_ID

    def prepare(self, entries):
        t = base.table(self.conn, 'role')
        self.names = _Names(self.conn, t.c.id, t.c.domain_id, t.c.name,
                            [(self._scope(r), r['name'])
                             for _, r in entries])
        self.domains = _existing(self.conn, 'domain',
                                 {r['domain_id'] for _, r in entries})

    def accept(self, id_, r):
        holder = self.names.holder(self._scope(r), r['name'])
        if holder is not None:
            raise common.name_conflict('role', r['name'], holder)
        if r['domain_id'] and r['domain_id'] not in self.domains:
            _confirm_missing(self.conn, 'domain', r['domain_id'],
                             f'role {id_}')
        self.names.claim(self._scope(r), r['name'], id_)

    def write(self, entries):
        _insert(self.conn, 'role', [{
            'id': id_, 'name': r['name'], 'domain_id': self._scope(r),
            'description': r['description'],
            'extra': json.dumps(r['extra']),
        } for id_, r in entries])
        _insert(self.conn, 'role_option',
                _option_rows(self.registry, 'role_id', entries))


class _DomainOwned(Creates):
    """Users and groups: the domain exists and keeps its users and groups
    in SQL (asked once per domain)."""

    def prepare(self, entries):
        self.domains = _existing(self.conn, 'domain',
                                 {r['domain_id'] for _, r in entries})
        self.sql_backend: dict[str, bool] = {}

    def check_domain(self, id_, r):
        what = f'{self.type_name} {id_}'
        domain_id = r['domain_id']
        if domain_id not in self.domains:
            _confirm_missing(self.conn, 'domain', domain_id, what)
        if domain_id not in self.sql_backend:
            self.sql_backend[domain_id] = identity.has_sql_backend(
                domain_id)
        if not self.sql_backend[domain_id]:
            raise identity.non_sql_backend(domain_id, what)


class UserCreates(_DomainOwned):
    type_name = 'user'

    @classmethod
    def eligible(cls, r):
        stamps = [p['created_at'] for p in (r['local'] or {}).get(
            'passwords', [])]
        return not r['federated'] and len(set(stamps)) == len(stamps)

    def prepare(self, entries):
        super().prepare(entries)
        p = base.table(self.conn, 'project')
        self.domain_projects = {row.id for row in _select_in(
            self.conn, p.c.id, {r['default_project_id'] for _, r in entries},
            p.c.id, where=p.c.is_domain == sa.true())}
        lu = base.table(self.conn, 'local_user')
        self.names = _Names(self.conn, lu.c.user_id, lu.c.domain_id,
                            lu.c.name, [(r['domain_id'], r['local']['name'])
                                        for _, r in entries if r['local']])

    def accept(self, id_, r):
        self.check_domain(id_, r)
        project_id = r['default_project_id']
        if project_id in self.domain_projects:
            raise identity.default_project_is_domain(id_, project_id)
        local = r['local']
        if local is not None:
            holder = self.names.holder(r['domain_id'], local['name'])
            if holder is not None:
                raise common.name_conflict('user', local['name'], holder)
            for p in local['passwords']:
                identity.check_hash(id_, p['hash'])
            self.names.claim(r['domain_id'], local['name'], id_)

    def write(self, entries):
        conn = self.conn
        now = timeutils.utcnow()
        today = identity.active_today()
        _insert(conn, 'user', [{
            'id': id_, 'domain_id': r['domain_id'], 'enabled': r['enabled'],
            'extra': json.dumps(r['extra']),
            'default_project_id': r['default_project_id'],
            'created_at': now,
            'last_active_at': today if r['enabled'] else None,
        } for id_, r in entries])
        _insert(conn, 'user_option', _option_rows(
            identity.User.registry, 'user_id', entries))
        local = [(id_, r) for id_, r in entries if r['local'] is not None]
        _insert(conn, 'local_user', [{
            'user_id': id_, 'domain_id': r['domain_id'],
            'name': r['local']['name']} for id_, r in local])
        lu = base.table(conn, 'local_user')
        local_ids = {row.user_id: row.id for row in _select_in(
            conn, lu.c.user_id, [id_ for id_, _ in local], lu.c.user_id,
            lu.c.id)}
        # In the order given: row ids follow it, as the per-item path's do.
        _insert(conn, 'password', [
            identity.password_row(local_ids[id_], p)
            for id_, r in local for p in r['local']['passwords']])


class GroupCreates(_DomainOwned):
    type_name = 'group'

    def prepare(self, entries):
        super().prepare(entries)
        t = base.table(self.conn, 'group')
        self.names = _Names(self.conn, t.c.id, t.c.domain_id, t.c.name,
                            [(r['domain_id'], r['name'])
                             for _, r in entries])

    def accept(self, id_, r):
        self.check_domain(id_, r)
        holder = self.names.holder(r['domain_id'], r['name'])
        if holder is not None:
            raise common.name_conflict('group', r['name'], holder)
        self.names.claim(r['domain_id'], r['name'], id_)

    def write(self, entries):
        _insert(self.conn, 'group', [{
            'id': id_, 'domain_id': r['domain_id'], 'name': r['name'],
            'description': r['description'],
            'extra': json.dumps(r['extra'])} for id_, r in entries])


class GroupMembershipCreates(Creates):
    type_name = 'group_membership'

    def prepare(self, entries):
        if CONF.identity.domain_specific_drivers_enabled or \
                not PROVIDERS.identity_api.driver.is_sql:
            raise exception.BulkFallback('the identity manager maps ids here')
        self.users = _existing(self.conn, 'user',
                               {r['user_id'] for _, r in entries})
        self.groups = _existing(self.conn, 'group',
                                {r['group_id'] for _, r in entries})

    def accept(self, id_, r):
        what = f'group membership {id_}'
        if r['user_id'] not in self.users:
            _confirm_missing(self.conn, 'user', r['user_id'], what)
        if r['group_id'] not in self.groups:
            _confirm_missing(self.conn, 'group', r['group_id'], what)

    def write(self, entries):
        _insert(self.conn, 'user_group_membership', [
            {'user_id': r['user_id'], 'group_id': r['group_id']}
            for _, r in entries])

    def notify(self, entries):
        for _id, r in entries:
            notifications.Audit.added_to('group', r['group_id'], 'user',
                                         r['user_id'])


class RoleAssignmentCreates(Creates):
    type_name = 'role_assignment'

    def prepare(self, entries):
        conn = self.conn
        self.failed: list[tuple[dict, ks_exception.Error]] = []
        wanted: dict[str, set] = {'user': set(), 'group': set(),
                                  'project': set(), 'domain': set(),
                                  'system': set()}
        for _, r in entries:
            actor, target = assignment.TYPES[r['type']]
            wanted[actor].add(r['actor_id'])
            wanted[target].add(r['target_id'])
        self.actors = {a: _existing(conn, a, wanted[a])
                       for a in ('user', 'group')}
        p = base.table(conn, 'project')
        self.projects = {row.id: row.domain_id for row in _select_in(
            conn, p.c.id, wanted['project'], p.c.id, p.c.domain_id,
            where=p.c.is_domain == sa.false()) if row.id in
            wanted['project']}
        self.domains = _existing(conn, 'domain', wanted['domain'])
        t = base.table(conn, 'role')
        role_ids = {r['role_id'] for _, r in entries}
        self.roles = {row.id: (None if row.domain_id == role.NULL_DOMAIN_ID
                               else row.domain_id)
                      for row in _select_in(conn, t.c.id, role_ids, t.c.id,
                                            t.c.domain_id)
                      if row.id in role_ids}

    def accept(self, id_, r):
        what = f'role assignment {id_}'
        actor, target = assignment.TYPES[r['type']]
        if r['actor_id'] not in self.actors[actor]:
            # Perhaps in a non-SQL identity backend: ask as the per-item
            # path does (it raises when the actor is nowhere).
            assignment.require_actor(self.conn, actor, r['actor_id'], what)
        if target != 'system' and r['target_id'] not in (
                self.projects if target == 'project' else self.domains):
            _confirm_missing(self.conn, target, r['target_id'], what,
                             'target_id')
        if r['role_id'] not in self.roles:
            _confirm_missing(self.conn, 'role', r['role_id'], what)
        role_domain = self.roles[r['role_id']]
        if target == 'system' and role_domain:
            raise ks_exception.ValidationError(
                f'Role {r["role_id"]} is a domain-specific role. Unable to '
                'use a domain-specific role in a system assignment.')
        if target == 'project' and role_domain and \
                self.projects[r['target_id']] != role_domain:
            # Raised inside Keystone's create_grant, whose decorator
            # reports the failure: so does notify.
            error = ks_exception.DomainSpecificRoleMismatch(
                role_id=r['role_id'], project_id=r['target_id'])
            self.failed.append((r, error))
            raise error

    def write(self, entries):
        rows: dict[str, list] = {'assignment': [], 'system_assignment': []}
        for _, r in entries:
            system = assignment.TYPES[r['type']][1] == 'system'
            rows['system_assignment' if system else 'assignment'].append({
                'type': r['type'], 'actor_id': r['actor_id'],
                'target_id': r['target_id'], 'role_id': r['role_id'],
                'inherited': r['inherited']})
        for table_name, found in rows.items():
            _insert(self.conn, table_name, found)

    def notify(self, entries):
        """What Keystone's ``create_grant`` sends through its
        ``notifications.role_assignment('created')`` decorator: success
        for each grant on a project or domain, failure for each it
        refused; system grants send none."""
        for _id, r in entries:
            if assignment.TYPES[r['type']][1] != 'system':
                _grant_notified(None, r['role_id'],
                                **assignment.RoleAssignment.grant_args(r))
        for r, error in self.failed:
            try:
                _grant_notified(None, r['role_id'], error=error,
                                **assignment.RoleAssignment.grant_args(r))
            except ks_exception.DomainSpecificRoleMismatch:
                pass


@notifications.role_assignment('created')
def _grant_notified(self, role_id, user_id=None, group_id=None,
                    domain_id=None, project_id=None,
                    inherited_to_projects=False, error=None):
    """Has create_grant's signature, so that Keystone's own decorator
    sends the notification create_grant sends (failure when ``error``
    is raised)."""
    if error is not None:
        raise error


CREATORS: dict[str, type[Creates]] = {c.type_name: c for c in (
    ProjectCreates, RoleCreates, UserCreates, GroupCreates,
    GroupMembershipCreates, RoleAssignmentCreates)}
