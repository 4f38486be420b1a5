"""End-to-end flows the agent suites judge on more than one world: the
three-site world of test_agent.py and the release-span worlds of
test_agent_span.py (a hub and spokes on different Keystone releases).
Each takes a started, joined and synced ``harness.World``."""

import requests

from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import harness
from keystone_syncext.tests.functional.agent.harness import hex_id
from keystone_syncext.tests.functional.agent.harness import issue_token
from keystone_syncext.tests.functional.agent.harness import ordinary
from keystone_syncext.tests.functional.agent.harness import password_identity
from keystone_syncext.tests.functional.agent.harness import remember_secret


def every_type_round_trip(world):
    """Create, update and delete of one of every v1 type at the hub reach
    every spoke."""
    made, ctx = harness.make_everything(world.hub)
    world.sync()
    harness.assert_same_everywhere(world, made)

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
    harness.assert_same_everywhere(world, changed)
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
    harness.assert_gone_everywhere(world, made)


def hub_user_logs_in_at_spokes(world):
    """A user made at the hub logs in at every spoke (password and
    application credential); a password change at the hub follows."""
    made, ctx = harness.make_everything(world.hub)
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


def spoke_app_cred_reaches_everywhere(world):
    """Two-way: a user's application credential made at the first spoke
    authenticates at the hub and at every other spoke with the same id and
    secret, and its delete there removes it everywhere; nothing is echoed
    back to the spoke that made it."""
    _made, ctx = harness.make_everything(world.hub)
    spoke1, others = world.spokes[0], [world.hub, *world.spokes[1:]]
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
    for site in others:
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
