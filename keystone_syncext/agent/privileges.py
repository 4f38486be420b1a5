"""What a user may administer at a site, read from its sync listings.

``join`` merges a spoke's user into its hub namesake (re-keys it, and the
first sync then gives it the hub's password): whoever can log in as the
hub account then holds everything the spoke account held at the spoke. A
spoke account that administers the spoke is merged only when the hub
account already holds at least as much at the hub (the bootstrap admin,
system admin at both), see :mod:`keystone_syncext.agent.join`.

A user's privileges here are what makes them an administrator: each
system role (by name), and the ``admin`` role on a domain or project (by
its name, so that two sites compare), held directly or through a group,
directly or by an implied role. Ids differ between sites before a join,
names do not.
"""

from keystone_syncext.agent import client

ADMIN_ROLE_NAME = 'admin'


class Privileges:
    """Every user's privileges at one site, from one read of its
    roles, implied roles, memberships, assignments and targets."""

    def __init__(self, site: client.Site):
        self.role_names = {r['id']: r['name']
                           for r in client.every_resource(site, 'role')
                           if r.get('domain_id') is None}
        implies: dict[str, set[str]] = {}
        for i in client.every_resource(site, 'implied_role'):
            implies.setdefault(i['prior_role_id'], set()).add(
                i['implied_role_id'])
        self.implies = implies
        self.groups: dict[str, set[str]] = {}
        for m in client.every_resource(site, 'group_membership'):
            self.groups.setdefault(m['user_id'], set()).add(m['group_id'])
        self.projects = {p['id']: (p['domain_id'], p['name'])
                         for p in client.every_resource(site, 'project')}
        self.by_actor: dict[str, list[dict]] = {}
        for a in client.every_resource(site, 'role_assignment'):
            self.by_actor.setdefault(a['actor_id'], []).append(a)

    def _closure(self, role_id: str) -> set[str]:
        seen, todo = set(), [role_id]
        while todo:
            r = todo.pop()
            if r not in seen:
                seen.add(r)
                todo += self.implies.get(r, ())
        return seen

    def _target(self, a: dict):
        if a['type'].endswith('Project'):
            return ('project',) + self.projects.get(
                a['target_id'], (None, a['target_id']))
        return ('domain', a['target_id'])

    def of(self, user_id: str) -> set[tuple]:
        """``('system', role name)`` and ``('admin', target...)`` the user
        holds."""
        out: set[tuple] = set()
        actors = [user_id] + sorted(self.groups.get(user_id, ()))
        for actor in actors:
            for a in self.by_actor.get(actor, ()):
                names = {self.role_names.get(r)
                         for r in self._closure(a['role_id'])} - {None}
                if a['type'].endswith('System'):
                    out |= {('system', n) for n in names}
                elif ADMIN_ROLE_NAME in names:
                    out.add(('admin',) + self._target(a)
                            + (bool(a['inherited']),))
        return out


def describe(privileges: set[tuple]) -> str:
    """``privileges`` in words, for the join plan."""
    parts = []
    for p in sorted(privileges, key=str):
        if p[0] == 'system':
            parts.append(f'system {p[1]}')
        elif p[1] == 'project':
            parts.append(f'admin on project {p[3]}'
                         + (' (inherited)' if p[4] else ''))
        else:
            parts.append(f'admin on domain {p[2]}'
                         + (' (inherited)' if p[3] else ''))
    return ', '.join(parts)
