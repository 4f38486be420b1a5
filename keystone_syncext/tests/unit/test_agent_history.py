"""The agent notices a spoke that lost history and a hub that lost capture.

A spoke whose ``history_id`` changed (restored from a backup, or its
capture had a gap), or that refuses the cursor the agent recorded at the
last check, is put in state ``reconcile``, as after the hub's 410. A hub
whose feed answers 503 because capture is incomplete is reported as
broken, with what is missing, not retried silently.
"""

import json
import types

import pytest

from keystone_syncext.agent import client
from keystone_syncext.agent import connect
from keystone_syncext.agent import runner
from keystone_syncext.agent import state as state_mod

MISSING = {'code': 503, 'title': 'Service Unavailable',
           'message': 'change capture at this site is incomplete',
           'capture_complete': False,
           'missing_triggers': ['sync_role_ins_v1'], 'missing_columns': []}


class FakeSpoke:
    """Capabilities with a history id, and a feed that refuses cursors
    listed in ``refused`` (410) or everything (``broken``: 503)."""

    def __init__(self, name, history='00000000000000aa'):
        self.name, self.history, self.head = name, history, 1
        self.site_id = None
        self.protocol_version = 1
        self.refused, self.broken, self.probes = set(), False, []

    def capabilities(self, speaks=(1,), speaker=''):
        self.site_id = self.name
        self.head += 1
        return {'site_id': self.name, 'keystone_version': '30.0.0',
                'resource_types': ['role'], 'max_page_size': 1000,
                'history_id': self.history,
                'head_cursor': f'{self.history}-{self.head}'}

    def changes(self, since=None, limit=500, wait=0, types=None):
        self.probes.append(since)
        if self.broken:
            raise client.CaptureIncomplete(self.name, MISSING)
        if since in self.refused or not since.startswith(self.history):
            raise client.Gone(self.name, 'gone', status=410,
                              transient=False,
                              body={'reconcile': True,
                                    'rewound': since in self.refused,
                                    'head_cursor':
                                    f'{self.history}-{self.head}'})
        return {'changes': [], 'next': since, 'head': since, 'more': False}


@pytest.fixture
def state(tmp_path):
    st = state_mod.State(f'sqlite:///{tmp_path}/state.db')
    st.migrate()
    st.set_hub('hub', 'hub-site', 'c0')
    return st


def _agent(state, spokes=(), hub=None, once=False):
    conf = types.SimpleNamespace(request_timeout=5, once_attempts=3,
                                 retry_initial=0.01, retry_max=0.02,
                                 poll_wait=0, feed_page_size=100,
                                 spoke_originated_types=[],
                                 max_parallel_spokes=2)
    return runner.Agent(conf, hub or FakeSpoke('hub'), list(spokes),
                        state, once=once)


def _live(state, name):
    state.spoke(name)
    state.start_seed(name)
    state.finish_seed(name)
    assert state.spoke(name).state == 'live'


def _reconnect(agent, site):
    site.site_id = None   # as after an error: capabilities read again
    agent.connect(site)
    return agent.state.spoke(site.name).state


def test_same_history_keeps_the_spoke_live(state):
    spoke = FakeSpoke('s1')
    _live(state, 's1')
    agent = _agent(state, [spoke])
    assert _reconnect(agent, spoke) == 'live'
    assert state.spoke('s1').history_id == spoke.history
    # The next check presents the cursor recorded at this one.
    marker = state.spoke('s1').history_marker
    assert _reconnect(agent, spoke) == 'live'
    assert spoke.probes == [marker]


def test_a_changed_history_id_reconciles_a_live_spoke(state, caplog):
    spoke = FakeSpoke('s1')
    _live(state, 's1')
    agent = _agent(state, [spoke])
    agent.connect(spoke)
    spoke.history = '00000000000000bb'     # restored, or capture repaired
    assert _reconnect(agent, spoke) == 'reconcile'
    assert state.spoke('s1').history_id == '00000000000000bb'
    assert 'lost history' in caplog.text
    # And it is seen once: the next check finds the new history in place.
    state.start_reconcile('s1')
    state.finish_reconcile('s1')
    assert _reconnect(agent, spoke) == 'live'


