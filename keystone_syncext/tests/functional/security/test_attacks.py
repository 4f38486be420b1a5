"""A spoke's system admin attacks the hub through the sync, end to end.

The same three real Keystones as test_agent.py (hub 30.0, spoke1 30.0,
spoke2 29.1, joined and synced by the real ``keystone-sync``). Mallory is
a spoke-local user with the system admin role at spoke1, and nothing at
the hub. Each attack is made at spoke1 through its sync API or its
ordinary API, then the agent runs; every time the hub's application
credentials must be what they were (row for row), the attacker's secret
must not authenticate at the hub, and the agent must keep the hub's
refusal, with a reason naming no secret, as a pending item of spoke1
(``keystone-sync status``). See doc/security.md.
"""

import json
import os
import time
import uuid

import bcrypt
import pytest
import requests
import sqlalchemy as sa
import yaml

from keystone_syncext.agent import state as state_mod
from keystone_syncext.testing import backends
from keystone_syncext.testing import secrets as secret_scan
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import harness as base
from keystone_syncext.tests.functional.agent.harness import issue_token
from keystone_syncext.tests.functional.agent.harness import password_identity
from keystone_syncext.tests.functional.agent.harness import remember_secret

# The same fixture (its own instance for this module).
world = base.world

_CRED_COLUMNS = ('id', 'name', 'description', 'user_id', 'project_id',
                 'system', 'secret_hash', 'expires_at', 'unrestricted')


def _tag():
    return uuid.uuid4().hex[:8]


class Mallory:
    """A spoke-local system admin of ``site``, calling with her own
    token."""

    def __init__(self, world, site):
        self.site = site
        password = remember_secret(f'mallory-{_tag()}', 'password of mallory')
        call = _caller(world, site)
        user = call('POST', '/users', json={'user': {
            'name': f'mallory-{_tag()}', 'domain_id': 'default',
            'password': password}}).json()['user']
        admin = call('GET', '/roles?name=admin').json()['roles'][0]['id']
        call('PUT', f'/system/users/{user["id"]}/roles/{admin}')
        self.user_id = user['id']
        resp = issue_token(site, password_identity(user['id'], password),
                           {'system': {'all': True}})
        assert resp.status_code == 201, resp.text
        self.headers = {'X-Auth-Token': resp.headers['X-Subject-Token']}

    def __call__(self, method, path, headers=None, **kw):
        return requests.request(method, self.site.url + path, timeout=60,
                                headers=dict(self.headers, **(headers or {})),
                                **kw)


def _caller(world, site):
    """The ordinary API as ``site``'s admin (the world's session there);
    fails on an error status."""
    return personas.admin_caller(site, world.session(site))


def _hub_credentials(world):
    """Every application credential row at the hub and its roles."""
    with world.hub.engine().connect() as conn:
        creds = conn.execute(sa.text(
            f'SELECT {", ".join(_CRED_COLUMNS)} FROM application_credential '
            'ORDER BY id')).all()
        roles = conn.execute(sa.text(
            'SELECT c.id, r.role_id FROM application_credential_role r '
            'JOIN application_credential c ON c.internal_id = '
            'r.application_credential_id ORDER BY 1, 2')).all()
    return [tuple(r) for r in creds], [tuple(r) for r in roles]


def _named(world, site, kind, name):
    return _caller(world, site)('GET', f'/{kind}?name={name}').json()[
        kind][0]['id']


def _hash(secret):
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(4)).decode()


def _credential(id_, user_id, project_id, roles, secret_hash):
    return {'id': id_, 'name': f'evil-{id_[:8]}', 'description': None,
            'user_id': user_id, 'project_id': project_id, 'system': None,
            'secret_hash': secret_hash, 'expires_at': None,
            'unrestricted': False, 'roles': sorted(roles),
            'access_rules': []}


def _plant(mallory, resource, expect=201, headers=None):
    """Mallory PUTs a credential at her spoke through its sync API."""
    resp = mallory('PUT', '/sync/resources/application_credential/'
                   f'{resource["id"]}', json={'resource': resource},
                   headers=headers)
    assert resp.status_code == expect, resp.text
    return resp


def _authenticates(site, id_, secret):
    resp = issue_token(site, {'methods': ['application_credential'],
                              'application_credential': {
                                  'id': id_, 'secret': secret}})
    return resp.status_code == 201


