"""``keystone-sync run`` as a service, end to end: the same three real
Keystones as test_agent.py (hub 30.0, spoke1 30.0, spoke2 29.1, joined
and synced by the real command line), and one agent process running in
the background with ``[metrics] listen``, a short ``audit_interval`` and
a systemd ``NOTIFY_SOCKET``:

- it tells systemd it is ready once connected and its threads started;
- its metrics endpoint answers, and its values are those of
  ``keystone-sync status --json``;
- a change made directly at a spoke, through its own Keystone API, is
  found by the periodic audit and repaired within one interval, and the
  audit is reported in the log, ``status`` and the metrics;
- SIGHUP makes it take a changed exclude rule without a restart.
"""

import calendar
import os
import re
import signal
import socket
import subprocess
import time

from prometheus_client import parser
import pytest
import requests

from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import harness as base
from keystone_syncext.tests.functional.agent.harness import hex_id

# The same fixture (its own instance for this module): three sites,
# joined, synced once.
world = base.world

# A three-site world of its own costs CI minutes it does not have: this
# suite runs in tox -e agent-long (doc/testing.md, "What runs where").
pytestmark = pytest.mark.skipif(
    os.environ.get('KSSYNC_LONG') != '1',
    reason='the agent as a service runs in tox -e agent-long '
           '(KSSYNC_LONG=1)')

AUDIT_INTERVAL = 10
TAG = hex_id()[:8]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Running:
    """The agent in the background, its config file, where it listens
    and what it told systemd."""

    def __init__(self, w, tmp):
        self.w = w
        self.port = _free_port()
        self.conf = os.path.join(tmp, 'service.conf')
        self.write_rules(f'name:role:never-{TAG}')
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(os.path.join(tmp, 'notify'))
        self.notify.settimeout(0.2)
        self.notified = []
        self.err = open(os.path.join(w.dir, 'agent-service.stderr.log'),
                        'w')
        env = dict(w.env, NOTIFY_SOCKET=os.path.join(tmp, 'notify'))
        self.proc = subprocess.Popen(w.cmd('run', conf=self.conf), env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        self.proc.stderr_path = self.err.name

    def write_rules(self, exclude):
        self.w.write_conf(self.conf, audit_interval=AUDIT_INTERVAL)
        with open(self.conf, 'a') as f:
            f.write(f'[metrics]\nlisten = 127.0.0.1:{self.port}\n'
                    f'[selection]\nexclude = {exclude}\n')

    def messages(self):
        while True:
            try:
                self.notified.append(self.notify.recv(4096).decode())
            except TimeoutError:
                return self.notified

    def metrics(self):
        resp = requests.get(f'http://127.0.0.1:{self.port}/metrics',
                            timeout=10)
        resp.raise_for_status()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in parser.text_string_to_metric_families(resp.text)
                for s in f.samples}

    def stop(self):
        try:
            base.terminate(self.proc)
        finally:
            self.err.close()
            self.notify.close()


@pytest.fixture(scope='module')
def running(world, tmp_path_factory):
    agent = Running(world, str(tmp_path_factory.mktemp('service')))
    try:
        yield agent
    finally:
        agent.stop()


