"""Domains and projects (one Keystone table, ``project``; domains have
``is_domain``). Written through Keystone's resource manager, which takes
the caller's id: name rules, hierarchy rules (parent exists, same domain,
depth), notifications and cache invalidation are Keystone's own.
"""

from keystone.common import provider_api
from keystone.resource.backends import resource_options as project_ro
import sqlalchemy as sa

from keystone_syncext.capture import spec
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import ids

PROVIDERS = provider_api.ProviderAPIs

_COMMON_PROPS = {
    'id': base.ID,
    # Keystone's project.name is a String(64).
    'name': base.name_of(64),
    # Keystone stores a missing description as ''.
    'description': {'type': 'string'},
    'enabled': {'type': 'boolean'},
    # Keystone's tag rules (keystone.api.validation.parameter_types.tags).
    'tags': {'type': 'array', 'uniqueItems': True, 'maxItems': 80,
             'items': {'type': 'string', 'minLength': 1,
                       'maxLength': 255, 'pattern': '^[^,/]*$'}},
    'options': base.OPTIONS,
    'extra': base.EXTRA,
}


class _ProjectTable(common.IdTable):
    table_name = 'project'
    name_column = 'name'
    registry = project_ro.PROJECT_OPTIONS_REGISTRY
    is_domain = False

    def where(self, t):
        return sa.and_(t.c.id != spec.ROOT_DOMAIN_ID,
                       t.c.is_domain == sa.true() if self.is_domain
                       else t.c.is_domain == sa.false())

    def load(self, conn, rows):
        ids = [r.id for r in rows]
        tags = common.children(conn, 'project_tag', 'project_id', ids,
                               'name')
        options = common.options(conn, 'project_option', 'project_id', ids,
                                 self.registry)
        return [self.represent(r, sorted(tags.get(r.id, [])),
                               options.get(r.id, {})) for r in rows]

    def represent(self, row, tags, options):
        raise NotImplementedError

    def held_by(self, row):
        if row.id == spec.ROOT_DOMAIN_ID:
            return "Keystone's hidden root domain"
        return f'domain {row.id}' if row.is_domain else f'project {row.id}'

    def existing_named(self, conn, resource):
        t = base.table(conn, 'project')
        domain_id = (spec.ROOT_DOMAIN_ID if self.is_domain
                     else resource['domain_id'])
        return conn.execute(sa.select(t.c.id).where(
            t.c.domain_id == domain_id,
            t.c.name == resource['name'].strip())).scalars().all()

    def validate(self, id_, resource):
        super().validate(id_, resource)
        common.check_options(self.registry, f'{self.name} {id_}',
                             resource['options'])

    def _mutable_fields(self, resource):
        fields = {'name': resource['name'],
                  'description': resource['description'] or '',
                  'enabled': resource['enabled'],
                  'tags': resource['tags'],
                  'options': resource['options']}
        return fields

    def update(self, session, conn, id_, old, resource):
        common.unlock_immutable(old, resource, lambda ref: self._update(
            id_, ref))
        self._update(id_, self._mutable_fields(resource))
        common.set_extra(conn, 'project', id_, resource['extra'])


class Domain(_ProjectTable, base.ResourceType):
    name = 'domain'
    is_domain = True
    schema = base.closed_object(_COMMON_PROPS)
    rekey_refs = ()  # 'default' is the same everywhere; see doc/api.md

    def id_rule(self):
        return ids.domain(), ids.domain_form()

    def represent(self, r, tags, options):
        return {'id': r.id, 'name': r.name,
                'description': r.description or '',
                'enabled': bool(r.enabled), 'tags': tags,
                'options': options, 'extra': base.json_load(r.extra, {}),
                '_meta': common.meta(r)}

    def create(self, session, conn, id_, resource):
        common.check_name_free(self, conn, id_, resource)
        PROVIDERS.resource_api.create_domain(
            id_, dict(self._mutable_fields(resource), id=id_))
        session.flush()
        common.set_extra(conn, 'project', id_, resource['extra'])

    def _update(self, id_, fields):
        PROVIDERS.resource_api.update_domain(id_, fields)

    def delete(self, session, conn, id_, old):
        api = PROVIDERS.resource_api
        if old['options'].get('immutable'):
            api.update_domain(id_, {'options': {'immutable': False}})
        if old['enabled']:
            # Keystone only deletes disabled domains; the site that deleted
            # it first had disabled it.
            api.update_domain(id_, {'enabled': False})
        api.delete_domain(id_)


class Project(_ProjectTable, base.ResourceType):
    name = 'project'
    is_domain = False
    _props = dict(_COMMON_PROPS, domain_id=base.ID, parent_id=base.ID)
    schema = base.closed_object(_props)
    rekey_unique = ('name',)
    rekey_refs = (
        ('project', 'parent_id'), ('project_tag', 'project_id'),
        ('project_option', 'project_id'), ('assignment', 'target_id'),
        ('user', 'default_project_id'),
        ('application_credential', 'project_id'),
        ('trust', 'project_id'), ('credential', 'project_id'),
        ('project_endpoint', 'project_id'),
        ('project_endpoint_group', 'project_id'),
        ('limit', 'project_id'),
        ('request_token', 'requested_project_id'),
        ('access_token', 'project_id'),
    )

    def represent(self, r, tags, options):
        return {'id': r.id, 'name': r.name,
                'description': r.description or '',
                'enabled': bool(r.enabled), 'domain_id': r.domain_id,
                'parent_id': r.parent_id, 'tags': tags, 'options': options,
                'extra': base.json_load(r.extra, {}),
                '_meta': common.meta(r)}

    def create(self, session, conn, id_, resource):
        common.check_name_free(self, conn, id_, resource)
        common.require(conn, 'domain', resource['domain_id'],
                       f'project {id_}')
        if resource['parent_id'] != resource['domain_id']:
            common.require(conn, 'project', resource['parent_id'],
                           f'project {id_}', field='parent_id')
        PROVIDERS.resource_api.create_project(id_, dict(
            self._mutable_fields(resource), id=id_,
            domain_id=resource['domain_id'],
            parent_id=resource['parent_id'], is_domain=False))
        session.flush()
        common.set_extra(conn, 'project', id_, resource['extra'])

    def _update(self, id_, fields):
        PROVIDERS.resource_api.update_project(id_, fields)

    def delete(self, session, conn, id_, old):
        if old['options'].get('immutable'):
            PROVIDERS.resource_api.update_project(
                id_, {'options': {'immutable': False}})
        PROVIDERS.resource_api.delete_project(id_)

    def sort_key(self, resource, batch):
        """Parents before children: depth of the parent chain inside the
        batch."""
        depth, seen = 0, set()
        while resource and resource['parent_id'] in batch \
                and resource['parent_id'] not in seen:
            seen.add(resource['parent_id'])
            resource = batch[resource['parent_id']]
            depth += 1
        return depth
