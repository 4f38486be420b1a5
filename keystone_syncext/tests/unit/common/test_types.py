"""The type table (keystone_syncext.common.types): consistent in itself,
and a type that is not in it is an error wherever it is met."""

import dataclasses
import subprocess
import sys

import pytest

from keystone_syncext.agent import secret_fields
from keystone_syncext.agent import selection
from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import writer
from keystone_syncext.common import types


def test_everything_a_type_depends_on_is_ranked_before_it():
    assert types.problems() == []


def test_problems_names_a_dependency_ranked_after_its_dependent():
    user, idp = types.lookup('user'), types.lookup('identity_provider')
    fed = types.lookup('federation_protocol')
    broken = [info for info in types.TABLE
              if info.name not in ('identity_provider',
                                   'federation_protocol')]
    broken += [idp, fed]          # as the server ordered them once
    found = types.problems(broken)
    assert f'{user.name} depends on identity_provider, which is ranked ' \
        'after it' in found
    assert 'user depends on federation_protocol, which is ranked after ' \
        'it' in found
    assert types.problems([user]) == [
        "user depends on 'domain', not a type",
        "user depends on 'identity_provider', not a type",
        "user depends on 'federation_protocol', not a type"]
    assert types.problems([user, user]) == [
        'user is in the table twice'] + types.problems([user]) * 2


def test_lookup_rank_and_order():
    assert types.order(['user', 'federation_protocol', 'domain']) == [
        'domain', 'federation_protocol', 'user']
    assert [types.rank(t) for t in types.ORDER] == list(
        range(len(types.ORDER)))
    assert types.lookup('user').rank == types.rank('user')
    assert set(types.NAMED) == {'domain', 'project', 'role', 'user', 'group',
                                'application_credential',
                                'identity_provider', 'mapping'}
    assert types.FLOWS_UP == ('application_credential', 'revocation_event')


@pytest.mark.parametrize('call', [
    lambda: types.lookup('trust'),
    lambda: types.rank('trust'),
    lambda: types.order(['user', 'trust']),
    lambda: types.reaches('trust'),
    lambda: writer.rank('trust'),
    lambda: secret_fields.replace('trust', {'id': 't'}, str),
    lambda: selection.Facts.of('trust', {'id': 't'}),
])
def test_an_unknown_type_is_an_error_naming_the_known_ones(call):
    with pytest.raises(types.UnknownType) as e:
        call()
    assert str(e.value).startswith(
        "unknown resource type 'trust'; protocol v1 types are: domain, ")
    assert e.value.type == 'trust'


def _change(seq, type_, op='upsert'):
    return state_mod.Change(seq, type_, f'{type_}-{seq}', op, None,
                            None if op == 'delete' else {'id': 'x'})


def test_the_agent_does_not_sort_an_unknown_type_last_and_write_it():
    with pytest.raises(types.UnknownType):
        writer.order([_change(1, 'user'), _change(2, 'trust')])
    with pytest.raises(types.UnknownType):
        writer.order([_change(1, 'trust', 'delete')])


@pytest.mark.parametrize('rules', [
    {'exclude': ['type:user']},
    {'exclude': ['domain:d1']},
    {'include': ['type:role']},
])
def test_an_unknown_type_does_not_slip_past_selection_rules(rules):
    sel = selection.Selection(**rules)
    change = state_mod.Change(1, 'trust', 't1', 'upsert', None,
                              {'id': 't1', 'domain_id': 'd1'})
    with pytest.raises(types.UnknownType):
        sel.filter('s1', [change], lambda t, i: None, lambda t, i: None)
    with pytest.raises(types.UnknownType):
        selection.Rule('type', 'user', None, 'type:user').concerns('trust')
    with pytest.raises(selection.RuleError, match="unknown type 'trust'"):
        selection.parse('type:trust')


def test_facts_follow_the_table():
    project = types.lookup('project')
    assert project.containers({'id': 'p', 'domain_id': 'd',
                               'parent_id': 'd'}) == (('domain', 'd'),)
    assert project.containers({'id': 'p', 'domain_id': 'd',
                               'parent_id': 'p0'}) == (
        ('domain', 'd'), ('project', 'p0'))
    grant = {'id': 'g', 'type': 'GroupSystem', 'actor_id': 'g1',
             'target_id': types.SYSTEM_TARGET, 'role_id': 'r1'}
    assert types.lookup('role_assignment').references(grant) == (
        ('group', 'g1'), ('role', 'r1'))
    grant.update(type='UserDomain', actor_id='u1', target_id='d1')
    assert types.lookup('role_assignment').references(grant) == (
        ('user', 'u1'), ('role', 'r1'), ('domain', 'd1'))
    user = {'id': 'u', 'domain_id': 'd', 'local': None, 'federated': [
        {'idp_id': 'i1'}, {'idp_id': 'i2'}]}
    info = types.lookup('user')
    assert info.references(user) == (('identity_provider', 'i1'),
                                     ('identity_provider', 'i2'))
    assert (info.name_of(user), info.natural_key_of(user)) == (None, None)
    user['local'] = {'name': 'alice', 'passwords': [{'hash': 'h'}]}
    assert (info.name_of(user), info.natural_key_of(user)) == (
        'alice', ('d', 'alice'))
    assert types.lookup('mapping').name_of({'id': 'm1'}) == 'm1'
    assert types.replace_secrets('user', user, lambda v: '*') == dict(
        user, local={'name': 'alice', 'passwords': [{'hash': '*'}]})
    assert user['local']['passwords'] == [{'hash': 'h'}]


def test_rows_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        types.lookup('user').name = 'x'


def test_the_common_package_imports_nothing_of_keystone():
    code = ('import sys; import keystone_syncext.common.types, '
            'keystone_syncext.common.protocol; '
            'bad = [m for m in sys.modules if m.split(".")[0] in '
            '("keystone", "flask", "oslo_db", "sqlalchemy") or '
            'm.startswith(("keystone_syncext.resources", '
            '"keystone_syncext.api", "keystone_syncext.agent"))]; '
            'print(bad); sys.exit(bool(bad))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
