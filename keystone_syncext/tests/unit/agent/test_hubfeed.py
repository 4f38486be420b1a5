"""The hub's feed (:mod:`keystone_syncext.agent.hubfeed`) over the
in-memory site: a read lands in the outbox with the cursor; a 410
restarts the feed at the hub's head and marks every seeded spoke for a
reconcile; a second 410 at that head, or failures past ``once_attempts``,
give the hub up in ``--once`` and say why."""

import threading
import time

import pytest
from sqlalchemy import exc as sa_exc

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.tests.unit.agent import agentparts
from keystone_syncext.tests.unit.agent import fakeworld

world = fakeworld.world


def _seeded(agent):
    for s in agent.spokes:
        agent.state.start_seed(s.name)
        agent.state.finish_seed(s.name)


def test_a_read_lands_in_the_outbox_with_the_cursor(world):
    agent = agentparts.agent_of(world)
    agent.state.restart_feed(None)
    assert agent.feed.read() is False
    assert agent.state.hub().cursor == world.hub.head()
    assert {c.id for c in agent.state.outbox_after(0, 100)} == \
        {'r-admin', 'ac-hub'} | {f'p{n}' for n in range(5)}


def test_once_reads_to_the_end_and_names_it(world):
    agent = agentparts.agent_of(world)
    agent.state.restart_feed(None)
    agent.feed.run()
    assert agent.outcomes.caught_up.is_set()
    assert agent.outcomes.hub_failure is None
    assert agent.outcomes.target == agent.state.top() > 0


def test_a_410_restarts_at_the_head_and_reconciles_the_spokes(world):
    agent = agentparts.agent_of(world)
    agent.state.restart_feed('0')
    _seeded(agent)
    world.hub.lose_history()
    agent.feed.run()
    assert agent.outcomes.hub_failure is None
    # Followed from the head the 410 gave: what is before it is the
    # reconcile's, what comes after it the feed's.
    assert agent.state.outbox_after(0, 100) == []
    assert agent.state.hub().cursor == world.hub.head()
    assert agent.state.spoke('spoke1').state == 'reconcile'
    world.hub.put('role', {'id': 'r-new', 'name': 'new', 'domain_id': None})
    agent.feed.read()
    assert [c.id for c in agent.state.outbox_after(0, 100)] == ['r-new']


def test_a_410_again_at_the_head_gives_the_hub_up(world):
    agent = agentparts.agent_of(world)
    agent.state.restart_feed('0')
    world.hub.fail('changes', 410)
    agent.feed.run()
    assert 'again at the head it gave' in agent.outcomes.hub_failure
    assert agent.outcomes.caught_up.is_set()


def test_a_failing_hub_is_given_up_after_once_attempts(world):
    agent = agentparts.agent_of(world, once_attempts=2)
    world.hub.fail('changes', 500)
    agent.feed.run()
    assert '500' in agent.outcomes.hub_failure
    assert agent.state.hub().last_error == agent.outcomes.hub_failure
    # Two attempts, each with the client's own retries of a 5xx.
    assert world.hub.calls['changes'] >= 2


def test_a_failing_hub_is_retried_while_running(world):
    agent = agentparts.agent_of(world, once=False)
    world.hub.fail('changes', 500, times=1)
    agent.state.restart_feed(None)
    with pytest.raises(client.SiteError) as e:
        agent.feed.read()
    # Not --once: noted, waited out, read again.
    assert agent.feed.failed(e.value, 1) is False
    assert agent.outcomes.hub_failure is None
    assert agent.state.hub().last_error
    assert agent.feed.read() is False
    assert agent.state.hub().last_error is None


def test_an_unexpected_error_while_running_is_retried(world, monkeypatch,
                                                      caplog):
    """Not --once: the feed thread is every spoke's only source; an error
    that is not the hub's (here the state database, busy past its
    timeout, while storing a read) is logged with its traceback, waited
    out and read again, never the end of the thread (which left a running
    agent that no longer read the hub)."""
    agent = agentparts.agent_of(world, once=False)
    agent.state.restart_feed(None)
    append = agent.state.append
    failed = []

    def append_once_failing(*args, **kwargs):
        if not failed:
            failed.append(True)
            raise sa_exc.OperationalError('INSERT', {}, Exception(
                'database is locked'))
        return append(*args, **kwargs)
    monkeypatch.setattr(agent.state, 'append', append_once_failing)
    thread = threading.Thread(target=agent.feed.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not agent.state.outbox_after(0, 100) and \
                time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.02)
        assert failed
        assert thread.is_alive(), 'the feed thread ended'
        assert {c.id for c in agent.state.outbox_after(0, 100)} >= \
            {f'p{n}' for n in range(5)}
    finally:
        agent.stop.set()
        agent.announce()
        thread.join(10)
    assert not thread.is_alive()
    assert 'unexpected error' in caplog.text
    assert 'database is locked' in caplog.text


def _feed_until(agent, done, within=10):
    """The feed thread of a run (not --once) until ``done()``; whether
    the thread was still alive then (it is stopped after)."""
    thread = threading.Thread(target=agent.feed.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + within
        while not done() and time.monotonic() < deadline and \
                thread.is_alive():
            time.sleep(0.02)
        return thread.is_alive()
    finally:
        agent.stop.set()
        agent.announce()
        thread.join(10)


def test_a_failing_hub_and_state_database_together_are_retried(
        world, monkeypatch):
    """The hub's read fails and so does the note of it in the state (the
    agent's host lost its network, say): still retried while running,
    never the end of the feed thread."""
    agent = agentparts.agent_of(world, once=False)
    agent.state.restart_feed(None)
    world.hub.fail('changes', 500, times=1)

    noted = []

    def hub_error(message):
        noted.append(message)
        raise sa_exc.OperationalError('UPDATE', {}, Exception('gone'))
    monkeypatch.setattr(agent.state, 'hub_error', hub_error)
    assert _feed_until(agent, lambda: agent.state.outbox_after(0, 100))
    assert noted and noted[0], noted   # the failed read, noted (and failed)
    assert agent.state.outbox_after(0, 100)


def test_a_410_whose_restart_fails_is_a_first_410_again(world,
                                                         monkeypatch):
    """A 410, and the restart at the head failing in the state database:
    retried, and the next 410 restarts the feed as a first one would (not
    taken for a second 410 at the head it gave)."""
    agent = agentparts.agent_of(world, once=False)
    agent.state.restart_feed('0')
    _seeded(agent)
    world.hub.lose_history()
    restart = agent.state.restart_feed
    failed = []

    def restart_once_failing(cursor):
        if not failed:
            failed.append(True)
            raise sa_exc.OperationalError('UPDATE', {}, Exception('gone'))
        return restart(cursor)
    monkeypatch.setattr(agent.state, 'restart_feed', restart_once_failing)
    assert _feed_until(agent, lambda: agent.state.hub().cursor ==
                       world.hub.head())
    assert failed
    assert agent.state.spoke('spoke1').state == 'reconcile'


def test_a_lost_claim_ends_the_read_for_the_member_to_see(world,
                                                          monkeypatch):
    """A lost claim is not an error to retry here: it reaches the
    caller (members.Member.feed, which stops leading)."""
    agent = agentparts.agent_of(world, once=False)
    agent.state.restart_feed(None)

    def append(*args, **kwargs):
        raise claims_mod.ClaimLost('feed', 'me', 1, None)
    monkeypatch.setattr(agent.state, 'append', append)
    with pytest.raises(claims_mod.ClaimLost):
        agent.feed.follow()