def test_a_refused_marker_reconciles_a_live_spoke(state):
    """A restore keeps the history id until a cursor shows it: the one
    the agent recorded at its last check does."""
    spoke = FakeSpoke('s1')
    _live(state, 's1')
    agent = _agent(state, [spoke])
    agent.connect(spoke)
    spoke.refused.add(state.spoke('s1').history_marker)
    assert _reconnect(agent, spoke) == 'reconcile'


def test_a_spoke_refusing_every_marker_is_an_error_not_a_loop(state):
    """A feed that refuses even the marker taken right after the
    reconcile its first refusal caused is broken, not restored again:
    reconciling each time would never end (nor would --once)."""
    spoke = FakeSpoke('s1')
    _live(state, 's1')
    agent = _agent(state, [spoke])
    agent.connect(spoke)
    spoke.refused.add(state.spoke('s1').history_marker)
    assert _reconnect(agent, spoke) == 'reconcile'
    spoke.refused.add(state.spoke('s1').history_marker)
    with pytest.raises(client.SiteError) as err:
        _reconnect(agent, spoke)
    assert not err.value.transient
    assert 'refused the cursor of its own head twice' in str(err.value)


def test_a_connected_spoke_is_checked_again_after_a_while(state,
                                                         monkeypatch):
    spoke = FakeSpoke('s1')
    _live(state, 's1')
    agent = _agent(state, [spoke])
    agent.connect(spoke)
    spoke.history = '00000000000000bb'
    agent.connect(spoke)                  # connected, checked just now
    assert state.spoke('s1').state == 'live'
    monkeypatch.setattr(connect, 'HISTORY_CHECK_SECONDS', 0)
    agent.connect(spoke)
    assert state.spoke('s1').state == 'reconcile'


def test_a_spoke_never_seeded_still_seeds(state):
    spoke = FakeSpoke('s1')
    state.spoke('s1')
    agent = _agent(state, [spoke])
    agent.connect(spoke)
    spoke.history = '00000000000000bb'
    assert _reconnect(agent, spoke) == 'new'


def test_a_spoke_without_capture_still_receives(state, caplog):
    spoke = FakeSpoke('s1')
    _live(state, 's1')
    agent = _agent(state, [spoke])
    agent.connect(spoke)
    spoke.broken = True
    assert _reconnect(agent, spoke) == 'live'
    assert 'sync_role_ins_v1' in caplog.text


class FakeResponse:
    def __init__(self, status, body):
        self.status_code, self.reason = status, 'Service Unavailable'
        self.content = json.dumps(body).encode()
        self.request = None

    def json(self):
        return json.loads(self.content)


class FakeAdapter:
    def __init__(self, resp):
        self.resp = resp

    def request(self, *args, **kwargs):
        return self.resp


def _site_answering(status, body):
    site = object.__new__(client.Site)
    site.name, site.timeout = 'hub', 5
    site.busy_retries, site.busy_wait_max = 0, 0
    site.adapter = FakeAdapter(FakeResponse(status, body))
    site._count = lambda resp: None
    return site


def test_client_tells_lost_capture_from_a_busy_database():
    with pytest.raises(client.CaptureIncomplete) as err:
        _site_answering(503, {'error': MISSING}).changes(since='c')
    assert not err.value.transient
    assert 'sync_role_ins_v1' in str(err.value)
    assert 'keystone-syncext-manage db_sync' in str(err.value)
    busy = {'error': {'code': 503, 'message': 'the database is locked'}}
    with pytest.raises(client.SiteError) as err:
        _site_answering(503, busy).changes(since='c')
    assert not isinstance(err.value, client.CaptureIncomplete)
    assert err.value.transient


class BrokenHub(FakeSpoke):
    def changes(self, **kwargs):
        raise client.CaptureIncomplete(self.name, MISSING)


def test_once_reports_a_hub_without_capture_as_broken(state, caplog):
    agent = _agent(state, hub=BrokenHub('hub'), once=True)
    agent.feed.run()                      # gives up at once
    assert 'sync_role_ins_v1' in agent.outcomes.hub_failure
    assert 'db_sync' in agent.outcomes.hub_failure
    assert agent.outcomes.caught_up.is_set()
    assert 'sync_role_ins_v1' in state.hub().last_error
    assert any(r.levelname == 'ERROR' and 'sync_role_ins_v1' in r.getMessage()
               for r in caplog.records)
