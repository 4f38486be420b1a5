"""What the agent wrote at each spoke, and when each was last reconciled.

``agent_placed`` lets a reconcile tell a resource the agent put at a spoke
(and may remove again when the hub no longer has it) from one the spoke
made itself (never removed). Its hash is the hub's content hash of what
was written: the base a three-way conflict check compares against.

Revision ID: a003
Revises: a002
"""

from alembic import op
import sqlalchemy as sa

revision = 'a003'
down_revision = 'a002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'agent_placed',
        sa.Column('spoke', sa.String(255), primary_key=True),
        sa.Column('type', sa.String(64), primary_key=True),
        sa.Column('resource_id', sa.String(255), primary_key=True),
        sa.Column('hash', sa.String(64)),
    )
    with op.batch_alter_table('agent_spoke') as batch:
        batch.add_column(sa.Column('last_reconcile_at', sa.DateTime))
    with op.batch_alter_table('agent_pending') as batch:
        batch.add_column(sa.Column('hash', sa.String(64)))


def downgrade():
    with op.batch_alter_table('agent_pending') as batch:
        batch.drop_column('hash')
    with op.batch_alter_table('agent_spoke') as batch:
        batch.drop_column('last_reconcile_at')
    op.drop_table('agent_placed')
