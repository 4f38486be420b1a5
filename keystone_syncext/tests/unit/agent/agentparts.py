"""Fixtures for unit tests of the agent's parts over the in-memory site
(:meth:`keystone_syncext.testing.fakesite.FakeSite.client`): a hub and a
spoke (:class:`fakeworld.World`), and an agent of them whose parts the
tests drive one at a time."""

import types

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import coordination
from keystone_syncext.agent import state as state_mod
from keystone_syncext.common import protocol
from keystone_syncext.tests.unit.agent import fakeworld


def agent_of(world, once=True, **overrides):
    """An agent over ``world`` in memory, its hub adopted and its spoke
    connected, not running."""
    conf = fakeworld.make_conf(**overrides)
    agent = world.agent(conf, once=once)
    agent.state.migrate()
    agent.adopt_hub(agent.hub.capabilities())
    for s in agent.spokes:
        agent.state.spoke(s.name)
        agent.connect(s)
    return agent


def change(type_name, resource, op='upsert', seq=1):
    """A change as the hub's feed gives it (with the hub's hash)."""
    upsert = op != 'delete'
    return state_mod.Change(seq, type_name, resource['id'], op, None,
                            resource if upsert else None,
                            hash_=protocol.content_hash(resource)
                            if upsert else None)


def lapsing(agent, monkeypatch, spoke, after=1):
    """``agent`` as one agent holding its claims (a started
    :class:`coordination.Solo`) whose claims' clock jumps past ``lease -
    margin`` once ``spoke`` took ``after`` batches: its heartbeat hangs
    from then on, until the test renews (``tick``)."""
    solo = coordination.Solo(agent)
    lapse = solo.claims.lease - solo.claims.margin + 0.1
    monkeypatch.setattr(claims_mod, 'time', types.SimpleNamespace(
        monotonic=lambda: 1000.0 + (lapse if spoke.calls['batch'] >= after
                                    else 0)))
    solo.start()
    agent.membership = solo
    return solo