def _refusal(world, id_):
    """The reason the agent keeps for the hub's refusal of ``id_`` from
    spoke1, or None."""
    engine = sa.create_engine(world.state)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(state_mod.pending.c.last_error)
                               .where(state_mod.pending.c.spoke ==
                                      state_mod.up_key('spoke1'),
                                      state_mod.pending.c.resource_id ==
                                      id_)).first()
    finally:
        engine.dispose()
    return row.last_error if row else None


def _sync(world):
    """One run; it reports spoke1 as not converged while the hub refuses
    what spoke1 sent, so its status is not judged here."""
    return world.agent('run', '--once', check=False)


def _judge(world, before, id_, secret, secret_hash, why):
    """The hub's credentials unchanged, the secret refused there, the
    refusal kept with ``why`` in its reason and no secret in it."""
    assert _hub_credentials(world) == before
    assert not _authenticates(world.hub, id_, secret)
    reason = _refusal(world, id_)
    assert reason is not None, 'no refusal recorded'
    assert why in reason, reason
    assert secret not in reason and secret_hash not in reason, reason
    status = world.status()['spoke1']
    assert status['pending'] >= 1, status
    assert status['pending_reason'], status
    log = open(world.log).read()
    assert f'application_credential {id_}' in log
    assert secret_hash not in log


@pytest.fixture(scope='module')
def mallory(world):
    return Mallory(world, world.spokes[0])


@pytest.fixture(scope='module')
def hub_ids(world):
    return {'admin': _named(world, world.hub, 'users', 'admin'),
            'project': _named(world, world.hub, 'projects', 'admin'),
            'admin_role': _named(world, world.hub, 'roles', 'admin')}


def _member(world, system_role=None):
    """A hub user holding role ``member`` on a new project (and
    ``system_role`` on the system), synced to the spokes: (user id,
    password, project id, member role id)."""
    call, tag = _caller(world, world.hub), _tag()
    password = remember_secret(f'pw-{tag}', 'password of a member')
    user = call('POST', '/users', json={'user': {
        'name': f'member-{tag}', 'domain_id': 'default',
        'password': password}}).json()['user']['id']
    project = call('POST', '/projects', json={'project': {
        'name': f'mp-{tag}', 'domain_id': 'default'}}).json()['project']['id']
    role = _named(world, world.hub, 'roles', 'member')
    call('PUT', f'/projects/{project}/users/{user}/roles/{role}')
    if system_role:
        sys_role = _named(world, world.hub, 'roles', system_role)
        call('PUT', f'/system/users/{user}/roles/{sys_role}')
    _sync(world)
    return user, password, project, role


def test_credential_for_the_hub_admin_with_the_admin_role(world, mallory,
                                                          hub_ids):
    before = _hub_credentials(world)
    id_, secret = uuid.uuid4().hex, remember_secret(f's-{_tag()}', 'secret')
    secret_hash = _hash(secret)
    secret_scan.REGISTRY.secret(secret_hash, 'attacker secret hash')
    _plant(mallory, _credential(id_, hub_ids['admin'], hub_ids['project'],
                                [hub_ids['admin_role']], secret_hash))
    assert _authenticates(mallory.site, id_, secret)   # at her own spoke
    _sync(world)
    _judge(world, before, id_, secret, secret_hash, '403')
    assert 'holds' in _refusal(world, id_)
    # And it never reached the other spoke either.
    assert not _authenticates(world.spokes[1], id_, secret)


def test_credential_for_a_user_with_a_system_role(world, mallory):
    user, _, project, member = _member(world, system_role='reader')
    before = _hub_credentials(world)
    id_, secret = uuid.uuid4().hex, remember_secret(f's-{_tag()}', 'secret')
    secret_hash = _hash(secret)
    _plant(mallory, _credential(id_, user, project, [member], secret_hash))
    _sync(world)
    _judge(world, before, id_, secret, secret_hash, 'system role')


def test_credential_with_roles_the_user_lacks_at_the_hub(world, mallory):
    user, _, project, member = _member(world)
    # A role the hub has, granted to the user at the spoke only.
    call, tag = _caller(world, world.hub), _tag()
    extra = call('POST', '/roles', json={'role': {
        'name': f'extra-{tag}'}}).json()['role']['id']
    _sync(world)
    grant = mallory('PUT', f'/projects/{project}/users/{user}/roles/{extra}')
    assert grant.status_code == 204, grant.text
    before = _hub_credentials(world)
    id_, secret = uuid.uuid4().hex, remember_secret(f's-{_tag()}', 'secret')
    secret_hash = _hash(secret)
    _plant(mallory, _credential(id_, user, project, [member, extra],
                                secret_hash))
    _sync(world)
    # Refused as another site's write (403), not as a missing dependency
    # (400) the agent would wait for.
    _judge(world, before, id_, secret, secret_hash, ': 403 ')
    assert f'no role {extra}' in _refusal(world, id_)


