"""A database that cannot take a sync request now (SQLite locked by
another writer, a deadlock, the server unreachable) is a 503 with
Retry-After and a message without the statement, not a 500."""

import flask
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import engines
import pytest
import sqlalchemy as sa

from keystone_syncext.api import sync

SECRET = '$6$rounds=1000$secret-hash-in-a-statement'


@pytest.fixture
def locked(tmp_path):
    """The error an oslo.db engine raises when SQLite is locked: a second
    writer while a first holds the write lock (no busy wait)."""
    url = f'sqlite:///{tmp_path}/db.sqlite'
    holder = engines.create_engine(url)
    writer = engines.create_engine(url)
    with holder.connect() as conn:
        conn.exec_driver_sql('CREATE TABLE t (v TEXT)')
        conn.commit()
    with holder.connect() as first, writer.connect() as second:
        second.exec_driver_sql('PRAGMA busy_timeout = 0')
        # The first writer's open transaction holds SQLite's write lock.
        first.exec_driver_sql('INSERT INTO t VALUES (1)')
        try:
            second.execute(sa.text('INSERT INTO t VALUES (:v)'),
                           {'v': SECRET})
        except Exception as e:  # noqa: BLE001 - the error is the fixture
            error = e
        else:
            pytest.fail('the second writer was not refused')
        first.rollback()
    holder.dispose()
    writer.dispose()
    return error


def _call(exc):
    app = flask.Flask(__name__)

    @sync._guarded
    def handler():
        raise exc

    with app.test_request_context('/v3/sync/batch', method='POST'):
        return handler()


@pytest.mark.parametrize('wrapped', [False, True])
def test_locked_sqlite_is_503_with_retry_after_and_no_statement(locked,
                                                                wrapped):
    # SQLAlchemy's error as the driver raised it, or oslo.db's wrapper
    # around it (as Keystone's enginefacade raises it where no filter of
    # oslo.db knows the message).
    assert 'database is locked' in str(locked)
    assert SECRET in repr(locked.params)
    exc = db_exc.DBError(locked) if wrapped else locked
    body, code, headers = _call(exc)
    assert code == 503
    assert headers == {'Retry-After': '1'}
    error = body['error']
    assert error['code'] == 503
    assert error['title'] == 'Service Unavailable'
    assert 'locked' in error['message'] and 'retry' in error['message']
    assert 'INSERT' not in error['message']
    assert SECRET not in repr(body)


@pytest.mark.parametrize('exc, retry_after, words', [
    (db_exc.DBDeadlock(), '1', 'deadlock'),
    (db_exc.DBConnectionError(), '5', 'unreachable'),
])
def test_deadlock_and_unreachable_are_503(exc, retry_after, words):
    body, code, headers = _call(exc)
    assert (code, headers['Retry-After']) == (503, retry_after)
    assert words in body['error']['message']


def test_other_database_errors_still_raise():
    with pytest.raises(db_exc.DBError):
        _call(db_exc.DBError(sa.exc.OperationalError(
            'SELECT 1', {}, Exception('no such table: t'))))
