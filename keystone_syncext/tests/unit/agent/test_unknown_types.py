"""A hub newer than the agent: types the agent does not know (in the
hub's ``GET /v3/sync`` and in its feed) are skipped with one warning per
run, and everything else still syncs; unknown types in the operator's
own selection rules stay an error."""

import logging

import pytest

from keystone_syncext.agent import selection as selection_mod
from keystone_syncext.common import types
from keystone_syncext.tests.unit.agent import fakeworld

NEW = 'widget'      # a type of a hub release newer than this agent
WARNING = ('hub offers types this agent does not know: widget; upgrade '
           'the agent to sync them')


@pytest.fixture
def world(tmp_path):
    world = fakeworld.World(tmp_path)
    for site in [world.hub] + world.spokes:
        site.types.append(NEW)
        site.data[NEW] = {}
    world.hub.put(NEW, {'id': 'w1', 'name': 'w1'})
    return world


def _warnings(caplog, text):
    return [r for r in caplog.records
            if r.levelno == logging.WARNING and text in r.getMessage()]


def test_a_hub_offering_an_unknown_type_still_seeds_the_others(
        world, capsys, caplog):
    assert NEW not in types.BY_NAME
    conf = fakeworld.make_conf()
    rc, lines, _ = fakeworld.run_agent(world.agent(conf), capsys,
                                       fakeworld.run_bound(conf, 10))
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])
    spoke = world.spokes[0]
    assert set(spoke.data['project']) == {f'p{n}' for n in range(5)}
    assert spoke.data[NEW] == {}             # never written
    assert len(_warnings(caplog, WARNING)) == 1


def test_a_change_of_an_unknown_type_in_the_feed_is_skipped(
        world, capsys, caplog):
    conf = fakeworld.make_conf()
    bound = fakeworld.run_bound(conf, 10)
    assert fakeworld.run_agent(world.agent(conf), capsys, bound)[0] == 0
    # The hub's next release adds a type the agent's table lacks, and the
    # hub no longer lists it in GET /v3/sync: only its feed carries it.
    world.hub.types.remove(NEW)
    world.hub.put(NEW, {'id': 'w2', 'name': 'w2'})
    world.hub.put('role', {'id': 'r2', 'name': 'reader', 'domain_id': None})
    caplog.clear()
    agent = world.agent(conf)
    rc, lines, _ = fakeworld.run_agent(agent, capsys, bound)
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])
    spoke = world.spokes[0]
    assert spoke.data['role']['r2']['name'] == 'reader'
    assert spoke.data[NEW] == {}
    # The cursor moved on past it; nothing of it waits anywhere.
    assert agent.state.hub().cursor == world.hub.head()
    assert agent.state.pending_for('spoke1') == []
    [warning] = _warnings(caplog, 'this agent does not know: widget')
    assert 'upgrade the agent to sync them' in warning.getMessage()


@pytest.mark.parametrize('rule', [f'type:{NEW}', f'name:{NEW}:w*',
                                  f'{NEW}:w1'])
def test_an_unknown_type_in_the_operators_rules_is_an_error(rule):
    # A typo must not silently match nothing.
    for side in ('include', 'exclude'):
        with pytest.raises(selection_mod.RuleError, match=NEW):
            selection_mod.Selection(**{side: [rule]})
