"""Install, verify and remove change capture on a live database.

Called by the migrations (first install, downgrade) and by ``db_sync`` after
every upgrade, because a Keystone upgrade may rebuild a table and so drop
our triggers and columns. Every function takes a SQLAlchemy ``Connection``
and works inside the caller's transaction where the database allows it.
"""

import datetime

import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.capture import ddl
from keystone_syncext.capture import spec
from keystone_syncext.db import tables

# MySQL/MariaDB error 1419: triggers by a non-SUPER user with binary logging.
_MYSQL_NEED_SUPER = 1419

BINLOG_HELP = (
    'Creating the change-capture triggers failed because binary logging is '
    'enabled on this MySQL/MariaDB server and the database user lacks the '
    'SUPER privilege (MySQL error 1419). Either set the global variable '
    'log_bin_trust_function_creators=1 (for example in my.cnf, or '
    '"SET GLOBAL log_bin_trust_function_creators = 1;" as an administrator), '
    'or run keystone-syncext-manage db_sync as a user with the SUPER (MySQL '
    '8: SET_USER_ID/SYSTEM_VARIABLES_ADMIN) privilege, then run it again.'
)


def captured_tables():
    """Names of every Keystone table that capture watches."""
    return [r.table for r in spec.RESOURCES] + [c.table for c in spec.CHILDREN]


def expected_triggers(dialect_name: str) -> list[ddl.Trigger]:
    return ddl.for_dialect(dialect_name).triggers()


def _columns(conn, table):
    return {c['name'] for c in sa.inspect(conn).get_columns(table)}


def require_keystone_schema(conn) -> None:
    """Raise ``CaptureError`` unless every table capture watches exists."""
    existing = set(sa.inspect(conn).get_table_names())
    missing = [t for t in captured_tables() if t not in existing]
    if missing:
        raise exception.CaptureError(
            'Keystone tables are missing (%s): run "keystone-manage db_sync" '
            'before "keystone-syncext-manage db_sync".' % ', '.join(missing))


def missing_columns(conn) -> list[tuple[str, str]]:
    """(table, column) timestamp columns that should exist and do not."""
    out = []
    for res in spec.RESOURCES:
        have = _columns(conn, res.table)
        out += [(res.table, c) for c in spec.TIMESTAMPS if c not in have]
    return out


def add_timestamp_columns(conn, now: datetime.datetime | None = None) -> None:
    """Add created_at/updated_at where missing and backfill existing rows.

    Columns Keystone already has (``user.created_at``) are left alone; the
    ones we add are recorded in ``sync_added_column`` so that a downgrade
    removes exactly those.
    """
    now = now or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    quote = ddl.for_dialect(conn.dialect.name).quote
    col_type = tables.Timestamp.compile(dialect=conn.dialect)
    default = ''
    if conn.dialect.name != 'sqlite':
        # SQLite cannot ADD COLUMN with a non-constant default; its
        # insert trigger fills the timestamps instead.
        default = ' DEFAULT ' + str(tables.UtcNow().compile(
            dialect=conn.dialect))
    for table, column in missing_columns(conn):
        conn.exec_driver_sql(
            f'ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} '
            f'{col_type} NULL{default}')
        recorded = conn.execute(sa.select(tables.added_column).where(
            tables.added_column.c.table_name == table,
            tables.added_column.c.column_name == column)).first()
        if recorded is None:  # else a Keystone upgrade dropped it: re-add
            conn.execute(tables.added_column.insert().values(
                table_name=table, column_name=column))
    # Backfill only what we added: Keystone's own columns (user.created_at,
    # NULL for users older than Pike) are Keystone's data, and a downgrade
    # could not tell our invented values from real ones.
    ours = conn.execute(sa.select(tables.added_column)).all()
    for table, column in ours:
        t = sa.table(table, sa.column('created_at'), sa.column(column))
        value = now if column == 'created_at' else sa.func.coalesce(
            t.c.created_at, now)
        conn.execute(t.update().where(t.c[column].is_(None))
                     .values({column: value}))


def drop_timestamp_columns(conn) -> None:
    """Remove the columns recorded in ``sync_added_column``."""
    quote = ddl.for_dialect(conn.dialect.name).quote
    rows = conn.execute(sa.select(tables.added_column)).all()
    for table, column in rows:
        if column in _columns(conn, table):
            conn.exec_driver_sql(
                f'ALTER TABLE {quote(table)} DROP COLUMN {quote(column)}')
    conn.execute(tables.added_column.delete())


def existing_trigger_names(conn) -> set[str]:
    gen = ddl.for_dialect(conn.dialect.name)
    return {row[0] for row in conn.exec_driver_sql(
        gen.existing_triggers_sql())}


def missing_triggers(conn) -> list[str]:
    """Names of the capture triggers that should exist and do not."""
    have = existing_trigger_names(conn)
    return [t.name for t in expected_triggers(conn.dialect.name)
            if t.name not in have]


def missing(conn) -> tuple[list[str], list[str]]:
    """What capture lacks: ``(trigger names, 'table.column' names)``.

    One check for ``keystone-syncext-manage check``, ``/v3/sync/status``
    and the feed, which refuses to serve while anything is missing.
    """
    return (missing_triggers(conn),
            [f'{t}.{c}' for t, c in missing_columns(conn)])


def install_triggers(conn) -> list[str]:
    """Create every capture trigger that does not exist yet.

    Existing triggers are kept rather than re-created: on MySQL, DDL
    commits at once, and dropping a working trigger to re-create it would
    open a window in which Keystone writes go unrecorded.
    Returns the names created.
    """
    have = existing_trigger_names(conn)
    created = []
    for trig in expected_triggers(conn.dialect.name):
        if trig.name in have:
            continue
        for stmt in trig.create:
            _execute_ddl(conn, stmt)
        created.append(trig.name)
    return created


def drop_triggers(conn) -> None:
    for trig in expected_triggers(conn.dialect.name):
        for stmt in trig.drop:
            conn.exec_driver_sql(stmt)


def _execute_ddl(conn, stmt):
    try:
        conn.exec_driver_sql(stmt)
    except sa.exc.DBAPIError as exc:
        if _mysql_errno(exc) == _MYSQL_NEED_SUPER:
            raise exception.CaptureError(BINLOG_HELP) from None
        raise


def _mysql_errno(exc):
    args = getattr(exc.orig, 'args', ())
    return args[0] if args and isinstance(args[0], int) else None


def ensure(conn) -> dict[str, list]:
    """Put back whatever capture is missing (columns, then triggers)."""
    require_keystone_schema(conn)
    columns = missing_columns(conn)
    if columns:
        add_timestamp_columns(conn)
    return {'columns': columns, 'triggers': install_triggers(conn)}
