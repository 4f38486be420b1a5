"""The synced resource types of protocol v1, in dependency order."""

from keystone_syncext import exception
from keystone_syncext.common import types
from keystone_syncext.resources import app_cred
from keystone_syncext.resources import assignment
from keystone_syncext.resources import base
from keystone_syncext.resources import federation
from keystone_syncext.resources import group
from keystone_syncext.resources import identity
from keystone_syncext.resources import resource
from keystone_syncext.resources import role

_IMPLEMENTED = [
    resource.Domain(), resource.Project(), role.Role(), role.ImpliedRole(),
    identity.User(), group.Group(), group.GroupMembership(),
    assignment.RoleAssignment(),
    app_cred.ApplicationCredential(), federation.Mapping(),
    federation.IdentityProvider(), federation.FederationProtocol(),
]

TYPES: dict[str, base.ResourceType] = {
    t.name: t for t in sorted(_IMPLEMENTED, key=lambda t: types.rank(t.name))}


def get(name: str) -> base.ResourceType:
    """The type called ``name``; 404 for anything else."""
    try:
        return TYPES[name]
    except (KeyError, TypeError):
        raise exception.NotFound(
            f'unknown resource type {name!r}; this site syncs: '
            f'{", ".join(TYPES)}') from None


def rank(name: str) -> int:
    """Position in dependency order (creates go low to high): the type
    table's (:func:`keystone_syncext.common.types.rank`)."""
    return types.rank(name)
