"""One agent by default, with real ``keystone-sync run`` processes (no
Keystone needed: the hub is unreachable, and the agent holds the state
database while it retries it): a second agent on the same state database
is refused at start with one line naming the first; once the first is
SIGKILLed, an agent started at once on the same host takes over (the lease
running out, for a holder on another host, is judged in
tests/unit/agent/test_claims.py)."""

import os
import signal
import socket
import subprocess
import sys
import time

import sqlalchemy as sa

from keystone_syncext.agent import state_tables
from keystone_syncext.testing import sites

AGENT = [sys.executable, '-m', 'keystone_syncext.agent.cli']
LEASE = 30


def _world(tmp_path):
    sites.write_clouds_yaml(str(tmp_path / 'clouds.yaml'), {
        name: {'auth_url': 'http://127.0.0.1:9/v3', 'username': 'x',
               'password': 'x', 'project_name': 'x',
               'user_domain_id': 'default',
               'project_domain_id': 'default'}
        for name in ('hub', 'spoke1')})
    state = f'sqlite:///{tmp_path}/state.sqlite'
    conf = tmp_path / 'keystone-sync.conf'
    conf.write_text(f'[DEFAULT]\nhub = hub\nspokes = spoke1\n'
                    f'state = {state}\nretry_max = 1\n'
                    f'log_file = {tmp_path}/agent.log\n'
                    f'[coordination]\nheartbeat = 0.5\nlease = {LEASE}\n')
    # tooz imports futurist, which imports eventlet, which warns of its
    # own deprecation on stderr: not the agent's line, not judged here.
    env = dict(os.environ, PYTHONWARNINGS='ignore',
               OS_CLIENT_CONFIG_FILE=str(tmp_path / 'clouds.yaml'))
    return [*AGENT, '--config-file', str(conf), 'run'], env, state


def _lock_pid(state):
    engine = sa.create_engine(state)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(state_tables.claim.c.pid).where(
                state_tables.claim.c.name == 'agent',
                state_tables.claim.c.member.is_not(None))).scalar()
    except sa.exc.OperationalError:
        return None
    finally:
        engine.dispose()


def _wait_for_lock(state, pid, proc):
    deadline = time.monotonic() + 60
    while _lock_pid(state) != pid:
        assert proc.poll() is None, 'the agent ended'
        assert time.monotonic() < deadline, 'the agent never took the lock'
        time.sleep(0.2)


def test_a_second_agent_is_refused_until_the_first_is_gone(tmp_path):
    cmd, env, state = _world(tmp_path)
    first = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    later = None
    try:
        _wait_for_lock(state, first.pid, first)
        second = subprocess.run(cmd, env=env, capture_output=True,
                                text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith('keystone-sync: another agent already '
                                   'runs on this state database: ')
        assert f'host {socket.gethostname()}, pid {first.pid}, since ' \
            in lines[0]
        # SIGKILLed: restarted at once on this host, the next agent sees
        # the holder's process gone and need not wait out its lease.
        first.send_signal(signal.SIGKILL)
        first.wait()
        later = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        _wait_for_lock(state, later.pid, later)
        later.terminate()
        assert later.wait(timeout=60) == 0
        assert _lock_pid(state) is None  # released on a clean stop
        with open(tmp_path / 'agent.log') as f:
            log = f.read()
        assert 'its process is gone' in log
        assert f'pid {first.pid}, since' in log
    finally:
        for proc in (first, later):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
