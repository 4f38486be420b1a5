"""A hub and spokes of in-memory sites (:mod:`keystone_syncext.testing.
fakesite`), the agent's options for tests, and ``run --once`` in a thread
that a hang cannot keep from ending (the test fails instead).

The fixtures ``world`` (answered in memory) and ``served_world`` (each
site serving HTTP on loopback for the test) are taken by a module that
uses one as ``world = fakeworld.world`` or ``world =
fakeworld.served_world``."""

import contextlib
import threading
import time

from oslo_config import cfg
import pytest

from keystone_syncext.agent import client
from keystone_syncext.agent import opts
from keystone_syncext.agent import runner
from keystone_syncext.agent import state as state_mod
from keystone_syncext.testing import fakesite


def make_conf(**overrides):
    conf = cfg.ConfigOpts()
    opts.register(conf)
    conf([], project='keystone-sync-test', default_config_files=[])
    settings = dict(poll_wait=1, retry_initial=0.01, retry_max=0.1,
                    once_attempts=2, request_timeout=1.0,
                    connect_retries=1, busy_retries=2, busy_wait_max=0.2,
                    progress=False)
    settings.update(overrides)
    for k, v in settings.items():
        conf.set_override(k, v)
    return conf


def request_bound(conf) -> float:
    """The longest one request of the agent takes (doc/agent.md)."""
    # The first send and keystoneauth's retries, each followed (with any
    # retries at all) by an immediate resend of a closed connection.
    sends = (conf.connect_retries + 1) * (1 + min(conf.connect_retries, 1)) \
        * conf.request_timeout + \
        client.CONNECT_RETRY_DELAY * (2 ** conf.connect_retries - 1)
    return ((conf.busy_retries + 2) * sends +
            conf.busy_retries * conf.busy_wait_max + client.REAUTH_DELAY)


def run_bound(conf, requests_per_pass: int) -> float:
    """The longest a failing ``run --once`` takes (doc/agent.md)."""
    attempt = requests_per_pass * request_bound(conf) + \
        1.2 * conf.retry_max
    return 3 * conf.once_attempts * attempt + conf.poll_wait + 10


class World:
    """A hub and a spoke of fake sites, and a state database."""

    def __init__(self, tmp_path):
        self.hub = fakesite.FakeSite('hub')
        self.spokes = [fakesite.FakeSite('spoke1')]
        self.url = f'sqlite:///{tmp_path}/state.sqlite'
        self.hub.put('role', {'id': 'r-admin', 'name': 'admin',
                              'domain_id': None})
        for n in range(5):
            self.hub.put('project', {'id': f'p{n}', 'name': f'p{n}',
                                     'domain_id': 'default'})
        self.hub.put('application_credential', {'id': 'ac-hub',
                                                'name': 'ci'})

    def site(self, name):
        return self.hub if name == 'hub' else self.spokes[0]

    def serving(self):
        stack = contextlib.ExitStack()
        for s in [self.hub] + self.spokes:
            stack.enter_context(s.serve())
        return stack

    def http_sites(self, conf):
        """The agent's clients of the hub and of each spoke, over HTTP
        (the sites must be serving); (hub, [spokes])."""
        return (client.from_conf(conf, 'hub', cloud=self.hub.cloud()),
                [client.from_conf(conf, s.name, cloud=s.cloud())
                 for s in self.spokes])

    def run_once(self, conf, capsys, within, http=True):
        """``run --once`` in a thread, over HTTP (or, not ``http``,
        answered in memory); (exit code, spoke lines, seconds)."""
        if not http:
            return run_agent(self.agent(conf), capsys, within)
        hub, spokes = self.http_sites(conf)
        agent = runner.Agent(conf, hub, spokes, state_mod.State(self.url),
                             once=True)
        return run_agent(agent, capsys, within)

    def run_failing(self, capsys, where, route, kind, http=True,
                    requests_per_pass=4):
        """``run --once`` with site ``where``'s ``route`` failing as
        ``kind`` says (:func:`inject`): it must end within its bound
        (:func:`run_bound`) with one line per spoke; (exit code, spoke
        lines)."""
        conf = make_conf()
        inject(self.site(where), route, kind)
        bound = run_bound(conf, requests_per_pass)
        rc, lines, took = self.run_once(conf, capsys, bound, http=http)
        assert_one_line_per_spoke(self, lines, rc)
        assert took < bound
        return rc, lines

    def agent(self, conf, once=True, **kwargs):
        """An agent of this world's sites, answered in memory (no
        socket: :meth:`fakesite.FakeSite.client`)."""
        return runner.Agent(conf, self.hub.client(conf),
                            [s.client(conf) for s in self.spokes],
                            state_mod.State(self.url), once=once, **kwargs)


@pytest.fixture
def world(tmp_path):
    """A :class:`World` answered in memory (no socket)."""
    return World(tmp_path)


@pytest.fixture
def served_world(tmp_path):
    """A :class:`World` whose sites serve HTTP on loopback for the
    test."""
    w = World(tmp_path)
    with w.serving():
        yield w


def own_admin(spoke):
    """Bootstrap's own admin role and project, as a fresh spoke that was
    never joined has (they clash by name with the hub's)."""
    spoke.put('role', {'id': 'r-own', 'name': 'admin', 'domain_id': None})
    spoke.put('project', {'id': 'p-own', 'name': 'p0',
                          'domain_id': 'default'})


def run_agent(agent, capsys, within):
    """``agent.run()`` in a thread that must end ``within`` seconds;
    (exit code, spoke lines, seconds)."""
    got = {}
    start = time.monotonic()
    t = threading.Thread(target=lambda: got.update(rc=agent.run()),
                         daemon=True)
    t.start()
    t.join(within)
    took = time.monotonic() - start
    agent.stop.set()
    assert not t.is_alive(), f'run --once still running after {within}s'
    out, err = capsys.readouterr()
    lines = [line for line in (out + err).splitlines()
             if line.startswith('spoke ')]
    return got['rc'], lines, took


def inject(site, route, kind, times=None):
    if kind == 'busy':
        site.fail(route, 503, times, retry_after='1')
    else:
        site.fail(route, kind, times)


def assert_one_line_per_spoke(world, lines, rc):
    names = [s.name for s in world.spokes]
    assert [line.split(':')[0] for line in lines] == \
        [f'spoke {n}' for n in names], lines
    converged = all('converged with hub' in line for line in lines)
    assert rc == (0 if converged else 1), (rc, lines)


