"""The extension's own tables (SQLAlchemy Core), as the migrations create them.

Keystone's tables are never mapped here: the extension reads and writes
them through Keystone's managers or the triggers, so a schema change in a
later Keystone release does not break this module.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext import compiler
from sqlalchemy.sql import expression

metadata = sa.MetaData()


class UtcNow(expression.FunctionElement):
    """The current UTC time with microseconds, usable as a column default.

    Defaults rather than trigger code: see keystone_syncext.capture.ddl on
    why trigger text must stay small.
    """

    type = sa.DateTime()
    inherit_cache = True


@compiler.compiles(UtcNow, 'sqlite')
def _utcnow_sqlite(element, compiler, **kw):
    return "(strftime('%Y-%m-%d %H:%M:%f','now')||'000')"


@compiler.compiles(UtcNow, 'mysql')
@compiler.compiles(UtcNow, 'mariadb')
def _utcnow_mysql(element, compiler, **kw):
    return '(UTC_TIMESTAMP(6))'


@compiler.compiles(UtcNow, 'postgresql')
def _utcnow_postgresql(element, compiler, **kw):
    # now(), not clock_timestamp(): stable, so ADD COLUMN needs no rewrite.
    return "(now() AT TIME ZONE 'UTC')"


# BIGINT everywhere, but SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
# Microsecond timestamps: MySQL's DATETIME drops fractions unless told.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql',
                                       'mariadb')

def _table(name, *items, **kw) -> sa.Table:
    """One of the extension's tables: InnoDB and utf8mb4 on MySQL."""
    return sa.Table(name, metadata, *items, mysql_engine='InnoDB',
                    mysql_charset='utf8mb4', **kw)


change = _table(
    'sync_change',
    # Capture order: assigned when the trigger runs, before commit.
    sa.Column('id', BigId, primary_key=True, autoincrement=True),
    # Feed order: assigned after commit by changes.stamp(), dense and
    # increasing in the order rows became visible.
    sa.Column('position', sa.BigInteger, nullable=True),
    sa.Column('resource_type', sa.String(32), nullable=False),
    sa.Column('resource_id', sa.String(255), nullable=False),
    sa.Column('op', sa.String(8), nullable=False),
    sa.Column('changed_at', Timestamp, nullable=False,
              server_default=UtcNow()),
    # NULL: made at this site. Otherwise the site_id of the sync API write.
    sa.Column('origin', sa.String(64), nullable=True),
    sa.Index('ix_sync_change_position', 'position', unique=True),
    sa.Index('ix_sync_change_resource', 'resource_type', 'resource_id'),
    # Never reuse an id after a purge: tombstones point at change ids.
    sqlite_autoincrement=True,
)

tombstone = _table(
    'sync_tombstone',
    sa.Column('resource_type', sa.String(32), primary_key=True),
    sa.Column('resource_id', sa.String(255), primary_key=True),
    sa.Column('deleted_at', Timestamp, nullable=False),
    sa.Column('origin', sa.String(64), nullable=True),
    sa.Column('change_id', sa.BigInteger, nullable=True),
    sa.Index('ix_sync_tombstone_deleted_at', 'deleted_at'),
)

write_context = _table(
    'sync_write_context',
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=False),
    sa.Column('origin', sa.String(64), nullable=False),
)

counter = _table(
    'sync_counter',
    sa.Column('name', sa.String(32), primary_key=True),
    sa.Column('value', sa.BigInteger, nullable=False),
)

added_column = _table(
    'sync_added_column',
    sa.Column('table_name', sa.String(64), primary_key=True),
    sa.Column('column_name', sa.String(64), primary_key=True),
)

# An id compared and ordered by its bytes (as the digest routes order ids),
# so a prefix is an index range on every backend.
BinaryId = (sa.String(255)
            .with_variant(mysql.VARCHAR(255, collation='utf8mb4_bin'),
                          'mysql', 'mariadb')
            .with_variant(postgresql.VARCHAR(255, collation='C'),
                          'postgresql'))

# The content hash of every resource at this site, so a digest reads
# (id, hash) pairs instead of every representation. Brought up to date
# from the change log before a digest is answered: see
# keystone_syncext.digests.store.
digest_hash = _table(
    'sync_digest_hash',
    sa.Column('resource_type', sa.String(32), primary_key=True),
    sa.Column('resource_id', BinaryId, primary_key=True),
    sa.Column('hash', sa.String(64), nullable=False),
)

# Per type: the feed position the stored hashes are current through, what
# computed them (a new release may represent a type differently) and when
# they were last rebuilt from Keystone's tables.
digest_state = _table(
    'sync_digest_state',
    sa.Column('resource_type', sa.String(32), primary_key=True),
    sa.Column('position', sa.BigInteger, nullable=False),
    sa.Column('version', sa.String(64), nullable=False),
    sa.Column('built_at', Timestamp, nullable=False,
              server_default=UtcNow()),
)

# Per agent group (one state database of the agent): the highest claim
# generation a batch carried (see keystone_syncext.writes.fence).
fence = _table(
    'sync_fence',
    sa.Column('name', sa.String(64), primary_key=True),
    sa.Column('generation', sa.BigInteger, nullable=False),
    sa.Column('updated_at', Timestamp, nullable=False,
              server_default=UtcNow()),
)

# Counter rows.
HEAD = 'position'              # last position handed out by stamp()
PURGED_THROUGH = 'purged_through'  # positions <= this are gone
HISTORY = 'history'            # this log's history id (see feed/history.py)
