"""Roles (global and domain-specific) and implied roles, written through
Keystone's role manager (which takes the caller's id)."""

from keystone.assignment.role_backends import resource_options as role_ro
from keystone.common import provider_api
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import ids
from keystone_syncext.writes import caching

PROVIDERS = provider_api.ProviderAPIs

# Keystone stores global roles with this domain_id (NULL is not unique).
NULL_DOMAIN_ID = '<<null>>'


class Role(common.IdTable, base.ResourceType):
    name = 'role'
    _props = {
        'id': base.ID,
        'name': base.NAME,
        'domain_id': base.nullable(base.ID),
        # Keystone's role.description is a String(255).
        'description': {'type': ['string', 'null'], 'maxLength': 255},
        'options': base.OPTIONS,
        'extra': base.EXTRA,
    }
    schema = base.closed_object(_props)
    rekey_unique = ('name',)
    rekey_refs = (
        ('implied_role', 'prior_role_id'), ('implied_role', 'implied_role_id'),
        ('role_option', 'role_id'), ('assignment', 'role_id'),
        ('system_assignment', 'role_id'),
        ('application_credential_role', 'role_id'),
        ('trust_role', 'role_id'),
    )

    def load(self, conn, rows):
        ids = [r.id for r in rows]
        opts = common.options(conn, 'role_option', 'role_id', ids,
                              role_ro.ROLE_OPTIONS_REGISTRY)
        return [{
            'id': r.id, 'name': r.name,
            'domain_id': None if r.domain_id == NULL_DOMAIN_ID
            else r.domain_id,
            'description': r.description,
            'options': opts.get(r.id, {}),
            'extra': base.json_load(r.extra, {}),
            '_meta': common.meta(r),
        } for r in rows]

    def validate(self, id_, resource):
        super().validate(id_, resource)
        common.check_options(role_ro.ROLE_OPTIONS_REGISTRY, f'role {id_}',
                             resource['options'])

    def existing_named(self, conn, resource):
        t = base.table(conn, 'role')
        return conn.execute(sa.select(t.c.id).where(
            t.c.name == resource['name'],
            t.c.domain_id == (resource['domain_id'] or NULL_DOMAIN_ID))
        ).scalars().all()

    @staticmethod
    def _fields(resource):
        return {'name': resource['name'],
                'description': resource['description'],
                'options': resource['options']}

    def create(self, session, conn, id_, resource):
        common.check_name_free(self, conn, id_, resource)
        if resource['domain_id']:
            common.require(conn, 'domain', resource['domain_id'],
                           f'role {id_}')
        PROVIDERS.role_api.create_role(id_, dict(
            self._fields(resource), id=id_,
            domain_id=resource['domain_id']))
        session.flush()
        common.set_extra(conn, 'role', id_, resource['extra'])

    def update(self, session, conn, id_, old, resource):
        if resource['domain_id'] != old['domain_id']:
            raise exception.BadRequest(
                f'role {id_} belongs to domain {old["domain_id"]!r} here; '
                'Keystone cannot move a role to another domain')
        if resource['name'] != old['name']:
            common.check_name_free(self, conn, id_, resource)
        api = PROVIDERS.role_api
        common.unlock_immutable(old, resource,
                                lambda ref: api.update_role(id_, ref))
        api.update_role(id_, self._fields(resource))
        session.flush()
        common.set_extra(conn, 'role', id_, resource['extra'])

    def stale_cache(self, id_, old, new):
        """An upsert: the role itself (``RoleManager.update_role``
        invalidates ``get_role``; ``create_role`` caches what it wrote,
        before we set ``extra``). Nothing caches roles by name. A delete
        also drops assignments and tokens: everything."""
        if new is None:
            return None
        return [caching.memoized('role_api', 'get_role', id_)]

    def delete(self, session, conn, id_, old):
        api = PROVIDERS.role_api
        if old['options'].get('immutable'):
            api.update_role(id_, {'options': {'immutable': False}})
        api.delete_role(id_)


class ImpliedRole(base.ResourceType):
    name = 'implied_role'
    synthetic = True
    _props = {'id': {'type': 'string'},
              'prior_role_id': base.ID, 'implied_role_id': base.ID}
    schema = base.closed_object(_props)

    def id_of(self, resource):
        return f'{resource["prior_role_id"]}:{resource["implied_role_id"]}'

    def id_rule(self):
        return (f'(?:{ids.KEYSTONE}):(?:{ids.KEYSTONE})',
                'prior_role_id:implied_role_id, each '
                + ids.KEYSTONE_FORM)

    def fetch(self, conn, *, ids=None, marker=None, limit=None,
              prefix=None):
        t = base.table(conn, 'implied_role')
        query = sa.select(t)
        if ids is not None:
            query = common.pair_filter(query, t.c.prior_role_id,
                                       t.c.implied_role_id, ids)
            if query is None:
                return []
        query = common.page(
            conn, query, t.c.prior_role_id + ':' + t.c.implied_role_id,
            ids=ids, marker=marker, limit=limit, prefix=prefix)
        items = [{'id': f'{r.prior_role_id}:{r.implied_role_id}',
                  'prior_role_id': r.prior_role_id,
                  'implied_role_id': r.implied_role_id,
                  '_meta': common.meta(r)} for r in conn.execute(query)]
        return common.filter_ids(items, marker=marker, limit=limit,
                                 prefix=prefix)

    def create(self, session, conn, id_, resource):
        for field in ('prior_role_id', 'implied_role_id'):
            common.require(conn, 'role', resource[field],
                           f'implied role {id_}', field=field)
        PROVIDERS.role_api.create_implied_role(
            resource['prior_role_id'], resource['implied_role_id'])

    def update(self, session, conn, id_, old, resource):
        """Nothing but the id: an existing one is already up to date."""

    def stale_cache(self, id_, old, new):
        """As ``create_implied_role`` and ``delete_implied_role``: the
        computed assignments (implied roles themselves are not cached)."""
        return [caching.computed_assignments()]

    def delete(self, session, conn, id_, old):
        PROVIDERS.role_api.delete_implied_role(
            old['prior_role_id'], old['implied_role_id'])
