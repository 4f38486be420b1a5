"""Conflicts end to end: partitions with edits on both sides, under each
strategy, on the same three real Keystones as test_agent.py (hub 30.0,
spoke1 30.0, spoke2 29.1, joined and synced by the real command line).

A partition is a spoke stopped while the hub changes resources; the agent
runs meanwhile (the other spoke gets the hub's changes), then the spoke
comes back and changes the same resources before the agent reaches it
again. Each strategy must name the same winner every time: the results
are judged through Keystone's ordinary v3 API at every site, and every
conflict must be recorded (``keystone-sync conflicts``) with both
versions, the winner and why, and counted by ``status``.
"""

import json
import os
import time
import uuid

import pytest

from keystone_syncext.tests import personas
from keystone_syncext.tests.functional.agent import harness as base

# The same fixture (its own instance for this module).
world = base.world
base_world = []


@pytest.fixture(autouse=True)
def _sessions(world):
    """Hand the module's world to the helpers below."""
    base_world[:] = [world]


def _tag():
    return uuid.uuid4().hex[:8]


def _conf(world, name, strategy, authoritative=None):
    path = os.path.join(world.dir, f'{name}.conf')
    world.write_conf(path=path)
    with open(path, 'a') as f:
        f.write(f'[conflicts]\nstrategy = {strategy}\n')
        for spoke, rules in (authoritative or {}).items():
            f.write(f'[spoke:{spoke}]\nauthoritative = {rules}\n')
    return path


def _project(call, name, domain='default'):
    return call('POST', '/projects', json={'project': {
        'name': name, 'domain_id': domain,
        'description': 'as made'}}).json()['project']['id']


def _call(site, method, path, **kw):
    """Keystone's ordinary API as the site's admin, with one token per
    site kept for the module (``World.session``)."""
    resp = base_world[0].session(site).request(site.url + path, method,
                                               raise_exc=False, **kw)
    return resp


def _describe(site, kind, id_, text):
    resp = _call(site, 'PATCH', f'/{kind}s/{id_}', json={
        kind: {'description': text}})
    assert resp.status_code == 200, resp.text


def _described(site, kind, id_):
    """The description Keystone's ordinary API shows, or None when the
    resource is not there."""
    resp = _call(site, 'GET', f'/{kind}s/{id_}')
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    return resp.json()[kind].get('description')


def _partition(world, spoke, at_hub, conf):
    """``spoke`` is stopped while ``at_hub()`` changes the hub and the
    agent runs: the other spoke gets the changes, ``spoke`` is reported
    as not converged. Then ``spoke`` is started again."""
    spoke.stop()
    try:
        at_hub()
        proc = world.agent('run', '--once', conf=conf, check=False)
        assert proc.returncode == 1, proc.stdout
        assert f'spoke {spoke.name}: not converged' in proc.stderr
    finally:
        spoke.start()


def _conflicts(world, conf, ids):
    out = world.agent('conflicts', '--json', '--limit', '0',
                      conf=conf).stdout
    return {c['resource_id']: c for c in json.loads(out)
            if c['resource_id'] in ids}


def _sync_twice(world, conf):
    """The first run resolves; a version the spoke won reaches the hub in
    it, and the other spoke in the next."""
    for _ in range(2):
        world.agent('run', '--once', conf=conf)


def test_hub_wins_by_default(world):
    hub, spoke1 = world.hub, world.spokes[0]
    conf = _conf(world, 'hub-wins', 'hub_wins')
    call, tag = personas.admin_caller(hub), _tag()
    a, b = (_project(call, f'hw-{n}-{tag}') for n in 'ab')
    world.agent('run', '--once', conf=conf)

    def at_hub():
        _describe(hub, 'project', a, 'hub edit')
        call('DELETE', f'/projects/{b}')
    _partition(world, spoke1, at_hub, conf)
    _describe(spoke1, 'project', a, 'spoke1 edit')
    _describe(spoke1, 'project', b, 'spoke1 edit')
    _sync_twice(world, conf)

    for site in world.every():
        assert _described(site, 'project', a) == 'hub edit', site.name
        assert _described(site, 'project', b) is None, site.name
    got = _conflicts(world, conf, {a, b})
    assert set(got) == {a, b}
    for c in got.values():
        assert c['spoke'] == 'spoke1' and c['winner'] == 'hub', c
        assert c['strategy'] == 'hub_wins'
        assert c['spoke_version']['description'] == 'spoke1 edit'
    assert got[a]['hub_version']['description'] == 'hub edit'
    assert got[b]['hub_version'] is None           # deleted at the hub
    assert got[a]['fields'] == ['description']
    assert world.status()['spoke1']['conflicts'] >= 2
    world.assert_converged(('project',))


