"""keystone-sync status and conflicts on cliff: every format parses and
says what the state database holds."""

import csv
import datetime
import io
import json

import pytest
import yaml

from keystone_syncext.agent import claims
from keystone_syncext.agent import cli
from keystone_syncext.agent import conflicts
from keystone_syncext.agent import state as state_mod

T0 = datetime.datetime(2026, 12, 1, 12, 0, 0)
PASSWORD_HASH = '$2b$04$' + 'P' * 53


@pytest.fixture
def state(tmp_path):
    """A state database: hub h followed, spoke s1 with a refused item and
    a conflict over a user, spoke s2 failing."""
    url = f'sqlite:///{tmp_path}/state.sqlite'
    st = state_mod.State(url)
    st.migrate()
    st.set_hub('h', 'hub-site', 'c0')
    st.append([{'cursor': f'c{i}', 'type': 'project', 'id': f'p{i}',
                'op': 'update', 'changed_at': '2026-12-01T12:00:00.000000Z',
                'resource': {'id': f'p{i}'}, 'hash': f'h{i}'}
               for i in (1, 2, 3)], 'c3', 'c3')
    st.spoke('s1')
    st.spoke('s2')
    refused = state_mod.Change(2, 'project', 'p2', 'upsert',
                               resource={'id': 'p2'}, hash_='h2')
    st.record('s1', 3, [], [(refused, 'name taken at the site by X')])
    st.spoke_error('s2', 'unreachable (ConnectFailure)')
    user = {'id': 'u1', 'name': 'ops', 'domain_id': 'default',
            'local': {'name': 'ops', 'passwords': [
                {'hash': PASSWORD_HASH, 'created_at': 'x'}]}}
    change = state_mod.Change(4, 'user', 'u1', 'upsert', resource=user,
                              hash_='h-hub', if_match='h-base')
    conflicts.record(st, conflicts.LAST_WRITER_WINS, 's1', change,
                     conflicts.Side(user, 'h-hub', T0),
                     conflicts.Side(dict(user, name='ops2'), 'h-sp', T0),
                     conflicts.Verdict('s1', 'spoke s1 changed it last'))
    yield st, url
    st.engine.dispose()


@pytest.fixture
def run(capsys, tmp_path):
    """keystone-sync ARGV: (exit code, stdout, stderr). Its log goes to
    a file, not to the stderr pytest captures per test (oslo.log's
    handler would outlive it)."""
    def _run(*argv):
        rc = cli.main(['--log-file', str(tmp_path / 'agent.log'), *argv])
        out, err = capsys.readouterr()
        return rc, out, err
    return _run


def test_status_as_json_and_yaml_matches_the_database(state, run):
    st, url = state
    want = {r['spoke']: r for r in st.report()['spokes']}
    for fmt, parse in (('json', json.loads), ('yaml', yaml.safe_load)):
        rc, out, _ = run('status', '--state', url, '-f', fmt)
        assert rc == 0
        got = {r['spoke']: r for r in parse(out)}
        assert set(got) == {'s1', 's2'}
        for name, row in got.items():
            for key in ('state', 'lag_changes', 'pending', 'conflicts',
                        'pending_reason', 'last_error', 'site_id'):
                assert row[key] == want[name][key], (fmt, name, key)
            for key in ('last_success_at', 'last_error_at',
                        'pending_since'):
                assert row[key] == (str(want[name][key])
                                    if want[name][key] else None)
    assert got['s1']['pending'] == 1 and got['s1']['conflicts'] == 1
    assert got['s1']['pending_reason'] == 'name taken at the site by X'
    # s2 has not applied changes made at the hub on 2026-12-01; s1's
    # refused item is seconds old (0.0 when the test is quick).
    assert got['s2']['lag_seconds'] > 3600
    assert got['s1']['lag_seconds'] >= 0
    assert got['s2']['last_error'] == 'unreachable (ConnectFailure)'
    assert got['s2']['lag_changes'] == 3 and got['s2']['pending'] == 0


def test_status_json_alias_csv_value_and_columns(state, run):
    _, url = state
    rc, out, _ = run('status', '--state', url, '--json')
    assert rc == 0 and [r['spoke'] for r in json.loads(out)] == ['s1', 's2']
    rc, out, _ = run('status', '--state', url, '-f', 'csv',
                      '-c', 'spoke', '-c', 'pending')
    assert list(csv.reader(io.StringIO(out))) == [
        ['spoke', 'pending'], ['s1', '1'], ['s2', '0']]
    rc, out, _ = run('status', '--state', url, '-f', 'value',
                      '-c', 'spoke', '-c', 'last_error')
    assert out.splitlines() == ['s1 None', 's2 unreachable (ConnectFailure)']
    rc, out, _ = run('status', '--state', url)
    assert rc == 0 and '| s1 ' in out and 'name taken at the site' in out


