"""Conflicts: resources changed both at the hub and at a spoke.

``agent_conflict`` keeps every conflict the agent resolved: both versions
(null where a side had deleted the resource), the base both changed from,
the strategy, the winner and why. ``keystone-sync conflicts`` lists them
and ``keystone-sync status`` counts them.

Revision ID: a004
Revises: a003
"""

from alembic import op
import sqlalchemy as sa

revision = 'a004'
down_revision = 'a003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'agent_conflict',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('detected_at', sa.DateTime, nullable=False),
        sa.Column('spoke', sa.String(255), nullable=False),
        sa.Column('type', sa.String(64), nullable=False),
        sa.Column('resource_id', sa.String(255), nullable=False),
        sa.Column('strategy', sa.String(32), nullable=False),
        sa.Column('winner', sa.String(255), nullable=False),
        sa.Column('reason', sa.Text, nullable=False),
        sa.Column('base_hash', sa.String(64)),
        sa.Column('hub_hash', sa.String(64)),
        sa.Column('spoke_hash', sa.String(64)),
        sa.Column('hub_changed_at', sa.DateTime),
        sa.Column('spoke_changed_at', sa.DateTime),
        sa.Column('hub_version', sa.Text),
        sa.Column('spoke_version', sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_agent_conflict_spoke', 'agent_conflict',
                    ['spoke', 'type', 'resource_id'])


def downgrade():
    op.drop_index('ix_agent_conflict_spoke', table_name='agent_conflict')
    op.drop_table('agent_conflict')
