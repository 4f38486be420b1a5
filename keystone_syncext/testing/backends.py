"""Databases that test Keystones run on: SQLite files, MariaDB, PostgreSQL.

Each backend hands out a fresh, empty database per name and removes it
again; the servers are the ones running on this machine (127.0.0.1 only).
"""

import contextlib
import os
import re
import sqlite3
import time

import sqlalchemy as sa

MYSQL_SERVER = os.environ.get('KSSYNC_MYSQL_URL',
                              'mysql+pymysql://root@127.0.0.1:3306')
PG_SERVER = os.environ.get('KSSYNC_PG_URL',
                           'postgresql+psycopg2://postgres@127.0.0.1:5432')

_NAME = re.compile(r'^[a-z][a-z0-9_]{0,62}$')


class Backend:
    name = ''

    def url(self, dbname: str) -> str:
        raise NotImplementedError

    def create(self, dbname: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        raise NotImplementedError

    def drop(self, dbname: str) -> None:
        raise NotImplementedError

    def clone(self, template: str, dbname: str) -> str:
        """Create ``dbname`` as a copy of database ``template`` (schema,
        rows and, where the database has them, triggers and functions);
        return its URL. Nothing may be writing to the template."""
        raise NotImplementedError


class SQLite(Backend):
    name = 'sqlite'

    def __init__(self, directory: str):
        self.directory = directory

    def _path(self, dbname):
        return os.path.join(self.directory, f'{dbname}.db')

    def url(self, dbname):
        return f'sqlite:///{self._path(dbname)}'

    def create(self, dbname):
        """An empty database in WAL mode (kept in the file): several
        uWSGI workers share it, and with WAL a reader never blocks a
        writer's commit, where the default rollback journal makes a commit
        wait for (and, past the busy timeout, fail on) any open read."""
        self.drop(dbname)
        with contextlib.closing(sqlite3.connect(self._path(dbname))) as db:
            db.execute('PRAGMA journal_mode=WAL')
        return self.url(dbname)

    def clone(self, template, dbname):
        self.create(dbname)
        # The backup API copies the pages a reader sees (WAL included);
        # the copy is in WAL mode as its template is (create()).
        src = sqlite3.connect(self._path(template))
        dst = sqlite3.connect(self._path(dbname))
        with contextlib.closing(src), contextlib.closing(dst):
            src.backup(dst)
        return self.url(dbname)

    def drop(self, dbname):
        for suffix in ('', '-journal', '-wal', '-shm'):
            path = self._path(dbname) + suffix
            if os.path.exists(path):
                os.unlink(path)


class _Server(Backend):
    server_url = ''
    admin_db = ''
    create_sql = 'CREATE DATABASE {name}'
    drop_sql = 'DROP DATABASE IF EXISTS {name}'

    def _admin(self):
        return sa.create_engine(f'{self.server_url}/{self.admin_db}',
                                isolation_level='AUTOCOMMIT',
                                poolclass=sa.pool.NullPool)

    def url(self, dbname):
        return f'{self.server_url}/{dbname}'

    def _run(self, sql):
        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()

    def create(self, dbname):
        self._check_name(dbname)
        self.drop(dbname)
        self._run(self.create_sql.format(name=dbname))
        return self.url(dbname)

    def drop(self, dbname):
        self._run(self.drop_sql.format(name=dbname))

    def _check_name(self, dbname):
        if not _NAME.match(dbname):
            raise ValueError(f'bad database name {dbname!r}')

    def available(self) -> str | None:
        """None when the server answers, else why not."""
        try:
            engine = self._admin()
            with engine.connect() as conn:
                conn.exec_driver_sql('SELECT 1')
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - any failure is "down"
            return (f'{self.name} at {self.server_url}: '
                    f'{exc.__class__.__name__}')
        return None


class MySQL(_Server):
    name = 'mysql'
    server_url = MYSQL_SERVER
    admin_db = 'mysql'
    create_sql = 'CREATE DATABASE {name} CHARACTER SET utf8mb4'

    def clone(self, template, dbname):
        """Table by table (MariaDB cannot copy a database): each table as
        SHOW CREATE TABLE gives it, its rows, then the triggers in their
        firing order, so that copied rows are not captured again."""
        self._check_name(template)
        url = self.create(dbname)
        engine = self._admin()
        try:
            # The DB-API cursor itself: trigger bodies may hold '%', which
            # a driver would take for a parameter marker.
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute('SET SESSION foreign_key_checks = 0')
                cur.execute(f'USE {dbname}')
                cur.execute(
                    'SELECT table_name FROM information_schema.tables '
                    "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
                    (template,))
                for (table,) in cur.fetchall():
                    cur.execute(f'SHOW CREATE TABLE {template}.`{table}`')
                    cur.execute(cur.fetchone()[1])
                    cur.execute(f'INSERT INTO `{table}` '
                                f'SELECT * FROM {template}.`{table}`')
                cur.execute(
                    'SELECT trigger_name FROM information_schema.triggers '
                    'WHERE trigger_schema = %s ORDER BY event_object_table, '
                    'action_timing, event_manipulation, action_order',
                    (template,))
                for (trigger,) in cur.fetchall():
                    cur.execute(f'SHOW CREATE TRIGGER {template}.`{trigger}`')
                    _, sql_mode, statement = cur.fetchone()[:3]
                    cur.execute('SET SESSION sql_mode = %s', (sql_mode,))
                    cur.execute(statement)
                raw.commit()
            finally:
                raw.close()
        finally:
            engine.dispose()
        return url


class PostgreSQL(_Server):
    name = 'postgresql'
    server_url = PG_SERVER
    admin_db = 'postgres'
    drop_sql = 'DROP DATABASE IF EXISTS {name} WITH (FORCE)'

    def clone(self, template, dbname):
        """``CREATE DATABASE ... TEMPLATE``: a file-level copy. It fails
        while anyone is connected to the template; a client that has just
        closed its connection may still be listed for a moment."""
        self._check_name(template)
        self._check_name(dbname)
        self.drop(dbname)
        for attempt in range(50):
            try:
                self._run(f'CREATE DATABASE {dbname} TEMPLATE {template}')
                break
            except sa.exc.OperationalError as exc:
                if 'being accessed by other users' not in str(exc) \
                        or attempt == 49:
                    raise
                time.sleep(0.1)
        return self.url(dbname)


def get(name: str, sqlite_dir: str) -> Backend:
    if name == 'sqlite':
        return SQLite(sqlite_dir)
    if name == 'mysql':
        return MySQL()
    if name == 'postgresql':
        return PostgreSQL()
    raise ValueError(f'unknown backend {name!r}')


def selected() -> list[str]:
    """The backends this run covers (``KSSYNC_BACKENDS``, comma separated)."""
    raw = os.environ.get('KSSYNC_BACKENDS', 'sqlite,mysql,postgresql')
    return [b.strip() for b in raw.split(',') if b.strip()]
