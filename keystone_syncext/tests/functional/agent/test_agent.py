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

import requests

from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import harness as base
from keystone_syncext.tests.functional.agent.harness import hex_id
from keystone_syncext.tests.functional.agent.harness import issue_token
from keystone_syncext.tests.functional.agent.harness import ordinary
from keystone_syncext.tests.functional.agent.harness import password_identity
from keystone_syncext.tests.functional.agent.harness import remember_secret

# The three sites (its own instance for this module).
world = base.world


def test_create_update_delete_of_every_type_reach_both_spokes(world):
    made, ctx = base.make_everything(world.hub)
    world.sync()
    base.assert_same_everywhere(world, made)

    call = personas.admin_caller(world.hub)
    u, p = ctx['user']['id'], ctx['project']['id']
    call('PATCH', f'/projects/{p}', json={'project': {
        'description': 'changed', 'tags': ['c']}})
    call('PATCH', f'/users/{u}', json={'user': {'email': 'u@example.com'}})
    call('PATCH', f'/roles/{ctx["role"]["id"]}',
         json={'role': {'description': 'changed'}})
    call('PATCH', f'/groups/{ctx["group"]["id"]}',
         json={'group': {'description': 'changed'}})
    idp = made['identity provider'][2]
    call('PATCH', f'/OS-FEDERATION/identity_providers/{idp}',
         json={'identity_provider': {'description': 'changed'}})
    call('PATCH', f'/OS-FEDERATION/mappings/{made["mapping"][2]}',
         json={'mapping': {'rules': [{
             'local': [{'user': {'name': 'x{0}'}}],
             'remote': [{'type': 'REMOTE_USER'}]}]}})
    world.sync()
    # Every update, by content hash; and through the ordinary API below.
    changed = {k: made[k] for k in ('project', 'user', 'role', 'group',
                                    'identity provider', 'mapping')}
    base.assert_same_everywhere(world, changed)
    for spoke in world.spokes:
        _, body = ordinary(world, spoke, f'/projects/{p}')
        assert (body['project']['description'], body['project']['tags']) \
            == ('changed', ['c'])

    # Deletes, dependents first as a user of the API would.
    for label in ('protocol', 'identity provider', 'mapping',
                  'application credential', 'system grant',
                  'inherited grant', 'domain group grant', 'project grant',
                  'membership', 'implied role'):
        call('DELETE', made[label][0])
    for label in ('group', 'user', 'domain role', 'role', 'child project',
                  'project'):
        call('DELETE', made[label][0])
    call('DELETE', f'/roles/{ctx["implied"]["id"]}')
    call('PATCH', f'/domains/{ctx["domain"]["id"]}',
         json={'domain': {'enabled': False}})
    call('DELETE', made['domain'][0])
    world.sync()
    base.assert_gone_everywhere(world, made)


def test_hub_user_logs_in_at_spokes_and_password_change_follows(world):
    made, ctx = base.make_everything(world.hub)
    world.sync()
    u, p = ctx['user']['id'], ctx['project']['id']
    want = {ctx['role']['id'], ctx['implied']['id']}
    for spoke in world.spokes:
        resp = issue_token(spoke, password_identity(u, ctx['password']),
                           {'project': {'id': p}})
        assert resp.status_code == 201, (spoke.name, resp.text)
        token = resp.json()['token']
        assert token['project']['id'] == p
        assert {r['id'] for r in token['roles']} == want
        # And the application credential, with its secret.
        resp = issue_token(spoke, {'methods': ['application_credential'],
                                   'application_credential': {
                                       'id': ctx['app_cred']['id'],
                                       'secret': ctx['secret']}})
        assert resp.status_code == 201, (spoke.name, resp.text)

    new_password = remember_secret('the-new-Passw0rd', 'new password')
    personas.admin_caller(world.hub)('PATCH', f'/users/{u}', json={
        'user': {'password': new_password}})
    world.sync()
    for spoke in world.spokes:
        assert issue_token(spoke, password_identity(u, ctx['password'])) \
            .status_code == 401, spoke.name
        assert issue_token(spoke, password_identity(u, 'the-new-Passw0rd')) \
            .status_code == 201, spoke.name


