"""The spoke side of the runner over the in-memory site: connecting
(:mod:`~keystone_syncext.agent.connect`), seeding
(:mod:`~keystone_syncext.agent.seeding`), a spoke's passes
(:mod:`~keystone_syncext.agent.spokes`), the upward flow
(:mod:`~keystone_syncext.agent.upward`), and whole ``run --once`` runs
with every kind of failure at each route: 410, 412, 5xx, 401, 503, a
dropped connection and a timeout."""

import io
import sys
import types

import pytest

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.agent import spokes as spokes_mod
from keystone_syncext.agent import state as state_mod
from keystone_syncext.tests.unit.agent import agentparts
from keystone_syncext.tests.unit.agent import fakeworld

KINDS = [500, 401, 410, 'busy', 'drop', 'hang']
ROUTES = [('hub', 'capabilities'), ('hub', 'changes'), ('hub', 'listing'),
          ('spoke1', 'capabilities'), ('spoke1', 'batch')]


world = fakeworld.world


def test_a_spoke_that_is_the_hub_is_refused(world):
    agent = agentparts.agent_of(world)
    world.spokes[0].site_id = world.hub.site_id
    site = agent.spokes[0]
    site.site_id = None
    with pytest.raises(client.SiteError, match='is the hub itself') as e:
        agent.connect(site)
    assert not e.value.transient


def test_a_new_spoke_is_seeded_then_follows_the_outbox(world):
    agent = agentparts.agent_of(world)
    agent.state.restart_feed(world.hub.head())
    site, spoke = agent.spokes[0], world.spokes[0]
    assert agent.spoke_sync.sync(site) is True
    assert agent.state.spoke('spoke1').state == 'live'
    assert set(spoke.data['project']) == {f'p{n}' for n in range(5)}
    world.hub.put('role', {'id': 'r2', 'name': 'reader', 'domain_id': None})
    agent.feed.read()
    agent.spoke_sync.sync(site)
    assert spoke.data['role']['r2']['name'] == 'reader'
    assert agent.state.spoke('spoke1').applied_seq == agent.state.top()
    # What the spoke received came from the hub: not an echo of its own.
    assert {c['origin'] for c in spoke.feed} == {world.hub.site_id}


def test_a_seed_on_a_terminal_shows_a_progress_bar(world, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(sys, 'stderr', Terminal())
    agent = agentparts.agent_of(world, progress=True)
    agent.state.restart_feed(world.hub.head())
    agent.spoke_sync.sync(agent.spokes[0])
    total = sum(len(items) for t, items in world.hub.data.items()
                if t in agent.spoke_types['spoke1'])
    last = sys.stderr.getvalue().rstrip('\n').split('\r')[-1]
    assert last.startswith('seeding spoke1: 100%'), last
    assert f'{total}/{total}' in last, last


def test_a_spoke_marked_for_reconcile_is_reconciled_by_digest(world):
    agent = agentparts.agent_of(world)
    agent.state.restart_feed(world.hub.head())
    site, spoke = agent.spokes[0], world.spokes[0]
    agent.spoke_sync.sync(site)
    del spoke.data['project']['p3']          # lost at the spoke
    agent.state.restart_feed(world.hub.head())
    agent.spoke_sync.sync(site)
    assert 'p3' in spoke.data['project']
    assert agent.state.spoke('spoke1').last_reconcile_at is not None


def test_the_seed_reads_ahead_every_page_in_type_order(world):
    agent = agentparts.agent_of(world)
    got = list(agent.seeder.prefetched(['role', 'project'],
                                        agent.seeder.shared.begin()))
    assert [t for t, _ in got] == ['role', 'role', 'project', 'project']
    assert [i['id'] for i in got[2][1]] == [f'p{n}' for n in range(5)]


def test_a_spokes_own_change_goes_up_with_it_as_origin(world):
    agent = agentparts.agent_of(world, spoke_originated_types=[
        'application_credential'])
    site, spoke = agent.spokes[0], world.spokes[0]
    assert agent.upward.types(site) == ['application_credential']
    assert agent.upward.push(site) is True      # first sight: the head
    spoke.put('application_credential', {'id': 'ac-s', 'name': 'mine'})
    agent.upward.push(site)
    assert world.hub.data['application_credential']['ac-s'] == \
        {'id': 'ac-s', 'name': 'mine'}
    assert world.hub.feed[-1]['origin'] == spoke.site_id
    assert agent.state.upward_cursor('spoke1') == spoke.head()


def test_what_the_hub_refuses_from_a_spoke_waits_in_pending(world):
    agent = agentparts.agent_of(world, spoke_originated_types=['role'])
    site, spoke = agent.spokes[0], world.spokes[0]
    agent.upward.push(site)
    spoke.put('role', {'id': 'r-s', 'name': 'admin', 'domain_id': None})
    agent.upward.push(site)
    [c] = agent.state.pending_for(state_mod.up_key('spoke1'))
    assert c.id == 'r-s'
    assert 'name taken' in agent.state.report_pending(
        state_mod.up_key('spoke1'))


def test_a_clean_run_converges(world, capsys):
    conf = fakeworld.make_conf()
    rc, lines, _ = fakeworld.run_agent(world.agent(conf), capsys,
                                       fakeworld.run_bound(conf, 10))
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])
    assert set(world.spokes[0].data['role']) == {'r-admin'}


