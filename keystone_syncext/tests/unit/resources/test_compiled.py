"""The compiled first check of JSON values (``resources.compiled``): every
schema this package checks gets one, it accepts the valid values, and
whatever it accepts Keystone's validator accepts too, for every hostile
value put at every place of every schema. A value it does not accept is
judged by Keystone's validator alone, with Keystone's message."""

import copy
import uuid

from keystone.common.validation import validators
import pytest

from keystone_syncext import exception
from keystone_syncext import resources
from keystone_syncext.api import schemas
from keystone_syncext.resources import base
from keystone_syncext.resources import compiled

# Every request schema ``api.validation`` checks (bodies, queries, the
# headers), and every type's representation: what a batch checks per item.
REQUEST_SCHEMAS = {name: value for name, value in vars(schemas).items()
                   if name.endswith(('_request_body', '_request_query',
                                     '_request_header'))}
TYPE_SCHEMAS = {name: rtype.schema for name, rtype in resources.TYPES.items()}
ALL_SCHEMAS = dict(REQUEST_SCHEMAS, **{f'type {n}': s
                                      for n, s in TYPE_SCHEMAS.items()})

_HEX = uuid.UUID(int=0x1234).hex
_CANDIDATES = [
    _HEX, 'default', 'x', 'ab' * 32, 'ab' * 8, '2026-12-08T02:30:00.000000Z',
    'agents:1', 0, 1, True, None, 1.5, {}, []]
# Values a hostile caller puts anywhere: every JSON type, the edges of
# lengths and numbers, and the strings where the two libraries could read a
# pattern, a format or a type differently.
_HOSTILE = [
    None, True, False, 0, 1, -1, 1.0, 0.5, 2 ** 63, float('nan'),
    float('inf'), '', ' ', 'x', '\n', 'a\n', '\x00', '\x1c', 'a/b',
    'x' * 255, 'x' * 256, 'x' * 70000, '2026-12-08T02:30:00Z',
    '2026-12-08T02:30:00.000000Z', '2026-13-45T99:99:99Z', 'not a time',
    '2026-13-45T99:99:99.000000Z', '2026-02-30T00:00:00.000000Z', '$',
    'a$', 'admin\n', '\U0001f600' * 255, '\U0001f600' * 256, [1, 1.0],
    _HEX, _HEX + '\n', 'ab' * 32 + '\n', 'upsert', 'delete', 'UPSERT',
    [], [1], [True, 1], ['a', 'a'], [{'a': 1}, {'a': 1}], [None], {},
    {'a': 1}, {'resource': {}}]


def _keystone_accepts(schema, value) -> bool:
    validator = validators.SchemaValidator(schema).validator
    return next(iter(validator.iter_errors(value)), None) is None


def _valid(schema, where='value'):
    """One value ``schema`` accepts: every property it names, filled."""
    if 'enum' in schema:
        return schema['enum'][0]
    types = schema.get('type', 'object')
    types = types if isinstance(types, list) else [types]
    if 'object' in types:
        return {name: _valid(sub, f'{where}.{name}')
                for name, sub in schema.get('properties', {}).items()}
    if 'array' in types:
        items = schema.get('items', {})
        return [_valid(items, f'{where}[0]')] if items else []
    for candidate in _CANDIDATES:
        if _keystone_accepts(schema, candidate):
            return candidate
    raise AssertionError(f'no candidate value fits {where}: {schema}')


def _mutants(schema, value):
    """``value`` with one place changed: each hostile value put at each
    place, a property too many in each object, each required one gone."""
    yield from _HOSTILE
    if isinstance(value, str):
        yield value + '\n'
        yield value + ' '
        yield ' ' + value
    if isinstance(value, dict):
        yield dict(value, unknown_property=1)
        for name in schema.get('required', ()):
            yield {k: v for k, v in value.items() if k != name}
        for name, sub in schema.get('properties', {}).items():
            if name in value:
                for changed in _mutants(sub, value[name]):
                    yield dict(value, **{name: changed})
    if isinstance(value, list) and value:
        yield value + value
        # One item more than maxItems, all different where they can be.
        more = schema.get('maxItems', 1) + 1
        yield [f'{value[0]}{n}' if isinstance(value[0], str) else value[0]
               for n in range(more)]
        for changed in _mutants(schema.get('items', {}), value[0]):
            yield [changed] + value[1:]


@pytest.mark.parametrize('name', sorted(ALL_SCHEMAS))
def test_every_schema_checked_has_a_compiled_check(name):
    assert compiled.accepter(ALL_SCHEMAS[name]) is not None


@pytest.mark.parametrize('name', sorted(ALL_SCHEMAS))
def test_what_the_compiled_check_accepts_keystone_accepts(name):
    schema = ALL_SCHEMAS[name]
    accepts = compiled.accepter(schema)
    valid = _valid(schema)
    assert _keystone_accepts(schema, valid), valid
    assert accepts(valid), f'the compiled check refuses {valid!r}'
    counts = {'accepted': 0, 'refused': 0}
    for mutant in _mutants(schema, copy.deepcopy(valid)):
        if accepts(mutant):
            counts['accepted'] += 1
            assert _keystone_accepts(schema, mutant), (
                f'the compiled check accepts {mutant!r}, Keystone does not')
        else:
            counts['refused'] += 1
    # Both ways were taken: the mutants reach past what the schema allows.
    assert counts['accepted'] and counts['refused'] > 20, counts


