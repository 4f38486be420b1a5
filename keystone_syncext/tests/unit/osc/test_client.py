"""The plugin's client, made by the ``openstack.cli.extension`` entry
point over the keystoneauth session of OSC's client manager, sends a
request whose kept connection the site had closed again at once on a new
one (``retries.ClosedConnectionRetry``, as the agent's client does), not
after keystoneauth's retry delay (tests/unit/agent/
test_closed_connections.py has the stub site and the rule's other
cases)."""

import logging
import time
import types

from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
import pytest

from keystone_syncext.agent import client
from keystone_syncext.agent import retries
from keystone_syncext.osc import plugin
from keystone_syncext.tests.unit.agent import stubhttp

# How long after its answer the stub closes the connection: long enough
# for the client's next request to go out on it first.
LINGER = 0.1


@pytest.fixture
def closing():
    """A site that answers ``GET /v3/sync`` and closes the connection
    LINGER seconds later without saying so (uWSGI's ``--http-socket``);
    yields its URL and the requests it answered."""
    seen = []

    class Handler(stubhttp.JsonHandler):
        protocol_version = 'HTTP/1.1'

        def do_GET(self):
            seen.append(self.path)
            self.reply(200, {'sync': {'site_id': 'hub'}})
            self.wfile.flush()
            time.sleep(LINGER)
            self.close_connection = True

    with stubhttp.serving(Handler) as url:
        yield url, seen


def _client_manager(url):
    """What the plugin reads of OSC's ClientManager: a keystoneauth
    session (here with a fixed endpoint and token) and the cloud."""
    return types.SimpleNamespace(
        session=ks_session.Session(auth=token_endpoint.Token(url, 'tok')),
        setup_auth=lambda: None, interface='public', region_name=None,
        get_configuration=lambda: {'cloud': 'hub'})


def test_a_closed_kept_connection_is_sent_again_at_once(closing, caplog):
    url, seen = closing
    manager = _client_manager(url)
    sync = plugin.make_client(manager)
    caplog.set_level(logging.DEBUG)
    slowest = 0.0
    for _ in range(4):
        start = time.monotonic()
        assert sync.about() == {'site_id': 'hub'}
        slowest = max(slowest, time.monotonic() - start)
    assert seen == ['/v3/sync'] * 4
    # Mounted on the session OSC gave the plugin, for every scheme.
    assert {type(a.max_retries) for a in
            manager.session.session.adapters.values()} == {
                retries.ClosedConnectionRetry}
    assert [r for r in caplog.records
            if 'sending again on a new one' in r.getMessage()]
    # keystoneauth's delay (0.5 s) would show here.
    assert not [r for r in caplog.records
                if 'Retrying in' in r.getMessage()]
    assert slowest < LINGER + client.CONNECT_RETRY_DELAY / 2, slowest
