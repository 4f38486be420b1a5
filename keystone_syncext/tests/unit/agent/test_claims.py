"""Claims and fencing in the state database, on every backend: a member
whose claim was taken over cannot move a checkpoint, a cursor or a state,
nothing moves backwards, and the spoke's fencing header is sent and its
refusal recognised."""

import datetime
import os
import socket
import subprocess
import types

import pytest

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.agent import coordination
from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import state_tables
from keystone_syncext.tests import conftest


@pytest.fixture
def st(backend):
    name = conftest.unique_name('agent_claims')
    st = state_mod.State(backend.create(name))
    st.migrate()
    yield st
    st.engine.dispose()
    backend.drop(name)


@pytest.fixture
def clock(monkeypatch):
    """The claims' clock, moved on by the test: a lease runs out when
    the test says so, however loaded the machine is."""
    at = [state_tables.now()]
    monkeypatch.setattr(claims_mod.state_tables, 'now', lambda: at[0])

    def advance(seconds: float) -> None:
        at[0] += datetime.timedelta(seconds=seconds)
    return advance


def _members(st, lease=30.0):
    return (claims_mod.Claims(st.engine, 'a', lease),
            claims_mod.Claims(st.engine, 'b', lease))


def _change(seq):
    return state_mod.Change(seq, 'role', f'r{seq}', 'create',
                            resource={'id': f'r{seq}'}, hash_=f'h{seq}')


def test_a_live_claim_is_not_taken_and_an_expired_one_is(st, clock):
    a, b = _members(st)
    name = claims_mod.spoke_claim('s1')
    assert a.acquire(name)
    assert a.generation(name) == 1
    assert not b.acquire(name)
    assert a.acquire(name)  # renewed, same generation
    assert a.generation(name) == 1
    clock(29)
    assert not b.acquire(name)
    clock(2)
    assert b.acquire(name)
    assert b.generation(name) == 2
    assert a.renew() == [name]  # a finds it lost
    assert not a.holds(name)


def test_a_claim_not_renewed_within_its_lease_is_not_held(st, monkeypatch):
    """A member whose heartbeat hangs (its coordination backend cut off)
    stops driving a margin before its lease runs out as the others count
    it (a batch begun just before has that long to land): it does not
    wait for a renewal to tell it so, and holds it again once one goes
    through."""
    at = [1000.0]
    monkeypatch.setattr(claims_mod, 'time',
                        types.SimpleNamespace(monotonic=lambda: at[0]))
    a, _ = _members(st, lease=5.0)
    assert a.margin == 5.0 * claims_mod.MARGIN_SHARE == 1.25
    name = claims_mod.spoke_claim('s1')
    assert a.acquire(name)
    at[0] += 3.7
    assert a.holds(name)
    at[0] += 0.1                  # no renewal: lease - margin passed
    assert not a.holds(name)
    assert a.generation(name) == 1   # lapsed here, not forgotten
    assert a.renew() == []        # the database still says it is a's
    assert a.holds(name)


def test_a_release_keeps_the_generation(st):
    a, b = _members(st)
    name = claims_mod.spoke_claim('s1')
    a.acquire(name)
    a.release(name)
    assert b.acquire(name)  # free at once, under a new generation
    assert b.generation(name) == 2
    row = b.holder(name)
    assert (row.member, row.generation) == ('b', 2)


def test_a_superseded_member_moves_nothing_backwards(st):
    a, b = _members(st)
    name = claims_mod.spoke_claim('s1')
    st.spoke('s1')
    st.claims = a
    a.acquire(name)
    st.record('s1', 5, [_change(5)], [], [_change(5)])
    # b takes the spoke over (a was paused past its lease) and goes on.
    stale = state_mod.State(st.url)
    stale.claims = a
    st.claims = b
    b.acquire(name, take_over=True)
    st.record('s1', 9, [_change(9)], [], [_change(9)])
    # a wakes up mid-pass: every fenced write is refused, whole.
    with pytest.raises(claims_mod.ClaimLost, match="held by b under "
                       "generation 2"):
        stale.record('s1', 3, [_change(3)], [], [_change(3)])
    for write in (lambda: stale.start_seed('s1'),
                  lambda: stale.finish_seed('s1'),
                  lambda: stale.note_history('s1', 'h', 'm', True),
                  lambda: stale.set_upward_cursor('s1', 'c'),
                  lambda: stale.set_site_id('s1', 'x')):
        a.held[name] = 1  # as a still believed
        with pytest.raises(claims_mod.ClaimLost):
            write()
    row = st.spoke('s1')
    assert row.applied_seq == 9
    assert row.state == 'new' and row.site_id is None
    assert st.upward_cursor('s1') is None
    assert set(st.placed_at('s1', 'role', ['r3', 'r5', 'r9'])) == \
        {'r5', 'r9'}
    stale.engine.dispose()


