"""The fault suite's sites and processes: ``FaultWorld`` (the agent
suites' three-site ``World`` with spoke1 on a private MariaDB server, and
the means to run, kill and restart the agent), ``kill_site``, the suite's
budgets and ``wait_for``. The fixtures that build it are in this
subpackage's ``conftest.py``; see ``test_faults.py`` for the trials."""

import contextlib
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import time
import uuid

from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
import pytest
import requests

from keystone_syncext.testing import secrets as scanning
from keystone_syncext.tests.functional.agent import harness

TYPES = harness.TYPES
KILLS = int(os.environ.get('KSSYNC_FAULT_KILLS', '20'))
RESOURCES = int(os.environ.get('KSSYNC_FAULT_RESOURCES', '2000'))
TIMEOUT = float(os.environ.get('KSSYNC_FAULT_TIMEOUT', '90'))
# Resources the spot check reads through the ordinary API, per type.
SPOT = 3


# A site that is down or too slow to answer (keystoneauth wraps what
# requests raises).
UNANSWERED = (requests.RequestException, ksa_exceptions.ConnectionError)


def random_seed() -> int:
    raw = os.environ.get('KSSYNC_FAULT_SEED')
    return int(raw) if raw else random.SystemRandom().randrange(2 ** 31)


def wait_for(what: str, condition, timeout: float = TIMEOUT,
             interval: float = 0.2, agent=None):
    """Poll ``condition`` until it returns something true (returned);
    fail the test with ``what`` after ``timeout`` seconds, and with where
    ``agent``'s threads are when one runs (``harness.where_it_is``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            where = f'\n{harness.where_it_is(agent)}' if agent else ''
            pytest.fail(f'timed out after {timeout:.0f}s waiting for '
                        f'{what}{where}')
        time.sleep(interval)


def hex_id() -> str:
    return uuid.uuid4().hex


# A run's log says it follows the hub (and so has its SIGTERM handler).
FOLLOWING = re.compile(r'following hub')


def log_has(path: str, pattern) -> bool:
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return any(pattern.search(line) for line in f)


# -- the sites ----------------------------------------------------------


class FaultWorld(harness.World):
    """``test_agent.World`` plus the private database server under spoke1
    and the means to run, kill and restart the processes."""

    def __init__(self, workdir, hub, spokes, db, clouds):
        super().__init__(workdir, hub, spokes)
        self.db = db
        self.clouds = clouds
        self._agents = 0

    def write_conf(self, path=None, **extra):
        """As ``World.write_conf``, with more patience for ``--once``: on
        a loaded machine a site may refuse a few connections in a row."""
        super().write_conf(path, **{'once_attempts': 8, 'retry_max': 4,
                                    **extra})

    def session(self, site):
        """As ``World.session``, but at a spoke as the agent's account
        there: the spokes' admin is the hub's (joined), and its password
        changes to the hub's at the first sync, which may come in the
        middle of a trial."""
        if site is self.hub or site.name in self._sessions:
            return super().session(site)
        auth = dict(self.clouds[site.name])
        auth.pop('system_scope')
        sess = ks_session.Session(auth=v3.Password(system_scope='all',
                                                   **auth),
                                  connect_retries=3)
        scanning.REGISTRY.secret(sess.get_token(),
                                 f'agent account token at {site.name}')
        self._sessions[site.name] = sess
        return sess

    def all_live(self) -> bool:
        """Whether the state database has every spoke seeded (state
        ``live``), read beside the agent writing it."""
        path = self.state[len('sqlite:///'):]
        if not os.path.exists(path):
            return False
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            try:
                rows = db.execute('SELECT state FROM agent_spoke').fetchall()
            except sqlite3.OperationalError:  # not made yet
                return False
        return len(rows) == len(self.spokes) and \
            all(r[0] == 'live' for r in rows)

    def start_agent_conf(self, label: str, **opts):
        """The agent (``run``, not ``--once``) with a config of its own:
        ``opts`` over ``write_conf``'s, its log in ``agent-LABEL.log``
        (``proc.log``) and its stderr beside it."""
        self._agents += 1
        name = f'agent-{label}-{self._agents}'
        conf = os.path.join(self.dir, f'{name}.conf')
        log = os.path.join(self.dir, f'{name}.log')
        self.write_conf(path=conf, **{'log_file': log, **opts})
        with open(os.path.join(self.dir, f'{name}.stderr.log'), 'w') as err:
            proc = subprocess.Popen(self.cmd('run', conf=conf), env=self.env,
                                    stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    text=True)
        proc.log = log
        proc.stderr_path = err.name
        return proc

    def stop_agent(self, proc) -> None:
        """SIGTERM, as an operator stops it: it must exit 0. (Sent once
        the run follows the hub: before, its handler is not installed.)"""
        try:
            wait_for('the agent to follow the hub', lambda: log_has(
                proc.log, FOLLOWING) or proc.poll() is not None)
        finally:
            harness.terminate(proc, timeout=60)

    def count(self, site, type_: str) -> int | None:
        """Resources of ``type_`` at ``site`` (its digest's count); None
        when the site does not answer."""
        try:
            resp = self.session(site).get(f'{site.url}/sync/digest/{type_}',
                                          raise_exc=False, timeout=30)
        except UNANSWERED:
            return None
        return resp.json()['digest']['count'] \
            if resp.status_code == 200 else None

    def has(self, site, path: str) -> bool:
        """Whether the ordinary API at ``site`` shows ``path``."""
        try:
            return harness.ordinary(self, site, path)[0] in (200, 204)
        except UNANSWERED:
            return False


def kill_site(site) -> None:
    """SIGKILL the site's uWSGI master and workers (one process group),
    and wait until every one of them is gone and the port is free: a
    worker still dying holds the listening socket, and a restart would
    fail to bind."""
    pgid = site.proc.pid
    os.killpg(pgid, signal.SIGKILL)
    site.proc.wait(timeout=30)
    site.stop()  # forgets the dead process and its database engine

    def gone():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    def port_free():
        with contextlib.closing(socket.socket()) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(('127.0.0.1', site.port))
            except OSError:
                return False
            return True

    wait_for(f'the processes of {site.name} to be gone', gone, timeout=30)
    wait_for(f'the port of {site.name} to be free', port_free, timeout=30)

