"""Run keystone_syncext's alembic tree against a Keystone database.

Plain functions taking an engine first, as alembic's own ``command``
module does; the command line is a thin layer over them.
"""

import os

from alembic import command as alembic_command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
from alembic import script as alembic_script
import sqlalchemy as sa

from keystone_syncext.capture import install
from keystone_syncext.db import tables
from keystone_syncext.feed import changes

VERSION_TABLE = 'sync_alembic_version'


def script_location() -> str:
    """Where the alembic tree is: the ``migrations`` package beside this
    module, in a checkout and once installed alike (it ships inside the
    package, as the agent's own tree does)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'migrations')


def _config(connection=None) -> alembic_config.Config:
    cfg = alembic_config.Config()
    cfg.set_main_option('script_location', script_location())
    if connection is not None:
        cfg.attributes['connection'] = connection
    return cfg


def head() -> str:
    """The newest revision this code knows."""
    script = alembic_script.ScriptDirectory.from_config(_config())
    return script.get_current_head()


def current(engine: sa.engine.Engine) -> str | None:
    """The revision the database is at, or None if never migrated."""
    with engine.connect() as conn:
        ctx = alembic_migration.MigrationContext.configure(
            conn, opts={'version_table': VERSION_TABLE})
        return ctx.get_current_revision()


def upgrade(engine: sa.engine.Engine, revision: str = 'head') -> dict:
    """Upgrade to ``revision``; at head, also put back missing capture.

    Returns what had to be put back (``{'columns': [...], 'triggers':
    [...]}``), which is empty unless something, such as a Keystone upgrade
    that rebuilt a table, removed it. Then the log has a gap (what was
    written meanwhile went unrecorded), so the history id is renewed once
    capture is whole again: every reader's cursor is refused and readers
    reconcile (see keystone_syncext.feed.cursors).
    """
    with engine.begin() as conn:
        install.require_keystone_schema(conn)
        alembic_command.upgrade(_config(conn), revision)
    if current(engine) != head():
        return {'columns': [], 'triggers': []}
    with engine.begin() as conn:
        repaired = install.ensure(conn)
        if repaired['columns'] or repaired['triggers']:
            changes.renew_history(conn)
            # The stored digest hashes were kept current from the log,
            # which missed changes: the next digest rebuilds them.
            conn.execute(tables.digest_state.delete())
        return repaired


def downgrade(engine: sa.engine.Engine, revision: str) -> None:
    """Downgrade to ``revision`` ('base' removes everything we added)."""
    with engine.begin() as conn:
        alembic_command.downgrade(_config(conn), revision)
        if revision == 'base':
            # Leave nothing of ours behind, not even the version table.
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS {VERSION_TABLE}')
