"""A compiled first look at a JSON value against one of our schemas.

Every request body, and every representation a batch carries, is checked
with Keystone's ``SchemaValidator`` (jsonschema's Draft 2020-12
validator), as Keystone checks its own API's bodies. It is the judge, and
its messages are the ones callers read. It is also slow: jsonschema
builds a new validator object for every property it descends into, about
50 us for a batch item's representation and 25 us more for the item's
place in the batch envelope, and a seed checks every item of every batch
at every spoke.

fastjsonschema compiles a schema into a Python function that checks a
valid value in 2 to 5 us. It is used here only to *accept*: a value the
compiled check accepts is accepted; any other value (refused, or one the
compiled check fails on in any way) goes to Keystone's validator, which
decides and says why. That is exactly as strict as Keystone's validator
alone as long as whatever the compiled check accepts, Keystone's validator
accepts too. It holds for the keywords in :data:`KEYWORDS`, which mean the
same in Draft 7 (what fastjsonschema compiles) as in Draft 2020-12, and
which both libraries apply alike to values decoded from JSON, where they
differ only by the compiled check accepting less:

- ``type``: the same Python types for JSON's values, ``true`` never a
  number, ``1.0`` an integer (fastjsonschema also takes a tuple for an
  array, which JSON never decodes to);
- ``pattern``: both use Python's ``re.search``; fastjsonschema reads ``$``
  as the very end of the string (``\\Z``), so it refuses ``"a\\n"`` for
  ``^a$``, which jsonschema accepts. That narrows what a pattern matches
  only where nothing negates it: a pattern with a lookaround (``(?!a$)``
  would then match ``"a\\n"``), or any other ``(?`` construct but a plain
  group ``(?:``, gets no compiled check;
- ``format``: the compiled check calls Keystone's own format checker, for
  strings only; jsonschema calls it for every value, and each of its
  checkers passes what is not a string;
- ``enum`` and ``uniqueItems`` tell ``true`` from ``1`` in both (in
  fastjsonschema since 2.22, the least release this package takes).

A schema with any other keyword (``$ref``, ``anyOf``, ``prefixItems``...)
gets no compiled check, and Keystone's validator checks every value.
``tests/unit/resources/test_compiled.py`` holds all this against both
libraries, value by value, for every schema this package checks.
"""

import functools

import fastjsonschema
from keystone.common.validation import validators

DRAFT_7 = 'http://json-schema.org/draft-07/schema#'

KEYWORDS = frozenset({
    'type', 'enum', 'format', 'pattern', 'minLength', 'maxLength',
    'minimum', 'maximum', 'properties', 'required',
    'additionalProperties', 'items', 'minItems', 'maxItems',
    'uniqueItems', 'title', 'description'})
"""The keywords a compiled check may meet (see the module's text), with
annotations (``x-openstack``...), which neither library reads."""

_TYPES = frozenset({'null', 'boolean', 'integer', 'number', 'string',
                    'array', 'object'})


def _plain(schema) -> bool:
    """Whether ``schema`` uses only :data:`KEYWORDS`, each in the form
    whose meaning both drafts share."""
    if not isinstance(schema, dict) or not {
            k for k in schema if not k.startswith('x-')} <= KEYWORDS:
        return False
    types = schema.get('type', 'null')
    if not set(types if isinstance(types, list) else [types]) <= _TYPES:
        return False
    if 'pattern' in schema and not _monotone(schema['pattern']):
        return False
    if not isinstance(schema.get('properties', {}), dict):
        return False
    # A list under "items" is Draft 7's tuple form (2020-12's prefixItems).
    if 'items' in schema and not isinstance(schema['items'], dict):
        return False
    if not isinstance(schema.get('additionalProperties', True),
                      (bool, dict)):
        return False
    return all(_plain(sub) for sub in _subschemas(schema))


def _subschemas(schema: dict):
    """The schemas ``schema`` applies to parts of a value."""
    yield from schema.get('properties', {}).values()
    for key in ('items', 'additionalProperties'):
        if isinstance(schema.get(key), dict):
            yield schema[key]


def _monotone(pattern) -> bool:
    """Whether making its ``$`` into ``\\Z`` can only make ``pattern``
    match less: no lookaround, no other ``(?`` construct than ``(?:``."""
    return isinstance(pattern, str) and all(
        rest.startswith(':') for rest in pattern.split('(?')[1:])


def _formats(schema) -> set[str]:
    found = {schema['format']} if 'format' in schema else set()
    return found.union(*(_formats(sub) for sub in _subschemas(schema)))


def _conforms(format_name: str, value) -> bool:
    return validators._FORMAT_CHECKER.conforms(value, format_name)


def accepter(schema: dict):
    """A function that says True only of values ``schema`` accepts, fast,
    or None when ``schema`` cannot have one (see the module's text). False
    means "ask Keystone's validator", not "invalid"."""
    if not _plain(schema):
        return None
    try:
        check = fastjsonschema.compile(
            dict(schema, **{'$schema': DRAFT_7}),
            formats={name: functools.partial(_conforms, name)
                     for name in _formats(schema)},
            use_default=False)
    except Exception:  # noqa: BLE001 -- Keystone's validator checks all
        # A pattern Python's re cannot compile once fastjsonschema made
        # "$" into "\Z" (inside a set), a schema it cannot read: no
        # compiled check.
        return None

    def accepts(value) -> bool:
        try:
            check(value)
        except Exception:  # noqa: BLE001 -- Keystone's validator decides
            return False
        return True
    return accepts
