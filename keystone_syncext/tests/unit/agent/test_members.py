"""Several agents on tooz (Redis at 127.0.0.1:6379) and a shared state
database (MariaDB or PostgreSQL): the spokes are shared out with no spoke
held twice, one member leads, a dead member's spokes are taken over once
its lease and membership ran out, it cannot write when it wakes, and
once it is back it rejoins and gets its share again."""

import threading
import time
import types
import uuid

import pytest
from sqlalchemy import exc as sa_exc

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import members
from keystone_syncext.agent import state as state_mod
from keystone_syncext.tests import conftest

REDIS = 'redis://127.0.0.1:6379?timeout=3'
LEASE = 3.0
SPOKES = [f'spoke{n}' for n in range(6)]


@pytest.fixture
def st(backend):
    name = conftest.unique_name('agent_members')
    st = state_mod.State(backend.create(name))
    st.migrate()
    st.set_hub('hub', 'hub-site', None)
    st.restart_feed('c0')
    yield st
    st.engine.dispose()
    backend.drop(name)


def _member(st, hub, name):
    conf = types.SimpleNamespace(
        coordination=types.SimpleNamespace(heartbeat=0.2, lease=LEASE,
                                           backend_url=REDIS),
        poll_wait=1)
    own = state_mod.State(st.url)
    ctx = types.SimpleNamespace(
        conf=conf, state=own, member_id=name, once=False,
        hub=types.SimpleNamespace(name=hub), stop=threading.Event(),
        spokes=[types.SimpleNamespace(name=s, fence=None) for s in SPOKES],
        announce=lambda: None, membership=None)
    return members.start(ctx)


def _owned(m):
    return {s for s in SPOKES if m.owns(s)}


def _until(check, within):
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, 'not within the bound'
        time.sleep(0.1)


def test_sqlite_is_refused(backend):
    if backend.name != 'sqlite':
        pytest.skip('the SQLite refusal')
    name = conftest.unique_name('agent_members')
    st = state_mod.State(backend.create(name))
    st.migrate()
    with pytest.raises(SystemExit, match='not SQLite'):
        _member(st, 'hub', 'a')


def test_spokes_shared_and_taken_over(st):
    if st.engine.dialect.name == 'sqlite':
        pytest.skip('several agents need MariaDB or PostgreSQL')
    hub = f'hub-{uuid.uuid4().hex[:8]}'
    a, b = _member(st, hub, 'a'), _member(st, hub, 'b')
    try:
        def shared():
            for m in (a, b):
                m.tick()
            return _owned(a) | _owned(b) == set(SPOKES) and \
                not _owned(a) & _owned(b) and _owned(a) and _owned(b)
        # A spoke changes hands only once released or its lease ran out.
        _until(shared, LEASE * 4)
        assert [a.is_leader(), b.is_leader()].count(True) == 1
        # a dies (no more heartbeats, no leaving): b takes everything
        # once a's membership and leases ran out.
        a.coord.heart.stop()
        lost = _owned(a)
        died = time.monotonic()

        def taken():
            b.tick()
            return _owned(b) == set(SPOKES) and b.is_leader()
        _until(taken, LEASE + 3 + 10)
        took = time.monotonic() - died
        assert took < LEASE + 3 + 10
        # a wakes up: every write to a spoke it lost is fenced.
        spoke = sorted(lost)[0]
        with pytest.raises(claims_mod.ClaimLost):
            a.ctx.state.record(spoke, 99, [], [])
        assert b.ctx.state.spoke(spoke).applied_seq == 0
        gens = {s.name: s.fence[1] for s in b.ctx.spokes}
        olds = {s.name: s.fence[1] for s in a.ctx.spokes if s.fence}
        assert all(gens[s] > olds[s] for s in lost)
        # a resumes (as after SIGSTOP/SIGCONT): it rejoins the group, and
        # the spokes are shared again, none held twice.
        a.coord.heart.start()
        _until(shared, LEASE * 4)
    finally:
        for m in (a, b):
            m.ctx.stop.set()
            m.stop()


