"""The writer (:mod:`keystone_syncext.agent.writer`) over the in-memory
site: a batch the site breaks on is split down to the item, a busy or
unauthorised site is not (its state, not an item's), a conditional write
the site refuses with 412 is settled by the conflict rules, and a name
clash is told apart in the reason kept."""

import pytest

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.agent import context as context_mod
from keystone_syncext.agent import writer
from keystone_syncext.tests.unit.agent import agentparts
from keystone_syncext.tests.unit.agent import fakeworld

world = fakeworld.world


def _projects(n):
    return [agentparts.change('project', {'id': f'q{i}', 'name': f'q{i}',
                                          'domain_id': 'default'}, seq=i)
            for i in range(n)]


def test_a_batch_broken_by_one_item_is_split_down_to_it(world):
    agent = agentparts.agent_of(world)
    spoke = world.spokes[0]
    spoke.breaks_on = {'q5'}
    ok, bad, stale = agent.writer.write(agent.spokes[0], _projects(8))
    assert sorted(c.id for c in ok) == [f'q{i}' for i in range(8) if i != 5]
    [(c, why)] = bad
    assert c.id == 'q5' and 'project q5' in why and '500' in why
    assert stale == []
    assert 'q5' not in spoke.data['project']


@pytest.mark.parametrize('status', [503, 401])
def test_a_busy_or_unauthorised_site_is_not_split(world, status):
    agent = agentparts.agent_of(world, busy_retries=1, busy_wait_max=0.01)
    world.spokes[0].fail('batch', status)
    with pytest.raises(client.SiteError) as e:
        agent.writer.write(agent.spokes[0], _projects(8))
    assert e.value.status == status
    assert not writer.item_may_be_at_fault(e.value)
    # One batch (with the client's own retries), never halves.
    assert world.spokes[0].calls['batch'] <= 3


def test_batches_are_bounded_by_the_sites_page_size(world):
    agent = agentparts.agent_of(world, batch_items=3)
    ok, _, _ = agent.writer.write(agent.spokes[0], _projects(8))
    assert len(ok) == 8
    assert world.spokes[0].calls['batch'] == 3


def test_no_batch_is_begun_once_the_lease_lapsed(world, monkeypatch):
    """The holder gives up before the others may take over: once its
    count of the lease says the claim is not its own now, the batch it
    would send next is not begun (context.Lapsed); the claim is kept,
    and the writes go on once a renewal went through."""
    agent = agentparts.agent_of(world, batch_items=3)
    spoke = world.spokes[0]
    solo = agentparts.lapsing(agent, monkeypatch, spoke)
    with pytest.raises(context_mod.Lapsed, match='spoke spoke1'):
        agent.writer.write(agent.spokes[0], _projects(8))
    assert spoke.calls['batch'] == 1
    assert sorted(spoke.data['project']) == ['q0', 'q1', 'q2']
    assert solo.claims.generation(claims_mod.spoke_claim('spoke1')) == 1
    solo.tick()                   # the renewal goes through
    ok, _, _ = agent.writer.write(agent.spokes[0], _projects(8))
    assert len(ok) == 8 and len(spoke.data['project']) == 8


def test_a_write_refused_412_is_settled_by_the_conflict_rules(world):
    agent = agentparts.agent_of(world)
    site, spoke = agent.spokes[0], world.spokes[0]
    first = {'id': 'r9', 'name': 'reader', 'domain_id': None}
    done, failed, written = agent.writer.apply(
        site, [agentparts.change('role', first)])
    assert not failed
    agent.state.record(site.name, None, done, failed, written)
    # Changed at the spoke since it was placed, then at the hub.
    spoke.put('role', dict(first, name='reader-local'))
    newer = agentparts.change('role', dict(first, name='reader-hub'), seq=2)
    done, failed, written = agent.writer.apply(site, [newer])
    assert not failed
    # hub_wins (the default): the hub's version is restored there.
    assert spoke.data['role']['r9']['name'] == 'reader-hub'
    [record] = agent.state.conflicts()
    assert record.resource_id == 'r9' and record.winner == 'hub'


def test_a_name_clash_is_named_in_the_reason(world):
    agent = agentparts.agent_of(world)
    world.spokes[0].put('role', {'id': 'r-own', 'name': 'admin',
                                 'domain_id': None})
    _, bad, _ = agent.writer.write(agent.spokes[0], [agentparts.change(
        'role', {'id': 'r-admin', 'name': 'admin', 'domain_id': None})])
    [(_, why)] = bad
    assert why.startswith(f'role r-admin: 409 {writer.NAME_CLASH} r-own')


def test_what_is_at_fault_is_an_item_not_the_site():
    def err(status, transient=True):
        return client.SiteError('s', 'x', status=status, transient=transient)
    assert writer.item_may_be_at_fault(err(500))
    assert writer.item_may_be_at_fault(err(400, transient=False))
    assert writer.item_may_be_at_fault(err(413, transient=False))
    for status in (None, 401, 408, 429, 503):
        assert not writer.item_may_be_at_fault(err(status))


def test_creates_in_dependency_order_deletes_reversed():
    changes = [agentparts.change('user', {'id': 'u'}),
               agentparts.change('identity_provider', {'id': 'i'}),
               agentparts.change('domain', {'id': 'd'}, op='delete'),
               agentparts.change('role_assignment', {'id': 'a'},
                                 op='delete')]
    assert [(c.op, c.type) for c in writer.order(changes)] == [
        ('delete', 'role_assignment'), ('delete', 'domain'),
        ('upsert', 'identity_provider'), ('upsert', 'user')]
