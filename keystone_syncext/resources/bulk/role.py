"""Set-wise creates of roles.

role (``keystone.assignment.core.RoleManager.create_role``): the name is
free among the roles of the same domain (global roles share Keystone's
``<<null>>`` domain): 409; a domain-specific role's domain exists: 400;
options as for projects; ``Audit.created('role', id)``.
"""

import json

from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import role
from keystone_syncext.resources.bulk import core


class RoleCreates(core.Creates):
    type_name = 'role'
    registry = role.role_ro.ROLE_OPTIONS_REGISTRY

    @classmethod
    def eligible(cls, r):
        return core.options_ok(cls.registry, r['options'])

    @staticmethod
    def _scope(r):
        return r['domain_id'] or role.NULL_DOMAIN_ID

    def prepare(self, entries):
        t = base.table(self.conn, 'role')
        self.names = core.Names(self.conn, t.c.id, t.c.domain_id, t.c.name,
                                [(self._scope(r), r['name'])
                                 for _, r in entries])
        self.domains = core.existing(self.conn, 'domain',
                                     {r['domain_id'] for _, r in entries})

    def accept(self, id_, r):
        holder = self.names.holder(self._scope(r), r['name'])
        if holder is not None:
            raise common.name_conflict('role', r['name'], holder)
        if r['domain_id'] and r['domain_id'] not in self.domains:
            core.confirm_missing(self.conn, 'domain', r['domain_id'],
                                 f'role {id_}')
        self.names.claim(self._scope(r), r['name'], id_)

    def write(self, entries):
        core.insert(self.conn, 'role', [{
            'id': id_, 'name': r['name'], 'domain_id': self._scope(r),
            'description': r['description'],
            'extra': json.dumps(r['extra']),
        } for id_, r in entries])
        core.insert(self.conn, 'role_option',
                    core.option_rows(self.registry, 'role_id', entries))