def test_overwriting_the_secret_of_a_credential_the_hub_made(world,
                                                             mallory):
    user, password, project, _ = _member(world)
    good = remember_secret(f'good-{_tag()}', 'the owner\'s secret')
    id_ = base.make_app_cred(world.hub, user, password, project,
                             f'own-{_tag()}', good)['id']
    _sync(world)
    spoke = mallory.site
    assert _authenticates(spoke, id_, good)
    before = _hub_credentials(world)
    theirs = mallory('GET', f'/sync/resources/application_credential/{id_}'
                     ).json()['resource']
    evil = remember_secret(f'evil-{_tag()}', 'attacker secret')
    evil_hash = _hash(evil)
    # In place (the spoke refuses now: a secret never changes), then by
    # deleting it at the spoke and making it again under the same id.
    mallory('PUT', f'/sync/resources/application_credential/{id_}',
            json={'resource': dict(theirs, secret_hash=evil_hash)})
    assert mallory('DELETE', f'/sync/resources/application_credential/'
                   f'{id_}').status_code == 204
    _plant(mallory, dict(theirs, secret_hash=evil_hash))
    assert _authenticates(spoke, id_, evil)
    _sync(world)
    _judge(world, before, id_, evil, evil_hash, '409')
    assert _authenticates(world.hub, id_, good)   # the owner still gets in
    # Nor may a spoke delete it at the hub (then make its own under the
    # id): the hub made it.
    resp = world.session(world.hub).delete(
        f'{world.hub.url}/sync/resources/application_credential/{id_}',
        headers={'OpenStack-Sync-Origin': 'spoke1'}, raise_exc=False)
    assert resp.status_code == 403, resp.text
    assert _hub_credentials(world) == before


def test_password_reset_then_a_credential_through_the_ordinary_api(
        world, mallory, hub_ids):
    spoke = mallory.site
    admin = hub_ids['admin']
    before = _hub_credentials(world)
    password = remember_secret(f'reset-{_tag()}', 'reset admin password')
    resp = mallory('PATCH', f'/users/{admin}',
                   json={'user': {'password': password}})
    assert resp.status_code == 200, resp.text
    # Keystone revokes the user's tokens issued up to the change, to the
    # second: a token of the same second would be refused.
    time.sleep(1.1)
    try:
        tok = issue_token(spoke, password_identity(admin, password),
                          {'project': {'id': hub_ids['project']}})
        assert tok.status_code == 201, tok.text
        resp = requests.post(
            f'{spoke.url}/users/{admin}/application_credentials',
            headers={'X-Auth-Token': tok.headers['X-Subject-Token']},
            json={'application_credential': {'name': f'ord-{_tag()}'}},
            timeout=60)
        assert resp.status_code == 201, resp.text
        cred = resp.json()['application_credential']
        secret = remember_secret(cred['secret'], 'attacker secret')
        secret_hash = mallory(
            'GET', f'/sync/resources/application_credential/{cred["id"]}'
        ).json()['resource']['secret_hash']
        _sync(world)
        _judge(world, before, cred['id'], secret, secret_hash, 'holds')
    finally:
        # The admin's password back as the hub has it, for the rest of
        # the module (the agent leaves a spoke-only change alone).
        resp = mallory('PATCH', f'/users/{admin}', json={
            'user': {'password': world.hub.admin_password}})
        assert resp.status_code == 200, resp.text


def test_a_crafted_origin_header(world, mallory, hub_ids):
    """Claiming at the spoke that the hub wrote it keeps it at the spoke
    (the agent sends up only what the spoke made itself); and a write
    reaching the hub that claims to come from the hub itself (a spoke
    that took the hub's site id) is judged like any other site's."""
    before = _hub_credentials(world)
    id_, secret = uuid.uuid4().hex, remember_secret(f's-{_tag()}', 'secret')
    secret_hash = _hash(secret)
    resource = _credential(id_, hub_ids['admin'], hub_ids['project'],
                           [hub_ids['admin_role']], secret_hash)
    _plant(mallory, resource, headers={'OpenStack-Sync-Origin': 'hub'})
    _sync(world)
    assert _hub_credentials(world) == before
    assert not _authenticates(world.hub, id_, secret)

    sess = world.session(world.hub)
    for origin in ('hub', 'spoke1'):
        resp = sess.put(
            f'{world.hub.url}/sync/resources/application_credential/{id_}',
            json={'resource': resource}, raise_exc=False,
            headers={'OpenStack-Sync-Origin': origin})
        assert resp.status_code == 403, (origin, resp.text)
        body = json.dumps(resp.json())
        assert 'holds' in body and secret_hash not in body
    assert _hub_credentials(world) == before


