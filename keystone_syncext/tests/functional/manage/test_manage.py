"""``keystone-syncext-manage``, run as operators run it: a process reading
a keystone.conf, on every backend.

One Keystone database per backend for the whole module (made by
``keystone-manage db_sync``, or copied for SQLite). Each test first brings
it to our head (in-process, which is quicker than a command), so the tests
do not depend on their order.
"""

import dataclasses
import datetime
import os
import shutil
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from keystone_syncext.capture import install
from keystone_syncext.db import migration
from keystone_syncext.db import tables
from keystone_syncext.feed import changes

BIN = os.path.dirname(sys.executable)
MANAGE = os.path.join(BIN, 'keystone-syncext-manage')
# A Keystone SQLite database fresh from db_sync, copied instead of made
# again (it is never modified); made with keystone-manage when absent.
KEYSTONE_SQLITE = os.environ.get('KSSYNC_KEYSTONE_SQLITE',
                                 '/tmp/ks30/keystone.db')
HEAD = '0006_fence'
TRIGGER = 'sync_project_ins_v1'


@dataclasses.dataclass
class Database:
    conf: str
    engine: sa.engine.Engine
    keystone_columns: dict  # Keystone's columns before we touched it


def write_conf(directory, url) -> str:
    path = os.path.join(directory, 'keystone.conf')
    with open(path, 'w') as f:
        f.write(f'[database]\nconnection = {url}\n\n[sync]\nsite_id = test\n')
    return path


def keystone_columns(engine) -> dict:
    """Keystone's tables (never ours) -> their columns."""
    inspector = sa.inspect(engine)
    return {
        table: sorted((c['name'], str(c['type']), c['nullable'])
                      for c in inspector.get_columns(table))
        for table in inspector.get_table_names()
        if not table.startswith('sync_')}


@pytest.fixture(scope='module')
def make_database(backend, tmp_path_factory):
    """Factory for databases of this module's backend, dropped at the end;
    ``keystone=True`` gives one with Keystone's schema."""
    made = []

    def make(keystone=True) -> Database:
        dbname = f'sx_manage_{uuid.uuid4().hex[:10]}'
        url = backend.create(dbname)
        conf = write_conf(str(tmp_path_factory.mktemp(dbname)), url)
        if keystone and url.startswith('sqlite') and os.path.exists(
                KEYSTONE_SQLITE):
            shutil.copyfile(KEYSTONE_SQLITE, url[len('sqlite:///'):])
        elif keystone:
            subprocess.run([os.path.join(BIN, 'keystone-manage'),
                            '--config-file', conf, 'db_sync'],
                           check=True, capture_output=True, timeout=300)
        engine = sa.create_engine(url)
        made.append((dbname, engine))
        return Database(conf, engine, keystone_columns(engine))

    yield make
    for dbname, engine in made:
        engine.dispose()
        backend.drop(dbname)


@pytest.fixture(scope='module')
def keystone_db(make_database):
    return make_database()


def manage(db, *args) -> subprocess.CompletedProcess:
    return subprocess.run([MANAGE, '--config-file', db.conf, *args],
                          capture_output=True, text=True, timeout=300)


def at_head(db):
    """Bring the database to our head, capture complete."""
    migration.upgrade(db.engine)
    return db


def synced(db):
    """db_sync, which must succeed; returns its output."""
    proc = manage(db, 'db_sync')
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def check_text(stdout) -> str:
    """The check table's cells as one line of text (details wrap)."""
    text = ''
    for line in stdout.splitlines():
        if line.startswith('|'):
            cell = line.strip('| ')
            text += cell if text.endswith('-') else ' ' + cell
    return text


def missing_capture(db):
    with db.engine.connect() as conn:
        return install.missing_triggers(conn), install.missing_columns(conn)


def history_id(db):
    with db.engine.connect() as conn:
        return changes.history(conn)


def test_db_sync_is_idempotent(keystone_db):
    synced(keystone_db)
    history = history_id(keystone_db)
    assert history
    second = synced(keystone_db)
    assert 'Put back' not in second, 'nothing was missing'
    assert 'new feed history' not in second
    assert history_id(keystone_db) == history, 'nothing had a gap'
    assert f'Schema is at {HEAD}.' in second
    assert missing_capture(keystone_db) == ([], [])


def test_db_version_prints_the_revision(keystone_db):
    at_head(keystone_db)
    proc = manage(keystone_db, 'db_version')
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1] == HEAD


def test_check_passes_when_everything_is_in_place(keystone_db):
    at_head(keystone_db)
    proc = manage(keystone_db, 'check')
    assert proc.returncode == 0, proc.stdout
    assert 'Failure' not in proc.stdout and 'Warning' not in proc.stdout


