"""The reconcile's digest walk, on the in-memory site
(:mod:`keystone_syncext.testing.fakesite`, read through the agent's own
client), which answers digests as the API does (buckets by the next
character of the id, the items themselves once few enough match): it
must find every difference and descend only into buckets that
differ."""

import random

import pytest

from keystone_syncext.agent import client
from keystone_syncext.agent import reconcile
from keystone_syncext.common import protocol
from keystone_syncext.testing import fakesite


def FakeSite(data, leaf=4, common_prefix=True, max_digests=None,  # noqa: N802
             name='fake'):
    """The agent's client of an in-memory site holding ``data`` (type ->
    {id: resource}) whose digests list their items once ``leaf`` or
    fewer; ``common_prefix`` False: a server from before digests told
    it; ``max_digests`` None: from before ``POST /sync/digests``. Its
    ``digests``: the nodes answered; ``requests`` and ``bytes``: what the
    walk cost (after the capabilities)."""
    fake = fakesite.FakeSite(name, types=list(data) or ['role'], leaf=leaf,
                             common_prefix=common_prefix,
                             max_digests=max_digests)
    fake.load(data)
    return _Counted(fake)


class _Counted:
    """A client of ``fake`` and what it cost."""

    def __init__(self, fake):
        self.fake = fake
        self.site = fake.client(timeout=5)
        self.site.capabilities()
        self.site.requests = self.site.bytes_transferred = 0

    def __getattr__(self, name):
        return getattr(self.site, name)

    def __setattr__(self, name, value):
        if name in ('fake', 'site'):
            object.__setattr__(self, name, value)
        else:
            setattr(self.site, name, value)

    @property
    def digests(self):
        return self.fake.nodes

    @property
    def bytes(self):
        return self.site.bytes_transferred


def _ids(rng, n):
    return [f'{rng.getrandbits(64):016x}' for _ in range(n)]


def test_walk_finds_every_difference_and_only_descends_where_needed():
    rng = random.Random(7)
    ids = _ids(rng, 2000)
    hub_data = {'role': {i: {'name': f'r-{i}'} for i in ids},
                'project': {i: {'name': f'p-{i}'} for i in ids[:300]}}
    spoke_data = {t: dict(v) for t, v in hub_data.items()}
    missing, changed, extra = ids[:3], ids[10:13], _ids(rng, 2)
    for i in missing:
        del spoke_data['role'][i]
    for i in changed:
        spoke_data['role'][i] = {'name': 'changed at the spoke'}
    for i in extra:
        spoke_data['role'][i] = {'name': 'only at the spoke'}
    # A whole bucket the spoke lacks: found without walking into it.
    gone = [i for i in hub_data['project'] if i.startswith('a')]
    for i in gone:
        del spoke_data['project'][i]
    hub, spoke = FakeSite(hub_data), FakeSite(spoke_data)

    diffs = reconcile.compare(hub, spoke, ['role', 'project'])

    role, project = diffs['role'], diffs['project']
    # Missing: by id, or as a prefix under which the spoke has nothing.
    under = {i for p in role.hub_only for i in hub_data['role']
             if i.startswith(p)}
    assert set(role.missing) | under == set(missing)
    assert set(role.differ) == set(changed)
    assert role.extra == set(extra)
    for i in role.missing:
        assert role.missing[i] == protocol.content_hash(hub_data['role'][i])
    assert project.hub_only == ['a'] and not project.missing
    # About four levels per difference, never the 2000 ids' worth.
    assert hub.digests < 80 and spoke.digests < 80
    envs, whole = reconcile.fetch(hub, project)
    assert whole == len(gone) and {e['id'] for e in envs} == set(gone)
    envs, whole = reconcile.fetch(hub, role)
    assert whole == len(under)
    assert {e['id'] for e in envs} == set(missing) | set(changed)


def test_equal_sites_cost_one_digest_per_type():
    rng = random.Random(8)
    data = {'user': {i: {'n': i} for i in _ids(rng, 500)}}
    hub, spoke = FakeSite(data), FakeSite({'user': dict(data['user'])})
    diffs = reconcile.compare(hub, spoke, ['user'])
    d = diffs['user']
    assert (d.missing, d.differ, d.extra, d.hub_only) == ({}, {}, set(), [])
    assert (hub.digests, spoke.digests) == (1, 1)


