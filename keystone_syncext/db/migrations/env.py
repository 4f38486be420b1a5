"""Alembic environment for keystone_syncext's own migrations.

Our revisions live in their own version table (``sync_alembic_version``)
and never touch Keystone's ``alembic_version``. When the caller hands us a
connection (``config.attributes['connection']``) we reuse it, so in-memory
SQLite tests and callers inside a transaction work.
"""

from alembic import context
import sqlalchemy as sa

from keystone_syncext.db import migration
from keystone_syncext.db import tables

config = context.config


def _run(connection):
    context.configure(
        connection=connection,
        target_metadata=tables.metadata,
        version_table=migration.VERSION_TABLE,
        transactional_ddl=connection.dialect.name != 'mysql',
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get('connection')
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(config.get_main_option('sqlalchemy.url'),
                              poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


if context.is_offline_mode():
    raise SystemExit('keystone_syncext migrations need a live database: '
                     'triggers depend on what Keystone created there.')
run_migrations_online()
