"""A spoke's thread and its upward thread both connect to the spoke. The
one that comes second must find everything the first one's connect
records, not only the site id its capabilities read set: a seed started
without the spoke's types copied nothing and marked the spoke seeded
(seen in CI as ``test_a_run_ends_whatever_fails[hub-listing-busy]``
converging although every hub listing failed)."""

import threading

from keystone_syncext.tests.unit.agent import fakeworld

world = fakeworld.world


def test_a_second_connect_waits_for_the_first_to_record_the_types(
        world, monkeypatch):
    agent = world.agent(fakeworld.make_conf())
    agent.state.migrate()
    agent.adopt_hub(agent.hub.capabilities())
    site = agent.spokes[0]
    agent.state.spoke(site.name)
    connector = agent.connector
    read, go = threading.Event(), threading.Event()
    check = connector._check_history_locked

    def paused(s):
        # The first connect, paused right after its capabilities read
        # (the site id is set), before it records the spoke's types.
        caps = check(s)
        read.set()
        assert go.wait(10)
        return caps
    monkeypatch.setattr(connector, '_check_history_locked', paused)
    first = threading.Thread(target=agent.connect, args=(site,))
    first.start()
    assert read.wait(10)
    seen = []

    def second():
        agent.connect(site)
        seen.append(site.name in agent.spoke_types)
    other = threading.Thread(target=second)
    other.start()
    other.join(0.5)
    go.set()
    first.join(10)
    other.join(10)
    assert seen == [True]


def test_a_connect_cut_short_leaves_the_spoke_unconnected(world,
                                                          monkeypatch):
    """A connect that fails after its capabilities read set the site id
    (its claim was lost as it recorded the spoke's history, in an HA
    handover) must not leave the spoke looking connected: the member that
    took the spoke back later skipped the connect, had no types for it,
    and refused every change as "spoke does not sync type" without
    sending one, for minutes (seen in the HA drill under load)."""
    agent = world.agent(fakeworld.make_conf())
    agent.state.migrate()
    agent.adopt_hub(agent.hub.capabilities())
    site = agent.spokes[0]
    agent.state.spoke(site.name)
    note = agent.state.note_history
    calls = []

    def lost_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError('claim lost while connecting')
        return note(*args, **kwargs)
    monkeypatch.setattr(agent.state, 'note_history', lost_once)
    try:
        agent.connect(site)
    except RuntimeError:
        pass
    else:
        raise AssertionError('the first connect did not fail')
    assert site.site_id is None
    agent.connect(site)
    assert len(calls) == 2
    assert site.name in agent.spoke_types
    assert site.site_id is not None