@pytest.fixture
def new_spoke(world, sqlite_dir, schema_template):
    """A spoke bootstrapped on its own, not joined yet, in clouds.yaml
    as ``spoke3`` with the agent's account."""
    db = backends.get('sqlite', sqlite_dir)
    site, dbname = conftest._new_site(
        db, schema_template(db, conftest.VENV30), f'{world.dir}/spoke3',
        'spoke3', conftest.VENV30, app=sites.SYNC_APP, hub_site_id='hub')
    try:
        path = os.path.join(world.dir, 'clouds.yaml')
        with open(path) as f:
            clouds = {n: c['auth'] for n, c in
                      yaml.safe_load(f)['clouds'].items()}
        clouds['spoke3'] = site.add_agent_account()
        secret_scan.REGISTRY.secret(clouds['spoke3']['password'],
                                    'password of spoke3\'s agent')
        secret_scan.REGISTRY.secret(site.admin_password,
                                    'bootstrap password of spoke3')
        sites.write_clouds_yaml(path, clouds)
        yield site
    finally:
        conftest._stop_and_drop([(db, site, dbname)])


def test_join_leaves_a_privileged_spoke_account_alone(world, new_spoke):
    """``ops`` administers spoke3; someone at the hub made a user named
    ``ops`` too (a domain manager can). Join must not merge them: the
    hub's password would then open spoke3's system admin. The plan says
    so, and spoke3's operator still logs in as before."""
    spoke, hub = new_spoke, world.hub
    ops_password = remember_secret(f'ops-{_tag()}', 'spoke3 ops password')
    call = _caller(world, spoke)
    ops = call('POST', '/users', json={'user': {
        'name': 'ops', 'domain_id': 'default',
        'password': ops_password}}).json()['user']['id']
    admin = call('GET', '/roles?name=admin').json()['roles'][0]['id']
    call('PUT', f'/system/users/{ops}/roles/{admin}')
    hub_password = remember_secret(f'hubops-{_tag()}', 'hub ops password')
    hub_ops = _caller(world, hub)('POST', '/users', json={'user': {
        'name': 'ops', 'domain_id': 'default',
        'password': hub_password}}).json()['user']['id']

    plan = json.loads(world.agent('join', '--spoke', 'spoke3', '--dry-run',
                                  '-f', 'json').stdout)
    [row] = [r for r in plan if r['spoke_id'] == ops]
    assert row['outcome'] == 'left alone' and row['hub_id'] is None, plan
    assert 'system admin' in row['note'], plan
    # The bootstrap admin is system admin at both: it still joins.
    [admin_row] = [r for r in plan
                   if r['type'] == 'user' and r['name'] == 'admin']
    assert admin_row['outcome'] == 'would re-key', plan
    assert 'the hub account holds as much' in admin_row['note'], plan
    # The agent's own account is never merged (the hub has none named so
    # here, so it is simply not in the plan).
    assert 'keystone-sync' not in {r['name'] for r in plan}

    world.agent('join', '--spoke', 'spoke3')
    # The admin was re-keyed: a new session (by name) sees the result.
    users = {u['name']: u['id'] for u in spoke.admin_session().get(
        spoke.url + '/users').json()['users']}
    assert users['ops'] == ops != hub_ops
    conf = os.path.join(world.dir, 'spoke3.conf')
    world.write_conf(path=conf, spokes='spoke3')
    with open(conf, 'a') as f:
        # The hub's ops cannot be made at spoke3 while its own ops holds
        # the name; left out here, as an operator would, so that the run
        # ends (run --once keeps retrying a refused item: see the report).
        f.write('[spoke:spoke3]\nexclude = name:user:ops\n')
    world.agent('run', '--once', conf=conf)
    sysscope = {'system': {'all': True}}
    assert issue_token(spoke, password_identity(ops, ops_password),
                       sysscope).status_code == 201
    # The hub's ops never gets spoke3's system admin role.
    resp = issue_token(spoke, password_identity(hub_ops, hub_password),
                       sysscope)
    assert resp.status_code != 201, resp.text
