"""What a spoke refuses ends a ``run --once``, named: a spoke never
joined (its bootstrap roles and admin project clash by name with the
hub's) makes ``--once`` exit non-zero within the bound, naming the
clashes and ``keystone-sync join``; after join the next run converges. A
batch a site breaks on (5xx) is split down to the item at fault, which
waits in pending with the reason, and the rest is written. A field the
spoke's Keystone release cannot store waits in pending, named, and is
not sent again until the spoke runs another release."""

import logging

from keystone_syncext.agent import join as join_mod
from keystone_syncext.agent import state as state_mod
from keystone_syncext.tests.unit.agent import fakeworld

# Sites serving HTTP on loopback, the agent's own client.
world = fakeworld.served_world


def test_a_spoke_never_joined_ends_naming_join(world, capsys, caplog):
    conf = fakeworld.make_conf(once_attempts=3)
    spoke = world.spokes[0]
    fakeworld.own_admin(spoke)
    bound = fakeworld.run_bound(conf, 6)
    with caplog.at_level(logging.INFO, 'keystone_syncext.agent'):
        rc, lines, took = world.run_once(conf, capsys, bound)
    assert rc == 1 and took < bound
    [line] = lines
    assert line.startswith('spoke spoke1: not converged: 2 items refused')
    assert 'role r-admin: 409 name taken at the site by r-own' in line
    assert 'project p0: 409 name taken at the site by p-own' in line
    assert '2 of them are name clashes' in line
    assert 'keystone-sync join --hub hub --spoke spoke1' in line
    # Refusals are not failures of the spoke: it never "came back".
    assert not [r for r in caplog.records if 'is back' in r.getMessage()]

    hub, [spoke_site] = world.http_sites(conf)
    assert join_mod.execute(spoke_site, join_mod.plan(hub, spoke_site),
                            world.hub.site_id) is None
    rc, lines, _ = world.run_once(conf, capsys, bound)
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])
    assert spoke.data['role']['r-admin'] == \
        world.hub.data['role']['r-admin']


def test_other_refusals_do_not_mention_join(world, capsys):
    conf = fakeworld.make_conf()
    world.spokes[0].breaks_on.add('p3')
    rc, lines, _ = world.run_once(conf, capsys,
                                  fakeworld.run_bound(conf, 10))
    assert rc == 1
    [line] = lines
    assert 'project p3: ' in line and '500' in line
    assert 'join' not in line


def test_a_batch_a_site_breaks_on_is_split_to_the_item(world, capsys):
    conf = fakeworld.make_conf(once_attempts=2)
    spoke = world.spokes[0]
    spoke.breaks_on.add('p3')
    rc, lines, _ = world.run_once(conf, capsys,
                                  fakeworld.run_bound(conf, 20))
    assert rc == 1
    # Everything else went in; the one item waits with the reason.
    assert set(spoke.data['project']) == {'p0', 'p1', 'p2', 'p4'}
    assert 'r-admin' in spoke.data['role']
    state = state_mod.State(world.url)
    [pending] = state.pending_for('spoke1')
    assert pending.key == ('project', 'p3')
    [reason] = state.pending_errors('spoke1')
    assert reason.startswith('project p3: spoke1: POST /sync/batch: 500')
    # Once the site takes it, the next run converges.
    spoke.breaks_on.clear()
    rc, lines, _ = world.run_once(conf, capsys,
                                  fakeworld.run_bound(conf, 10))
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])
    assert 'p3' in spoke.data['project']


def test_a_field_the_spoke_release_cannot_store_waits_unsent(world, capsys):
    conf = fakeworld.make_conf(once_attempts=3)
    spoke = world.spokes[0]
    spoke.keystone_version, spoke.unstorable['project'] = '27.1.0', {'newer'}
    world.hub.put('project', {'id': 'p9', 'name': 'p9',
                              'domain_id': 'default', 'newer': True})
    rc, lines, _ = world.run_once(conf, capsys,
                                  fakeworld.run_bound(conf, 10))
    assert rc == 1
    [line] = lines
    assert "project p9: 400 project p9: this site (Keystone 27.1.0) " \
        "cannot store 'newer'" in line, line
    assert set(spoke.data['project']) == {f'p{n}' for n in range(5)}
    state = state_mod.State(world.url)
    assert [c.key for c in state.pending_for('spoke1')] == [('project', 'p9')]
    # Sent once: the passes after it, and a second run, leave it be.
    rc, _, _ = world.run_once(conf, capsys, fakeworld.run_bound(conf, 10))
    assert rc == 1
    assert spoke.received.count(('project', 'p9')) == 1, spoke.received

    # The spoke upgraded to a release that stores it: sent, and taken.
    spoke.keystone_version, spoke.unstorable = '30.0.0', {}
    rc, lines, _ = world.run_once(conf, capsys,
                                  fakeworld.run_bound(conf, 10))
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])
    assert spoke.data['project']['p9']['newer'] is True
    assert state.pending_for('spoke1') == []
