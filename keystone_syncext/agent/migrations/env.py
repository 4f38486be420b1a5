"""Alembic environment of the agent's state database.

The agent's revisions use their own version table
(``keystone_sync_alembic_version``), so a state database can share a
schema with anything else, and the caller hands us its connection.
"""

from alembic import context

from keystone_syncext.agent import state

config = context.config


def run_migrations_online():
    connection = config.attributes['connection']
    context.configure(connection=connection,
                      target_metadata=state.metadata,
                      version_table=state.VERSION_TABLE,
                      transactional_ddl=connection.dialect.name != 'mysql')
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
