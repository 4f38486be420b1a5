"""Groups and group memberships.

How they are written, and what stays site-local, is said with the users'
(:mod:`keystone_syncext.resources.identity`): group creates are written
with SQLAlchemy Core, group updates and deletes and memberships go
through the identity manager.
"""

import json

from keystone import notifications
from keystone.common import provider_api
import sqlalchemy as sa

from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import identity
from keystone_syncext.resources import ids
from keystone_syncext.writes import caching

PROVIDERS = provider_api.ProviderAPIs


class Group(common.IdTable, base.ResourceType):
    name = 'group'
    _props = {
        'id': base.ID,
        'domain_id': base.ID,
        # Keystone's group.name is a String(64).
        'name': base.name_of(64),
        'description': base.DESCRIPTION,
        'extra': base.EXTRA,
    }
    schema = base.closed_object(_props)
    rekey_unique = ('name',)
    rekey_refs = (
        ('user_group_membership', 'group_id'),
        ('expiring_user_group_membership', 'group_id'),
        ('assignment', 'actor_id'), ('system_assignment', 'actor_id'),
        ('id_mapping', 'public_id'),
    )

    def load(self, conn, rows):
        return [{'id': r.id, 'domain_id': r.domain_id, 'name': r.name,
                 'description': r.description,
                 'extra': base.json_load(r.extra, {}),
                 '_meta': common.meta(r)} for r in rows]

    def existing_named(self, conn, resource):
        t = base.table(conn, 'group')
        return conn.execute(sa.select(t.c.id).where(
            t.c.domain_id == resource['domain_id'],
            t.c.name == resource['name'])).scalars().all()

    def create(self, session, conn, id_, resource):
        what = f'group {id_}'
        common.require(conn, 'domain', resource['domain_id'], what)
        identity.require_sql_backend(resource['domain_id'], what)
        common.check_name_free(self, conn, id_, resource)
        session.flush()
        t = base.table(conn, 'group')
        conn.execute(t.insert().values(
            id=id_, domain_id=resource['domain_id'], name=resource['name'],
            description=resource['description'],
            extra=json.dumps(resource['extra'])))
        session.expire_all()  # see User.create
        notifications.Audit.created('group', id_)

    def update(self, session, conn, id_, old, resource):
        identity.check_domain_unchanged('group', id_, old, resource)
        if resource['name'] != old['name']:
            common.check_name_free(self, conn, id_, resource)
        PROVIDERS.identity_api.update_group(id_, {
            'name': resource['name'],
            'description': resource['description']})
        session.flush()
        common.set_extra(conn, 'group', id_, resource['extra'])

    def delete(self, session, conn, id_, old):
        PROVIDERS.identity_api.delete_group(id_)


class GroupMembership(base.ResourceType):
    name = 'group_membership'
    synthetic = True
    _props = {'id': {'type': 'string'}, 'user_id': base.ID,
              'group_id': base.ID}
    schema = base.closed_object(_props)

    def id_of(self, resource):
        return f'{resource["user_id"]}:{resource["group_id"]}'

    def id_rule(self):
        # The user part in the operator form: a user of an LDAP domain
        # with backward-compatible ids keeps its directory id.
        return (f'(?:{ids.OPERATOR}):(?:{ids.KEYSTONE})',
                f'user_id:group_id, the user id {ids.OPERATOR_FORM}, the '
                f'group id {ids.KEYSTONE_FORM}')

    def fetch(self, conn, *, ids=None, marker=None, limit=None,
              prefix=None):
        t = base.table(conn, 'user_group_membership')
        id_expr = t.c.user_id + ':' + t.c.group_id
        query = sa.select(t)
        if ids is not None:
            pairs = [i.split(':', 1) for i in ids if ':' in i]
            if not pairs:
                return []
            query = query.where(t.c.user_id.in_({u for u, _ in pairs}))
        query = common.page(conn, query, id_expr, ids=ids, marker=marker,
                            limit=limit, prefix=prefix)
        items = [{'id': f'{r.user_id}:{r.group_id}', 'user_id': r.user_id,
                  'group_id': r.group_id, '_meta': common.meta(r)}
                 for r in conn.execute(query)]
        # The exact id filter in Python (the SQL above narrows ids down
        # to their users).
        return common.filter_ids(items, ids=ids, marker=marker, limit=limit,
                                 prefix=prefix)

    def create(self, session, conn, id_, resource):
        what = f'group membership {id_}'
        common.require(conn, 'user', resource['user_id'], what)
        common.require(conn, 'group', resource['group_id'], what)
        PROVIDERS.identity_api.add_user_to_group(resource['user_id'],
                                                 resource['group_id'])

    def update(self, session, conn, id_, old, resource):
        """Nothing but the id: an existing one is already up to date."""

    def stale_cache(self, id_, old, new):
        """A new membership: the computed assignments, as
        ``add_user_to_group`` invalidates. A removal also revokes tokens:
        everything."""
        if old is None and new is not None:
            return [caching.computed_assignments()]
        return None

    def delete(self, session, conn, id_, old):
        PROVIDERS.identity_api.remove_user_from_group(old['user_id'],
                                                      old['group_id'])
