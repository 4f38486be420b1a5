"""The sync policy rules follow the naming and scope rules of the design."""

from keystone_syncext import policies


def test_names_are_in_the_sync_namespace():
    names = [rule.name for rule in policies.list_rules()]
    assert names
    assert all(name.startswith('identity:sync:') for name in names)
    assert len(set(names)) == len(names)


def test_every_rule_is_system_scoped():
    assert all(rule.scope_types == ['system']
               for rule in policies.list_rules())


def test_every_rule_documents_its_operations():
    for rule in policies.list_rules():
        assert rule.description
        assert all(op['path'].startswith('/v3/sync')
                   for op in rule.operations)


def test_capabilities_are_for_system_readers():
    rules = {rule.name: rule for rule in policies.list_rules()}
    rule = rules['identity:sync:get_capabilities']
    assert rule.check_str == 'role:reader and system_scope:all'
    assert rule.operations == [{'path': '/v3/sync', 'method': 'GET'}]
