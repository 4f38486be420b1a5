"""Record which site a write came from, so the agent can avoid echoes.

The sync API wraps every write it applies on behalf of another site in
:func:`written_by`. Changes captured inside get that site as their origin
(and so do tombstones); changes made anywhere else keep NULL, "this site".
How, per database, is explained in ``keystone_syncext.capture.ddl``:

- PostgreSQL: one ``sync_write_context`` row, inserted first and deleted
  before the transaction ends, which the triggers read. It is never
  committed, so no other transaction ever sees it.
- MySQL/MariaDB: the session variable the triggers read, set for the block
  and cleared after it whatever happens (so a pooled connection never
  carries it into someone else's write).
- SQLite: one writer at a time, so after taking the write lock every change
  row above the highest id seen is this transaction's; they are stamped on
  the way out.

The caller owns the transaction: its commit publishes the writes and their
origin together, its rollback removes both.
"""

import contextlib

import sqlalchemy as sa

from keystone_syncext.capture import ddl
from keystone_syncext.db import tables

_CONTEXT_ID = 1
# Where ``transaction.writing`` keeps the origin of a write transaction in its
# session, for the types that judge a write by who sent it.
SESSION_KEY = 'keystone_syncext.origin'


def of_session(session) -> str | None:
    """The origin the write in ``session`` was sent with (None: this
    site's own)."""
    return session.info.get(SESSION_KEY)


@contextlib.contextmanager
def written_by(conn, origin: str):
    """Attribute the changes captured inside the block to site ``origin``.

    ``conn`` is a Connection inside a transaction, and every write of the
    block must go through that same transaction.
    """
    if not origin:
        raise ValueError('origin must be a site_id')
    ctx = tables.write_context
    if conn.dialect.name == 'sqlite':
        # The insert takes SQLite's write lock, so no other writer can add
        # change rows until this transaction ends; then read the top id.
        conn.execute(ctx.insert().values(id=_CONTEXT_ID, origin=origin))
        conn.execute(ctx.delete())
        top = conn.execute(sa.select(sa.func.max(tables.change.c.id))
                           ).scalar() or 0
        yield
        _stamp_sqlite(conn, top, origin)
        return
    if conn.dialect.name == 'mysql':
        var = ddl.MYSQL_ORIGIN_VAR
        conn.execute(sa.text(f'SET {var} = :origin'), {'origin': origin})
        try:
            yield
        finally:
            conn.exec_driver_sql(f'SET {var} = NULL')
        return
    conn.execute(ctx.insert().values(id=_CONTEXT_ID, origin=origin))
    yield
    # On an exception the caller rolls back, which removes the row too (and
    # a failed PostgreSQL transaction would refuse this statement anyway).
    conn.execute(ctx.delete())


def _stamp_sqlite(conn, top: int, origin: str) -> None:
    change, tomb = tables.change, tables.tombstone
    conn.execute(change.update().where(change.c.id > top)
                 .values(origin=origin))
    conn.execute(tomb.update().where(tomb.c.change_id > top)
                 .values(origin=origin))