def test_an_id_that_is_a_prefix_of_others_ends_the_walk():
    hub_data = {'mapping': {i: {'v': 1} for i in
                            ['m', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']}}
    spoke_data = {'mapping': dict(hub_data['mapping'])}
    spoke_data['mapping']['m'] = {'v': 2}
    hub, spoke = FakeSite(hub_data), FakeSite(spoke_data)
    d = reconcile.compare(hub, spoke, ['mapping'])['mapping']
    assert set(d.differ) == {'m'} and not d.missing and not d.extra



def _assignments(rng, users, projects, role):
    return {f'UserProject:{u}:{p}:{role}:0': {'n': 1}
            for u in users for p in projects}


@pytest.mark.parametrize('hub_tells,spoke_tells,most', [
    (True, True, 8),
    # A site on an older server: the walk descends level by level.
    (True, False, 40),
    (False, True, 40),
])
def test_a_prefix_all_ids_share_is_skipped(hub_tells, spoke_tells, most):
    rng = random.Random(9)
    users, projects = _ids(rng, 30), _ids(rng, 10)
    role = f'{rng.getrandbits(128):032x}'
    hub_data = {'role_assignment': _assignments(rng, users, projects, role)}
    spoke_data = {'role_assignment': dict(hub_data['role_assignment'])}
    gone = f'UserProject:{users[4]}:{projects[7]}:{role}:0'
    del spoke_data['role_assignment'][gone]
    extra = f'UserProject:{users[4]}:{projects[7]}:{role}:1'
    spoke_data['role_assignment'][extra] = {'n': 2}
    hub = FakeSite(hub_data, common_prefix=hub_tells)
    spoke = FakeSite(spoke_data, common_prefix=spoke_tells)

    d = reconcile.compare(hub, spoke, ['role_assignment'])['role_assignment']

    assert set(d.missing) == {gone} and d.extra == {extra}
    assert not d.differ and not d.hub_only
    # Walked a character at a time, 'UserProject:' and the rest of the
    # way down to the two ids cost 31 digests a site; skipping what both
    # sites' ids share, 6.
    assert hub.digests == spoke.digests
    assert hub.digests <= most
    if not (hub_tells and spoke_tells):
        assert hub.digests > 20


def _drifted(rng):
    """Three types, a few differences in each, as the benchmark has."""
    ids = _ids(rng, 3000)
    hub_data = {'role': {i: {'n': i} for i in ids[:50]},
                'project': {i: {'n': i} for i in ids[:1000]},
                'user': {i: {'n': i} for i in ids}}
    spoke_data = {t: dict(v) for t, v in hub_data.items()}
    del spoke_data['user'][ids[5]]
    spoke_data['project'][ids[7]] = {'n': 'changed'}
    spoke_data['user'][ids[9]] = {'n': 'changed'}
    spoke_data['role']['ff-only-at-the-spoke'] = {'n': 1}
    return hub_data, spoke_data


def _found(diffs):
    return {t: (sorted(d.missing), sorted(d.differ), sorted(d.extra),
                sorted(d.hub_only)) for t, d in diffs.items()}


@pytest.mark.parametrize('hub_max,spoke_max', [
    (100, 100),
    # A site from before POST /sync/digests: asked a node at a time.
    (100, None),
    (None, 100),
    # More nodes in a level than one request may carry.
    (2, 3),
])
def test_a_level_of_the_walk_is_one_request_per_site(hub_max, spoke_max,
                                                      monkeypatch):
    hub_data, spoke_data = _drifted(random.Random(10))
    types = ['role', 'project', 'user']
    one_by_one = reconcile.compare(FakeSite(hub_data), FakeSite(spoke_data),
                                   types)
    hub = FakeSite(hub_data, max_digests=hub_max)
    spoke = FakeSite(spoke_data, max_digests=spoke_max)
    levels = []
    fetch_level = reconcile._fetch_level
    monkeypatch.setattr(reconcile, '_fetch_level', lambda *a: (
        levels.append(len(a[3])), fetch_level(*a))[1])

    diffs = reconcile.compare(hub, spoke, types)

    # The same walk and the same findings, whoever answers how.
    assert _found(diffs) == _found(one_by_one)
    assert {t: d.compared for t, d in diffs.items()} == \
        {t: d.compared for t, d in one_by_one.items()}
    user = hub_data['user']
    assert _found(diffs)['user'][:2] == (
        sorted(i for i in user if i not in spoke_data['user']),
        sorted(i for i in user if spoke_data['user'].get(i, user[i])
               != user[i]))
    assert len(levels) >= 3 and levels[0] == len(types)
    for site, most in ((hub, hub_max), (spoke, spoke_max)):
        if most is None:
            assert site.requests == site.digests
        else:
            # A request per level (or as many as its limit needs), never
            # one per node.
            assert site.requests <= sum(-(-n // most) for n in levels)
            assert site.requests < site.digests
    if hub_max == spoke_max == 100:
        assert hub.requests == spoke.requests == len(levels)
    # What the requests cost, shared out by type, adds up to it.
    assert sum(d.bytes for d in diffs.values()) == hub.bytes + spoke.bytes
    assert all(d.bytes > 0 for d in diffs.values())
    assert round(sum(d.requests for d in diffs.values())) == \
        hub.requests + spoke.requests


def test_shares_are_whole_and_exact():
    assert reconcile._shares(10, [1, 1, 1]) == [3, 3, 4]
    assert reconcile._shares(0, [5, 7]) == [0, 0]
    assert reconcile._shares(7, []) == []
    assert sum(reconcile._shares(1001, [3, 999, 12, 1])) == 1001


def _not_upgraded_yet(data):
    """Offers POST /sync/digests, but the node that answers does not have
    the route yet (a rolling upgrade): 404."""
    site = FakeSite(data, max_digests=100)
    site.fake.fail('digests', 404)
    return site


def test_a_site_without_the_route_after_all_is_asked_a_node_at_a_time():
    hub_data, spoke_data = _drifted(random.Random(12))
    types = ['role', 'project', 'user']
    expected = _found(reconcile.compare(FakeSite(hub_data),
                                        FakeSite(spoke_data), types))
    hub = FakeSite(hub_data, max_digests=100)
    spoke = _not_upgraded_yet(spoke_data)

    assert _found(reconcile.compare(hub, spoke, types)) == expected
    # Refused once, then asked with GETs only.
    assert spoke.max_digests is None
    assert spoke.requests == 1 + spoke.digests


def test_other_errors_of_the_route_are_not_hidden():
    broken = FakeSite({'role': {'a': {}}}, max_digests=10)
    broken.fake.fail('digests', 503)
    with pytest.raises(client.SiteError, match='503'):
        reconcile.compare(broken, FakeSite({'role': {'a': {}}}), ['role'])


class _State:
    """What reconcile_spoke reads and writes of the agent's state."""

    def __init__(self, placed):
        self.placed = placed        # (type, id) -> hash
        self.recorded = []

    def placed_at(self, name, type_name, ids):
        return {i: self.placed[(type_name, i)] for i in ids
                if (type_name, i) in self.placed}

    def record(self, name, seq, done, failed, written):
        self.recorded.append((done, failed, written))


class _Agent:
    """An agent (and its writer) whose writes to the spoke are taken as
    they come."""

    def __init__(self, hub, placed):
        self.hub = hub
        self.hub_types = ['role']
        self.spoke_types = {'spoke': ['role']}
        self.state = _State(placed)
        self.applied = []

    def apply(self, site, changes):
        self.applied += changes
        return list(changes), [], list(changes)


def _tombstone_hub(data, tombstones, lookup=True):
    """A hub that keeps ``tombstones`` (type -> deleted ids), and answers
    for them unless ``lookup`` is False (from before the route)."""
    hub = FakeSite(data)
    hub.fake.tombstones = tombstones if lookup else None
    hub.site.capabilities()
    return hub


@pytest.mark.parametrize('lookup', [True, False])
def test_reconcile_deletes_what_the_hub_has_a_tombstone_for(lookup):
    """A spoke restored from a backup older than a delete holds the
    resource again, and the agent's record of placing it went with the
    delete: only the hub's tombstone tells it from the spoke's own."""
    shared = {f'{n:032x}': {'name': f'r{n}'} for n in range(20)}
    placed_extra, resurrected, own = 'a' * 32, 'b' * 32, 'c' * 32
    spoke_data = {'role': dict(shared, **{
        placed_extra: {'name': 'placed, since deleted at the hub'},
        resurrected: {'name': 'deleted at the hub, back from a backup'},
        own: {'name': "the spoke's own"}})}
    hub = _tombstone_hub({'role': dict(shared)}, {'role': {resurrected}},
                         lookup=lookup)
    spoke = FakeSite(spoke_data, name='spoke')
    agent = _Agent(hub, {('role', placed_extra): 'h'})

    reports = reconcile.reconcile_spoke(agent, agent, spoke)

    deleted = {c.id for c in agent.applied if c.op == 'delete'}
    if lookup:
        assert deleted == {placed_extra, resurrected}
        # Only what the agent did not place is asked about.
        assert hub.fake.tombstones_asked == [
            ('role', sorted([resurrected, own]))]
    else:
        # A hub from before the lookup: as before, placed only.
        assert deleted == {placed_extra}
        assert hub.fake.tombstones_asked == []
    assert own not in deleted
    (rep,) = reports
    assert rep.deletes == len(deleted)
    assert rep.kept_local == 3 - len(deleted)

