"""Which of Keystone's caches a write drops: what its types name, or
everything when one cannot say, when there are too many entries, or on
a re-key. The dropping itself is recorded, not done (the regions need a
configured Keystone; the functional tests in test_api_cache.py judge the
real thing)."""

import types

import pytest

from keystone_syncext import resources
from keystone_syncext.writes import caching


class _Session:
    def __init__(self):
        self.info = {}


@pytest.fixture
def dropped(monkeypatch):
    """What ``Stale.invalidate`` drops, in order."""
    out = []

    class _Region:
        def __init__(self, name):
            self.name = name

        def invalidate(self):
            out.append(('region', self.name))

    class _Api:
        def __getattr__(self, method):
            class _Memoized:
                @staticmethod
                def invalidate(api, *args):
                    out.append((method, *args))
            return _Memoized

    monkeypatch.setattr(caching, 'invalidate_all',
                        lambda: out.append('everything'))
    monkeypatch.setattr(caching, '_REGIONS', {
        'computed_assignments': _Region('computed_assignments')})
    monkeypatch.setattr(caching, 'PROVIDERS',
                        types.SimpleNamespace(role_api=_Api()))
    return out


def _role(id_):
    return {'id': id_, 'name': f'r-{id_}', 'domain_id': None,
            'description': None, 'options': {}, 'extra': {}}


def _write(*touches, rekey=False):
    session = _Session()
    stale = caching.begin(session)
    for type_name, id_, old, new in touches:
        caching.touched(session, resources.get(type_name), id_, old, new)
    if rekey:
        caching.everything(session)
    stale.invalidate()


def test_role_upserts_drop_only_those_roles(dropped):
    _write(('role', 'a', None, _role('a')),
           ('role', 'b', _role('b'), dict(_role('b'), name='x')))
    assert dropped == [('get_role', 'a'), ('get_role', 'b')]


def test_new_assignments_drop_computed_assignments_once(dropped):
    grant = {'id': 'UserProject:u:p:r:0', 'type': 'UserProject',
             'actor_id': 'u', 'target_id': 'p', 'role_id': 'r',
             'inherited': False}
    member = {'id': 'u:g', 'user_id': 'u', 'group_id': 'g'}
    _write(('role_assignment', grant['id'], None, grant),
           ('group_membership', member['id'], None, member),
           ('implied_role', 'a:b', None,
            {'id': 'a:b', 'prior_role_id': 'a', 'implied_role_id': 'b'}))
    assert dropped == [('region', 'computed_assignments')]


@pytest.mark.parametrize('touch', [
    ('role', 'a', _role('a'), None),  # a delete also drops tokens
    ('project', 'p', None, {'id': 'p'}),  # a type that cannot say
    ('group_membership', 'u:g', {'id': 'u:g', 'user_id': 'u',
                                 'group_id': 'g'}, None),
])
def test_what_cannot_be_targeted_drops_everything(dropped, touch):
    _write(('role', 'a', None, _role('a')), touch)
    assert dropped == ['everything']


def test_too_many_entries_drop_everything(dropped):
    _write(*[('role', str(n), None, _role(str(n)))
             for n in range(caching.MAX_ENTRIES + 1)])
    assert dropped == ['everything']


def test_rekey_drops_everything(dropped):
    _write(rekey=True)
    assert dropped == ['everything']


def test_nothing_written_drops_nothing(dropped):
    _write()
    assert dropped == []
