"""The agent's Prometheus metrics (:mod:`keystone_syncext.agent.metrics`)
over the in-memory sites: the gauges read what ``keystone-sync status``
reads, the counters count writes and failures by kind, the endpoint
answers over HTTP, and the dashboard and alert rules in ``doc/`` name
only metrics the agent exports."""

import json
import pathlib
import re
import urllib.request

from prometheus_client import parser
import pytest
import yaml

from keystone_syncext.agent import client
from keystone_syncext.agent import metrics
from keystone_syncext.tests.unit.agent import agentparts
from keystone_syncext.tests.unit.agent import fakeworld

DOC = pathlib.Path(__file__).parents[4] / 'doc'


@pytest.fixture
def world(tmp_path):
    return fakeworld.World(tmp_path)


def _families(text):
    return {f.name: f for f in parser.text_string_to_metric_families(
        text.decode() if isinstance(text, bytes) else text)}


def _value(families, name, **labels):
    family = families[name.removesuffix('_total')]
    for s in family.samples:
        if s.name == name and all(s.labels.get(k) == v
                                  for k, v in labels.items()):
            return s.value
    return None


def test_the_gauges_are_what_status_reports(world):
    agent = agentparts.agent_of(world, once=False)
    agent.state.restart_feed(world.hub.head())
    site = agent.spokes[0]
    agent.spoke_sync.sync(site)
    world.hub.put('role', {'id': 'r9', 'name': 'new', 'domain_id': None})
    world.hub.put('role', {'id': 'r8', 'name': 'newer', 'domain_id': None})
    agent.feed.read()                     # two changes not applied yet
    agent.metrics.watch(agent)
    fams = _families(agent.metrics.text())
    row = agent.state.report()['spokes'][0]
    assert row['lag_changes'] == 2
    assert _value(fams, 'keystone_sync_spoke_lag_changes',
                  spoke='spoke1') == 2
    assert _value(fams, 'keystone_sync_spoke_lag_seconds',
                  spoke='spoke1') == pytest.approx(row['lag_seconds'],
                                                   abs=2)
    assert _value(fams, 'keystone_sync_spoke_pending_items',
                  spoke='spoke1') == row['pending'] == 0
    assert _value(fams, 'keystone_sync_spoke_state', spoke='spoke1',
                  state='live') == 1
    assert _value(fams, 'keystone_sync_spoke_state', spoke='spoke1',
                  state='new') == 0
    assert _value(fams, 'keystone_sync_spoke_last_success_timestamp_'
                  'seconds', spoke='spoke1') == pytest.approx(
        metrics._epoch(row['last_success_at']))
    assert _value(fams, 'keystone_sync_spoke_owned', spoke='spoke1',
                  member=agent.member_id) == 1
    assert _value(fams, 'keystone_sync_leader',
                  member=agent.member_id) == 1
    # The seed wrote every hub resource the spoke syncs.
    assert _value(fams, 'keystone_sync_applied_total', site='spoke1') == \
        sum(len(v) for v in world.spokes[0].data.values())
    agent.spoke_sync.sync(site)
    fams = _families(agent.metrics.text())
    assert _value(fams, 'keystone_sync_spoke_lag_changes',
                  spoke='spoke1') == 0
    assert _value(fams, 'keystone_sync_spoke_lag_seconds',
                  spoke='spoke1') == 0


def test_ownership_and_leadership_come_from_the_context(world):
    agent = agentparts.agent_of(world, once=False)
    agent.owned_spokes = lambda: []
    agent.is_leader = lambda: False
    agent.member_id = 'host-b:42'
    agent.metrics.watch(agent)
    fams = _families(agent.metrics.text())
    assert _value(fams, 'keystone_sync_spoke_owned', spoke='spoke1',
                  member='host-b:42') == 0
    assert _value(fams, 'keystone_sync_leader', member='host-b:42') == 0


