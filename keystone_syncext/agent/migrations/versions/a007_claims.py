"""Claims: which agent (member) holds what, under which fencing generation.

``agent_claim`` has one row per thing one member at a time may drive:
``agent`` (the single-agent lock), ``feed`` (reading the hub's feed into
the outbox) and ``spoke:<name>`` (a spoke's checkpoint, state and
writes). ``generation`` grows by one at every takeover and never goes
down (a release keeps it), so it fences: every write that moves a
checkpoint or a state checks, in its own transaction, that the writer
still holds the generation it claimed (:mod:`keystone_syncext.agent.
claims`). ``expires_at`` is the holder's lease, renewed while it lives.

Revision ID: a007
Revises: a006
"""

from alembic import op
import sqlalchemy as sa

revision = 'a007'
down_revision = 'a006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'agent_claim',
        sa.Column('name', sa.String(255), primary_key=True),
        sa.Column('member', sa.String(255)),
        sa.Column('generation', sa.Integer, nullable=False),
        sa.Column('expires_at', sa.DateTime),
        sa.Column('host', sa.String(255)),
        sa.Column('pid', sa.Integer),
        sa.Column('since', sa.DateTime),
    )


def downgrade():
    op.drop_table('agent_claim')
