"""Shared-key mode end to end: the hub (30.0), spoke1 (30.0) and spoke2
(29.1) run with one Fernet token key repository, as an operator's
configuration management would distribute it (doc/install.md), and the
agent syncs revocation events both ways.

A token issued at one site is accepted at every site; after a logout, a
password change, a disabled user, a removed role or a deleted project
at one site, and one agent pass, every other site refuses it. Each
event arrives with its original times (the same content hash, which
covers them), is never echoed back to the site it came from, and
syncing again writes nothing.
"""

import os

import pytest
import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import harness as base
from keystone_syncext.tests.functional.agent.harness import hex_id
from keystone_syncext.tests.functional.agent.harness import issue_token
from keystone_syncext.tests.functional.agent.harness import password_identity
from keystone_syncext.tests.functional.agent.harness import remember_secret

TYPE = 'revocation_event'

# The three sites (its own instance for this module).
world = base.world

# A three-site world of its own costs CI minutes it does not have: this
# suite runs in tox -e agent-long (doc/testing.md, "What runs where").
pytestmark = pytest.mark.skipif(
    os.environ.get('KSSYNC_LONG') != '1',
    reason='shared-key mode runs in tox -e agent-long '
           '(KSSYNC_LONG=1)')


@pytest.fixture(scope='module')
def shared(world):
    """The spokes take the hub's token keys; a user with a role on a
    project, made at the hub, synced everywhere."""
    for spoke in world.spokes:
        spoke.share_token_keys(world.hub.token_keys)
    call = personas.admin_caller(world.hub, world.session(world.hub))
    project = call('POST', '/projects', json={'project': {
        'name': hex_id(), 'domain_id': 'default'}}).json()['project']
    password = remember_secret(hex_id(), 'revocation suite password')
    user = call('POST', '/users', json={'user': {
        'name': hex_id(), 'domain_id': 'default',
        'password': password}}).json()['user']
    role = call('GET', '/roles?name=member').json()['roles'][0]
    call('PUT', f'/projects/{project["id"]}/users/{user["id"]}/roles/'
                f'{role["id"]}')
    world.sync()
    return {'call': call, 'user': user['id'], 'project': project['id'],
            'password': password}


def _token(site, ctx):
    resp = issue_token(site, password_identity(ctx['user'], ctx['password']),
                       {'project': {'id': ctx['project']}})
    assert resp.status_code == 201, (site.name, resp.text)
    return resp.headers['X-Subject-Token']


def _validates(world, site, token) -> int:
    """The status of validating ``token`` at ``site`` (200: accepted)."""
    return world.session(site).get(
        f'{site.url}/auth/tokens', headers={'X-Subject-Token': token},
        raise_exc=False).status_code


def _statuses(world, token, sites):
    return {s.name: _validates(world, s, token) for s in sites}


def _changes(site, id_):
    """(op, origin) of each captured change of event ``id_`` at ``site``."""
    c = tables.change.c
    with site.engine().connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(c.op, c.origin).where(
                c.resource_type == TYPE, c.resource_id == id_)
            .order_by(c.id))]


def _new_events(world, site, before):
    return sorted(set(world.sync_items(site, TYPE)) - before)


def _revoked_everywhere(world, origin, token, revoke):
    """``token`` is accepted everywhere; ``revoke()`` at ``origin``; one
    agent pass; every other site refuses it, holds the new events with
    their original times, and none came back to ``origin``. Returns the
    new events' ids."""
    others = [s for s in world.every() if s is not origin]
    assert set(_statuses(world, token, world.every()).values()) == {200}
    before = set(world.sync_items(origin, TYPE))
    revoke()
    made = _new_events(world, origin, before)
    assert made
    # Not synced yet: the other sites still accept it.
    assert set(_statuses(world, token, others).values()) == {200}
    world.sync()
    assert set(_statuses(world, token, world.every()).values()) == {404}
    want = {i: h for i, h in world.sync_items(origin, TYPE).items()
            if i in made}
    for site in others:
        have = world.sync_items(site, TYPE)
        # Same id, same hash: the same columns, times included.
        assert {i: have.get(i) for i in made} == want, site.name
    for id_ in made:
        # Captured once at its origin, as its own; never written back.
        assert _changes(origin, id_) == [('create', None)], id_
    return made


