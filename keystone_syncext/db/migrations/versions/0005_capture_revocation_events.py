"""Timestamps and capture triggers on Keystone's revocation events.

Revision ID: 0005_capture_revocation_events
Revises: 0004_history_id
Create Date: 2026-12-07

Token revocation events become a synced type (doc/types.md,
``revocation_event``): ``revocation_event`` gets the created_at and
updated_at columns every captured table has, and the triggers of the
current spec, which now include its own, are installed. A downgrade
drops the new table's triggers and columns only.
"""

from alembic import op
import sqlalchemy as sa

from keystone_syncext.capture import ddl
from keystone_syncext.capture import install
from keystone_syncext.db import tables

revision = '0005_capture_revocation_events'
down_revision = '0004_history_id'
branch_labels = None
depends_on = None

TABLE = 'revocation_event'


def upgrade():
    bind = op.get_bind()
    install.add_timestamp_columns(bind)
    install.install_triggers(bind)


def downgrade():
    bind = op.get_bind()
    dialect = ddl.for_dialect(bind.dialect.name)
    existing = install.existing_trigger_names(bind)
    for trigger in dialect.triggers():
        if trigger.table == TABLE and trigger.name in existing:
            for stmt in trigger.drop:
                bind.exec_driver_sql(stmt)
    added = tables.added_column
    quote = dialect.quote
    for (column,) in bind.execute(sa.select(added.c.column_name).where(
            added.c.table_name == TABLE)).all():
        bind.exec_driver_sql(f'ALTER TABLE {quote(TABLE)} DROP COLUMN '
                             f'{quote(column)}')
    bind.execute(added.delete().where(added.c.table_name == TABLE))
