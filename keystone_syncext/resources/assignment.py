"""Role assignments: a user or group holds a role on a project, a domain
or the system, optionally inherited to the projects below.

Keystone keeps them in two tables, ``assignment`` (project and domain
targets) and ``system_assignment`` (target ``'system'``, never
inherited); the id is ``type:actor:target:role:inherited`` with
``inherited`` as ``0``/``1``, exactly as change capture builds it
(``keystone_syncext.capture.spec``). Written through Keystone's
assignment manager (``create_grant``/``delete_grant`` and the system
grant calls), which takes the ids as given: Keystone's rules (a
domain-specific role only on projects of its domain, never on the
system), cache invalidation and token revocation on delete are its own.
The manager does not check that the actor exists (the ordinary API does,
before calling it), so that check is made here: a missing actor, target
or role is a 400 naming which.
"""

from keystone import exception as ks_exception
from keystone.common import provider_api
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.common import types
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import ids
from keystone_syncext.writes import caching

PROVIDERS = provider_api.ProviderAPIs

SYSTEM_TARGET = types.SYSTEM_TARGET

# type -> (actor type, target type): the type table's.
TYPES = types.ASSIGNMENT_ENDS


def _inherited_sql(column):
    return sa.case((column == sa.true(), '1'), else_='0')


def _type(t):
    # A native enum on PostgreSQL and MySQL (assignment), a string
    # (system_assignment): cast, so the two tables unite.
    return sa.cast(t.c.type, sa.String)


def _id_expr(t):
    return (_type(t) + ':' + t.c.actor_id + ':'
            + t.c.target_id + ':' + t.c.role_id + ':'
            + _inherited_sql(t.c.inherited))


class RoleAssignment(base.ResourceType):
    name = 'role_assignment'
    synthetic = True
    _props = {
        'id': {'type': 'string'},
        'type': {'enum': sorted(TYPES)},
        'actor_id': base.ID,
        'target_id': base.ID,
        'role_id': base.ID,
        'inherited': {'type': 'boolean'},
    }
    schema = base.closed_object(_props)

    def id_of(self, resource):
        return ':'.join([resource['type'], resource['actor_id'],
                         resource['target_id'], resource['role_id'],
                         '1' if resource['inherited'] else '0'])

    def id_rule(self):
        # The actor in the operator form: users and groups of an LDAP
        # domain with backward-compatible ids keep their directory ids.
        k, actor = ids.KEYSTONE, ids.OPERATOR
        return ('|'.join([
            f'(?:UserProject|GroupProject):(?:{actor}):(?:{k}):(?:{k}):[01]',
            f'(?:UserDomain|GroupDomain):(?:{actor}):(?:{ids.domain()}):'
            f'(?:{k}):[01]',
            f'(?:UserSystem|GroupSystem):(?:{actor}):{SYSTEM_TARGET}:'
            f'(?:{k}):0']),
            'type:actor_id:target_id:role_id:inherited (0 or 1), the actor '
            f'{ids.OPERATOR_FORM}, the target a project or domain id or '
            f'{SYSTEM_TARGET!r}, the role {ids.KEYSTONE_FORM}')

    def validate(self, id_, resource):
        super().validate(id_, resource)
        if TYPES[resource['type']][1] == 'system':
            if resource['target_id'] != SYSTEM_TARGET:
                raise exception.BadRequest(
                    f'role assignment {id_}: a system assignment has '
                    f'target_id {SYSTEM_TARGET!r}')
            if resource['inherited']:
                raise exception.BadRequest(
                    f'role assignment {id_}: Keystone has no inherited '
                    'system assignments')

    # -- reading

    def fetch(self, conn, *, ids=None, marker=None, limit=None,
              prefix=None):
        selects = []
        for name in ('assignment', 'system_assignment'):
            t = base.table(conn, name)
            id_expr = _id_expr(t)
            query = sa.select(
                id_expr.label('id'), _type(t).label('type'), t.c.actor_id,
                t.c.target_id, t.c.role_id, t.c.inherited, t.c.created_at,
                t.c.updated_at)
            if ids is not None:
                actors = {i.split(':')[1] for i in ids if i.count(':') == 4}
                if not actors:
                    return []
                # Narrowed by the indexed actor; exact ids below.
                query = query.where(t.c.actor_id.in_(actors))
            selects.append(common.id_window(conn, query, id_expr,
                                            marker=marker, prefix=prefix))
        union = sa.union_all(*selects).subquery()
        query = common.page(conn, sa.select(union), union.c.id, ids=ids,
                            limit=limit)
        items = [{
            'id': r.id, 'type': r.type, 'actor_id': r.actor_id,
            'target_id': r.target_id, 'role_id': r.role_id,
            'inherited': bool(r.inherited), '_meta': common.meta(r),
        } for r in conn.execute(query)]
        return common.filter_ids(items, ids=ids, marker=marker, limit=limit,
                                 prefix=prefix)

    # -- writing

    def _check(self, conn, id_, resource):
        what = f'role assignment {id_}'
        actor, target = TYPES[resource['type']]
        require_actor(conn, actor, resource['actor_id'], what)
        if target != 'system':
            common.require(conn, target, resource['target_id'], what,
                           field='target_id')
        common.require(conn, 'role', resource['role_id'], what)

    @staticmethod
    def grant_args(resource):
        actor, target = TYPES[resource['type']]
        return {f'{actor}_id': resource['actor_id'],
                f'{target}_id': resource['target_id'],
                'inherited_to_projects': resource['inherited']}

    def _grant(self, verb, resource):
        """Create or delete (``verb``) the grant ``resource`` describes,
        through Keystone's assignment manager."""
        api = PROVIDERS.assignment_api
        actor, target = TYPES[resource['type']]
        if target == 'system':
            grant = getattr(api, f'{verb}_system_grant_for_{actor}')
            grant(resource['actor_id'], resource['role_id'])
        else:
            grant = getattr(api, f'{verb}_grant')
            grant(resource['role_id'], **self.grant_args(resource))

    def create(self, session, conn, id_, resource):
        self._check(conn, id_, resource)
        self._grant('create', resource)

    def update(self, session, conn, id_, old, resource):
        """Nothing but the id: an existing one is already up to date."""

    def stale_cache(self, id_, old, new):
        """A new grant: the computed assignments, as ``create_grant`` and
        ``create_system_grant_for_*`` invalidate. A revoke also drops
        tokens: everything."""
        if old is None and new is not None:
            return [caching.computed_assignments()]
        return None

    def delete(self, session, conn, id_, old):
        self._grant('delete', old)


def require_actor(conn, actor, actor_id, what):
    """The user or group exists here: in Keystone's SQL tables, or (for a
    domain with an LDAP or other non-SQL backend) in that backend, asked
    through the identity manager as the ordinary API does."""
    from keystone_syncext import resources
    if resources.get(actor).exists(conn, actor_id):
        return
    api = PROVIDERS.identity_api
    try:
        (api.get_user if actor == 'user' else api.get_group)(actor_id)
        return
    except ks_exception.NotFound:
        pass
    raise exception.BadRequest(
        f'{what} refers to {actor} {actor_id!r} (actor_id), which does not '
        'exist at this site; sync it first')
