"""The conflict rules on their own: the same inputs give the same winner,
every strategy names the winner the docs say, secrets are redacted from
what ``keystone-sync conflicts`` shows, and the state keeps each conflict
once."""

import datetime
import json

import pytest

from keystone_syncext.agent import conflicts
from keystone_syncext.agent import secret_fields
from keystone_syncext.agent import selection
from keystone_syncext.agent import state as state_mod

T0 = datetime.datetime(2026, 12, 1, 12, 0, 0)
LATER = T0 + datetime.timedelta(seconds=1)


def _side(description, when, hash_=None):
    if description is None:
        return conflicts.Side(None, None, when)
    return conflicts.Side({'id': 'p1', 'name': 'web', 'domain_id': 'd1',
                           'description': description},
                          hash_ or f'h-{description}', when)


def test_hub_wins_whatever_the_times():
    r = conflicts.Resolver()
    for hub_t, spoke_t in ((T0, LATER), (LATER, T0), (None, None)):
        v = r.decide('s1', _side('hub', hub_t), _side('spoke', spoke_t),
                     authoritative=False)
        assert v.winner == conflicts.HUB
        assert 'hub_wins' in v.reason


@pytest.mark.parametrize('hub_t, spoke_t, winner, why', [
    # Later, but outside its subset: its version never reaches the hub.
    (T0, LATER, conflicts.HUB, 'spoke s1 changed it last (2026'),
    (T0, LATER, conflicts.HUB, 'not authoritative for it, so the hub wins'),
    (LATER, T0, conflicts.HUB, 'the hub changed it last'),
    (T0, T0, conflicts.HUB, 'at the same time as'),
    (T0, None, conflicts.HUB, 'is not known'),
    (None, LATER, conflicts.HUB, 'is not known'),
])
def test_last_writer_wins_by_updated_at_ties_to_the_hub(hub_t, spoke_t,
                                                        winner, why):
    r = conflicts.Resolver(conflicts.LAST_WRITER_WINS)
    verdicts = {r.decide('s1', _side('hub', hub_t), _side('spoke', spoke_t),
                         authoritative=False).winner for _ in range(3)}
    assert verdicts == {winner}        # deterministic
    assert why in r.decide('s1', _side('hub', hub_t),
                           _side('spoke', spoke_t), False).reason


def test_a_deletion_of_unknown_time_goes_to_the_hub():
    r = conflicts.Resolver(conflicts.LAST_WRITER_WINS)
    # The spoke deleted it (no time known): the hub's edit wins.
    v = r.decide('s1', _side('hub', T0), _side(None, None), False)
    assert v.winner == conflicts.HUB and 'deletion' in v.reason
    # The hub deleted it at a known time, the spoke edited later: the
    # spoke is not authoritative for it, so the deletion stands.
    v = r.decide('s1', _side(None, T0), _side('spoke', LATER), False)
    assert v.winner == conflicts.HUB and 'not authoritative' in v.reason
    # Inside its subset the spoke wins, whatever the times.
    r = conflicts.Resolver(conflicts.LAST_WRITER_WINS,
                           {'s1': ['type:project']})
    v = r.decide('s1', _side(None, LATER), _side('spoke', T0), True)
    assert v.winner == 's1'


def test_authoritative_comes_before_the_strategy():
    r = conflicts.Resolver(conflicts.HUB_WINS, {'s1': ['domain:emea'],
                                                's2': []})
    assert r.rules == {'s1': ['domain:emea']}
    domains = {('domain', 'd1'): {'id': 'd1', 'name': 'emea'},
               ('domain', 'd2'): {'id': 'd2', 'name': 'apac'}}

    def fetch(type_name, id_):
        return domains.get((type_name, id_))
    inside = _side('spoke', T0)
    outside = conflicts.Side(dict(inside.resource, domain_id='d2'), 'h',
                             T0)
    assert r.authoritative('s1', 'project', 'p1', inside, inside, fetch)
    assert not r.authoritative('s1', 'project', 'p1', outside, inside,
                               fetch)
    assert not r.authoritative('s2', 'project', 'p1', inside, inside,
                               fetch)
    # Deleted at the spoke: judged on the hub's version.
    assert r.authoritative('s1', 'project', 'p1', _side(None, None),
                           inside, fetch)
    # Both versions must be inside: a spoke cannot pull a hub resource
    # into its subset by changing it at the spoke (and win it).
    assert not r.authoritative('s1', 'project', 'p1', inside, outside,
                               fetch)
    named = conflicts.Resolver(conflicts.HUB_WINS,
                               {'s1': ['name:user:ops-*']})
    alice = {'id': 'u1', 'name': 'alice', 'domain_id': 'd1',
             'local': {'name': 'alice', 'passwords': []}}
    renamed = dict(alice, name='ops-alice',
                   local={'name': 'ops-alice', 'passwords': []})
    assert not named.authoritative(
        's1', 'user', 'u1', conflicts.Side(renamed, 'h2', LATER),
        conflicts.Side(alice, 'h1', T0), fetch)
    assert named.authoritative(
        's1', 'user', 'u1', conflicts.Side(renamed, 'h2', LATER),
        conflicts.Side(renamed, 'h3', T0), fetch)
    v = r.decide('s1', _side('hub', LATER), inside, authoritative=True)
    assert v.winner == 's1' and 'authoritative for domain:emea' in v.reason