def test_status_hub(state, run):
    _, url = state
    rc, out, _ = run('status', 'hub', '--state', url, '-f', 'json')
    hub = json.loads(out)
    assert rc == 0 and hub['name'] == 'h' and hub['site_id'] == 'hub-site'
    assert hub['cursor'] == hub['head'] == 'c3' and hub['at_head'] is True
    assert hub['last_read_at'] and hub['last_error'] is None


def test_status_hub_before_any_run_fails_saying_so(tmp_path, run):
    url = f'sqlite:///{tmp_path}/empty.sqlite'
    rc, out, err = run('status', '--state', url, '-f', 'json')
    assert rc == 0 and json.loads(out) == []
    assert 'no hub followed yet' in err
    rc, out, err = run('status', 'hub', '--state', url)
    assert rc == 1 and out == '' and 'no hub followed yet' in err


def test_conflicts_list_and_show_redact_secrets(state, run):
    _, url = state
    rc, out, _ = run('conflicts', '--state', url, '-f', 'json')
    [row] = json.loads(out)
    assert rc == 0 and (row['spoke'], row['resource_id'], row['winner']) \
        == ('s1', 'u1', 's1')
    assert row['fields'] == ['name'] and 'changed it last' in row['reason']
    assert 'spoke_version' not in row
    rc, out, _ = run('conflicts', '--state', url)
    assert 'spoke s1' in out and 'u1' in out
    # --json: every field, as the hand-printed JSON had.
    rc, out, _ = run('conflicts', '--state', url, '--json')
    [whole] = json.loads(out)
    assert whole['strategy'] == conflicts.LAST_WRITER_WINS
    assert whole['spoke_version']['name'] == 'ops2'
    assert PASSWORD_HASH not in out
    for argv in (('conflict', 'show', str(row['id']), '-f', 'yaml'),
                 ('conflicts', '--show', str(row['id']))):
        rc, out, _ = run(*argv, '--state', url)
        one = yaml.safe_load(out)   # json is yaml too
        assert rc == 0 and one['spoke_version']['name'] == 'ops2'
        assert one['hub_version']['local']['passwords'][0]['hash'] == \
            conflicts.REDACTED
        assert PASSWORD_HASH not in out
    rc, out, _ = run('conflicts', '--state', url, '--spoke', 's2',
                      '-f', 'json')
    assert json.loads(out) == []


def test_an_unknown_conflict_exits_1_naming_it(state, run):
    _, url = state
    rc, out, err = run('conflict', 'show', '999', '--state', url)
    assert rc == 1 and 'no conflict 999' in err


def test_status_names_the_agent_holding_each_spoke(state, run):
    """The owner column: the member whose claim on the spoke is live;
    none once its lease ran out, and none for a spoke never claimed."""
    st, url = state
    live = claims.Claims(st.engine, 'vm:4242:aa', lease=30)
    assert live.acquire(claims.spoke_claim('s1'))
    rc, out, _ = run('status', '--state', url, '-f', 'json',
                     '-c', 'spoke', '-c', 'owner')
    assert rc == 0
    assert json.loads(out) == [{'spoke': 's1', 'owner': 'vm:4242:aa'},
                               {'spoke': 's2', 'owner': None}]
    gone = claims.Claims(st.engine, 'vm:4243:bb', lease=-1)
    assert gone.acquire(claims.spoke_claim('s2'))
    assert {r['spoke']: r['owner'] for r in st.report()['spokes']} == {
        's1': 'vm:4242:aa', 's2': None}


def test_the_command_freezes_what_its_imports_made(monkeypatch):
    """``keystone-sync`` moves what its imports made out of later full
    garbage collections (each walked some 120,000 objects, a pause in
    whatever a thread of a run was doing) before running its command,
    after collecting what is garbage already; called in-process with its
    arguments (a test, an embedding program) it leaves the caller's
    objects alone."""
    calls = []
    monkeypatch.setattr(cli.gc, 'collect', lambda: calls.append('collect'))
    monkeypatch.setattr(cli.gc, 'freeze', lambda: calls.append('freeze'))
    monkeypatch.setattr(cli.KeystoneSync, 'run',
                        lambda self, argv: calls.append(('run', argv)) or 0)
    monkeypatch.setattr(cli.sys, 'argv', ['keystone-sync', 'status'])
    assert cli.main() == 0
    assert calls == ['collect', 'freeze', ('run', ['status'])]
    calls.clear()
    assert cli.main(['status']) == 0
    assert calls == [('run', ['status'])]
