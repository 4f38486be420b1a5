"""The Tempest comparison's table: counts per side and the tests that
fail only with the extension (tools/run-tempest)."""

from keystone_syncext.testing import tempest_run


def test_table_counts_each_side_and_names_failures_only_with_us():
    results = {
        'extension': {'a': 'success', 'b': 'fail', 'c': 'fail',
                      'd': 'skip'},
        'plain': {'a': 'success', 'b': 'fail', 'c': 'success',
                  'd': 'skip', 'e': 'fail'},
    }
    lines = tempest_run.table(results).splitlines()
    assert '| extension | 1 | 2 | 1 |' in lines
    assert '| plain | 2 | 2 | 1 |' in lines
    at = lines.index('failing only with the extension: 1')
    assert lines[at + 1] == '  c'
    at = lines.index('failing only without it: 1')
    assert lines[at + 1] == '  e'
    assert tempest_run._verdict(results) == 0
    results['extension']['a'] = 'fail'
    assert tempest_run._verdict(results) == 1


def test_tempest_conf_is_identity_only():
    class Site:
        url = 'http://127.0.0.1:1/v3'
        admin_password = 'pw'
    conf = tempest_run.tempest_conf(Site(), '/tmp/ws')
    assert 'uri_v3 = http://127.0.0.1:1/v3' in conf
    for service in ('cinder', 'glance', 'neutron', 'nova', 'swift'):
        assert f'{service} = false' in conf