def _until(what, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(step)
    return what()


def _log(w):
    with open(w.log) as f:
        return f.read()


def test_ready_is_notified_once_connected(running):
    sent = _until(lambda: [m for m in running.messages()
                           if m.startswith('READY=1')], 120)
    assert sent and 'syncing 2 spokes' in sent[0], running.notified
    assert running.proc.poll() is None


def _spoke(labels_name, spoke):
    return (labels_name, (('spoke', spoke),))


def test_metrics_are_what_status_says(world, running):
    _until(lambda: [m for m in running.messages()
                    if m.startswith('READY=1')], 120)
    made = base.make_some(world.hub)
    # Caught up: the last change is at every spoke.
    assert _until(lambda: all(base.ordinary(world, s, made['grant'][0])[0]
                              == 204 for s in world.spokes), 120)
    status = world.status()
    got = running.metrics()
    for name, row in status.items():
        assert got[_spoke('keystone_sync_spoke_lag_changes', name)] == \
            row['lag_changes']
        assert got[_spoke('keystone_sync_spoke_pending_items', name)] == \
            row['pending']
        assert got[_spoke('keystone_sync_spoke_conflicts', name)] == \
            row['conflicts']
        assert got[('keystone_sync_spoke_state',
                    (('spoke', name), ('state', row['state'])))] == 1
        # A pass every few seconds moves the last success: close enough.
        success = got[_spoke(
            'keystone_sync_spoke_last_success_timestamp_seconds', name)]
        assert abs(success - _epoch(row['last_success_at'])) < 15
        owned = [k for k, v in got.items()
                 if k[0] == 'keystone_sync_spoke_owned' and
                 ('spoke', name) in k[1]]
        assert len(owned) == 1 and got[owned[0]] == 1
    assert sum(v for k, v in got.items()
               if k[0] == 'keystone_sync_leader') == 1
    applied = sum(v for k, v in got.items()
                  if k[0] == 'keystone_sync_applied_total' and
                  k[1][0][1] in status)
    assert applied >= 2 * 4          # make_some: four resources each


def _epoch(text):
    return calendar.timegm(time.strptime(text[:19], '%Y-%m-%d %H:%M:%S'))


def test_drift_at_a_spoke_is_repaired_by_the_audit(world, running):
    spoke1 = world.spokes[0]
    made = base.make_some(world.hub)
    assert _until(lambda: all(base.ordinary(world, s, made['grant'][0])[0]
                              == 204 for s in world.spokes), 120)
    # Behind the agent's back, through spoke1's own Keystone API.
    at_spoke = personas.admin_caller(spoke1)
    at_spoke('PATCH', made['role'][0], json={'role': {
        'description': 'edited at the spoke by hand'}})
    at_spoke('DELETE', made['project'][0])
    start = time.monotonic()

    def repaired():
        want = world.sync_items(world.hub, 'project')
        have = world.sync_items(spoke1, 'project')
        roles = world.sync_items(spoke1, 'role')
        return (made['project'][2] in have and
                have[made['project'][2]] == want[made['project'][2]] and
                roles[made['role'][2]] ==
                world.sync_items(world.hub, 'role')[made['role'][2]])
    # The audit starts within one interval, plus a caught-up spoke's idle
    # wait (poll_wait + 5) and the other spoke's turn; the rest is the
    # repair's writes (a 412 and the drift settled per resource: slow on
    # a loaded machine, 76 s at a load of 21 on 2 cores).
    bound = AUDIT_INTERVAL + 6 + AUDIT_INTERVAL / 2 + 60
    assert _until(repaired, bound), _log(world)[-3000:]
    took = time.monotonic() - start
    assert took < bound + 30, took
    # The project (and its grant, gone with it) and the role: drift.
    assert re.search(r'audit of spoke spoke1 found [3-9] differences made '
                     r'at the spoke', _log(world)), _log(world)[-3000:]
    assert world.status()['spoke1']['last_audit_at']
    got = running.metrics()
    assert got[('keystone_sync_audit_repaired_total',
                (('spoke', 'spoke1'),))] >= 2
    # spoke2 was not touched: its audits found no drift (the hub's
    # changes they met on their way are not drift).
    assert 'audit of spoke spoke2 found' not in _log(world)


def test_sighup_takes_a_changed_exclude_rule(world, running):
    call = personas.admin_caller(world.hub)
    before = call('POST', '/roles', json={'role': {
        'name': f'hup-before-{TAG}'}}).json()['role']['id']
    assert _until(lambda: all(base.ordinary(world, s, f'/roles/{before}')[0]
                              == 200 for s in world.spokes), 120)
    running.write_rules(f'name:role:hup-*, name:role:never-{TAG}')
    running.proc.send_signal(signal.SIGHUP)
    assert _until(lambda: 'SIGHUP: new rules in force' in _log(world), 30)
    after = call('POST', '/roles', json={'role': {
        'name': f'hup-after-{TAG}'}}).json()['role']['id']
    marker = call('POST', '/roles', json={'role': {
        'name': f'marker-{TAG}'}}).json()['role']['id']
    assert _until(lambda: all(base.ordinary(world, s, f'/roles/{marker}')[0]
                              == 200 for s in world.spokes), 120)
    for spoke in world.spokes:
        assert base.ordinary(world, spoke, f'/roles/{after}')[0] == 404
    assert running.proc.poll() is None      # no restart
    assert 'RELOADING=1' in running.messages()
