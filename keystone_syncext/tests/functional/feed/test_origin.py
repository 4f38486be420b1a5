"""Writes applied for another site carry its origin; nothing else does."""

import os
import subprocess
import sys
import threading
import uuid

import pytest
import sqlalchemy as sa

from keystone_syncext.db import migration
from keystone_syncext.db import tables
from keystone_syncext.writes import origin

KEYSTONE_MANAGE = os.path.join(os.path.dirname(sys.executable),
                               'keystone-manage')


@pytest.fixture(scope='module')
def engine(backend, tmp_path_factory):
    dbname = f'sx_origin_{uuid.uuid4().hex[:10]}'
    url = backend.create(dbname)
    conf = tmp_path_factory.mktemp(dbname) / 'keystone.conf'
    conf.write_text(f'[database]\nconnection = {url}\n')
    subprocess.run([KEYSTONE_MANAGE, '--config-file', str(conf), 'db_sync'],
                   check=True, capture_output=True, timeout=300)
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    migration.upgrade(eng)
    yield eng
    eng.dispose()
    backend.drop(dbname)


def _role(conn, rid):
    conn.exec_driver_sql(
        "INSERT INTO role (id, name, domain_id, extra) VALUES "
        f"('{rid}', '{rid}', '<<null>>', '{{}}')")


def _origins(engine, rid):
    c, t = tables.change.c, tables.tombstone.c
    with engine.connect() as conn:
        changes = conn.execute(sa.select(c.op, c.origin).where(
            c.resource_id == rid).order_by(c.id)).all()
        tomb = conn.execute(sa.select(t.origin).where(
            t.resource_id == rid)).all()
        context = conn.execute(sa.select(sa.func.count()).select_from(
            tables.write_context)).scalar()
    return [tuple(r) for r in changes], [r[0] for r in tomb], context


def test_changes_inside_carry_the_origin_outside_do_not(engine):
    synced, local = uuid.uuid4().hex, uuid.uuid4().hex
    with engine.begin() as conn:
        with origin.written_by(conn, 'hub'):
            _role(conn, synced)
            conn.exec_driver_sql(
                f"UPDATE role SET description = 'x' WHERE id = '{synced}'")
        _role(conn, local)  # same transaction, after the block
    with engine.begin() as conn:
        with origin.written_by(conn, 'hub'):
            conn.exec_driver_sql(f"DELETE FROM role WHERE id = '{synced}'")

    changes, tomb, context = _origins(engine, synced)
    assert changes == [('create', 'hub'), ('update', 'hub'),
                       ('delete', 'hub')]
    assert tomb == ['hub']
    assert context == 0  # never committed
    assert _origins(engine, local)[0] == [('create', None)]


def test_rollback_leaves_no_change_and_no_context(engine):
    rid = uuid.uuid4().hex
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            with origin.written_by(conn, 'hub'):
                _role(conn, rid)
                raise RuntimeError('the sync API rejected the batch')
    assert _origins(engine, rid) == ([], [], 0)


@pytest.mark.concurrent_writers
def test_a_concurrent_local_write_is_not_attributed(engine):
    """While a sync write is open, another transaction's change is local."""
    synced, local = uuid.uuid4().hex, uuid.uuid4().hex
    inside, done = threading.Event(), threading.Event()

    def sync_writer():
        with engine.begin() as conn:
            with origin.written_by(conn, 'spoke-1'):
                _role(conn, synced)
                inside.set()
                assert done.wait(30)

    thread = threading.Thread(target=sync_writer)
    thread.start()
    try:
        assert inside.wait(30)
        with engine.begin() as conn:
            _role(conn, local)
    finally:
        done.set()
        thread.join(30)
    assert _origins(engine, synced)[0] == [('create', 'spoke-1')]
    assert _origins(engine, local)[0] == [('create', None)]


def test_an_empty_origin_is_refused(engine):
    with engine.begin() as conn:
        with pytest.raises(ValueError, match='site_id'):
            with origin.written_by(conn, ''):
                pass
