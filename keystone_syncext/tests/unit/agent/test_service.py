"""``run`` as a service (:mod:`keystone_syncext.agent.service`): the
systemd notifications a ``Type=notify`` unit waits for, and SIGHUP
taking new selection and conflict rules from the config file, or
keeping the rules in force when the new ones do not parse."""

import configparser
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

from oslo_config import cfg
import pytest

from keystone_syncext.agent import cli_base
from keystone_syncext.agent import cli_sites
from keystone_syncext.agent import opts
from keystone_syncext.tests.unit.agent import agentparts
from keystone_syncext.tests.unit.agent import fakeworld


@pytest.fixture
def world(tmp_path):
    return fakeworld.World(tmp_path)


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A NOTIFY_SOCKET as systemd gives; what was sent to it, by
    ``received()``."""
    path = str(tmp_path / 'notify')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.1)
    monkeypatch.setenv('NOTIFY_SOCKET', path)
    monkeypatch.setenv('WATCHDOG_USEC', '1000000')
    got = []

    def received():
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                return got
    yield received
    sock.close()


def test_ready_watchdog_and_stopping_are_notified(world, notify_socket):
    agent = world.agent(fakeworld.make_conf(), once=False)
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
            m.startswith('WATCHDOG=1') for m in notify_socket()):
        time.sleep(0.1)
    agent.stop.set()
    t.join(20)
    assert not t.is_alive()
    sent = notify_socket()
    ready = [m for m in sent if m.startswith('READY=1')]
    assert ready and 'syncing 1 spokes' in ready[0], sent
    assert sent.index(ready[0]) < sent.index('WATCHDOG=1')
    assert sent[-1] == 'STOPPING=1'


def _conf(path):
    conf = cfg.ConfigOpts()
    opts.register(conf)
    conf(['--config-file', str(path)], project='keystone-sync-test',
         default_config_files=[])
    return conf


def test_sighup_takes_the_new_rules(world, tmp_path, caplog):
    path = tmp_path / 'keystone-sync.conf'
    path.write_text('[selection]\nexclude = domain:lab\n')
    conf = _conf(path)
    agent = agentparts.agent_of(world, once=False)
    agent.selections = cli_base.selections(conf, ['spoke1'])
    path.write_text('[selection]\nexclude = domain:lab, name:user:svc-*\n'
                    '[spoke:spoke1]\nauthoritative = domain:emea\n'
                    '[DEFAULT]\npoll_wait = 99\n')
    caplog.set_level('INFO')
    assert agent.service.reload(cli_sites.rules_reader(conf, ['spoke1']))
    assert [r.text for r in agent.selections['spoke1'].exclude] == \
        ['domain:lab', 'name:user:svc-*']
    assert agent.resolver.rules == {'spoke1': ['domain:emea']}
    # Other options keep their values until a restart (and say so).
    assert conf.poll_wait == 20
    assert 'poll_wait' in caplog.text
    assert 'SIGHUP: new rules in force' in caplog.text


def test_sighup_keeps_the_rules_when_the_new_ones_are_wrong(
        world, tmp_path, caplog):
    path = tmp_path / 'keystone-sync.conf'
    path.write_text('[selection]\nexclude = domain:lab\n')
    conf = _conf(path)
    agent = agentparts.agent_of(world, once=False)
    agent.selections = before = cli_base.selections(conf, ['spoke1'])
    path.write_text('[selection]\nexclude = planet:mars\n')
    assert not agent.service.reload(cli_sites.rules_reader(conf, ['spoke1']))
    assert agent.selections is before
    assert 'the rules in force are kept' in caplog.text
    assert 'planet:mars' in caplog.text


def test_the_signal_runs_the_reload_in_a_thread(world):
    agent = agentparts.agent_of(world, once=False)
    done = threading.Event()
    old = signal.getsignal(signal.SIGHUP)
    try:
        agent.service.on_sighup(lambda: done.set() or ({}, agent.resolver))
        os.kill(os.getpid(), signal.SIGHUP)
        assert done.wait(10)
    finally:
        signal.signal(signal.SIGHUP, old)


def test_the_unit_waits_for_ready_and_reloads_with_sighup():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(pathlib.Path(__file__).parents[4] / 'etc' /
              'keystone-sync.service')
    service = unit['Service']
    assert service['Type'] == 'notify'
    assert service['ExecStart'].split()[-1] == 'run'
    assert service['ExecReload'] == '/bin/kill -HUP $MAINPID'
    assert int(service['WatchdogSec']) >= 2     # pinged about every 1 s
    assert service['NoNewPrivileges'] == 'yes'


def test_sigusr2_writes_every_threads_stack_and_the_run_goes_on(tmp_path):
    """``keystone-sync run`` whose hub does not answer (it retries its
    capabilities): SIGUSR2 writes where each thread is to stderr, and the
    run goes on until SIGTERM, which it honours (exit 0)."""
    clouds = tmp_path / 'clouds.yaml'
    auth = ("{auth_url: 'http://127.0.0.1:9/v3', username: a, password: b, "
            "project_name: c, user_domain_name: Default, "
            "project_domain_name: Default}")
    clouds.write_text(f'clouds:\n  hub:\n    auth: {auth}\n'
                      f'  spoke1:\n    auth: {auth}\n')
    conf = tmp_path / 'keystone-sync.conf'
    conf.write_text(f'[DEFAULT]\nhub = hub\nspokes = spoke1\n'
                    f'state = sqlite:///{tmp_path}/state.sqlite\n')
    err_path = tmp_path / 'stderr'
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(clouds))
    with open(err_path, 'w') as err:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'keystone_syncext.agent.cli',
             '--config-file', str(conf), 'run'], env=env, stderr=err,
            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        # Its handlers are installed before it opens its state.
        deadline = time.monotonic() + 60
        while not (tmp_path / 'state.sqlite').exists() and \
                time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, err_path.read_text()[-2000:]
        proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while '(most recent call first)' not in err_path.read_text() and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)   # the dump, written out
        dump = err_path.read_text()
        assert '(most recent call first)' in dump, dump[-2000:]
        assert 'keystone_syncext/agent/' in dump, dump[-2000:]
        assert proc.poll() is None, 'SIGUSR2 ended the run'
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