def _feed_of(world, site, id_):
    """(op, origin) of each change of application credential ``id_`` in
    ``site``'s feed."""
    sess, since, out = world.session(site), None, []
    while True:
        page = sess.get(f'{site.url}/sync/changes', params={
            'limit': 1000, 'types': 'application_credential',
            **({'since': since} if since else {})}).json()
        out += [(c['op'], c['origin']) for c in page['changes']
                if c['id'] == id_]
        since = page['next']
        if not page['more']:
            return out


def test_application_credential_made_at_a_spoke_reaches_everywhere(world):
    """Two-way: a user's application credential made at spoke1 (30.0)
    authenticates at the hub and at spoke2 (29.1) with the same id and
    secret, and its delete at spoke1 removes it everywhere; nothing is
    echoed back to spoke1."""
    _made, ctx = base.make_everything(world.hub)
    spoke1, spoke2 = world.spokes
    u, p = ctx['user']['id'], ctx['project']['id']
    # A user with a system role may not have credentials written at the
    # hub on a spoke's behalf (test_attacks.py): this one is a member.
    personas.admin_caller(world.hub)(
        'DELETE', f'/system/users/{u}/roles/{ctx["implied"]["id"]}')
    world.sync()
    resp = issue_token(spoke1, password_identity(u, ctx['password']),
                       {'project': {'id': p}})
    assert resp.status_code == 201, resp.text
    user_token = {'X-Auth-Token': resp.headers['X-Subject-Token']}
    resp = requests.post(
        f'{spoke1.url}/users/{u}/application_credentials',
        headers=user_token, timeout=60, json={'application_credential': {
            'name': f'made-at-spoke1-{hex_id()[:6]}'}})
    assert resp.status_code == 201, resp.text
    ac = resp.json()['application_credential']
    login = {'methods': ['application_credential'],
             'application_credential': {'id': ac['id'],
                                        'secret': ac['secret']}}

    world.sync()
    for site in (world.hub, spoke2):
        resp = issue_token(site, login)
        assert resp.status_code == 201, (site.name, resp.text)
        assert resp.json()['token']['application_credential']['id'] == \
            ac['id']
        assert resp.json()['token']['project']['id'] == p
    # The hub holds it as spoke1's (its role rows are captured as updates
    # of it); spoke1 never got it back: every change there is its own.
    spoke1_id = world.session(spoke1).get(
        f'{spoke1.url}/sync').json()['sync']['site_id']
    at_hub = _feed_of(world, world.hub, ac['id'])
    assert at_hub[0] == ('create', spoke1_id), at_hub
    assert {origin for _, origin in at_hub} == {spoke1_id}, at_hub
    at_spoke1 = _feed_of(world, spoke1, ac['id'])
    assert at_spoke1[0] == ('create', None), at_spoke1
    assert {origin for _, origin in at_spoke1} == {None}, at_spoke1

    resp = requests.delete(
        f'{spoke1.url}/users/{u}/application_credentials/{ac["id"]}',
        headers=user_token, timeout=60)
    assert resp.status_code == 204, resp.text
    world.sync()
    for site in world.every():
        # Keystone answers 404 for a credential it does not know.
        assert issue_token(site, login).status_code in (401, 404), site.name
        assert world.session(site).get(
            f'{site.url}/sync/resources/application_credential/{ac["id"]}',
            raise_exc=False).status_code == 404, site.name
    assert _feed_of(world, world.hub, ac['id'])[-1] == ('delete', spoke1_id)
    at_spoke1 = _feed_of(world, spoke1, ac['id'])
    assert at_spoke1[-1] == ('delete', None), at_spoke1
    assert {origin for _, origin in at_spoke1} == {None}, at_spoke1


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