def test_bad_strategy_and_rules_are_refused():
    with pytest.raises(ValueError, match='unknown conflict strategy'):
        conflicts.Resolver('spoke_wins')
    with pytest.raises(selection.RuleError):
        conflicts.Resolver(conflicts.HUB_WINS, {'s1': ['region:x']})


def test_redact_covers_every_secret_field_the_types_declare():
    # The agent does not import the resource modules; this keeps its
    # table true to what they declare. They need Keystone, which the
    # agent-alone run (tools/check-agent-alone) does not have: it skips
    # this one check, every other run makes it.
    try:
        from keystone_syncext import resources
    except ImportError as e:  # no Keystone here
        pytest.skip(f'the resource modules need Keystone: {e}')
    declared = {name: rtype.secrets for name, rtype in
                resources.TYPES.items() if rtype.secrets}
    assert set(declared) == set(secret_fields.TYPES) == {
        'user', 'application_credential'}
    user = {'id': 'u1', 'local': {'name': 'a', 'passwords': [
        {'hash': '$2b$12$secret', 'created_at': 'x'},
        {'hash': None, 'created_at': 'y'}]}}
    out = conflicts.redact('user', user)
    assert [p['hash'] for p in out['local']['passwords']] == [
        conflicts.REDACTED, None]
    assert user['local']['passwords'][0]['hash'] == '$2b$12$secret'
    cred = conflicts.redact('application_credential',
                            {'id': 'c', 'secret_hash': 'x' * 20})
    assert cred['secret_hash'] == conflicts.REDACTED
    assert conflicts.redact('user', {'id': 'u2', 'local': None}) == {
        'id': 'u2', 'local': None}
    assert conflicts.redact('project', None) is None


def test_differing_fields():
    a = {'id': 'p', 'name': 'x', 'description': 'a'}
    assert conflicts.differing_fields(a, dict(a, description='b')) == [
        'description']
    assert conflicts.differing_fields(a, None) == sorted(a)


def test_state_keeps_each_conflict_once_and_counts_them(tmp_path):
    st = state_mod.State(f'sqlite:///{tmp_path}/state.sqlite')
    st.migrate()
    st.set_hub('h', 'hub-site', 'c0')
    st.spoke('s1')
    change = state_mod.Change(1, 'project', 'p1', 'upsert',
                              resource={'id': 'p1'}, hash_='h-hub',
                              if_match='h-base')
    hub, spoke = _side('hub', T0, 'h-hub'), _side('spoke', LATER, 'h-sp')
    verdict = conflicts.Verdict('s1', 'spoke s1 changed it last')
    for _ in range(2):   # judged again after a retry: kept once
        conflicts.record(st, conflicts.LAST_WRITER_WINS, 's1', change, hub,
                         spoke, verdict)
    rows = st.conflicts()
    assert len(rows) == 1
    row = rows[0]
    assert (row.spoke, row.type, row.resource_id, row.winner,
            row.base_hash, row.hub_hash, row.spoke_hash) == (
        's1', 'project', 'p1', 's1', 'h-base', 'h-hub', 'h-sp')
    assert json.loads(row.spoke_version)['description'] == 'spoke'
    assert row.hub_changed_at == T0 and row.spoke_changed_at == LATER
    assert st.report()['spokes'][0]['conflicts'] == 1
    assert st.conflicts('other') == []
    st.engine.dispose()


def test_conditional_items_carry_the_base():
    c = state_mod.Change(1, 'role', 'r1', 'upsert', resource={'id': 'r1'},
                         if_match='abc')
    assert c.item()['if_match'] == '"abc"'
    d = state_mod.Change(2, 'role', 'r1', 'delete')
    assert 'if_match' not in d.item()
