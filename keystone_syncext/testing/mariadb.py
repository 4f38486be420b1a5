"""A private MariaDB server that a test may stop, kill and start again.

The fault suite restarts a database server under a running Keystone. It
never does that to the machine's shared MariaDB or PostgreSQL: other tests
use them at the same time. This server is the test's own: a data
directory made by ``mariadb-install-db`` under the test's work directory,
a free port on 127.0.0.1 and a socket beside the data, ``root`` without a
password (nothing but loopback reaches it). Its error log
(``mariadbd.log``) sits in the work directory, where the secret scan
finds it.
"""

import os
import shutil
import signal
import subprocess
import time

import pymysql
import sqlalchemy as sa

from keystone_syncext.testing import sites

# mariadbd lives in sbin, which a non-root PATH often lacks.
_SEARCH = os.pathsep.join([os.environ.get('PATH', ''), '/usr/sbin',
                           '/usr/local/sbin'])


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name, path=_SEARCH)
        if found:
            return found
    return None


class PrivateMariaDB:
    """One ``mariadbd`` process with its own data directory below
    ``workdir``; the port stays the same across restarts, so clients'
    URLs stay valid."""

    def __init__(self, workdir: str):
        self.dir = os.path.abspath(workdir)
        self.datadir = os.path.join(self.dir, 'data')
        self.socket = os.path.join(self.dir, 'mariadbd.sock')
        self.pidfile = os.path.join(self.dir, 'mariadbd.pid')
        self.log = os.path.join(self.dir, 'mariadbd.log')
        self.port = sites.free_port()
        self.proc = None
        self.server = _binary('mariadbd', 'mysqld')
        self.installer = _binary('mariadb-install-db', 'mysql_install_db')

    def unavailable(self) -> str | None:
        """None when the server can be made here, else why not."""
        if not self.server or not self.installer:
            return ('mariadbd or mariadb-install-db not found (install '
                    'the mariadb-server package)')
        return None

    def _as_root(self) -> list[str]:
        # mariadbd refuses to run as root unless told to; as any other
        # user the option is not needed (and only warns).
        return ['--user=root'] if os.geteuid() == 0 else []

    def install(self) -> 'PrivateMariaDB':
        """A fresh data directory with the system tables; root may log in
        without a password (socket and loopback only)."""
        os.makedirs(self.dir, exist_ok=True)
        proc = subprocess.run(
            [self.installer, '--no-defaults', f'--datadir={self.datadir}',
             '--auth-root-authentication-method=normal', '--skip-test-db',
             *self._as_root()],
            capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL)
        if proc.returncode:
            raise RuntimeError(f'mariadb-install-db failed '
                               f'({proc.returncode}):\n{proc.stdout[-2000:]}'
                               f'\n{proc.stderr[-2000:]}')
        return self

    def start(self, timeout: float = 60) -> 'PrivateMariaDB':
        cmd = [self.server, '--no-defaults', f'--datadir={self.datadir}',
               f'--port={self.port}', '--bind-address=127.0.0.1',
               f'--socket={self.socket}', f'--pid-file={self.pidfile}',
               f'--log-error={self.log}',
               '--innodb-buffer-pool-size=64M',
               '--innodb-log-file-size=16M',
               # Writes reach the OS at once and the disk whenever the OS
               # likes: a killed mariadbd (not a crashed machine, which
               # the suite never makes) loses nothing it acknowledged,
               # and schema changes and commits skip the fsyncs.
               '--innodb-flush-log-at-trx-commit=2',
               '--innodb-flush-method=nosync', '--innodb-doublewrite=0',
               '--max-connections=200', *self._as_root()]
        with open(os.path.join(self.dir, 'mariadbd.stdout.log'), 'a') as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out,
                                         start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'mariadbd exited with '
                                   f'{self.proc.returncode}; see {self.log}')
            try:
                pymysql.connect(host='127.0.0.1', port=self.port,
                                user='root', connect_timeout=2).close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f'mariadbd not ready after {timeout}s; see '
                           f'{self.log}')

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (SIGTERM), as ``systemctl stop`` does."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: InnoDB recovers from its redo log on the next start."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def remove_data(self) -> None:
        """Drop the data directory (the logs stay, for the scan)."""
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)

    # -- databases ----------------------------------------------------

    def url(self, dbname: str) -> str:
        return (f'mysql+pymysql://root@127.0.0.1:{self.port}/{dbname}'
                '?charset=utf8mb4')

    def create(self, dbname: str) -> str:
        """An empty database; returns its SQLAlchemy URL."""
        engine = sa.create_engine(self.url('mysql'),
                                  isolation_level='AUTOCOMMIT',
                                  poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(
                    f'CREATE DATABASE `{dbname}` CHARACTER SET utf8mb4')
        finally:
            engine.dispose()
        return self.url(dbname)
