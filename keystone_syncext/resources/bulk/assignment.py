"""Set-wise creates of role assignments.

role assignment (``AssignmentManager.create_grant`` and
``create_system_grant_for_user/group``): actor, target and role exist (an
actor missing from the SQL tables is asked of the identity manager, as
the per-item path does), a domain-specific role only on projects of its
domain (Keystone's 403 DomainSpecificRoleMismatch) and never on the
system (Keystone's ValidationError); for grants on a project or domain,
the notification of ``create_grant``'s decorator
(``identity.role_assignment.created``, failure outcome for a mismatch),
sent through that same decorator; system grants send none.
"""


from keystone import exception as ks_exception
from keystone import notifications
import sqlalchemy as sa

from keystone_syncext.resources import assignment
from keystone_syncext.resources import base
from keystone_syncext.resources import role
from keystone_syncext.resources.bulk import core


class RoleAssignmentCreates(core.Creates):
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
        self.actors = {a: core.existing(conn, a, wanted[a])
                       for a in ('user', 'group')}
        p = base.table(conn, 'project')
        self.projects = {row.id: row.domain_id for row in core.select_in(
            conn, p.c.id, wanted['project'], p.c.id, p.c.domain_id,
            where=p.c.is_domain == sa.false()) if row.id in
            wanted['project']}
        self.domains = core.existing(conn, 'domain', wanted['domain'])
        t = base.table(conn, 'role')
        role_ids = {r['role_id'] for _, r in entries}
        self.roles = {row.id: (None if row.domain_id == role.NULL_DOMAIN_ID
                               else row.domain_id)
                      for row in core.select_in(conn, t.c.id, role_ids, t.c.id,
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
            core.confirm_missing(self.conn, target, r['target_id'], what,
                                 'target_id')
        if r['role_id'] not in self.roles:
            core.confirm_missing(self.conn, 'role', r['role_id'], what)
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
            core.insert(self.conn, table_name, found)

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
