"""keystone_syncext's alembic tree (see README.rst); not imported
by the product, alembic loads it by path."""
