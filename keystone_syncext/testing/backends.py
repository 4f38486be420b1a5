"""Databases that test Keystones run on: SQLite files, MariaDB, PostgreSQL.

Each backend hands out a fresh, empty database per name and removes it
again; the servers are the ones running on this machine (127.0.0.1 only).
"""

import contextlib
import os
import re
import sqlite3

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
        if not _NAME.match(dbname):
            raise ValueError(f'bad database name {dbname!r}')
        self.drop(dbname)
        self._run(self.create_sql.format(name=dbname))
        return self.url(dbname)

    def drop(self, dbname):
        self._run(self.drop_sql.format(name=dbname))

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


class PostgreSQL(_Server):
    name = 'postgresql'
    server_url = PG_SERVER
    admin_db = 'postgres'
    drop_sql = 'DROP DATABASE IF EXISTS {name} WITH (FORCE)'


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
