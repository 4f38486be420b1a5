"""Conflict records without secrets' hashes, and kept for a while only.

``agent_key`` holds the random key of the keyed fingerprints that replace
the hashes of secrets (password hashes, application credential secret
hashes) in the versions ``agent_conflict`` keeps
(:mod:`keystone_syncext.agent.secret_fields`); the rows already there are
fingerprinted here. An index on ``detected_at`` serves the pruning of
records older than ``conflict_retention_days``.

The downgrade drops the key and the index; the hashes replaced are not
brought back (they were never meant to be kept).

Revision ID: a005
Revises: a004
"""

import secrets

from alembic import op
import sqlalchemy as sa

from keystone_syncext.agent import secret_fields

revision = 'a005'
down_revision = 'a004'
branch_labels = None
depends_on = None

FINGERPRINT_KEY = 'conflict_fingerprint'


def upgrade():
    key_table = op.create_table(
        'agent_key',
        sa.Column('name', sa.String(64), primary_key=True),
        sa.Column('value', sa.String(128), nullable=False),
    )
    key = secrets.token_hex(32)
    op.bulk_insert(key_table, [{'name': FINGERPRINT_KEY, 'value': key}])
    op.create_index('ix_agent_conflict_detected_at', 'agent_conflict',
                    ['detected_at'])
    conn = op.get_bind()
    conflict = sa.table('agent_conflict', sa.column('id'),
                        sa.column('type'), sa.column('hub_version'),
                        sa.column('spoke_version'))
    rows = conn.execute(sa.select(conflict).where(
        conflict.c.type.in_(list(secret_fields.TYPES)))).all()
    for r in rows:
        conn.execute(conflict.update().where(conflict.c.id == r.id).values(
            hub_version=secret_fields.fingerprinted_json(
                bytes.fromhex(key), r.type, r.hub_version),
            spoke_version=secret_fields.fingerprinted_json(
                bytes.fromhex(key), r.type, r.spoke_version)))


def downgrade():
    op.drop_index('ix_agent_conflict_detected_at',
                  table_name='agent_conflict')
    op.drop_table('agent_key')