# Schemas made up to reach where the two libraries could part: numbers and
# booleans in enums (fastjsonschema before 2.22 took true for 1), a length
# kept from one item for the next (before 2.22), and values at each side.
MADE_UP = [
    ({'enum': [1]}, [True, 1, 1.0, False, 0, '1']),
    ({'enum': [0, 'x']}, [False, 0, 0.0, 'x', None]),
    ({'enum': [True]}, [True, 1, 1.0]),
    ({'type': 'array', 'items': {'enum': [[1]]}}, [[[True]], [[1]], [[1.0]]]),
    ({'type': 'array', 'items': {'type': ['string', 'array'],
                                 'minLength': 0, 'maxItems': 1}},
     [['', [1, 2]], ['', [1]], ['abc', [1, 2]]]),
    ({'type': 'array', 'uniqueItems': True},
     [[1, True], [1, 1.0], [0, False], [[1], [True]], [{'a': 1}, {'a': True}],
      [{'a': 1}, {'a': 1.0}], ['True', True]]),
    ({'type': 'integer', 'maximum': 3}, [3, 3.0, 4, 2 ** 64, True, 1.5]),
    ({'type': 'string', 'maxLength': 2}, ['\U0001f600\U0001f600',
                                          '\U0001f600' * 3]),
]


@pytest.mark.parametrize('schema,values', MADE_UP)
def test_made_up_schemas_where_the_libraries_could_part(schema, values):
    accepts = compiled.accepter(schema)
    assert accepts is not None
    for value in values:
        if accepts(value):
            assert _keystone_accepts(schema, value), (
                f'the compiled check accepts {value!r}, Keystone does not')


@pytest.mark.parametrize('schema', [
    # A lookaround: "$" made "\Z" under a negation matches more.
    {'type': 'string', 'pattern': '^(?!admin$)'},
    {'type': 'string', 'pattern': '^(?!.*[. ]$)'},
    {'type': 'string', 'pattern': '(?<!a)$'},
    {'type': 'string', 'pattern': '(?i)^a$'},
    {'type': 'string', 'format': 'a"b'},
    {'type': 'object', 'properties': []},
    {'anyOf': [{'type': 'string'}, {'type': 'null'}]},
    {'type': 'object', 'properties': {'a': {'$ref': '#/$defs/a'}},
     '$defs': {'a': {'type': 'string'}}},
    {'type': 'array', 'items': [{'type': 'string'}]},
    {'type': 'object', 'properties': {'a': {'const': 1}}},
    {'type': 'string', 'pattern': '^[$a]$'},
    {'type': 'date'},
])
def test_a_schema_beyond_the_shared_keywords_gets_no_compiled_check(schema):
    assert compiled.accepter(schema) is None


def test_where_only_keystone_accepts_keystone_decides():
    """"a\\n" for ^a$: jsonschema takes it, the compiled check does not;
    the body is accepted all the same."""
    schema = {'type': 'object', 'properties': {
        'n': {'type': 'integer'}, 's': {'type': 'string', 'pattern': '^a$'}},
        'additionalProperties': False}
    accepts = compiled.accepter(schema)
    assert not accepts({'s': 'a\n'})
    assert accepts({'s': 'a', 'n': 2.0})
    base.check_body(schema, {'s': 'a\n'}, 'thing')
    with pytest.raises(exception.BadRequest) as caught:
        base.check_body(schema, {'n': 'one'}, 'thing')
    assert str(caught.value) == (
        "invalid thing: Invalid input for field 'n': 'one' is not of type "
        "'integer'")


def test_a_batch_item_the_compiled_check_accepts_skips_jsonschema(
        monkeypatch):
    """The fast way is the one taken: a valid batch, envelope and items,
    is checked without Keystone's validator."""
    project = {'id': _HEX, 'name': 'p', 'description': '', 'enabled': True,
               'domain_id': 'default', 'parent_id': 'default', 'tags': [],
               'options': {}, 'extra': {}}
    body = {'items': [{'op': 'upsert', 'type': 'project', 'id': _HEX,
                       'resource': project}]}
    rtype = resources.get('project')
    for name in ('validator', 'accepts'):
        rtype.__dict__.pop(name, None)
    base.check_body(schemas.batch_request_body, body, 'batch')

    def no_jsonschema(*args, **kwargs):
        raise AssertionError('Keystone validator used on a valid value')
    monkeypatch.setattr(validators.SchemaValidator, 'validate', no_jsonschema)
    monkeypatch.setattr(base, 'schema_problem', no_jsonschema)
    base.check_body(schemas.batch_request_body, body, 'batch')
    rtype.validate(_HEX, project)
    with pytest.raises(AssertionError, match='Keystone validator used'):
        rtype.validate(_HEX, dict(project, enabled='yes'))
