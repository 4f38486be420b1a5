"""The upward feed recovers from a 410: when a spoke no longer holds the
history of its own feed after the agent's upward cursor, the agent follows
it from its head and sends up, by digest, what the spoke made that the hub
lacks; it deletes nothing at the hub, overwrites nothing the hub holds
differently (recorded as a conflict, the hub's kept, and reported), and
leaves alone what the agent itself put at the spoke."""

import pytest

from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import upward_recovery
from keystone_syncext.testing import fakesite
from keystone_syncext.tests.unit.agent import fakeworld

AC = 'application_credential'


@pytest.fixture
def world(tmp_path):
    w = fakeworld.World(tmp_path)
    w.hub.put(AC, {'id': 'ac-old', 'name': 'old'})
    with w.serving():
        yield w


def test_a_lost_upward_history_is_recovered_by_digest(world, capsys):
    conf = fakeworld.make_conf()
    spoke = world.spokes[0]
    bound = fakeworld.run_bound(conf, 10)
    rc, lines, _ = world.run_once(conf, capsys, bound)
    assert rc == 0, lines
    state = state_mod.State(world.url)
    # Made at the spoke while the agent was away, with the history of it
    # pruned there before the agent read it.
    spoke.put(AC, {'id': 'ac-spoke', 'name': 'made at the spoke'})
    spoke.put(AC, {'id': 'ac-hub', 'name': 'changed at the spoke'})
    # Deleted at the hub (its delete not applied yet): not sent back.
    del world.hub.data[AC]['ac-old']
    hub_before = dict(world.hub.data[AC]['ac-hub'])
    spoke.lose_history()

    rc, lines, _ = world.run_once(conf, capsys, bound)

    assert world.hub.data[AC]['ac-spoke'] == spoke.data[AC]['ac-spoke']
    assert world.hub.data[AC]['ac-hub'] == hub_before
    assert 'ac-old' not in world.hub.data[AC]
    # Sent up with the spoke as its origin, as the feed would have.
    [sent] = [c for c in world.hub.feed if c['id'] == 'ac-spoke']
    assert sent['origin'] == spoke.site_id
    # Followed from the head its 410 named (what the agent wrote there
    # since, a reconcile of the lost history, is read by the next run).
    assert int(state.upward_cursor('spoke1')) <= int(spoke.head())
    [conflict] = state.conflicts('spoke1')
    assert (conflict.resource_id, conflict.winner, conflict.strategy) == \
        ('ac-hub', 'hub', upward_recovery.STRATEGY)
    assert rc == 1
    [line] = lines
    assert 'held differently at the hub' in line
    # Recovered: the next run follows the spoke's feed from the head.
    rc, lines, _ = world.run_once(conf, capsys, bound)
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])
    assert len(state.conflicts('spoke1')) == 1


def test_what_the_hub_refuses_waits_in_pending(world, capsys):
    conf = fakeworld.make_conf()
    spoke = world.spokes[0]
    bound = fakeworld.run_bound(conf, 10)
    assert world.run_once(conf, capsys, bound)[0] == 0
    spoke.put(AC, {'id': 'ac-spoke', 'name': 'made at the spoke'})
    spoke.lose_history()
    world.hub.breaks_on.add('ac-spoke')
    rc, lines, _ = world.run_once(conf, capsys, bound)
    assert rc == 1
    assert 'refused by the hub' in lines[0]
    state = state_mod.State(world.url)
    [pending] = state.pending_for(state_mod.up_key('spoke1'))
    assert pending.key == (AC, 'ac-spoke')
    world.hub.breaks_on.clear()
    rc, lines, _ = world.run_once(conf, capsys, bound)
    assert rc == 0, lines
    assert 'ac-spoke' in world.hub.data[AC]


def test_a_spoke_that_keeps_answering_410_ends_the_run(world, capsys):
    conf = fakeworld.make_conf()
    bound = fakeworld.run_bound(conf, 10)
    assert world.run_once(conf, capsys, bound)[0] == 0
    world.spokes[0].fail('changes', 410)
    rc, lines, took = world.run_once(conf, capsys, bound)
    assert rc == 1 and took < bound
    assert '410 (Gone) again at the head' in lines[0]


def test_a_bug_in_the_recovery_is_reported(world, capsys, monkeypatch):
    conf = fakeworld.make_conf()
    bound = fakeworld.run_bound(conf, 10)
    assert world.run_once(conf, capsys, bound)[0] == 0

    def broken(*args):
        raise KeyError('hash')
    monkeypatch.setattr(upward_recovery, 'recover', broken)
    # A change of the spoke's own whose history is pruned before the agent
    # reads it: the cursor the first run left is then before the oldest
    # change kept, whether that run's last upward pass read what the seed
    # wrote there or not (which depends on timing).
    world.spokes[0].put(AC, {'id': 'ac-gap', 'name': 'made in the gap'})
    world.spokes[0].lose_history()
    rc, lines, _ = world.run_once(conf, capsys, bound)
    assert rc == 1
    assert lines == ['spoke spoke1: not converged: its own changes: agent '
                     'error: KeyError']


def test_a_late_upward_change_is_not_reported_converged(world, capsys):
    """A spoke whose own changes could not be read at first settles on
    the failure (it must not hold the others back), and its retry sends
    them to the hub after the run read the hub's feed for the last time.
    The other spokes did not get them: their lines say so, and the next
    run brings them."""
    spoke1 = world.spokes[0]
    spoke2 = fakesite.FakeSite('spoke2')
    world.spokes.append(spoke2)
    with spoke2.serve():
        conf = fakeworld.make_conf(retry_initial=1.0, retry_max=1.0,
                                   once_attempts=3)
        bound = fakeworld.run_bound(conf, 10)
        assert world.run_once(conf, capsys, bound)[0] == 0
        spoke1.put(AC, {'id': 'ac-late', 'name': 'made at spoke1'})
        spoke1.fail('changes', 500, times=1)

        rc, lines, _ = world.run_once(conf, capsys, bound)

        assert 'ac-late' in world.hub.data[AC]
        if 'ac-late' not in spoke2.data.get(AC, {}):
            assert rc == 1, lines
            assert lines[0] == 'spoke spoke1: converged with hub hub'
            assert lines[1].startswith('spoke spoke2: not converged: '
                                       'changes made at spoke1 reached '
                                       'the hub after'), lines
        rc, lines, _ = world.run_once(conf, capsys, bound)
        assert rc == 0, lines
        assert 'ac-late' in spoke2.data[AC]
