"""The seed's read-ahead of the hub's listings: every page once, in
order, each type closed by a marker; an error or a stop in the reader
reaches the seeding thread, and a seed that stops early leaves no reader
behind."""

import threading
import types

import pytest

from keystone_syncext.agent import context
from keystone_syncext.agent import seeding


class Hub:
    def __init__(self, pages, fail_at=None):
        self.pages, self.fail_at, self.reads = pages, fail_at, 0

    def listing(self, type_name, marker=None):
        self.reads += 1
        if self.fail_at == (type_name, marker):
            raise RuntimeError('the hub went away')
        pages = self.pages[type_name]
        n = 0 if marker is None else int(marker)
        return {'items': pages[n],
                'next_marker': str(n + 1) if n + 1 < len(pages) else None}


def _agent(hub):
    conf = types.SimpleNamespace(request_timeout=5)
    ctx = context.Context(conf, hub, [], state=None)
    return seeding.Seeder(ctx, writer=None)


def _seed(agent, types):
    """A seed's pages, as one that has just taken its position reads
    them."""
    return agent.prefetched(types, agent.shared.begin())


PAGES = {'role': [[{'id': 'r1'}], [{'id': 'r2'}]],
         'project': [[{'id': 'p1'}]], 'user': [[]]}


def test_pages_in_order_each_type_closed():
    got = list(_seed(_agent(Hub(PAGES)), ['role', 'project', 'user']))
    assert got == [('role', [{'id': 'r1'}]), ('role', [{'id': 'r2'}]),
                   ('role', None), ('project', [{'id': 'p1'}]),
                   ('project', None), ('user', None)]


def test_a_reader_error_reaches_the_seed():
    agent = _agent(Hub(PAGES, fail_at=('role', '1')))
    it = _seed(agent, ['role', 'project'])
    assert next(it) == ('role', [{'id': 'r1'}])
    with pytest.raises(RuntimeError, match='went away'):
        list(it)


def test_a_stop_ends_the_seed_and_the_reader():
    many = {'role': [[{'id': f'r{n}'}] for n in range(100)]}
    agent = _agent(Hub(many))
    # Threads other tests left may end meanwhile (the count fell by two
    # under xdist in CI): only new ones count.
    before = set(threading.enumerate())
    it = _seed(agent, ['role'])
    next(it)
    agent.ctx.stop.set()
    with pytest.raises(context.Stopped):
        list(it)
    assert agent.ctx.hub.reads < 100
    assert set(threading.enumerate()) - before == set()


def test_leaving_early_leaves_no_reader_behind():
    many = {'role': [[{'id': f'r{n}'}] for n in range(100)]}
    agent = _agent(Hub(many))
    # Threads other tests left may end meanwhile: only new ones count.
    before = set(threading.enumerate())
    it = _seed(agent, ['role'])
    next(it)
    it.close()
    assert set(threading.enumerate()) - before == set()
    assert agent.ctx.hub.reads < 10


def test_a_seed_that_fails_ends_its_share_of_the_pages():
    """A seed whose read failed takes no page any more: the shared
    pages keep nothing for it."""
    agent = _agent(Hub(PAGES, fail_at=('role', None)))
    agent.ctx.state = types.SimpleNamespace(start_seed=lambda name: 0)
    agent.ctx.hub_types = ['role']
    agent.ctx.spoke_types = {'s1': ['role']}
    agent.ctx.conf.progress = False
    agent.ctx.hub.name = 'hub'
    with pytest.raises(RuntimeError, match='went away'):
        agent.seed(types.SimpleNamespace(name='s1'))
    assert agent.shared._seeds == {}
    assert not agent.shared._pages
