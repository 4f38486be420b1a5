"""A history id for the change log, carried in every feed cursor.

Revision ID: 0004_history_id
Revises: 0003_digest_hashes
Create Date: 2026-12-06

A new ``sync_counter`` row holding a random id (see
keystone_syncext.feed.cursors): cursors made before it carry none and are
answered 410 once, so readers reconcile. A downgrade removes the row, so
the next upgrade starts a new history: capture may have been removed
in between, and what was written meanwhile is not in the log.
"""

from alembic import op

from keystone_syncext.db import tables
from keystone_syncext.feed import changes

revision = '0004_history_id'
down_revision = '0003_digest_hashes'
branch_labels = None
depends_on = None


def upgrade():
    op.bulk_insert(tables.counter, [
        {'name': tables.HISTORY, 'value': changes.new_history_id()},
    ])


def downgrade():
    counter = tables.counter
    op.execute(counter.delete().where(counter.c.name == tables.HISTORY))