def test_a_logout_at_the_hub_is_honoured_at_every_spoke(world, shared):
    token = _token(world.hub, shared)
    _revoked_everywhere(world, world.hub, token, lambda: shared['call'](
        'DELETE', '/auth/tokens', headers={'X-Subject-Token': token}))


def test_a_password_change_at_the_hub_revokes_at_every_spoke(world, shared):
    token = _token(world.hub, shared)
    new = remember_secret(hex_id(), 'revocation suite new password')

    def change():
        shared['call']('PATCH', f'/users/{shared["user"]}',
                       json={'user': {'password': new}})
        shared['password'] = new
    _revoked_everywhere(world, world.hub, token, change)


def test_a_disabled_user_stays_revoked_when_enabled_again(world, shared):
    token = _token(world.hub, shared)
    path = f'/users/{shared["user"]}'
    _revoked_everywhere(world, world.hub, token, lambda: shared['call'](
        'PATCH', path, json={'user': {'enabled': False}}))
    shared['call']('PATCH', path, json={'user': {'enabled': True}})
    world.sync()
    # The event, not the user's state, refuses it now.
    assert set(_statuses(world, token, world.every()).values()) == {404}
    _token(world.hub, shared)   # and the user can log in again


def test_a_deleted_project_revokes_its_tokens_everywhere(world, shared):
    call = shared['call']
    project = call('POST', '/projects', json={'project': {
        'name': hex_id(), 'domain_id': 'default'}}).json()['project']
    role = call('GET', '/roles?name=member').json()['roles'][0]
    call('PUT', f'/projects/{project["id"]}/users/{shared["user"]}/roles/'
                f'{role["id"]}')
    world.sync()
    ctx = dict(shared, project=project['id'])
    token = _token(world.spokes[0], ctx)
    made = _revoked_everywhere(world, world.hub, token, lambda: call(
        'DELETE', f'/projects/{project["id"]}'))
    assert any(f':{project["id"]}:' in i for i in made), made


def test_a_removed_role_refuses_its_tokens_everywhere(world, shared):
    """The user's only role on a project is removed at the hub: a token
    for that project, issued at spoke2 and accepted everywhere, is
    refused everywhere once the agent has passed (the removal's
    revocation event where Keystone makes one, and the assignment's
    delete at every spoke)."""
    call = shared['call']
    project = call('POST', '/projects', json={'project': {
        'name': hex_id(), 'domain_id': 'default'}}).json()['project']
    role = call('GET', '/roles?name=member').json()['roles'][0]
    grant = (f'/projects/{project["id"]}/users/{shared["user"]}/roles/'
             f'{role["id"]}')
    call('PUT', grant)
    world.sync()
    token = _token(world.spokes[1], dict(shared, project=project['id']))
    assert set(_statuses(world, token, world.every()).values()) == {200}
    call('DELETE', grant)
    assert _validates(world, world.hub, token) == 404
    # Not synced yet: the spokes still hold the role.
    assert set(_statuses(world, token, world.spokes).values()) == {200}
    world.sync()
    assert set(_statuses(world, token, world.every()).values()) == {404}


def test_a_logout_at_a_spoke_reaches_the_hub_and_the_other_spoke(
        world, shared):
    spoke1 = world.spokes[0]
    token = _token(spoke1, shared)
    made = _revoked_everywhere(
        world, spoke1, token, lambda: personas.admin_caller(
            spoke1, world.session(spoke1))(
                'DELETE', '/auth/tokens', headers={'X-Subject-Token': token}))
    for id_ in made:
        # At the hub it is spoke1's (so the feed never sends it back).
        assert _changes(world.hub, id_) == [('create', 'spoke1')]


def test_syncing_again_writes_nothing(world, shared):
    def heads():
        with_max = {}
        for site in world.every():
            with site.engine().connect() as conn:
                with_max[site.name] = conn.execute(
                    sa.select(sa.func.max(tables.change.c.id))).scalar()
        return with_max
    world.sync()
    before = heads()
    world.sync()
    assert heads() == before
    world.assert_converged(types=[TYPE])
