"""Dependency order, as the extension's batch and the agent apply it:
one order, from the type table, in which everything a resource needs at
the site comes before it."""

from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import writer
from keystone_syncext.writes import batch

FEDERATED_USER = {
    'id': 'u1', 'domain_id': 'default', 'enabled': True,
    'default_project_id': None, 'options': {}, 'extra': {}, 'local': None,
    'federated': [{'idp_id': 'idp1', 'protocol_id': 'saml2',
                   'unique_id': 'alice', 'display_name': 'Alice'}]}
MAPPING = {'id': 'm1', 'rules': [], 'schema_version': '1.0'}
IDP = {'id': 'idp1', 'enabled': True, 'description': None,
       'domain_id': 'default', 'authorization_ttl': None, 'remote_ids': []}
PROTOCOL = {'id': 'idp1:saml2', 'idp_id': 'idp1', 'protocol_id': 'saml2',
            'mapping_id': 'm1', 'remote_id_attribute': None}
# The user first, as a batch may well list it.
ITEMS = [('user', FEDERATED_USER), ('federation_protocol', PROTOCOL),
         ('identity_provider', IDP), ('mapping', MAPPING)]


def _batch_items():
    return [{'op': 'upsert', 'type': t, 'id': r['id'], 'resource': r}
            for t, r in ITEMS]


def test_a_batch_applies_a_federated_users_provider_and_protocol_first():
    items = _batch_items()
    applied = [items[n]['type'] for n in
               batch._order(None, items, list(range(len(items))))]
    assert applied.index('user') > applied.index('federation_protocol') \
        > applied.index('identity_provider')
    assert applied.index('federation_protocol') > applied.index('mapping')


def test_the_agent_and_the_extension_apply_in_the_same_order():
    items = _batch_items()
    server = [items[n]['type'] for n in
              batch._order(None, items, list(range(len(items))))]
    changes = [state_mod.Change(n, t, r['id'], 'upsert', None, r)
               for n, (t, r) in enumerate(ITEMS)]
    agent = [c.type for c in writer.order(changes)]
    assert server == agent
    agent_deletes = [c.type for c in writer.order(
        [state_mod.Change(n, t, r['id'], 'delete', None, None)
         for n, (t, r) in enumerate(ITEMS)])]
    assert agent_deletes == list(reversed(agent))
