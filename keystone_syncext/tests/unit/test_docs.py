"""doc/api.md stays true to the code: every v1 type has its row in the
representations table, with every field the code marks site-local."""

import os
import re

from keystone_syncext import resources
from keystone_syncext.capture import spec

DOC = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'doc',
                   'api.md')


def _rows():
    with open(DOC) as f:
        text = f.read()
    return {m.group(1): m.group(0) for m in
            re.finditer(r'^\| `([a-z_]+)` \|.*$', text, re.M)}


def test_every_type_has_a_row_with_its_site_local_fields():
    rows = _rows()
    for name in spec.TYPES:
        assert name in rows, f'doc/api.md has no row for {name}'
    for name, rtype in resources.TYPES.items():
        for field in rtype.site_local:
            assert f'`{field}`' in rows[name], (
                f'doc/api.md: the {name} row does not name its site-local '
                f'field {field}')


def test_every_type_is_served():
    assert list(resources.TYPES) == list(spec.TYPES)