def test_two_agent_groups_on_one_backend_do_not_mix(st, backend):
    """Two HA agents (two state databases) on one Redis, their hubs both
    called ``hub`` in their clouds.yaml (as in most deployments): each
    is a group of its own, so each one's member drives all its spokes and
    leads. One tooz group per hub name shared a ring and an election
    between them: each member got a part of the spokes, and one of them
    no leader."""
    if backend.name == 'sqlite':
        pytest.skip('several agents need MariaDB or PostgreSQL')
    name = conftest.unique_name('agent_members')
    other = state_mod.State(backend.create(name))
    other.migrate()
    other.set_hub('hub', 'hub-site', None)
    other.restart_feed('c0')
    hub = f'hub-{uuid.uuid4().hex[:8]}'  # the same name for both
    a, b = _member(st, hub, 'a'), _member(other, hub, 'b')
    try:
        def alone():
            for m in (a, b):
                m.tick()
            return _owned(a) == _owned(b) == set(SPOKES) and \
                a.is_leader() and b.is_leader()
        _until(alone, LEASE * 4)
        assert a.group_id != b.group_id
    finally:
        for m in (a, b):
            m.ctx.stop.set()
            m.stop()
        other.engine.dispose()
        backend.drop(name)


def test_backend_refusing_connections_is_a_cut_off(st):
    """Redis refusing connections (tooz lets redis' own ConnectionError
    through, not a ToozError): the member releases everything once the
    read fails, the heartbeat does not fail, and stopping works."""
    if st.engine.dialect.name == 'sqlite':
        pytest.skip('several agents need MariaDB or PostgreSQL')
    import redis
    a = _member(st, f'hub-{uuid.uuid4().hex[:8]}', 'a')
    try:
        _until(lambda: a.tick() or _owned(a) == set(SPOKES), LEASE * 4)
        a.coord._client = redis.Redis(host='127.0.0.1', port=1,
                                      socket_connect_timeout=1)
        # Noticed when the read fails (redis-py retries a refused
        # connection for a while first), within the lease at the latest.
        _until(lambda: a.tick() or not a.healthy, LEASE + 2)
        assert _owned(a) == set() and not a.is_leader()
    finally:
        a.ctx.stop.set()
        a.stop()


def test_a_member_joining_while_another_starts_is_in_its_ring(
        st, monkeypatch):
    """b joins right after a's first read of the group while a starts
    (the interleaving of members started together, or a replacement
    started as another starts). a must count b in its share, and when b
    leaves, take b's spokes: with tooz's Partitioner, b was in a's
    watcher list but not in its ring, and b's leave made every later
    heartbeat of a fail (``UnknownNode``), so a held nothing, ever."""
    if st.engine.dialect.name == 'sqlite':
        pytest.skip('several agents need MariaDB or PostgreSQL')
    hub = f'hub-{uuid.uuid4().hex[:8]}'
    real = members._tooz_coordination().get_coordinator
    started = {}

    def get_coordinator(url, member_id, *args, **kwargs):
        coord = real(url, member_id, *args, **kwargs)
        if member_id != b'a':
            return coord
        first_read = coord.get_members

        def get_members(group_id):
            result = first_read(group_id)
            if 'b' not in started:
                # Joined (and gone on) before a reads the group again.
                started['b'] = _member(st, hub, 'b')
            return result
        coord.get_members = get_members
        return coord

    monkeypatch.setattr(members._tooz_coordination(), 'get_coordinator',
                        get_coordinator)
    a = _member(st, hub, 'a')
    b = started['b']
    try:
        def shared():
            for m in (a, b):
                m.tick()
            return _owned(a) | _owned(b) == set(SPOKES) and \
                _owned(a) and _owned(b)
        _until(shared, LEASE * 4)
        b.ctx.stop.set()
        b.stop()
        # b left the group (and released its claims): a takes all.
        _until(lambda: a.tick() or _owned(a) == set(SPOKES), LEASE * 4)
        assert a.healthy
    finally:
        for m in (a, b):
            m.ctx.stop.set()
            m.stop()