def test_check_names_a_dropped_trigger_and_db_sync_puts_it_back(keystone_db):
    at_head(keystone_db)
    on = ' ON "project"' if keystone_db.engine.dialect.name == 'postgresql' \
        else ''
    with keystone_db.engine.begin() as conn:
        conn.exec_driver_sql(f'DROP TRIGGER {TRIGGER}{on}')
    history = history_id(keystone_db)

    proc = manage(keystone_db, 'check')
    assert proc.returncode == 2
    text = check_text(proc.stdout)
    assert TRIGGER in text
    assert 'keystone-syncext-manage db_sync' in text

    out = synced(keystone_db)
    assert f'Put back missing capture triggers: {TRIGGER}' in out
    assert missing_capture(keystone_db) == ([], [])
    # The log has a gap: a new history, so every reader reconciles.
    assert 'Started a new feed history' in out
    assert history_id(keystone_db) not in (None, history)
    assert manage(keystone_db, 'check').returncode == 0


def test_db_sync_repairs_a_table_rebuilt_by_a_keystone_upgrade(keystone_db):
    """A Keystone migration that rebuilds ``role`` loses our triggers and
    our timestamp column: check says so, db_sync puts both back, and the
    existing rows get a timestamp again."""
    at_head(keystone_db)
    gen = install.expected_triggers(keystone_db.engine.dialect.name)
    role_triggers = [t for t in gen if t.table == 'role']
    with keystone_db.engine.begin() as conn:
        for trig in role_triggers:
            for stmt in trig.drop:
                conn.exec_driver_sql(stmt)
        conn.exec_driver_sql('ALTER TABLE role DROP COLUMN updated_at')

    proc = manage(keystone_db, 'check')
    assert proc.returncode == 2
    assert 'role.updated_at' in check_text(proc.stdout)

    synced(keystone_db)
    assert missing_capture(keystone_db) == ([], [])
    with keystone_db.engine.connect() as conn:
        assert conn.exec_driver_sql(
            'SELECT count(*) FROM role WHERE updated_at IS NULL').scalar() == 0
    assert manage(keystone_db, 'check').returncode == 0


def test_check_fails_clearly_without_keystone_schema(make_database):
    empty = make_database(keystone=False)
    proc = manage(empty, 'check')
    assert proc.returncode == 2
    text = check_text(proc.stdout)
    assert "Keystone's schema is missing" in text
    assert 'run "keystone-manage db_sync"' in text


def test_db_sync_without_keystone_schema_is_a_one_line_error(make_database):
    empty = make_database(keystone=False)
    proc = manage(empty, 'db_sync')
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith('ERROR')]
    assert len(errors) == 1
    assert 'keystone-manage db_sync' in errors[0]
    assert migration.current(empty.engine) is None


def test_downgrade_to_base_and_back_restores_the_same_schema(keystone_db):
    at_head(keystone_db)
    before = keystone_columns(keystone_db.engine)

    proc = manage(keystone_db, 'db_downgrade', 'base')
    assert proc.returncode == 0, proc.stderr
    assert migration.current(keystone_db.engine) is None
    # Everything we added is gone, our version table included: Keystone's
    # tables are as Keystone made them.
    assert keystone_columns(keystone_db.engine) == keystone_db.keystone_columns
    names = sa.inspect(keystone_db.engine).get_table_names()
    assert [n for n in names if n.startswith('sync_')] == []

    synced(keystone_db)
    assert keystone_columns(keystone_db.engine) == before
    assert migration.current(keystone_db.engine) == HEAD
    assert missing_capture(keystone_db) == ([], [])


def test_purge_removes_what_is_past_retention(keystone_db):
    at_head(keystone_db)
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    long_ago = now - datetime.timedelta(days=40)  # past both defaults
    with keystone_db.engine.begin() as conn:
        conn.execute(tables.change.delete())
        conn.execute(tables.tombstone.delete())
        start = changes.stamp(conn)
        conn.execute(tables.change.insert(), [
            {'resource_type': 'role', 'resource_id': rid, 'op': 'update',
             'changed_at': at}
            for rid, at in (('a', long_ago), ('b', long_ago), ('c', now))])
        conn.execute(tables.tombstone.insert(), [
            {'resource_type': 'role', 'resource_id': 'a',
             'deleted_at': long_ago},
            {'resource_type': 'role', 'resource_id': 'c', 'deleted_at': now}])

    def left():
        with keystone_db.engine.connect() as conn:
            return (
                conn.execute(sa.select(tables.change.c.resource_id)
                             .order_by(tables.change.c.id)).scalars().all(),
                conn.execute(sa.select(
                    tables.tombstone.c.resource_id)).scalars().all(),
                changes.purged_through(conn))

    before = left()
    dry = manage(keystone_db, 'purge', '--dry-run')
    assert dry.returncode == 0, dry.stderr
    assert 'Would remove 2 change(s)' in dry.stdout
    assert 'and 1 tombstone(s)' in dry.stdout
    assert left() == before

    proc = manage(keystone_db, 'purge')
    assert proc.returncode == 0, proc.stderr
    assert 'Removed 2 change(s)' in proc.stdout
    assert f'position {start + 2}' in proc.stdout
    assert left() == (['c'], ['c'], start + 2)
