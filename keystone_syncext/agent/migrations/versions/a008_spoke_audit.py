"""The periodic audit of each spoke: when it last ran and what it found.

``last_audit_at`` is when the agent's background audit last compared the
spoke with the hub by digest (``audit_interval``); ``audit_found`` the
differences it found then (missing, different, or placed there and gone
at the hub) and ``audit_repaired`` the writes that repaired them.

Revision ID: a008
Revises: a007
"""

from alembic import op
import sqlalchemy as sa

revision = 'a008'
down_revision = 'a007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('agent_spoke') as batch:
        batch.add_column(sa.Column('last_audit_at', sa.DateTime))
        batch.add_column(sa.Column('audit_found', sa.Integer))
        batch.add_column(sa.Column('audit_repaired', sa.Integer))


def downgrade():
    with op.batch_alter_table('agent_spoke') as batch:
        batch.drop_column('audit_repaired')
        batch.drop_column('audit_found')
        batch.drop_column('last_audit_at')
