"""Which types the batch creates set-wise, and with which creator."""

from keystone_syncext.resources.bulk import assignment
from keystone_syncext.resources.bulk import core
from keystone_syncext.resources.bulk import identity
from keystone_syncext.resources.bulk import project
from keystone_syncext.resources.bulk import role

CREATORS: dict[str, type[core.Creates]] = {c.type_name: c for c in (
    project.ProjectCreates, role.RoleCreates, identity.UserCreates,
    identity.GroupCreates, identity.GroupMembershipCreates,
    assignment.RoleAssignmentCreates)}
