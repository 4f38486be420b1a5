"""Database errors as ``/v3/sync`` answers them.

The checks before a write (schemas, id forms, Keystone's rules, the id
held by another type) refuse bad input with a clear 4xx. What they did not
foresee still reaches the database (a writer that committed meanwhile, a
collation that folds case, a value a database refuses that another
takes), which oslo.db raises as ``DBDuplicateEntry``, ``DBReferenceError``,
``DBDataError``... Those are the input's fault, so they are the item's
409 or 400, never a 500; a database that cannot take the request now
(locked, deadlocked, unreachable) is the whole request's 503, on every
``/v3/sync`` route (``keystone_syncext.api.sync``) and in the token
validation in front of them (``keystone_syncext.wsgi.auth_busy``).

No message carries the statement, its parameters or the refused value:
they may hold a password or secret hash.
"""

import contextlib
import logging

from oslo_db import exception as db_exc
import sqlalchemy as sa

from keystone_syncext import exception

LOG = logging.getLogger(__name__)

# What a write of bad input may raise (oslo.db wraps most of SQLAlchemy's).
DB_ERRORS = (db_exc.DBError, db_exc.DBInvalidUnicodeParameter,
             sa.exc.SQLAlchemyError)
# What a busy database may raise, before or after oslo.db wraps it.
BUSY_ERRORS = (db_exc.DBError, sa.exc.OperationalError)


def database_busy(exc) -> exception.Unavailable | None:
    """The 503 for a database that cannot take the request now, or None
    for any other error. The transaction was rolled back, so the same
    request may simply be sent again."""
    if isinstance(exc, db_exc.DBConnectionError):
        return exception.Unavailable(
            'the database is unreachable; nothing was applied, retry later',
            retry_after=5)
    if isinstance(exc, db_exc.DBDeadlock):
        return exception.Unavailable('the database reported a deadlock; '
                                     'nothing was applied, retry')
    inner = getattr(exc, 'inner_exception', exc)
    if isinstance(exc, BUSY_ERRORS) and \
            'database is locked' in str(getattr(inner, 'orig', inner)):
        return exception.Unavailable(
            'the database is locked by another writer; nothing was applied, '
            'retry')
    return None


def _inner(exc):
    return getattr(exc, 'inner_exception', None) or exc


def refusal(exc, what: str) -> exception.SyncError | None:
    """The 409 or 400 for a database error a write of ``what`` (``type
    id``) ran into, or None when it is not the input's fault (a busy
    database, anything else): then the error stands."""
    if database_busy(exc) is not None:
        return None
    if isinstance(exc, db_exc.DBDuplicateEntry):
        columns = ', '.join(exc.columns or ())
        return exception.DatabaseConflict(
            f'{what}: this site already holds a row with the same '
            + (columns or 'key') + ' (nothing of this item was applied)')
    if isinstance(exc, db_exc.DBReferenceError):
        return exception.DatabaseConflict(
            f'{what}: refers to a row of {exc.key_table or "another table"}'
            f' ({exc.key or "a reference"}) that does not exist at this '
            'site (nothing of this item was applied)')
    inner = _inner(exc)
    if isinstance(exc, (db_exc.DBDataError, db_exc.DBInvalidUnicodeParameter,
                        sa.exc.DataError)) or \
            isinstance(inner, sa.exc.DataError):
        return exception.BadRequest(
            f'{what}: a value does not fit this site\'s database '
            f'({type(exc).__name__}; nothing of this item was applied)')
    if isinstance(exc, (db_exc.DBConstraintError, sa.exc.IntegrityError)) \
            or isinstance(inner, sa.exc.IntegrityError):
        return exception.DatabaseConflict(
            f'{what}: the write conflicts with data at this site '
            f'({type(exc).__name__}; nothing of this item was applied)')
    return None


@contextlib.contextmanager
def refused_as_4xx(what: str):
    """Raise :func:`refusal`'s answer for a database error inside, with
    the error's class (never its text) logged."""
    try:
        yield
    except DB_ERRORS as e:
        answer = refusal(e, what)
        if answer is None:
            raise
        LOG.info('%s refused by the database (%s)', what, type(e).__name__)
        raise answer from None