def test_a_pass_whose_lease_lapsed_ends_and_the_next_goes_on(world,
                                                             monkeypatch):
    """A pass (here a seed, in batches of two) whose member's lease
    lapses by its own count between two batches ends there: not a
    failure, the claim not forgotten, no error recorded; the next pass,
    once renewed, goes on to the end."""
    agent = agentparts.agent_of(world, batch_items=2)
    agent.state.restart_feed(world.hub.head())
    site, spoke = agent.spokes[0], world.spokes[0]
    solo = agentparts.lapsing(agent, monkeypatch, spoke)
    assert agent.spoke_sync._attempt(site, 0) == (None, 0, False)
    assert spoke.calls['batch'] == 1
    assert not agent.owns('spoke1')
    assert solo.claims.generation(claims_mod.spoke_claim('spoke1')) == 1
    assert agent.state.spoke('spoke1').last_error is None
    solo.tick()
    assert agent.owns('spoke1')
    assert agent.spoke_sync._attempt(site, 0) == (True, 0, False)
    assert agent.state.spoke('spoke1').state == 'live'
    assert set(spoke.data['project']) == {f'p{n}' for n in range(5)}


def test_once_ends_after_its_lease_lapsed_for_a_while(world, capsys,
                                                      monkeypatch, caplog):
    """``run --once`` (one agent): a heartbeat that could not renew in
    time ends a pass between two batches; the next renewal (the run's
    own heartbeat) lets the spoke go on, and the run ends converged."""
    conf = fakeworld.make_conf(batch_items=2)
    agent = world.agent(conf)
    spoke = world.spokes[0]
    lapse = conf.coordination.lease * (1 - claims_mod.MARGIN_SHARE) + 0.1
    clock = claims_mod.time.monotonic
    monkeypatch.setattr(claims_mod, 'time', types.SimpleNamespace(
        monotonic=lambda: clock() + (lapse if spoke.calls['batch'] else 0)))
    rc, lines, _ = fakeworld.run_agent(agent, capsys,
                                       fakeworld.run_bound(conf, 10))
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])
    assert 'pass ended before its next batch' in caplog.text
    assert set(spoke.data['project']) == {f'p{n}' for n in range(5)}


def test_a_412_in_a_run_is_settled_and_converges(world, capsys):
    conf = fakeworld.make_conf()
    bound = fakeworld.run_bound(conf, 10)
    assert fakeworld.run_agent(world.agent(conf), capsys, bound)[0] == 0
    # Both sides change a placed resource; the next run settles it.
    world.spokes[0].put('project', {'id': 'p1', 'name': 'p1-spoke',
                                    'domain_id': 'default'})
    world.hub.put('project', {'id': 'p1', 'name': 'p1-hub',
                              'domain_id': 'default'})
    rc, lines, _ = fakeworld.run_agent(world.agent(conf), capsys, bound)
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])
    assert world.spokes[0].data['project']['p1']['name'] == 'p1-hub'
    state = state_mod.State(world.url)
    assert [r.resource_id for r in state.conflicts()] == ['p1']


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('where,route', ROUTES)
def test_a_run_ends_whatever_fails(world, capsys, where, route, kind):
    rc, lines = world.run_failing(capsys, where, route, kind, http=False)
    assert rc == 1, lines


@pytest.mark.parametrize('kind', [500, 401, 'busy', 'drop', 'hang'])
def test_a_failure_that_passes_does_not_stop_the_run(world, capsys, kind):
    conf = fakeworld.make_conf(once_attempts=3)
    fakeworld.inject(world.spokes[0], 'batch', kind, times=1)
    rc, lines, _ = fakeworld.run_agent(world.agent(conf), capsys,
                                       fakeworld.run_bound(conf, 4))
    assert (rc, lines) == (0, ['spoke spoke1: converged with hub hub'])


def _role(world, agent, id_):
    world.hub.put('role', {'id': id_, 'name': id_, 'domain_id': None})
    agent.feed.read()


def test_a_running_spoke_checks_its_history_once_quiet(world, monkeypatch):
    """Not after every pass that wrote, where a change arriving during
    the check (two requests at the spoke) waited for it: once no news
    came for CHECK_QUIET_SECONDS, with a marker past every write."""
    monkeypatch.setattr(spokes_mod, 'CHECK_QUIET_SECONDS', 0.05)
    agent = agentparts.agent_of(world, once=False)
    agent.state.restart_feed(world.hub.head())
    site, spoke = agent.spokes[0], world.spokes[0]
    sync, ctx = agent.spoke_sync, agent.spoke_sync.ctx
    checks = spoke.calls['capabilities']
    sync.sync(site)                          # the seed
    _role(world, agent, 'r2')
    assert sync.sync(site) is True
    assert spoke.data['role']['r2']
    assert spoke.calls['capabilities'] == checks
    # News during the quiet wait: another pass first, still no check.
    seen = ctx.news()
    _role(world, agent, 'r3')
    sync._idle(site.name, seen, 0)
    assert sync.sync(site) is True
    assert spoke.calls['capabilities'] == checks
    # Quiet: the next pass checks, once, after the writes.
    sync._idle(site.name, ctx.news(), 0)
    assert sync.sync(site) is False
    assert spoke.calls['capabilities'] == checks + 1
    marker = agent.state.spoke('spoke1').history_marker
    assert marker == spoke.head()
    sync._idle(site.name, ctx.news(), 0)
    sync.sync(site)
    assert spoke.calls['capabilities'] == checks + 1


def test_once_checks_history_after_every_pass_that_wrote(world):
    agent = agentparts.agent_of(world, once=True)
    agent.state.restart_feed(world.hub.head())
    site, spoke = agent.spokes[0], world.spokes[0]
    agent.spoke_sync.sync(site)
    checks = spoke.calls['capabilities']
    _role(world, agent, 'r2')
    agent.spoke_sync.sync(site)
    assert spoke.calls['capabilities'] == checks + 1
