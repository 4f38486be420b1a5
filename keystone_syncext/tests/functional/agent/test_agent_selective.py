"""Selective sync end to end: a hub and one spoke on Keystone 30.0, real
processes, the real command line, with rules that exclude a domain, a
project subtree and a user name pattern. What the rules keep out never
reaches the spoke, and what the spoke holds of it is never changed or
deleted by the agent; everything else syncs with the hub's ids.
"""

import concurrent.futures
import os
import uuid

import pytest

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import harness as agent_tests

TAG = uuid.uuid4().hex[:8]
RULES = (f'domain:xd-{TAG}, project:xp-{TAG}, name:user:svc-*')


def _made(call, path, key, body):
    return call('POST', path, json={key: body}).json()[key]['id']


def _hub_content(hub):
    """What the rules exclude and what they let through, at the hub."""
    call = personas.admin_caller(hub)
    ids = {}
    ids['xdomain'] = _made(call, '/domains', 'domain', {'name': f'xd-{TAG}'})
    ids['xdomain_project'] = _made(call, '/projects', 'project', {
        'name': f'in-xd-{TAG}', 'domain_id': ids['xdomain']})
    ids['xdomain_user'] = _made(call, '/users', 'user', {
        'name': f'bob-{TAG}', 'domain_id': ids['xdomain']})
    ids['xtop'] = _made(call, '/projects', 'project', {
        'name': f'xp-{TAG}', 'domain_id': 'default'})
    ids['xchild'] = _made(call, '/projects', 'project', {
        'name': f'xc-{TAG}', 'domain_id': 'default',
        'parent_id': ids['xtop']})
    ids['svc'] = _made(call, '/users', 'user', {
        'name': f'svc-{TAG}', 'domain_id': 'default'})
    ids['svc2'] = _made(call, '/users', 'user', {
        'name': f'svc-2-{TAG}', 'domain_id': 'default'})
    ids['carol'] = _made(call, '/users', 'user', {
        'name': f'carol-{TAG}', 'domain_id': 'default'})
    ids['project'] = _made(call, '/projects', 'project', {
        'name': f'ok-{TAG}', 'domain_id': 'default'})
    ids['user'] = _made(call, '/users', 'user', {
        'name': f'alice-{TAG}', 'domain_id': 'default',
        'password': f'pw-{TAG}'})
    ids['role'] = _made(call, '/roles', 'role', {'name': f'r-{TAG}'})
    u, p, r = ids['user'], ids['project'], ids['role']
    for target, actor in ((p, u), (ids['xchild'], u), (p, ids['svc'])):
        call('PUT', f'/projects/{target}/users/{actor}/roles/{r}')
    ids['grant'] = f'UserProject:{u}:{p}:{r}:0'
    ids['xchild_grant'] = f'UserProject:{u}:{ids["xchild"]}:{r}:0'
    ids['svc_grant'] = f'UserProject:{ids["svc"]}:{p}:{r}:0'
    return ids


EXCLUDED = {'xdomain': 'domain', 'xdomain_project': 'project',
            'xdomain_user': 'user', 'xtop': 'project', 'xchild': 'project',
            'svc': 'user', 'svc2': 'user', 'xchild_grant': 'role_assignment',
            'svc_grant': 'role_assignment'}
INCLUDED = {'project': 'project', 'user': 'user', 'carol': 'user',
            'role': 'role',
            'grant': 'role_assignment'}


@pytest.fixture(scope='module')
def world(tmp_path_factory, sqlite_dir, schema_template, server_kind):
    workdir = str(tmp_path_factory.mktemp('agent_selective'))
    db = backends.get('sqlite', sqlite_dir)
    made = []

    def new_site(name):
        site, dbname = conftest._new_site(
            db, schema_template(db, conftest.VENV30), f'{workdir}/{name}',
            name, conftest.VENV30, app=sites.SYNC_APP,
            server_kind=server_kind,
            hub_site_id=None if name == 'hub' else 'hub')
        made.append((db, site, dbname))
        return site

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            hub, spoke = [f.result() for f in [
                pool.submit(new_site, n) for n in ('hub', 'spoke1')]]
        w = agent_tests.World(workdir, hub, [spoke])
        sites.write_clouds_yaml(os.path.join(workdir, 'clouds.yaml'), {
            'hub': hub.admin_auth(), 'spoke1': spoke.add_agent_account()})
        w.write_conf(spokes='spoke1')
        with open(w.conf, 'a') as f:
            f.write(f'[selection]\nexclude = {RULES}\n')
        yield w
    finally:
        conftest._stop_and_drop(made)


