"""The periodic audit (:mod:`keystone_syncext.agent.audit`) over the
in-memory sites: drift made at a spoke behind the agent's back is found
and repaired by a spoke's thread once it is caught up, recorded for
``status`` and the metrics, and an audit that finds nothing costs one
digest request per site."""

import datetime

import pytest

from keystone_syncext.agent import state as state_mod
from keystone_syncext.tests.unit.agent import agentparts
from keystone_syncext.tests.unit.agent import fakeworld


@pytest.fixture
def world(tmp_path):
    return fakeworld.World(tmp_path)


def _live(world, **overrides):
    """An agent (not --once) whose spoke is seeded, caught up and
    audited once (a spoke never audited is due at once)."""
    agent = agentparts.agent_of(world, once=False, audit_interval=600,
                                **overrides)
    agent.state.restart_feed(world.hub.head())
    site = agent.spokes[0]
    agent.spoke_sync.sync(site)           # the seed
    assert agent.state.spoke(site.name).last_audit_at is None
    agent.spoke_sync.sync(site)           # caught up: the first audit
    assert agent.state.spoke(site.name).last_audit_at is not None
    return agent, site


def _make_due(agent, name):
    """Age the last audit past the interval, and lift the spread."""
    with agent.state.engine.begin() as conn:
        conn.execute(state_mod.spoke.update()
                     .where(state_mod.spoke.c.name == name)
                     .values(last_audit_at=state_mod.now() -
                             datetime.timedelta(hours=1)))
    agent.spoke_sync.auditor._next_start = 0.0


def _sample(agent, name, **labels):
    return agent.metrics.registry.get_sample_value(name, labels)


def test_drift_at_a_spoke_is_found_and_repaired_when_due(world):
    agent, site = _live(world)
    spoke = world.spokes[0]
    # Behind the agent's back: one project renamed, one deleted, at the
    # spoke itself (no feed entry the agent would read).
    spoke.data['project']['p2'] = dict(spoke.data['project']['p2'],
                                       name='renamed at the spoke')
    del spoke.data['project']['p3']
    agent.spoke_sync.sync(site)
    # Not due yet: nothing compared, the drift stays.
    assert 'p3' not in spoke.data['project']
    _make_due(agent, site.name)
    assert agent.spoke_sync.sync(site) is False   # nothing from the feed
    assert spoke.data['project']['p3'] == world.hub.data['project']['p3']
    assert spoke.data['project']['p2']['name'] == 'p2'
    row = agent.state.report()['spokes'][0]
    assert (row['audit_found'], row['audit_repaired']) == (2, 2)
    assert row['last_audit_at'] > state_mod.now() - datetime.timedelta(
        minutes=1)
    assert _sample(agent, 'keystone_sync_audits_total', spoke='spoke1') == 2
    assert _sample(agent, 'keystone_sync_audit_repaired_total',
                   spoke='spoke1') == 2


def test_an_audit_that_finds_nothing_costs_a_digest_request_per_site(
        world):
    agent, site = _live(world)
    _make_due(agent, site.name)
    before = (world.hub.calls['digests'], world.spokes[0].calls['digests'],
              world.hub.calls['batch'], world.spokes[0].calls['batch'])
    agent.spoke_sync.sync(site)
    after = (world.hub.calls['digests'], world.spokes[0].calls['digests'],
             world.hub.calls['batch'], world.spokes[0].calls['batch'])
    assert [b - a for a, b in zip(before, after, strict=True)] == \
        [1, 1, 0, 0]
    row = agent.state.report()['spokes'][0]
    assert (row['audit_found'], row['audit_repaired']) == (0, 0)


def test_no_audit_while_the_spoke_has_changes_to_apply(world):
    agent, site = _live(world)
    _make_due(agent, site.name)
    world.hub.put('role', {'id': 'r9', 'name': 'new', 'domain_id': None})
    agent.feed.read()
    digests = world.spokes[0].calls['digests']
    assert agent.spoke_sync.sync(site) is True     # applied the change
    assert world.spokes[0].calls['digests'] == digests
    agent.spoke_sync.sync(site)                    # caught up: audited
    assert world.spokes[0].calls['digests'] == digests + 1


def test_no_audit_while_the_feed_is_behind_the_hub(world):
    """A spoke caught up with an outbox that is itself behind the hub
    (the feed read a full page, more to come) is not audited: the
    backlog comes through the feed, not through the audit's walk."""
    agent, site = _live(world, feed_page_size=1)
    _make_due(agent, site.name)
    world.hub.put('role', {'id': 'r8', 'name': 'one', 'domain_id': None})
    world.hub.put('role', {'id': 'r9', 'name': 'two', 'domain_id': None})
    agent.feed.read()                              # one of two: behind
    digests = world.spokes[0].calls['digests']
    assert agent.spoke_sync.sync(site) is True     # applied r8
    assert agent.spoke_sync.sync(site) is False    # caught up, feed behind
    assert world.spokes[0].calls['digests'] == digests
    assert 'r9' not in world.spokes[0].data['role']
    agent.feed.read()                              # the rest: at the head
    assert agent.spoke_sync.sync(site) is True     # applied r9
    agent.spoke_sync.sync(site)                    # now audited
    assert world.spokes[0].calls['digests'] == digests + 1


def test_one_audit_at_a_time_and_spread_over_the_interval(world):
    agent, site = _live(world)
    auditor = agent.spoke_sync.auditor
    _make_due(agent, site.name)
    with auditor._running:                  # another spoke's audit
        assert auditor.maybe(site) == 0
    auditor._next_start = float('inf')      # the spread not over yet
    assert auditor.maybe(site) == 0
    assert agent.state.spoke(site.name).last_audit_at < \
        state_mod.now() - datetime.timedelta(minutes=30)


@pytest.mark.parametrize('once,interval', [(True, 600), (False, 0)])
def test_no_audit_in_once_or_when_off(world, once, interval):
    agent = agentparts.agent_of(world, once=once, audit_interval=interval)
    agent.state.restart_feed(world.hub.head())
    site = agent.spokes[0]
    agent.spoke_sync.sync(site)
    agent.spoke_sync.sync(site)
    assert agent.state.spoke(site.name).last_audit_at is None


def test_a_hub_change_on_its_way_is_no_drift(world):
    agent, site = _live(world)
    _make_due(agent, site.name)
    # At the hub, not read from its feed yet: the audit sees it first.
    world.hub.put('role', {'id': 'r9', 'name': 'new', 'domain_id': None})
    world.hub.put('project', dict(world.hub.data['project']['p1'],
                                  name='renamed at the hub'))
    agent.spoke_sync.sync(site)
    assert world.spokes[0].data['role']['r9']['name'] == 'new'
    row = agent.state.report()['spokes'][0]
    assert (row['audit_found'], row['audit_repaired']) == (0, 2)
