"""The docs stay true to the code: doc/types.md describes every field of
the type table's rows, and doc/api.md and doc/capture.md point to the
table instead of keeping a list of the types that adding one would have
to edit."""

import dataclasses
import os
import re

from keystone_syncext import resources
from keystone_syncext.capture import spec
from keystone_syncext.common import types

DOC = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'doc')


def _read(name):
    with open(os.path.join(DOC, name)) as f:
        return f.read()


def test_every_field_of_a_row_is_described_in_types_md():
    described = set(re.findall(r'^\| `([a-z_]+)` \|', _read('types.md'),
                               re.M))
    fields = {f.name for f in dataclasses.fields(types.TypeInfo)}
    assert fields - {'name'} <= described, (
        'doc/types.md does not describe '
        f'{sorted(fields - {"name"} - described)}')


def test_api_and_capture_docs_point_to_the_table_not_to_a_list():
    """A table of one row per type (a line starting ``| `project` |``)
    in either doc would be one more place to edit for a new type."""
    for name in ('api.md', 'capture.md'):
        text = _read(name)
        assert 'keystone_syncext/common/types.py' in text, name
        assert '(types.md)' in text, name
        listed = re.findall(r'^\| `?(project|user|federation_protocol)`? \|',
                            text, re.M)
        assert not listed, f'doc/{name} lists types: {listed}'


def test_every_type_is_served():
    assert list(resources.TYPES) == list(spec.TYPES)
