"""``keystone-sync run --once`` always ends, within the bound doc/agent.md
states, with one line per spoke and the right exit code: driven over
in-memory sites (real HTTP on loopback, the agent's own client) that fail
at every call site in turn, with every kind of failure a real site has
shown: 5xx, 401, 410, 503 with Retry-After, a dropped connection, and a
hang that only the request timeout ends. A run that hangs fails the test
(the run is joined with a timeout), never pytest."""

import threading
import time

import pytest
from sqlalchemy import exc as sa_exc

from keystone_syncext.agent import client
from keystone_syncext.agent import hubfeed
from keystone_syncext.agent import join as join_mod
from keystone_syncext.agent import runner
from keystone_syncext.agent import spokes as spokes_mod
from keystone_syncext.agent import state as state_mod
from keystone_syncext.tests.unit.agent import fakeworld

KINDS = [500, 401, 410, 'busy', 'drop', 'hang']
# Run to the end (a fresh spoke: seed, then the feed) or after a 410
# that makes the spoke reconcile by digest.
FRESH_ROUTES = [('hub', 'capabilities'), ('hub', 'changes'),
                ('hub', 'listing'), ('spoke1', 'capabilities'),
                ('spoke1', 'changes'), ('spoke1', 'batch')]
RECONCILE_ROUTES = [('hub', 'digests'), ('spoke1', 'digests'),
                    ('hub', 'resource'), ('hub', 'listing')]


# Sites serving HTTP on loopback, the agent's own client.
world = fakeworld.served_world


def test_a_clean_run_converges(world, capsys):
    conf = fakeworld.make_conf()
    rc, lines, _ = world.run_once(conf, capsys, fakeworld.run_bound(conf, 10))
    assert rc == 0, lines
    assert lines == ['spoke spoke1: converged with hub hub']
    assert set(world.spokes[0].data['project']) == {f'p{n}'
                                                    for n in range(5)}


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('where,route', FRESH_ROUTES)
def test_a_fresh_run_ends_whatever_fails(world, capsys, where, route, kind):
    rc, lines = world.run_failing(capsys, where, route, kind)
    if route != 'changes' or where == 'hub':
        # Everything but the spoke's own feed is needed to converge.
        assert rc == 1, lines


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('where,route', RECONCILE_ROUTES)
def test_a_reconcile_ends_whatever_fails(world, capsys, where, route,
                                         kind):
    conf = fakeworld.make_conf()
    rc, lines, _ = world.run_once(conf, capsys, fakeworld.run_bound(conf, 10))
    assert rc == 0, lines
    # The hub loses the history after the agent's cursor: the spoke is
    # reconciled by digest, with an id changed and a bucket only the hub
    # has.
    world.hub.put('project', {'id': 'p1', 'name': 'p1 renamed',
                              'domain_id': 'default'})
    for n in range(20):
        world.hub.put('role', {'id': f'x{n:02d}', 'name': f'x{n}',
                               'domain_id': None})
    world.hub.lose_history()
    world.run_failing(capsys, where, route, kind, requests_per_pass=6)
    assert world.site(where).calls[route] > 0


@pytest.mark.parametrize('kind', KINDS)
def test_join_ends_whatever_the_rekey_answers(world, kind):
    conf = fakeworld.make_conf()
    spoke = world.spokes[0]
    spoke.put('role', {'id': 'r-own', 'name': 'admin', 'domain_id': None})
    fakeworld.inject(spoke, 'rekey', kind)
    hub_site, [spoke_site] = world.http_sites(conf)
    the_plan = join_mod.plan(hub_site, spoke_site)
    assert [e['hub_id'] for e in the_plan['rekey']] == ['r-admin']
    got = {}
    t = threading.Thread(target=lambda: got.update(error=join_mod.execute(
        spoke_site, the_plan, world.hub.site_id)), daemon=True)
    start = time.monotonic()
    t.start()
    t.join(fakeworld.request_bound(conf) + 5)
    assert not t.is_alive(), 'join still running'
    assert time.monotonic() - start < fakeworld.request_bound(conf) + 1
    assert isinstance(got['error'], client.SiteError)
    assert 'r-own' in spoke.data['role']


def test_a_bug_in_the_feed_ends_the_run(world, capsys, monkeypatch):
    conf = fakeworld.make_conf()

    def broken(self):
        raise KeyError('next')
    monkeypatch.setattr(hubfeed.HubFeed, 'read', broken)
    rc, lines, _ = world.run_once(conf, capsys, fakeworld.run_bound(conf, 4))
    assert rc == 1
    assert lines == ['spoke spoke1: not converged: the hub could not be read']


