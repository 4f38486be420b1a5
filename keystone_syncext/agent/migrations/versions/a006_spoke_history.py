"""Each spoke's feed history, to notice a spoke restored from a backup.

``history_id`` is the spoke's ``history_id`` as its capabilities said
when last checked; ``history_marker`` a cursor of its feed then. When the
id changes (the spoke renewed its history: restored from a backup, or
capture had a gap), or the marker is refused, the spoke may have lost
what the agent wrote there, and is reconciled.

Revision ID: a006
Revises: a005
"""

from alembic import op
import sqlalchemy as sa

revision = 'a006'
down_revision = 'a005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('agent_spoke') as batch:
        batch.add_column(sa.Column('history_id', sa.String(64)))
        batch.add_column(sa.Column('history_marker', sa.String(64)))


def downgrade():
    with op.batch_alter_table('agent_spoke') as batch:
        batch.drop_column('history_marker')
        batch.drop_column('history_id')
