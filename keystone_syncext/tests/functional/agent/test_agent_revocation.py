"""Shared-key mode end to end: the hub (30.0), spoke1 (30.0) and spoke2
(29.1) run with one Fernet token key repository, as an operator's
configuration management would distribute it (doc/install.md), and the
agent syncs revocation events both ways.

A token issued at one site is accepted at every site; after a logout, a
password change, a disabled user, a removed role or a deleted project
at the hub, and one agent pass, every other site refuses it. The same
from a spoke: a logout at spoke1, and a logout and a password change at
spoke2 (29.1), reach the hub and the other spoke. Each event arrives
with its original times (the same content hash, which covers them), is
never echoed back to the site it came from, and syncing again writes
nothing. An expired event goes everywhere with Keystone's own purge of
it at one site. What a spoke changes of the hub's data stays a local
difference the agent repairs: a role removed at a spoke makes no event
and is not sent up (doc/install.md, "Shared-key mode").
"""

import datetime
import os

import pytest
import sqlalchemy as sa

from keystone_syncext.common import revocation
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


def _member_token(world, shared, site):
    """A new project at the hub with the shared user a member of it,
    synced; (its id, the grant's path, a token for it issued at
    ``site``)."""
    call = shared['call']
    project = call('POST', '/projects', json={'project': {
        'name': hex_id(), 'domain_id': 'default'}}).json()['project']
    role = call('GET', '/roles?name=member').json()['roles'][0]
    grant = (f'/projects/{project["id"]}/users/{shared["user"]}/roles/'
             f'{role["id"]}')
    call('PUT', grant)
    world.sync()
    return project['id'], grant, _token(
        site, dict(shared, project=project['id']))


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
    project, _, token = _member_token(world, shared, world.spokes[0])
    made = _revoked_everywhere(world, world.hub, token, lambda: call(
        'DELETE', f'/projects/{project}'))
    assert any(f':{project}:' in i for i in made), made


def test_a_removed_role_refuses_its_tokens_everywhere(world, shared):
    """The user's only role on a project is removed at the hub: a token
    for that project, issued at spoke2 and accepted everywhere, is
    refused everywhere once the agent has passed (the removal's
    revocation event where Keystone makes one, and the assignment's
    delete at every spoke)."""
    call = shared['call']
    _, grant, token = _member_token(world, shared, world.spokes[1])
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


def _plant_expired_event(site):
    """An event revoked long ago, in ``site``'s table as Keystone recorded
    it then (its capture triggers log it): expired under any ``[token]
    expiration``, so Keystone's next revocation at a site purges it.
    Returns its id."""
    old = datetime.datetime(2000, 1, 1)
    event = {'issued_before': old, 'revoked_at': old,
             'audit_id': hex_id()[:22]}
    with site.engine().begin() as conn:
        table = sa.Table('revocation_event', sa.MetaData(),
                         autoload_with=conn)
        conn.execute(table.insert().values(**event))
    return revocation.identity(event)


def test_a_logout_at_spoke2_reaches_the_others_with_its_purge(
        world, shared):
    """A logout at spoke2 (29.1) is refused at the hub and spoke1 after
    one pass. Keystone purged an expired event at spoke2 as it recorded
    the logout: that delete goes up and out as well, so every site purges
    by the same rule at once, and it is not echoed back either."""
    spoke2 = world.spokes[1]
    expired = _plant_expired_event(world.hub)
    world.sync()
    for site in world.every():
        assert expired in world.sync_items(site, TYPE), site.name
    token = _token(spoke2, shared)
    made = _revoked_everywhere(
        world, spoke2, token, lambda: personas.admin_caller(
            spoke2, world.session(spoke2))(
                'DELETE', '/auth/tokens', headers={'X-Subject-Token': token}))
    for id_ in made:
        assert _changes(world.hub, id_) == [('create', 'spoke2')]
    for site in world.every():
        assert expired not in world.sync_items(site, TYPE), site.name
    # Purged by Keystone at spoke2, sent up once, never sent back down.
    assert _changes(spoke2, expired) == [('create', 'hub'),
                                         ('delete', None)]
    assert _changes(world.hub, expired) == [('create', None),
                                            ('delete', 'spoke2')]
    assert [op for op, _ in _changes(world.spokes[0], expired)] == [
        'create', 'delete']


def _reconcile(world, spoke):
    world.agent('reconcile', '--spoke', spoke.name)


def test_a_password_change_at_spoke2_revokes_everywhere(world, shared):
    """The event goes up; the password does not (users are the hub's,
    doc/security.md): it is a difference made at the spoke, which the
    agent's audit or a reconcile puts back to the hub's."""
    spoke2 = world.spokes[1]
    token = _token(spoke2, shared)
    new = remember_secret(hex_id(), 'revocation suite spoke2 password')
    _revoked_everywhere(world, spoke2, token, lambda: personas.admin_caller(
        spoke2, world.session(spoke2))(
            'PATCH', f'/users/{shared["user"]}',
            json={'user': {'password': new}}))
    at_spoke2 = dict(shared, password=new)
    _token(spoke2, at_spoke2)
    assert issue_token(world.hub, password_identity(
        shared['user'], new)).status_code == 401
    _reconcile(world, spoke2)
    assert issue_token(spoke2, password_identity(
        shared['user'], new)).status_code == 401
    _token(spoke2, shared)


def test_a_role_removed_at_spoke2_stays_there(world, shared):
    """Keystone makes no revocation event for a removed role, and an
    assignment is the hub's: the removal refuses the token at spoke2
    only, is not sent up, and the reconcile puts the assignment back
    (the token is then accepted there again, nothing revoked it)."""
    spoke2 = world.spokes[1]
    _, grant, token = _member_token(world, shared, spoke2)
    assert set(_statuses(world, token, world.every()).values()) == {200}
    before = {s.name: set(world.sync_items(s, TYPE))
              for s in world.every()}
    personas.admin_caller(spoke2, world.session(spoke2))('DELETE', grant)
    world.sync()
    assert _statuses(world, token, world.every()) == {
        'hub': 200, 'spoke1': 200, 'spoke2': 404}
    assert {s.name: set(world.sync_items(s, TYPE))
            for s in world.every()} == before
    _reconcile(world, spoke2)
    assert set(_statuses(world, token, world.every()).values()) == {200}


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