def _start(agent):
    """``agent.run()`` in a daemon thread, started; (the thread, a dict
    holding its exit code under ``rc`` once it returned)."""
    got = {}
    t = threading.Thread(target=lambda: got.setdefault('rc', agent.run()),
                         daemon=True)
    t.start()
    return t, got


def _run_with_a_broken(tmp_path, monkeypatch, cls, method, what):
    """A run (not ``--once``) whose ``cls.method`` raises at once: its exit
    code, the run having ended by itself within 15 s."""
    def broken(*args):
        raise RuntimeError(f'a bug in the {what}')
    monkeypatch.setattr(cls, method, broken)
    agent = fakeworld.World(tmp_path).agent(fakeworld.make_conf(),
                                            once=False)
    t, got = _start(agent)
    t.join(15)
    if t.is_alive():
        agent.stop.set()
        t.join(15)
        pytest.fail(f'the run went on without its {what}')
    return got['rc']


def test_a_run_whose_feed_thread_ended_exits_with_an_error(
        tmp_path, monkeypatch, caplog):
    """Not ``--once``: the feed thread is every spoke's only source. If it
    ends while the run goes on (a bug it could not survive), the run ends
    too, with exit code 1, so that the service manager restarts the agent
    (``Restart=on-failure``); it kept running before, reading nothing,
    its spokes idle and healthy-looking."""
    assert _run_with_a_broken(tmp_path, monkeypatch, hubfeed.HubFeed,
                              'follow', 'feed thread') == 1
    assert 'thread feed ended while the run goes on' in caplog.text


def test_a_run_whose_spoke_thread_ended_exits_with_an_error(
        tmp_path, monkeypatch, caplog):
    """The same for a spoke's thread (its only writer): the run ends
    with exit code 1. Before, a run whose every spoke thread had ended
    exited 0, which ``Restart=on-failure`` does not restart."""
    assert _run_with_a_broken(tmp_path, monkeypatch, spokes_mod.SpokeSync,
                              'loop', 'spoke thread') == 1
    assert 'thread spoke-spoke1 ended while the run goes on' in caplog.text


def test_a_stop_waits_for_requests_in_flight_within_one_bound(world):
    """SIGTERM: the requests in flight get ``poll_wait + 10`` seconds to
    finish, all of them together, not each thread in turn. With the hub's
    feed and a spoke's capabilities hanging (its spoke thread in the
    request, its upward thread waiting for that connect), a stop took one
    bound per stuck thread before (33 s here), and a service manager's
    stop timeout could run out first."""
    conf = fakeworld.make_conf(request_timeout=120, poll_wait=1)
    fakeworld.inject(world.site('hub'), 'changes', 'hang')
    fakeworld.inject(world.site('spoke1'), 'capabilities', 'hang')
    hub, spokes = world.http_sites(conf)
    agent = runner.Agent(conf, hub, spokes, state_mod.State(world.url))
    t, got = _start(agent)
    # The threads in their hanging requests.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
            world.site('hub').calls['changes'] and
            world.site('spoke1').calls['capabilities']):
        time.sleep(0.05)
    time.sleep(0.5)
    assert t.is_alive()
    stopped = time.monotonic()
    agent.stop.set()
    t.join(60)
    took = time.monotonic() - stopped
    assert not t.is_alive()
    assert got['rc'] == 0
    bound = conf.poll_wait + 10
    assert took < bound + conf.coordination.heartbeat + 3, took
    # The command exits at once then (cli_sites.Run), not after them.
    assert 'feed' in agent.left_behind


def test_a_spoke_thread_outlives_its_state_database_failing_a_note(
        tmp_path, monkeypatch):
    """A spoke's pass fails (its site refuses the connection once) and
    noting that in the state fails too (the state database locked or
    failing over): the spoke's thread goes on and the spoke converges;
    it ended before, and with it the run (exit code 1)."""
    world = fakeworld.World(tmp_path)
    conf = fakeworld.make_conf()
    world.site('spoke1').fail('batch', 'drop', 1)
    agent = world.agent(conf, once=False)
    notes = []

    def spoke_error(name, message):
        notes.append(message)
        raise sa_exc.OperationalError('UPDATE', {}, Exception('locked'))
    monkeypatch.setattr(agent.state, 'spoke_error', spoke_error)
    hub_projects = set(world.site('hub').data['project'])
    t, got = _start(agent)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and t.is_alive() and not \
            hub_projects <= set(world.site('spoke1').data.get('project',
                                                                {})):
        time.sleep(0.05)
    agent.stop.set()
    t.join(30)
    assert not t.is_alive()
    assert got['rc'] == 0
    assert any(n for n in notes), notes   # the failed pass was noted
    assert hub_projects <= set(world.site('spoke1').data['project'])
