"""keystone-sync end to end: a hub on Keystone 30.0, spoke1 on 30.0 and
spoke2 on 29.1, each a real Keystone process on its own SQLite database,
synced by the real command line (a subprocess), judged through Keystone's
ordinary v3 API (and the sync API's content hashes, which are the same
bytes on both releases when the fields are the same).

Every spoke was bootstrapped on its own and joined first, as an operator
would; the agent uses a spoke-local account at each spoke.
"""

import os
import random
import re
import signal
import time

from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import flows
from keystone_syncext.tests.functional.agent import harness as base
from keystone_syncext.tests.functional.agent.harness import hex_id
from keystone_syncext.tests.functional.agent.harness import ordinary
from keystone_syncext.tests.functional.agent.harness import remember_secret

# The three sites (its own instance for this module).
world = base.world


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
