"""The extension's resource classes (keystone_syncext.resources) and the
type table (keystone_syncext.common.types) describe the same types: a
class whose schema lacks a field its row names, or that declares its own
secrets or site-local fields differently, fails here."""

import pytest

from keystone_syncext import resources
from keystone_syncext.common import types
from keystone_syncext.resources import assignment
from keystone_syncext.resources import base


def _schema_at(schema: dict, path: str) -> dict | None:
    """The schema of dotted ``path`` (arrays walked), or None."""
    for key in path.split('.'):
        while 'items' in schema:
            schema = schema['items']
        schema = schema.get('properties', {}).get(key)
        if schema is None:
            return None
    return schema


def _declared(rtype, attr):
    """A class attribute the resource class (or a class between it and
    ResourceType) sets itself, not the table-reading property."""
    for klass in type(rtype).__mro__:
        if klass is base.ResourceType:
            return None
        if attr in vars(klass):
            return vars(klass)[attr]
    return None


def disagreements(rtype, info: types.TypeInfo) -> list[str]:
    out = []
    if rtype.name != info.name:
        out.append(f'{type(rtype).__name__} is {rtype.name!r}, its row '
                   f'{info.name!r}')
    paths = {'name field': [info.name_field] if info.name_field else [],
             'secret': list(info.secrets),
             'natural key': list(info.natural_key),
             'containment': [r.path for r in info.contained_in],
             'reference': [r.path for r in info.refers_to]}
    for what, found in paths.items():
        out += [f'{info.name}: {what} {p!r} is not in the schema'
                for p in found if _schema_at(rtype.schema, p) is None]
    out += [f'{info.name}: site-local {f!r} is in the schema (synced)'
            for f in info.site_local
            if _schema_at(rtype.schema, f) is not None]
    for attr, want in (('secrets', info.secrets),
                       ('site_local', info.site_local)):
        own = _declared(rtype, attr)
        if own is not None and own != want:
            out.append(f'{info.name}: the class declares {attr} {own!r}, '
                       f'the table {want!r}')
    return out


def test_the_registry_and_the_table_hold_the_same_types_in_order():
    assert list(resources.TYPES) == list(types.ORDER)
    assert [resources.rank(t) for t in resources.TYPES] == [
        types.rank(t) for t in types.ORDER]


@pytest.mark.parametrize('name', types.ORDER)
def test_each_resource_class_agrees_with_its_row(name):
    rtype = resources.get(name)
    assert disagreements(rtype, types.lookup(name)) == []
    assert rtype.info is types.lookup(name)
    assert (rtype.secrets, rtype.site_local) == (
        types.lookup(name).secrets, types.lookup(name).site_local)


def test_the_assignment_kinds_are_the_tables():
    schema = resources.get('role_assignment').schema
    assert schema['properties']['type']['enum'] == sorted(
        types.ASSIGNMENT_ENDS)
    assert assignment.TYPES is types.ASSIGNMENT_ENDS


def test_a_class_that_disagrees_is_caught():
    class Wrong(type(resources.get('user'))):
        secrets = ('local.password',)
        schema = {'type': 'object', 'properties': {
            'id': {}, 'domain_id': {}, 'federated': {'type': 'array'},
            'last_active_at': {}}}

    found = disagreements(Wrong(), types.lookup('user'))
    assert "user: name field 'local.name' is not in the schema" in found
    assert "user: secret 'local.passwords.hash' is not in the schema" in found
    assert "user: reference 'federated.idp_id' is not in the schema" in found
    assert "user: site-local 'last_active_at' is in the schema (synced)" \
        in found
    assert ("user: the class declares secrets ('local.password',), the "
            "table ('local.passwords.hash',)") in found
    assert disagreements(resources.get('group'),
                         types.lookup('role')) == [
        "Group is 'group', its row 'role'"]


def test_the_registry_is_one_instance_of_each_registered_class():
    classes = base.registered()
    assert set(classes) == set(types.ORDER)
    for name, rtype in resources.TYPES.items():
        assert type(rtype) is classes[name]


def test_a_row_without_a_class_is_an_error_at_import():
    classes = base.registered()
    del classes['group']
    with pytest.raises(RuntimeError, match='without a resource class.*group'):
        resources._build(classes)


def test_a_class_naming_a_type_not_in_the_table_is_an_error():
    # Not a type Keystone has: doc/types.md's walk-through adds one
    # (service), and this test must not be what it changes.
    with pytest.raises(types.UnknownType):
        class Gadget(base.ResourceType):
            name = 'gadget'
    assert 'gadget' not in base.registered()


def test_two_classes_cannot_claim_one_type():
    with pytest.raises(TypeError, match="both declare type 'user'"):
        class AnotherUser(base.ResourceType):
            name = 'user'
    assert base.registered()['user'] is type(resources.get('user'))
