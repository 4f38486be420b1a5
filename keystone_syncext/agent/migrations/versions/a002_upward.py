"""Two-way sync: per spoke, the cursor of its own feed read up to.

Revision ID: a002
Revises: a001
"""

from alembic import op
import sqlalchemy as sa

revision = 'a002'
down_revision = 'a001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'agent_upward',
        sa.Column('spoke', sa.String(255), primary_key=True),
        sa.Column('cursor', sa.String(64)),
        sa.Column('last_read_at', sa.DateTime),
    )


def downgrade():
    op.drop_table('agent_upward')
