"""The agents' fencing record: the highest claim generation per agent group.

Revision ID: 0006_fence
Revises: 0005_capture_revocation_events
Create Date: 2026-12-07

A batch carrying ``OpenStack-Sync-Fence: <group>:<generation>`` is refused
when an agent of that group already wrote here under a higher generation
(keystone_syncext.writes.fence): an agent that lost its claim on this site
and wakes up mid-batch cannot overwrite the newer owner's work.
"""

from alembic import op

from keystone_syncext.db import tables

revision = '0006_fence'
down_revision = '0005_capture_revocation_events'
branch_labels = None
depends_on = None


def upgrade():
    tables.fence.create(op.get_bind(), checkfirst=True)


def downgrade():
    tables.fence.drop(op.get_bind(), checkfirst=True)
