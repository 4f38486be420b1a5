"""Policy in code for the /v3/sync routes (``identity:sync:<verb>_<noun>``).

Every rule is system scoped: the sync API serves and writes identity data
of the whole deployment. Operators override these rules in Keystone's own
policy.yaml; ``policy.yaml.sample`` at the repository root lists them
(``tox -e genpolicy``).
"""

from keystone.common.policies import base
from oslo_policy import policy

SYNC = 'identity:sync:%s'

sync_policies = [
    policy.DocumentedRuleDefault(
        name=SYNC % 'get_capabilities',
        check_str=base.SYSTEM_READER,
        scope_types=['system'],
        description='Show what this site offers to sync: protocol '
        'versions, site id, Keystone version, resource types, retention '
        'and the range of valid feed cursors.',
        operations=[{'path': '/v3/sync', 'method': 'GET'}],
    ),
]


def list_rules() -> list[policy.DocumentedRuleDefault]:
    """All sync rules (entry point ``oslo.policy.policies``)."""
    return sync_policies
