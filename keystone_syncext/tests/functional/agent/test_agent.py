"""keystone-sync end to end: a hub on Keystone 30.0, spoke1 on 30.0 and
spoke2 on 29.1, each a real Keystone process on its own SQLite database,
synced by the real command line (a subprocess), judged through Keystone's
ordinary v3 API (and the sync API's content hashes, which are the same
bytes on both releases when the fields are the same).

Every spoke was bootstrapped on its own and joined first, as an operator
would; the agent uses a spoke-local account at each spoke.

Last, on the same world once the tests above are done (they run agents
of their own, and a running agent holds the state database's
single-agent lock), ``keystone-sync run`` as a service: one agent
process in the background (the ``running`` fixture, stopped at the
module's end) with ``[metrics] listen``, a short ``audit_interval`` and
a systemd ``NOTIFY_SOCKET``:

- it tells systemd it is ready once connected and its threads started;
- its metrics endpoint answers, and its values are those of
  ``keystone-sync status --json``;
- a change made directly at a spoke, through its own Keystone API, is
  found by the periodic audit and repaired within one interval, and the
  audit is reported in the log, ``status`` and the metrics;
- SIGHUP makes it take a changed exclude rule without a restart.

The secret check comes last of all, over the log of every run above.
"""

import calendar
import os
import random
import re
import signal
import socket
import subprocess
import time

from prometheus_client import parser
import pytest
import requests

from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import flows
from keystone_syncext.tests.functional.agent import harness as base
from keystone_syncext.tests.functional.agent.harness import hex_id
from keystone_syncext.tests.functional.agent.harness import ordinary
from keystone_syncext.tests.functional.agent.harness import remember_secret

# The three sites (its own instance for this module).
world = base.world

AUDIT_INTERVAL = 10
TAG = hex_id()[:8]


def test_create_update_delete_of_every_type_reach_both_spokes(world):
    flows.every_type_round_trip(world)


def test_hub_user_logs_in_at_spokes_and_password_change_follows(world):
    flows.hub_user_logs_in_at_spokes(world)


def test_application_credential_made_at_a_spoke_reaches_everywhere(world):
    """spoke1 (30.0) makes it; the hub and spoke2 (29.1) get it."""
    flows.spoke_app_cred_reaches_everywhere(world)


def _lines_with(path, text):
    with open(path) as f:
        return [line for line in f if text in line]


def test_one_request_id_finds_a_pass_in_the_agent_and_both_sites_logs(world):
    """An application credential made at spoke1 goes to the hub in one
    upward pass (doc/agent.md, "Request ids"): the id the agent's log
    prints for it is the one spoke1's log prints for the read of its feed
    and the hub's log for the write, and no other pass used it."""
    call = personas.admin_caller(world.hub)
    tag = hex_id()[:8]
    p = call('POST', '/projects', json={'project': {
        'name': f'traced-{tag}', 'domain_id': 'default'}}).json()['project']
    password = remember_secret(f'Tr-{hex_id()}', 'user password')
    u = call('POST', '/users', json={'user': {
        'name': f'traced-{tag}', 'domain_id': 'default',
        'password': password}}).json()['user']
    role = call('POST', '/roles', json={'role': {
        'name': f'traced-{tag}'}}).json()['role']
    call('PUT', f'/projects/{p["id"]}/users/{u["id"]}/roles/{role["id"]}')
    world.sync()
    spoke1 = world.spokes[0]
    base.make_app_cred(spoke1, u['id'], password, p['id'],
                       f'traced-{hex_id()[:6]}', remember_secret(
                           f'traced-{hex_id()}', 'app cred secret'))
    world.sync()

    sent = _lines_with(world.log, 'spoke spoke1: sent 1 of its own changes')
    assert sent, 'the agent did not log the upward pass'
    found = re.search(r'\[(req-[0-9a-f-]{36}) ', sent[-1])
    assert found, sent[-1]
    pass_id = found.group(1)
    at_spoke1 = _lines_with(os.path.join(spoke1.dir, 'keystone.log'),
                            pass_id)
    at_hub = _lines_with(os.path.join(world.hub.dir, 'keystone.log'),
                         pass_id)
    assert any('GET /v3/sync/changes' in line for line in at_spoke1), \
        at_spoke1
    assert any('POST /v3/sync/batch' in line for line in at_hub), at_hub
    spoke2 = os.path.join(world.spokes[1].dir, 'keystone.log')
    assert not _lines_with(spoke2, pass_id)


def test_a_spoke_down_catches_up_and_never_delays_the_other(world):
    spoke1, spoke2 = world.spokes
    spoke1.stop()
    try:
        made = base.make_some(world.hub)
        started = time.monotonic()
        # spoke1 is retried for about 10 s before it is given up.
        slow = os.path.join(world.dir, 'slow-retries.conf')
        world.write_conf(path=slow, once_attempts=6, retry_initial=1)
        proc = world.agent('run', '--once', check=False, conf=slow)
        assert proc.returncode == 1
        assert 'spoke spoke1: not converged' in proc.stderr
        assert 'unreachable' in proc.stderr
        assert 'spoke spoke2: converged' in proc.stdout
        status = world.status()
        # spoke2 was done before the agent gave spoke1 up.
        assert status['spoke2']['last_success_at'] < \
            status['spoke1']['last_error_at']
        assert status['spoke1']['lag_changes'] > 0
        assert time.monotonic() - started < base.RUN_TIMEOUT
        for label, (path, _, _) in made.items():
            assert ordinary(world, spoke2, path)[0] in (200, 204), label
    finally:
        spoke1.start()
    world.sync()
    assert world.status()['spoke1']['lag_changes'] == 0
    base.assert_same_everywhere(world, made)


def test_agent_killed_at_random_points_loses_nothing(world):
    """SIGKILL during a seed (a fresh state database) and during feed
    application; each next run converges with nothing missing."""
    rng = random.Random(4242)
    state = f'sqlite:///{world.dir}/killed-state.sqlite'
    kills = 0
    for _phase in ('seed', 'feed'):  # a fresh state seeds; then the feed
        base.bulk(world, 120)
        for _ in range(2):
            proc = world.start_agent('--state', state)
            time.sleep(rng.uniform(1.0, 3.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        world.sync('--state', state)
        world.assert_converged(('project', 'role'))
    assert kills >= 3


def test_hub_restarted_during_a_sync_and_clean_shutdown(world):
    proc = world.start_agent()
    try:
        base.bulk(world, 60)
        time.sleep(1)
        world.hub.restart()
        made = base.make_some(world.hub)
        last = made['grant'][0]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
                ordinary(world, s, last)[0] == 204 for s in world.spokes):
            time.sleep(0.5)
        world.assert_converged(('project', 'role', 'user',
                                'role_assignment'))
        base.assert_same_everywhere(world, made)
    finally:
        base.terminate(proc)

# -- The agent as a service, on the same world: after every test above
# (each runs agents of its own; this one holds the single-agent lock
# until the module ends).




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


def test_status_and_logs_hold_no_secret(world):
    """The agent's log file, after every test above, holds no password,
    password hash or token."""
    with open(world.log) as f:
        log = f.read()
    assert 'following hub hub' in log
    secrets = [world.hub.admin_password, 'the-new-Passw0rd', '$2b$']
    with open(os.path.join(world.dir, 'clouds.yaml')) as f:
        secrets += [line.split(':', 1)[1].strip() for line in f
                    if line.strip().startswith('password:')]
    for secret in secrets:
        assert secret not in log
