"""Create the change log, tombstones and bookkeeping tables.

Revision ID: 0001_sync_tables
Revises:
Create Date: 2026-11-27
"""

from alembic import op

from keystone_syncext.db import tables

revision = '0001_sync_tables'
down_revision = None
branch_labels = None
depends_on = None

# The tables as this revision creates them; later revisions alter them
# explicitly rather than editing this list.
_TABLES = (tables.change, tables.tombstone, tables.write_context,
           tables.counter, tables.added_column)


def upgrade():
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind, checkfirst=True)
    op.bulk_insert(tables.counter, [
        {'name': tables.HEAD, 'value': 0},
        {'name': tables.PURGED_THROUGH, 'value': 0},
    ])


def downgrade():
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind, checkfirst=True)