def test_last_writer_wins_by_updated_at(world):
    """On the 29.1 spoke, authoritative for nothing: the times are
    compared and named, but its version never reaches the hub (its
    admins could otherwise rewrite anything there): what it changed
    after the hub loses too, and its edit of a resource the hub deleted
    earlier does not bring the resource back."""
    hub, spoke2 = world.hub, world.spokes[1]
    conf = _conf(world, 'lww', 'last_writer_wins')
    call, tag = personas.admin_caller(hub), _tag()
    early, late, gone = (_project(call, f'lw-{n}-{tag}')
                         for n in ('early', 'late', 'gone'))
    world.agent('run', '--once', conf=conf)
    _describe(spoke2, 'project', early, 'spoke2 edit, before the hub')
    time.sleep(1.1)    # updated_at apart, whatever the column precision

    def at_hub():
        for id_ in early, late:
            _describe(hub, 'project', id_, 'hub edit')
        call('DELETE', f'/projects/{gone}')
    _partition(world, spoke2, at_hub, conf)
    time.sleep(1.1)
    _describe(spoke2, 'project', late, 'spoke2 edit, after the hub')
    _describe(spoke2, 'project', gone, 'spoke2 edit, after the delete')
    _sync_twice(world, conf)

    for site in world.every():
        assert _described(site, 'project', early) == 'hub edit', site.name
        assert _described(site, 'project', late) == 'hub edit', site.name
        assert _described(site, 'project', gone) is None, site.name
    got = _conflicts(world, conf, {early, late, gone})
    assert {i: c['winner'] for i, c in got.items()} == {
        early: 'hub', late: 'hub', gone: 'hub'}
    assert 'the hub changed it last' in got[early]['reason']
    assert 'spoke spoke2 changed it last' in got[late]['reason']
    assert 'not authoritative for it' in got[late]['reason']
    assert all(c['strategy'] == 'last_writer_wins' for c in got.values())
    world.assert_converged(('project',))


def test_a_spoke_is_authoritative_for_its_domain(world):
    """spoke1 owns domain D: inside it, spoke1's version wins (a project
    and a user); outside it, the hub's (strategy hub_wins)."""
    hub, spoke1 = world.hub, world.spokes[0]
    call, tag = personas.admin_caller(hub), _tag()
    domain = call('POST', '/domains', json={'domain': {
        'name': f'own-{tag}'}}).json()['domain']['id']
    conf = _conf(world, 'authoritative', 'hub_wins',
                 {'spoke1': f'domain:own-{tag}'})
    inside = _project(call, f'in-{tag}', domain)
    outside = _project(call, f'out-{tag}')
    user = call('POST', '/users', json={'user': {
        'name': f'u-{tag}', 'domain_id': domain}}).json()['user']['id']
    world.agent('run', '--once', conf=conf)

    def at_hub():
        for kind, id_ in (('project', inside), ('project', outside),
                          ('user', user)):
            _describe(hub, kind, id_, 'hub edit')
    _partition(world, spoke1, at_hub, conf)
    for kind, id_ in (('project', inside), ('project', outside),
                      ('user', user)):
        _describe(spoke1, kind, id_, 'spoke1 edit')
    _sync_twice(world, conf)

    for site in world.every():
        assert _described(site, 'project', inside) == 'spoke1 edit'
        assert _described(site, 'user', user) == 'spoke1 edit'
        assert _described(site, 'project', outside) == 'hub edit'
    got = _conflicts(world, conf, {inside, outside, user})
    assert {i: c['winner'] for i, c in got.items()} == {
        inside: 'spoke1', user: 'spoke1', outside: 'hub'}
    assert f'authoritative for domain:own-{tag}' in got[inside]['reason']
    listing = world.agent('conflicts', '--spoke', 'spoke1',
                          conf=conf).stdout
    assert inside in listing and 'spoke spoke1' in listing
    world.assert_converged(('project', 'user'))


# -- a partition with every kind of edit on both sides ------------------