def test_the_counters_of_every_site_start_at_zero(world):
    """Before anything is written: else a counter's first sample is
    already its first batch, and rate() shows nothing of it."""
    agent = agentparts.agent_of(world, once=False)
    agent.metrics.watch(agent)
    fams = _families(agent.metrics.text())
    for site in ('hub', 'spoke1'):
        assert _value(fams, 'keystone_sync_applied_total', site=site) == 0
    assert _value(fams, 'keystone_sync_audits_total', spoke='spoke1') == 0
    assert _value(fams, 'keystone_sync_audit_repaired_total',
                  spoke='spoke1') == 0


def test_failures_are_counted_by_site_and_kind(world):
    agent = agentparts.agent_of(world, once=False)
    world.spokes[0].fail('batch', 503, retry_after='0')
    world.hub.put('role', {'id': 'r9', 'name': 'new', 'domain_id': None})
    agent.state.restart_feed(world.hub.head())
    with pytest.raises(client.SiteError) as e:
        agent.spoke_sync.sync(agent.spokes[0])
    agent.spoke_sync._failed(agent.spokes[0], e.value, 1)
    assert agent.metrics.registry.get_sample_value(
        'keystone_sync_errors_total', {'site': 'spoke1',
                                       'kind': 'busy'}) == 1


@pytest.mark.parametrize('error,kind', [
    (client.SiteError('s', 'unreachable (ConnectFailure)'), 'unreachable'),
    (client.SiteError('s', 'GET /x: no answer within 5 s'), 'timeout'),
    (client.SiteError('s', 'x', status=401), 'auth'),
    (client.SiteError('s', 'x', status=503), 'busy'),
    (client.SiteError('s', 'x', status=409), 'refused'),
    (client.SiteError('s', 'x', status=500), 'server'),
    (client.Gone('s', 'x', status=410), 'gone'),
    (client.CaptureIncomplete('s', {}), 'capture_incomplete'),
    (KeyError('x'), 'agent')])
def test_error_kinds(error, kind):
    assert metrics.error_kind(error) == kind


@pytest.mark.parametrize('text,want', [
    ('127.0.0.1:9464', ('127.0.0.1', 9464)), ('[::1]:0', ('::1', 0)),
    (':9464', ('0.0.0.0', 9464))])
def test_listen(text, want):
    assert metrics.parse_listen(text) == want


@pytest.mark.parametrize('text', ['9464', 'host:', 'host:http',
                                  'host:70000'])
def test_a_bad_listen_is_refused_saying_so(text):
    with pytest.raises(ValueError, match='not HOST:PORT'):
        metrics.parse_listen(text)


def test_the_endpoint_answers_over_http(world):
    agent = agentparts.agent_of(world, once=False)
    agent.metrics.watch(agent)
    server = agent.metrics.serve('127.0.0.1:0')
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics',
                                    timeout=10) as resp:
            fams = _families(resp.read())
    finally:
        server.shutdown()
        server.server_close()
    exported = {s.name for f in fams.values() for s in f.samples}
    assert 'keystone_sync_spoke_lag_changes' in exported
    # Every name exported is declared (the doc's test relies on NAMES).
    assert exported <= metrics.NAMES, exported - metrics.NAMES


def _names_in(text):
    return set(re.findall(r'\bkeystone_sync_[a-z_]+', text))


def test_the_dashboard_and_alerts_use_only_exported_metrics():
    dashboard = json.loads((DOC / 'grafana' / 'keystone-sync.json')
                           .read_text())
    exprs = [t['expr'] for p in dashboard['panels']
             for t in p.get('targets', ())]
    assert exprs
    rules = yaml.safe_load((DOC / 'prometheus' /
                            'keystone-sync-alerts.yaml').read_text())
    alerts = [r for g in rules['groups'] for r in g['rules']]
    assert {a['alert'] for a in alerts} >= {
        'KeystoneSyncLagHigh', 'KeystoneSyncSpokeNotSyncing',
        'KeystoneSyncNoLeader', 'KeystoneSyncAuditFoundDrift'}
    used = set()
    for text in exprs + [a['expr'] for a in alerts]:
        used |= _names_in(text)
    # rate(x_total), histogram-less: every name is one the agent exports.
    assert used and used <= metrics.NAMES, used - metrics.NAMES
