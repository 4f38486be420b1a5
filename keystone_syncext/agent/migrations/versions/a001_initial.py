"""The agent's state: hub cursor, outbox, spokes, pending items.

Revision ID: a001
Revises:
"""

from alembic import op
import sqlalchemy as sa

revision = 'a001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'agent_hub',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=False),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('site_id', sa.String(64)),
        sa.Column('cursor', sa.String(64)),
        sa.Column('head', sa.String(64)),
        sa.Column('last_read_at', sa.DateTime),
        sa.Column('last_error', sa.Text),
        sa.Column('last_error_at', sa.DateTime),
    )
    op.create_table(
        'agent_outbox',
        sa.Column('seq', sa.Integer, primary_key=True, autoincrement=True),
        sa.Column('cursor', sa.String(64), nullable=False),
        sa.Column('type', sa.String(64), nullable=False),
        sa.Column('resource_id', sa.String(255), nullable=False),
        sa.Column('op', sa.String(16), nullable=False),
        sa.Column('origin', sa.String(64)),
        sa.Column('changed_at', sa.DateTime),
        sa.Column('hash', sa.String(64)),
        sa.Column('resource', sa.Text),
        # Never reuse a seq once pruned: checkpoints compare against it.
        sqlite_autoincrement=True,
    )
    op.create_table(
        'agent_spoke',
        sa.Column('name', sa.String(255), primary_key=True),
        sa.Column('site_id', sa.String(64)),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('applied_seq', sa.Integer, nullable=False),
        sa.Column('last_success_at', sa.DateTime),
        sa.Column('last_error', sa.Text),
        sa.Column('last_error_at', sa.DateTime),
        sa.Column('failures', sa.Integer, nullable=False),
    )
    op.create_table(
        'agent_pending',
        sa.Column('spoke', sa.String(255), primary_key=True),
        sa.Column('type', sa.String(64), primary_key=True),
        sa.Column('resource_id', sa.String(255), primary_key=True),
        sa.Column('seq', sa.Integer, nullable=False),
        sa.Column('op', sa.String(16), nullable=False),
        sa.Column('resource', sa.Text),
        sa.Column('attempts', sa.Integer, nullable=False),
        sa.Column('last_error', sa.Text),
        sa.Column('since', sa.DateTime, nullable=False),
    )


def downgrade():
    for name in ('agent_pending', 'agent_spoke', 'agent_outbox',
                 'agent_hub'):
        op.drop_table(name)