def test_backend_not_answering_is_a_cut_off_within_the_lease(st):
    """Redis reachable but silent (a black-holed link: connections
    accepted, nothing answered): the member releases everything once
    the read of the group has waited its lease less the margin, not
    after the client's retries (ten per command, each up to the URL's
    timeout: minutes), and each tick returns within a heartbeat or so."""
    if st.engine.dialect.name == 'sqlite':
        pytest.skip('several agents need MariaDB or PostgreSQL')
    import socket

    import redis
    hole = socket.socket()
    hole.bind(('127.0.0.1', 0))
    hole.listen(64)
    a = _member(st, f'hub-{uuid.uuid4().hex[:8]}', 'a')
    try:
        _until(lambda: a.tick() or _owned(a) == set(SPOKES), LEASE * 4)
        a.coord._client = redis.Redis(
            host='127.0.0.1', port=hole.getsockname()[1],
            socket_timeout=3, socket_connect_timeout=3)
        renewals = []
        renew = a.claims.renew
        a.claims.renew = lambda: renewals.append(1) or renew()
        started = time.monotonic()
        longest = 0.0
        while a.healthy:
            t = time.monotonic()
            a.tick()
            longest = max(longest, time.monotonic() - t)
            assert time.monotonic() - started < LEASE + 2, \
                'not cut off within the lease'
            time.sleep(0.05)
        assert _owned(a) == set() and not a.is_leader()
        # Not before the lease less the margin: a slow read is not a
        # cut-off. But nothing is renewed while the read hangs: a member
        # cut off must stop writing, and let the others take over, counted
        # from its last renewal before the cut (the HA drill's check).
        assert time.monotonic() - started >= a.claims.lease - \
            a.claims.margin - 0.5
        assert renewals == []
        assert longest < 2 * a.heartbeat + 1
    finally:
        a.ctx.stop.set()
        a.coord._client = redis.Redis(host='127.0.0.1', port=1,
                                      socket_connect_timeout=1)
        a.stop()
        hole.close()


def test_the_leader_cut_off_by_a_slow_read_leads_again(st, monkeypatch):
    """A read of the group slower than the lease less the margin cuts the
    member off (it releases the feed's claim) although its tooz heart
    still beats and keeps the leader lock. Once reads answer again it
    must read the feed again: tooz does not tell it a second time that
    it was elected, so forgetting that left the group with no reader."""
    if st.engine.dialect.name == 'sqlite':
        pytest.skip('several agents need MariaDB or PostgreSQL')
    a = _member(st, f'hub-{uuid.uuid4().hex[:8]}', 'a')
    try:
        _until(lambda: a.tick() or a.is_leader(), LEASE * 4)
        read = a.coord.get_members
        slow = threading.Event()

        def get_members(group_id):
            if not slow.is_set():
                slow.set()
                time.sleep(LEASE + 1)
            return read(group_id)
        monkeypatch.setattr(a.coord, 'get_members', get_members)
        _until(lambda: a.tick() or not a.healthy, LEASE * 2)
        assert not a.is_leader()
        _until(lambda: a.tick() or a.is_leader(), LEASE * 4)
        assert a.healthy
    finally:
        a.ctx.stop.set()
        a.stop()


def test_members_starting_together_migrate_once(backend):
    if backend.name == 'sqlite':
        pytest.skip('several agents need MariaDB or PostgreSQL')
    name = conftest.unique_name('agent_members')
    url = backend.create(name)
    states = [state_mod.State(url) for _ in range(3)]
    errors = []

    def migrate(st):
        try:
            st.migrate()
        except Exception as e:  # noqa: BLE001 - judged below
            errors.append(e)
    threads = [threading.Thread(target=migrate, args=(st,))
               for st in states]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert states[0].claims is None and states[0].hub() is None
    finally:
        for st in states:
            st.engine.dispose()
        backend.drop(name)


def test_the_feed_thread_outlives_an_error_of_the_state_database():
    """A leader's feed thread reads the cursor from the state database
    before following the feed; an error there (the database unreachable
    for a moment) is logged and tried again after a backoff, as the feed's
    own errors are, not the end of the thread (the member then went on
    without anyone reading the hub's feed)."""
    failures = []
    stop = threading.Event()

    def hub():
        if not failures:
            failures.append(True)
            raise sa_exc.OperationalError('SELECT', {}, Exception('gone'))
        return types.SimpleNamespace(cursor='c1')

    def sleep(seconds):
        if stop.wait(seconds):
            raise members.context_mod.Stopped()
    ctx = types.SimpleNamespace(
        stop=stop, state=types.SimpleNamespace(hub=hub),
        hub=types.SimpleNamespace(name='hub'), sleep=sleep,
        backoff=lambda n: 0.01)
    m = members.Member.__new__(members.Member)
    m.ctx, m.heartbeat = ctx, 0.1
    m.is_leader = lambda: True
    followed = []
    feed = types.SimpleNamespace(
        follow=lambda: (followed.append(True), stop.set()))
    m.feed(feed)   # returns once stopped; raised before
    assert failures and followed
