"""bench/dashboard.py, which draws doc/images/dashboard.png from real
scrapes of the agents' /metrics: its evaluation of the dashboard's
queries over scrapes (no Grafana, no Prometheus; matplotlib is not
needed for this part), checked against values worked out by hand, and
every panel of the shipped dashboard understood by it."""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]


def _module():
    spec = importlib.util.spec_from_file_location(
        'bench_dashboard', ROOT / 'bench' / 'dashboard.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dashboard = _module()


@pytest.fixture
def scrapes(tmp_path):
    """Two members scraped at t = 0, 10, 20, 30; member b restarts (its
    counter resets) between 20 and 30, member a stops answering after
    10."""
    a, b = 'http://a/metrics', 'http://b/metrics'

    def lag(v, spoke):
        return ['keystone_sync_spoke_lag_seconds', {'spoke': spoke}, v]

    def applied(v):
        return ['keystone_sync_applied_total', {'site': 's1'}, v]

    lines = [
        (0, a, [lag(4, 's1'), applied(0),
                ['keystone_sync_leader', {'member': 'a'}, 1]]),
        (0, b, [lag(6, 's1'), lag(1, 's2'), applied(100)]),
        (10, a, [lag(2, 's1'), applied(50),
                 ['keystone_sync_leader', {'member': 'a'}, 1]]),
        (10, b, [lag(3, 's1'), lag(0, 's2'), applied(200)]),
        (20, b, [lag(0, 's1'), lag(0, 's2'), applied(300),
                 ['keystone_sync_leader', {'member': 'b'}, 1]]),
        (30, b, [lag(0, 's1'), lag(0, 's2'), applied(40),
                 ['keystone_sync_leader', {'member': 'b'}, 1]]),
    ]
    path = tmp_path / 'scrapes.jsonl'
    path.write_text(''.join(json.dumps({'t': t, 'target': target,
                                        'samples': s}) + '\n'
                            for t, target, s in lines))
    return dashboard.Data(str(path))


def _values(data, expr, t, key):
    return {d[key]: v for d, v in dashboard.evaluate(data, expr, t)}


def test_aggregation_across_members(scrapes):
    expr = 'max by (spoke) (keystone_sync_spoke_lag_seconds{spoke=~"$spoke"})'
    assert _values(scrapes, expr, 0, 'spoke') == {'s1': 6, 's2': 1}
    # Member a is stale at 20: only b's series count.
    assert _values(scrapes, expr, 20, 'spoke') == {'s1': 0, 's2': 0}
    assert _values(scrapes, expr.replace('$spoke', 's2'), 0,
                   'spoke') == {'s2': 1}


def test_rate_sums_members_and_survives_a_counter_reset(scrapes):
    expr = 'sum by (site) (rate(keystone_sync_applied_total[1m]))'
    # At 10: a grew 50, b grew 100, over a 60 s window.
    assert _values(scrapes, expr, 10, 'site') == {'s1': 150 / 60}
    # At 30: a is gone; b grew 100, 100, then reset to 40 (counted 40).
    assert _values(scrapes, expr, 30, 'site') == {'s1': 240 / 60}
    inc = 'sum by (site) (increase(keystone_sync_applied_total[1m]))'
    assert _values(scrapes, inc, 30, 'site') == {'s1': 240}


def test_time_minus_and_equals_one(scrapes):
    assert _values(scrapes, 'keystone_sync_leader == 1', 10,
                   'member') == {'a': 1}
    assert _values(scrapes, 'keystone_sync_leader == 1', 30,
                   'member') == {'b': 1}
    got = _values(scrapes, 'time() - max by (spoke) '
                  '(keystone_sync_spoke_lag_seconds)', 10, 'spoke')
    assert got == {'s1': 10 - 3, 's2': 10 - 0}


def test_what_it_does_not_understand_is_said(scrapes):
    with pytest.raises(dashboard.NotUnderstood):
        dashboard.evaluate(scrapes, 'histogram_quantile(0.9, x)', 0)


def test_every_panel_of_the_dashboard_is_understood(scrapes):
    board = json.loads((ROOT / 'doc' / 'grafana' / 'keystone-sync.json')
                       .read_text())
    for panel in board['panels']:
        for target in panel.get('targets', []):
            dashboard.evaluate(scrapes, target['expr'], 10)
