"""Policy in code for the /v3/sync routes (``identity:sync:<verb>_<noun>``).

Every rule is system scoped: the sync API serves and writes identity data
of the whole deployment. Reads that expose representations (which carry
password and secret hashes) or their hashes, and every write, need a
system admin: writing a resource with an id of the caller's choosing is
exactly what must stay out of reach of everyone else (no id squatting).
Capabilities and status need a system reader, for monitoring.

Operators override these rules in Keystone's own policy.yaml;
``policy.yaml.sample`` at the repository root lists them
(``tox -e genpolicy``).
"""

from keystone.common.policies import base
from oslo_policy import policy

SYNC = 'identity:sync:%s'
RESOURCE = '/v3/sync/resources/{type}/{id}'


def _rule(name, check_str, operations, description):
    return policy.DocumentedRuleDefault(
        name=SYNC % name, check_str=check_str, scope_types=['system'],
        # Written as a paragraph below; one line in the policy file.
        description=' '.join(description.split()),
        operations=[{'path': p, 'method': m} for p, m in operations])


sync_policies = [
    _rule('get_capabilities', base.SYSTEM_READER, [('/v3/sync', 'GET')],
          """Show what this site offers to sync: protocol versions, site
          id, Keystone version, resource types, retention and the range
          of valid feed cursors."""),
    _rule('get_status', base.SYSTEM_READER, [('/v3/sync/status', 'GET')],
          """Show whether change capture is complete at this site
          (triggers and timestamp columns present) and where the change
          feed stands."""),
    _rule('list_changes', base.SYSTEM_ADMIN, [('/v3/sync/changes', 'GET')],
          """Read the change feed, with the current representation of
          each changed resource (including password and secret
          hashes)."""),
    _rule('list_resources', base.SYSTEM_ADMIN,
          [('/v3/sync/resources/{type}', 'GET')],
          """List the resources of one type in canonical form (including
          password and secret hashes), ordered by id."""),
    _rule('get_resource', base.SYSTEM_ADMIN,
          [(RESOURCE, 'GET'), (RESOURCE, 'HEAD')],
          """Show one resource in canonical form (including password and
          secret hashes)."""),
    _rule('update_resource', base.SYSTEM_ADMIN, [(RESOURCE, 'PUT')],
          """Create a resource with the id given in the URL, or update
          it. This is the only way to choose an id, so keep it to the
          sync agent."""),
    _rule('delete_resource', base.SYSTEM_ADMIN, [(RESOURCE, 'DELETE')],
          """Delete a resource, recording the origin site in its
          tombstone."""),
    _rule('create_batch', base.SYSTEM_ADMIN, [('/v3/sync/batch', 'POST')],
          """Apply many creates, updates and deletes with explicit ids, in
          dependency order."""),
    _rule('create_rekey', base.SYSTEM_ADMIN, [('/v3/sync/rekey', 'POST')],
          """Change the id of a role, user, group or project, and every
          reference to it, in one transaction."""),
    _rule('get_digest', base.SYSTEM_ADMIN,
          [('/v3/sync/digest/{type}', 'GET'), ('/v3/sync/digests', 'POST')],
          """Show hash buckets of a resource type by id prefix, to find
          differences between sites without listing everything: one
          type and prefix (GET), or many in one request (POST, a read
          like the GET)."""),
    _rule('list_tombstones', base.SYSTEM_ADMIN,
          [('/v3/sync/tombstones', 'POST')],
          """Say which of the given ids this site deleted (its
          tombstones), so a reconcile removes what a restored site
          brought back; a read, whatever its method."""),
]


def list_rules() -> list[policy.DocumentedRuleDefault]:
    """All sync rules (entry point ``oslo.policy.policies``)."""
    return sync_policies
