"""The agent notices a spoke that lost history and a hub that lost capture.

A spoke whose ``history_id`` changed (restored from a backup, or its
capture had a gap), or that refuses the cursor the agent recorded at the
last check, is put in state ``reconcile``, as after the hub's 410. A hub
whose feed answers 503 because capture is incomplete is reported as
broken, with what is missing, not retried silently.
"""

import pytest

from keystone_syncext.agent import client
from keystone_syncext.agent import connect
from keystone_syncext.agent import runner
from keystone_syncext.agent import state as state_mod
from keystone_syncext.testing import fakesite
from keystone_syncext.tests.unit.agent import fakeworld

MISSING = ['sync_role_ins_v1']


@pytest.fixture
def state(tmp_path):
    st = state_mod.State(f'sqlite:///{tmp_path}/state.db')
    st.migrate()
    st.set_hub('hub', 'hub-site', 'c0')
    return st


def _agent(state, spokes=(), hub=None, once=False):
    """An agent of in-memory sites (``spokes``: fake sites)."""
    conf = fakeworld.make_conf(poll_wait=0, once_attempts=3)
    hub = hub or fakesite.FakeSite('hub')
    return runner.Agent(conf, hub.client(conf),
                        [s.client(conf) for s in spokes], state, once=once)


def _live(state, name):
    state.spoke(name)
    state.start_seed(name)
    state.finish_seed(name)
    assert state.spoke(name).state == 'live'


def _connected(state):
    """A live spoke s1, connected once; (agent, the fake spoke)."""
    spoke = fakesite.FakeSite('s1')
    _live(state, 's1')
    agent = _agent(state, [spoke])
    agent.connect(agent.spokes[0])
    return agent, spoke


def _reconnect(agent):
    site = agent.spokes[0]
    site.site_id = None   # as after an error: capabilities read again
    agent.connect(site)
    return agent.state.spoke(site.name).state


def test_same_history_keeps_the_spoke_live(state):
    spoke = fakesite.FakeSite('s1')
    _live(state, 's1')
    agent = _agent(state, [spoke])
    assert _reconnect(agent) == 'live'
    assert state.spoke('s1').history_id == spoke.history_id
    # The next check presents the cursor recorded at this one.
    marker = state.spoke('s1').history_marker
    assert _reconnect(agent) == 'live'
    assert spoke.since_read == [marker]


def test_a_changed_history_id_reconciles_a_live_spoke(state, caplog):
    agent, spoke = _connected(state)
    spoke.history_id = '00000000000000bb'     # restored, or capture repaired
    assert _reconnect(agent) == 'reconcile'
    assert state.spoke('s1').history_id == '00000000000000bb'
    assert 'lost history' in caplog.text
    # And it is seen once: the next check finds the new history in place.
    state.start_reconcile('s1')
    state.finish_reconcile('s1')
    assert _reconnect(agent) == 'live'


def _rewound_once(state):
    """A live spoke connected, then restored: it refuses the marker the
    agent recorded at that check; (agent, the fake spoke) once the next
    check marked it for a reconcile."""
    agent, spoke = _connected(state)
    spoke.rewound.add(state.spoke('s1').history_marker)
    assert _reconnect(agent) == 'reconcile'
    return agent, spoke


def test_a_refused_marker_reconciles_a_live_spoke(state):
    """A restore keeps the history id until a cursor shows it: the one
    the agent recorded at its last check does."""
    _rewound_once(state)
    assert state.spoke('s1').state == 'reconcile'


def test_a_spoke_refusing_every_marker_is_an_error_not_a_loop(state):
    """A feed that refuses even the marker taken right after the
    reconcile its first refusal caused is broken, not restored again:
    reconciling each time would never end (nor would --once)."""
    agent, spoke = _rewound_once(state)
    spoke.rewound.add(state.spoke('s1').history_marker)
    with pytest.raises(client.SiteError) as err:
        _reconnect(agent)
    assert not err.value.transient
    assert 'refused the cursor of its own head twice' in str(err.value)


def test_a_connected_spoke_is_checked_again_after_a_while(state,
                                                         monkeypatch):
    agent, spoke = _connected(state)
    spoke.history_id = '00000000000000bb'
    agent.connect(agent.spokes[0])        # connected, checked just now
    assert state.spoke('s1').state == 'live'
    monkeypatch.setattr(connect, 'HISTORY_CHECK_SECONDS', 0)
    agent.connect(agent.spokes[0])
    assert state.spoke('s1').state == 'reconcile'


def test_a_spoke_never_seeded_still_seeds(state):
    spoke = fakesite.FakeSite('s1')
    state.spoke('s1')
    agent = _agent(state, [spoke])
    agent.connect(agent.spokes[0])
    spoke.history_id = '00000000000000bb'
    assert _reconnect(agent) == 'new'


def test_a_spoke_without_capture_still_receives(state, caplog):
    agent, spoke = _connected(state)
    spoke.missing_triggers = MISSING
    assert _reconnect(agent) == 'live'
    assert 'sync_role_ins_v1' in caplog.text


def test_client_tells_lost_capture_from_a_busy_database():
    hub = fakesite.FakeSite('hub')
    hub.missing_triggers = MISSING
    with pytest.raises(client.CaptureIncomplete) as err:
        hub.client(timeout=5).changes(since='1')
    assert not err.value.transient
    assert 'sync_role_ins_v1' in str(err.value)
    assert 'keystone-syncext-manage db_sync' in str(err.value)
    busy = fakesite.FakeSite('hub')
    busy.fail('changes', 503)
    with pytest.raises(client.SiteError) as err:
        busy.client(timeout=5).changes(since='1')
    assert not isinstance(err.value, client.CaptureIncomplete)
    assert err.value.transient


def test_once_reports_a_hub_without_capture_as_broken(state, caplog):
    hub = fakesite.FakeSite('hub')
    hub.missing_triggers = MISSING
    agent = _agent(state, hub=hub, once=True)
    agent.feed.run()                      # gives up at once
    assert 'sync_role_ins_v1' in agent.outcomes.hub_failure
    assert 'db_sync' in agent.outcomes.hub_failure
    assert agent.outcomes.caught_up.is_set()
    assert 'sync_role_ins_v1' in state.hub().last_error
    assert any(r.levelname == 'ERROR' and 'sync_role_ins_v1' in r.getMessage()
               for r in caplog.records)