def _held(world, site, type_, id_):
    """The spoke's sync representation of one resource, or None."""
    resp = world.session(site).get(f'{site.url}/sync/resources/{type_}/'
                                   f'{id_}', raise_exc=False)
    assert resp.status_code in (200, 404), resp.text
    return resp.json() if resp.status_code == 200 else None


def test_excluded_resources_never_reach_the_spoke_or_change_there(world):
    hub, spoke = world.hub, world.spokes[0]
    ids = _hub_content(hub)
    # A spoke-local user with the name of an excluded hub user: join
    # must not re-key it (the rules keep svc-* users out).
    local_svc = _made(personas.admin_caller(spoke), '/users', 'user', {
        'name': f'svc-{TAG}', 'domain_id': 'default'})
    out = world.agent('join', '--spoke', 'spoke1').stdout
    assert local_svc not in out and 'admin' in out
    # The excluded subtree was synced once, before the rule: the spoke
    # holds the top of it, written there as the agent would have.
    xtop = _held(world, hub, 'project', ids['xtop'])
    put = world.session(spoke).put(
        f'{spoke.url}/sync/resources/project/{ids["xtop"]}',
        json={'resource': xtop['resource']})
    assert put.status_code == 201, put.text

    world.sync()
    spoke.admin_password = hub.admin_password   # joined and synced
    world._sessions.clear()
    for label, type_ in INCLUDED.items():
        here = _held(world, spoke, type_, ids[label])
        assert here and here['hash'] == _held(world, hub, type_,
                                              ids[label])['hash'], label
    for label, type_ in EXCLUDED.items():
        if label != 'xtop':
            assert _held(world, spoke, type_, ids[label]) is None, label
    assert _held(world, spoke, 'user', local_svc) is not None
    assert _held(world, spoke, 'project', ids['xtop'])['hash'] == \
        xtop['hash']

    # In one pass, the hub changes the excluded project and an included
    # one, renames an included user into the excluded pattern, and
    # deletes an excluded user the spoke holds and an included one.
    svc2 = _held(world, hub, 'user', ids['svc2'])
    put = world.session(spoke).put(
        f'{spoke.url}/sync/resources/user/{ids["svc2"]}',
        json={'resource': svc2['resource']})
    assert put.status_code == 201, put.text
    call = personas.admin_caller(hub)
    for project in ids['xtop'], ids['project']:
        call('PATCH', f'/projects/{project}', json={'project': {
            'description': 'changed at the hub'}})
    before = _held(world, spoke, 'user', ids['user'])
    call('PATCH', f'/users/{ids["user"]}', json={'user': {
        'name': f'svc-renamed-{TAG}'}})
    for user in ids['svc2'], ids['carol']:
        call('DELETE', f'/users/{user}')
    world.sync()
    assert _held(world, spoke, 'project', ids['project'])['resource'][
        'description'] == 'changed at the hub'
    assert _held(world, spoke, 'user', ids['carol']) is None
    # Out of scope at the hub now, so left as it was, not deleted.
    assert _held(world, spoke, 'user', ids['user'])['hash'] == \
        before['hash']
    assert _held(world, spoke, 'project', ids['xtop'])['hash'] == \
        xtop['hash']
    assert _held(world, spoke, 'user', ids['svc2'])['hash'] == svc2['hash']
    assert _held(world, spoke, 'user', local_svc) is not None


def test_a_malformed_rule_stops_the_agent_before_any_write(world, tmp_path):
    conf = str(tmp_path / 'bad.conf')
    world.write_conf(conf, spokes='spoke1')
    with open(conf, 'a') as f:
        f.write('[selection]\nexclude = domain:x\n[spoke:spoke1]\n'
                'include = typo:user\n')
    proc = world.agent('run', '--once', conf=conf, check=False)
    assert proc.returncode != 0
    assert "spoke spoke1: selection rule 'typo:user'" in proc.stderr
