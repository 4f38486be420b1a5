"""Set-wise creates of users, groups and group memberships.

user and group (``resources.identity`` and ``resources.group``, which already
write them with Core and list the manager's rules): domain exists, its
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
"""

import json

from keystone import notifications
from keystone.common import provider_api
import keystone.conf
from oslo_utils import timeutils
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import identity
from keystone_syncext.resources import passwords
from keystone_syncext.resources.bulk import core

CONF = keystone.conf.CONF
PROVIDERS = provider_api.ProviderAPIs


class _DomainOwned(core.Creates):
    """Users and groups: the domain exists and keeps its users and groups
    in SQL (asked once per domain)."""

    def prepare(self, entries):
        self.domains = core.existing(self.conn, 'domain',
                                     {r['domain_id'] for _, r in entries})
        self.sql_backend: dict[str, bool] = {}

    def check_domain(self, id_, r):
        what = f'{self.type_name} {id_}'
        domain_id = r['domain_id']
        if domain_id not in self.domains:
            core.confirm_missing(self.conn, 'domain', domain_id, what)
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
        self.domain_projects = {row.id for row in core.select_in(
            self.conn, p.c.id, {r['default_project_id'] for _, r in entries},
            p.c.id, where=p.c.is_domain == sa.true())}
        lu = base.table(self.conn, 'local_user')
        self.names = core.Names(
            self.conn, lu.c.user_id, lu.c.domain_id, lu.c.name,
            [(r['domain_id'], r['local']['name'])
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
                passwords.check_hash(id_, p['hash'])
            self.names.claim(r['domain_id'], local['name'], id_)

    def write(self, entries):
        conn = self.conn
        now = timeutils.utcnow()
        today = identity.active_today()
        core.insert(conn, 'user', [{
            'id': id_, 'domain_id': r['domain_id'], 'enabled': r['enabled'],
            'extra': json.dumps(r['extra']),
            'default_project_id': r['default_project_id'],
            'created_at': now,
            'last_active_at': today if r['enabled'] else None,
        } for id_, r in entries])
        core.insert(conn, 'user_option', core.option_rows(
            identity.User.registry, 'user_id', entries))
        local = [(id_, r) for id_, r in entries if r['local'] is not None]
        core.insert(conn, 'local_user', [{
            'user_id': id_, 'domain_id': r['domain_id'],
            'name': r['local']['name']} for id_, r in local])
        lu = base.table(conn, 'local_user')
        local_ids = {row.user_id: row.id for row in core.select_in(
            conn, lu.c.user_id, [id_ for id_, _ in local], lu.c.user_id,
            lu.c.id)}
        # In the order given: row ids follow it, as the per-item path's do.
        core.insert(conn, 'password', [
            passwords.password_row(local_ids[id_], p)
            for id_, r in local for p in r['local']['passwords']])


class GroupCreates(_DomainOwned):
    type_name = 'group'

    def prepare(self, entries):
        super().prepare(entries)
        t = base.table(self.conn, 'group')
        self.names = core.Names(self.conn, t.c.id, t.c.domain_id, t.c.name,
                                [(r['domain_id'], r['name'])
                                 for _, r in entries])

    def accept(self, id_, r):
        self.check_domain(id_, r)
        holder = self.names.holder(r['domain_id'], r['name'])
        if holder is not None:
            raise common.name_conflict('group', r['name'], holder)
        self.names.claim(r['domain_id'], r['name'], id_)

    def write(self, entries):
        core.insert(self.conn, 'group', [{
            'id': id_, 'domain_id': r['domain_id'], 'name': r['name'],
            'description': r['description'],
            'extra': json.dumps(r['extra'])} for id_, r in entries])


class GroupMembershipCreates(core.Creates):
    type_name = 'group_membership'

    def prepare(self, entries):
        if CONF.identity.domain_specific_drivers_enabled or \
                not PROVIDERS.identity_api.driver.is_sql:
            raise exception.BulkFallback('the identity manager maps ids here')
        self.users = core.existing(self.conn, 'user',
                                   {r['user_id'] for _, r in entries})
        self.groups = core.existing(self.conn, 'group',
                                    {r['group_id'] for _, r in entries})

    def accept(self, id_, r):
        what = f'group membership {id_}'
        if r['user_id'] not in self.users:
            core.confirm_missing(self.conn, 'user', r['user_id'], what)
        if r['group_id'] not in self.groups:
            core.confirm_missing(self.conn, 'group', r['group_id'], what)

    def write(self, entries):
        core.insert(self.conn, 'user_group_membership', [
            {'user_id': r['user_id'], 'group_id': r['group_id']}
            for _, r in entries])

    def notify(self, entries):
        for _id, r in entries:
            notifications.Audit.added_to('group', r['group_id'], 'user',
                                         r['user_id'])