def test_the_feed_cursor_is_fenced_by_the_feed_claim(st):
    a, b = _members(st)
    st.set_hub('hub', 'hub-site', None)
    st.claims = a
    a.acquire(claims_mod.FEED)
    st.append([], 'c1', 'c1')
    b.acquire(claims_mod.FEED, take_over=True)
    with pytest.raises(claims_mod.ClaimLost):
        st.append([], 'c0', 'c0')
    with pytest.raises(claims_mod.ClaimLost):
        st.restart_feed('c0')
    assert st.hub().cursor == 'c1'


def _ctx(st, member, lease=30.0, spokes=()):
    conf = types.SimpleNamespace(
        coordination=types.SimpleNamespace(heartbeat=0.1, lease=lease,
                                           backend_url=None),
        poll_wait=1)
    return types.SimpleNamespace(conf=conf, state=st, member_id=member,
                                 spokes=list(spokes), once=False,
                                 stop=types.SimpleNamespace(set=lambda: 0))


def test_a_second_agent_is_refused_naming_the_first(st):
    site = types.SimpleNamespace(name='s1', fence=None)
    first = coordination.Solo(_ctx(st, 'host-a:11:x', spokes=[site]))
    first.start()
    assert site.fence == (first.claims.group(), 1)
    assert first.is_leader() and first.owns('s1')
    with pytest.raises(SystemExit) as e:
        coordination.Solo(_ctx(st, 'host-b:22:y')).start()
    line = str(e.value)
    assert '\n' not in line
    assert 'another agent already runs on this state database: ' \
        'host-a:11:x (host ' in line
    assert f'pid {first.claims.holder("agent").pid}' in line
    assert 'since 20' in line


def test_a_crashed_agent_does_not_block_forever(st, clock):
    site = types.SimpleNamespace(name='s1', fence=None)
    coordination.Solo(_ctx(st, 'dead', spokes=[site])).start()
    clock(31)
    second = coordination.Solo(_ctx(st, 'new', spokes=[site]))
    second.start()
    assert second.claims.holder('agent').member == 'new'
    assert site.fence[1] == 2  # the spoke's fence moved up with it


class _Site:
    name = 'spoke1'

    def __init__(self, status=None):
        self.fence, self.sent, self.status = None, [], status

    def batch(self, items, origin=None, headers=(), max_bytes=None):
        self.sent.append(dict(headers))
        if self.status:
            raise client.SiteError(self.name, 'POST /sync/batch: 409 '
                                   'superseded', status=self.status,
                                   transient=False)
        return [{'index': 0, 'status': 200}]


def test_batches_carry_the_fence_and_its_refusal_is_told_apart():
    site = _Site()
    claims_mod.fenced_batch(site, [])
    assert site.sent == [{}]  # no claim yet: today's protocol
    site.fence = ('g1', 4)
    claims_mod.fenced_batch(site, [])
    assert site.sent[-1] == {'OpenStack-Sync-Fence': 'g1:4'}
    refused = _Site(status=409)
    refused.fence = ('g1', 3)
    with pytest.raises(claims_mod.Fenced) as e:
        claims_mod.fenced_batch(refused, [])
    assert str(e.value) == 'spoke1: POST /sync/batch: 409 superseded'
    unfenced = _Site(status=409)
    with pytest.raises(client.SiteError) as e:
        claims_mod.fenced_batch(unfenced, [])
    assert not isinstance(e.value, claims_mod.Fenced)


def test_a_holder_process_gone_from_this_host_is_seen():
    proc = subprocess.Popen(['true'])
    proc.wait()
    row = types.SimpleNamespace(member='m', host=socket.gethostname(),
                                pid=proc.pid)
    assert coordination.gone(row)
    assert not coordination.gone(types.SimpleNamespace(
        member='m', host=socket.gethostname(), pid=os.getpid()))
    assert not coordination.gone(types.SimpleNamespace(
        member='m', host='another-host', pid=proc.pid))
