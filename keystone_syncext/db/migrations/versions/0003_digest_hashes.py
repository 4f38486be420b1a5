"""Stored content hashes for digests.

Revision ID: 0003_digest_hashes
Revises: 0002_capture_v1
Create Date: 2026-12-06

The tables start empty: the first digest of each type fills them from
Keystone's tables (keystone_syncext.digests.store), so the upgrade itself is
instant however many resources the site has.
"""

from alembic import op

from keystone_syncext.db import tables

revision = '0003_digest_hashes'
down_revision = '0002_capture_v1'
branch_labels = None
depends_on = None

_TABLES = (tables.digest_hash, tables.digest_state)


def upgrade():
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind, checkfirst=True)


def downgrade():
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind, checkfirst=True)
