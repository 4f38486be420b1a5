"""``--once``'s report (:mod:`keystone_syncext.agent.once`): one line per
spoke, converged on standard output, not converged (and why) on standard
error, a hub given up on a line of its own, and exit code 1 unless every
spoke converged."""

from keystone_syncext.agent import once
from keystone_syncext.agent import state as state_mod


def test_every_spoke_converged_exits_0(capsys):
    out = once.Outcomes()
    out.outcome = {'a': None, 'b': None}
    assert out.report('hub', ['a', 'b']) == 0
    got = capsys.readouterr()
    assert got.out.splitlines() == ['spoke a: converged with hub hub',
                                    'spoke b: converged with hub hub']
    assert got.err == ''


def test_one_line_per_spoke_and_why_not(capsys):
    out = once.Outcomes()
    out.outcome = {'a': None, 'b': 'GET /sync: 500'}
    out.up_outcome = {'a': 'its own changes were refused by the hub: x'}
    assert out.report('hub', ['a', 'b', 'c']) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        'spoke a: not converged: its own changes were refused by the '
        'hub: x',
        'spoke b: not converged: GET /sync: 500',
        'spoke c: not converged: stopped before converging']


def test_a_hub_given_up_has_a_line_of_its_own(capsys):
    out = once.Outcomes()
    out.give_up_hub('GET /sync/changes: 500')
    for name in ('a', 'b'):
        out.outcome[name] = once.HUB_UNREAD
    assert out.report('hub', ['a', 'b']) == 1
    assert capsys.readouterr().err.splitlines() == [
        'hub hub: GET /sync/changes: 500',
        'spoke a: not converged: the hub could not be read',
        'spoke b: not converged: the hub could not be read']


def test_changes_that_went_up_late_are_named_at_the_others(capsys):
    out = once.Outcomes()
    out.outcome = {'a': None, 'b': None}
    out.late_up = ['a']
    assert out.report('hub', ['a', 'b']) == 1
    got = capsys.readouterr()
    assert got.out == 'spoke a: converged with hub hub\n'
    assert got.err.startswith('spoke b: not converged: changes made at a '
                              'reached the hub after')


def test_a_spoke_is_reached_when_live_at_the_target():
    out = once.Outcomes()
    row = type('Row', (), {'state': 'live', 'applied_seq': 5})()
    assert not out.reached(row)          # the feed is not read yet
    out.hub_read(5)
    assert out.reached(row)
    out.hub_read(6)
    assert not out.reached(row)


def test_refused_items_that_clash_by_name_point_at_join(tmp_path):
    st = state_mod.State(f'sqlite:///{tmp_path}/s.db')
    st.migrate()
    st.set_hub('hub', 'h', None)
    st.spoke('s1')
    c = state_mod.Change(1, 'role', 'r1', 'upsert', None, {'id': 'r1'})
    st.record('s1', None, [], [(c, 'role r1: 409 name taken at the site '
                                   'by r-own: taken')])
    why = once.refused(st, 'hub', 's1', 1)
    assert why.startswith('1 items refused; first: role r1: 409')
    assert 'keystone-sync join --hub hub --spoke s1' in why
