"""Timestamps on every v1 resource table and the v1 capture triggers.

Revision ID: 0002_capture_v1
Revises: 0001_sync_tables
Create Date: 2026-11-27
"""

from alembic import op

from keystone_syncext.capture import install

revision = '0002_capture_v1'
down_revision = '0001_sync_tables'
branch_labels = None
depends_on = None


def upgrade():
    bind = op.get_bind()
    install.require_keystone_schema(bind)
    install.add_timestamp_columns(bind)
    install.install_triggers(bind)


def downgrade():
    bind = op.get_bind()
    install.drop_triggers(bind)
    install.drop_timestamp_columns(bind)
