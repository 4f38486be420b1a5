"""What change capture watches: v1 resource tables, their child rows, cascades.

Each type's entries are in its row of the type table
(``TypeInfo.capture`` in :mod:`keystone_syncext.common.types`; their
shapes in :mod:`keystone_syncext.common.capture`); this module collects
them in the table's order. This is data, not SQL:
``keystone_syncext.capture.ddl`` turns it into triggers for each
database.

The spec is versioned: triggers are named after ``VERSION``, so a later spec
can be installed beside this one before the old triggers are dropped (a
short window of double capture, which is harmless, instead of a gap).
"""

from keystone_syncext.common import capture
from keystone_syncext.common import types

VERSION = 1

ROOT_DOMAIN_ID = capture.ROOT_DOMAIN_ID

TIMESTAMPS = ('created_at', 'updated_at')

Resource = capture.Resource
Child = capture.Child
Cascade = capture.Cascade


def _collect(kind) -> tuple:
    """Every ``kind`` entry of the type table's rows, in the table's
    order (a row's entries in the order it lists them)."""
    return tuple(entry for info in types.TABLE for entry in info.capture
                 if isinstance(entry, kind))


RESOURCES: tuple[Resource, ...] = _collect(Resource)
CHILDREN: tuple[Child, ...] = _collect(Child)
CASCADES: tuple[Cascade, ...] = _collect(Cascade)

RESOURCE_BY_TABLE = {res.table: res for res in RESOURCES}
CHILD_BY_TABLE = {child.table: child for child in CHILDREN}

# Every v1 type that capture produces, in dependency order (creates go in
# this order, deletes in reverse): the type table's.
TYPES = types.ORDER
