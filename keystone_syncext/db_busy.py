"""Which database errors mean "busy now, retry", and their 503.

A locked SQLite database, a deadlock or lock wait timeout (oslo.db's
``DBDeadlock``) and a lost connection (``DBConnectionError``) roll the
transaction back: nothing was applied, and the same request may be sent
again. The /v3/sync routes (``keystone_syncext.api.sync``) and the token
validation in front of them (``keystone_syncext.wsgi.auth_busy``) answer
those with 503 and ``Retry-After`` instead of 500.
"""

from oslo_db import exception as db_exc
import sqlalchemy as sa

from keystone_syncext.resources import base

# What may be raised by a busy database, before or after oslo.db wraps it.
ERRORS = (db_exc.DBError, sa.exc.OperationalError)


def database_busy(exc) -> base.Unavailable | None:
    """The 503 for a database that cannot take the request now, or None
    for any other error. The message never carries the statement or its
    parameters (they may hold password hashes)."""
    if isinstance(exc, db_exc.DBConnectionError):
        return base.Unavailable('the database is unreachable; nothing was '
                                'applied, retry later', retry_after=5)
    if isinstance(exc, db_exc.DBDeadlock):
        return base.Unavailable('the database reported a deadlock; '
                                'nothing was applied, retry')
    inner = getattr(exc, 'inner_exception', exc)
    if isinstance(exc, ERRORS) and \
            'database is locked' in str(getattr(inner, 'orig', inner)):
        return base.Unavailable('the database is locked by another writer; '
                                'nothing was applied, retry')
    return None
