"""Fixtures for unit tests of the agent's parts over the in-memory site
(:meth:`keystone_syncext.testing.fakesite.FakeSite.client`): a hub and a
spoke (:class:`fakeworld.World`), and an agent of them whose parts the
tests drive one at a time."""

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