# What each side does to a resource, and when: before the partition (the
# spoke, while no agent runs), during it (the hub, the spoke stopped) or
# after it (the spoke, back, before the agent reaches it).
KINDS = {
    'untouched': (None, None),
    'hub': (None, ('hub', 'edit')),
    'spoke': (None, ('spoke', 'edit')),
    'spoke_delete': (('spoke', 'delete'), None),
    'both_hub_first': (None, ('hub', 'edit'), ('spoke', 'edit')),
    'both_spoke_first': (('spoke', 'edit'), ('hub', 'edit')),
    'hub_delete_spoke_edit': (None, ('hub', 'delete'), ('spoke', 'edit')),
    'spoke_delete_hub_edit': (('spoke', 'delete'), ('hub', 'edit')),
}
# Changed on both sides since the base: recorded as conflicts.
CONFLICTS = {'both_hub_first', 'both_spoke_first', 'hub_delete_spoke_edit',
             'spoke_delete_hub_edit'}


def _expected(kind, authoritative):
    """(the description every site ends with or None for deleted, the
    winner of the conflict or None). Inside the spoke's subset the
    spoke's version always wins; outside it the hub's does, whichever
    was later (a spoke's version reaches the hub only inside its
    subset)."""
    spoke_text, hub_text = f'spoke {kind}', f'hub {kind}'
    if authoritative:
        final = {'untouched': 'as made', 'hub': hub_text,
                 'spoke_delete': None, 'spoke_delete_hub_edit': None}.get(
                     kind, spoke_text)
        return final, 'spoke1' if kind in CONFLICTS else None
    final = {'hub': hub_text, 'both_hub_first': hub_text,
             'both_spoke_first': hub_text, 'hub_delete_spoke_edit': None,
             'spoke_delete_hub_edit': hub_text}.get(kind, 'as made')
    return final, 'hub' if kind in CONFLICTS else None


def _do(site, id_, kind, action):
    if action == 'delete':
        resp = _call(site, 'DELETE', f'/projects/{id_}')
        assert resp.status_code == 204, resp.text
    else:
        _describe(site, 'project', id_, f'{site.name[:5]} {kind}')


def test_partition_with_every_kind_of_edit_converges_as_the_rules_say(
        world):
    """spoke1 is authoritative for one domain, last writer wins elsewhere
    (which a spoke's version never wins: it compares and names times);
    each kind of edit happens inside and outside that domain. After the
    agent runs and a reconcile (the only way edits made at the spoke
    alone are seen), every site holds what the rules name, every
    conflict is recorded with its winner, and nothing else is."""
    hub, spoke1 = world.hub, world.spokes[0]
    call, tag = personas.admin_caller(hub), _tag()
    call('POST', '/domains', json={'domain': {'name': f'own-{tag}'}})
    domain = call('GET', f'/domains?name=own-{tag}').json()['domains'][0]
    conf = _conf(world, 'partition', 'last_writer_wins',
                 {'spoke1': f'domain:own-{tag}'})
    made = {}     # id -> (kind, inside the spoke's domain)
    for kind in KINDS:
        for inside in (True, False):
            id_ = _project(call, f'{kind}-{int(inside)}-{tag}',
                           domain['id'] if inside else 'default')
            made[id_] = (kind, inside)
    world.agent('run', '--once', conf=conf)

    def step(n, side):
        for id_, (kind, _) in made.items():
            todo = KINDS[kind][n] if len(KINDS[kind]) > n else None
            if todo and todo[0] == side:
                _do(hub if side == 'hub' else spoke1, id_, kind, todo[1])

    step(0, 'spoke')
    time.sleep(1.1)   # every updated_at apart
    _partition(world, spoke1, lambda: step(1, 'hub'), conf)
    time.sleep(1.1)
    step(1, 'spoke')
    step(2, 'spoke')
    world.agent('run', '--once', conf=conf)
    world.agent('reconcile', conf=conf)
    world.agent('run', '--once', conf=conf)

    got = _conflicts(world, conf, set(made))
    wrong = []
    for id_, (kind, inside) in made.items():
        final, winner = _expected(kind, inside)
        for site in world.every():
            have = _described(site, 'project', id_)
            if have != final:
                wrong.append((kind, inside, site.name, have, final))
        have_winner = got[id_]['winner'] if id_ in got else None
        if have_winner != winner:
            wrong.append((kind, inside, 'conflict', have_winner, winner))
    assert not wrong, wrong
    assert len(got) == 2 * len(CONFLICTS)
    world.assert_converged(('project',))
