"""A request that goes out on a kept connection the server has closed is
sent again at once on a new one, not after keystoneauth's retry delay.

The stub server closes each connection after its answer without saying
so (HTTP/1.1, no ``Connection: close``), a little after the answer, as
uWSGI's ``--http-socket`` does once its worker has finished the request:
a client that asks again right away writes into a connection that is
about to be closed and gets a reset or no answer. keystoneauth then
logged "Retrying in 0.5s" and slept, and a spoke's next change waited
behind it. Real outages keep keystoneauth's delays."""

import logging
import threading
import time

from openstack import config as os_config
import pytest

from keystone_syncext.agent import client
from keystone_syncext.tests.unit.agent import stubhttp

# How long after its answer the server closes the connection: long
# enough for the client's next request to go out on it first.
LINGER = 0.1


def _serve(handler):
    return stubhttp.serving(handler)


def _site(url, **kwargs):
    cloud = os_config.OpenStackConfig(load_yaml_config=False).get_one(
        auth_type='none', auth={'endpoint': url},
        identity_endpoint_override=url)
    return client.Site('stub', cloud=cloud, **kwargs)


@pytest.fixture
def closing():
    """A site that answers every request and then closes its connection,
    LINGER seconds later; ``seen`` counts the requests answered and
    ``connections`` the connections accepted."""
    seen, connections = [], []

    class Handler(stubhttp.JsonHandler):
        protocol_version = 'HTTP/1.1'

        def setup(self):
            super().setup()
            connections.append(1)

        def _answer(self):
            seen.append((self.command, self.path))
            self.reply(200, {'sync': {'ok': True}})
            self.wfile.flush()
            time.sleep(LINGER)
            self.close_connection = True

        def do_GET(self):
            self._answer()

        def do_POST(self):
            self.rfile.read(int(self.headers['Content-Length']))
            self._answer()

    with _serve(Handler) as url:
        yield url, seen, connections


def _keystoneauth_retries(caplog):
    return [r for r in caplog.records if 'Retrying in' in r.getMessage()]


def _resends(caplog):
    return [r for r in caplog.records
            if 'sending again on a new one' in r.getMessage()]


def test_a_closed_kept_connection_is_not_waited_for(closing, caplog):
    url, seen, connections = closing
    site = _site(url, timeout=5, connect_retries=2)
    caplog.set_level(logging.DEBUG)
    site._request('GET', '/sync')
    slowest = 0.0
    for n in range(5):
        start = time.monotonic()
        # GETs and the batch's POST alike, each right after the last.
        if n % 2:
            site._request('POST', '/sync/batch', json_body={'items': []})
        else:
            site._request('GET', '/sync')
        slowest = max(slowest, time.monotonic() - start)
    # Each answer comes after the server's close of the previous
    # connection (LINGER) and a new connection; keystoneauth's delay
    # would add 0.5 s.
    assert slowest < LINGER + client.CONNECT_RETRY_DELAY / 2, slowest
    assert not _keystoneauth_retries(caplog)
    assert len(seen) == 6
    # Every request after the first found its kept connection closed.
    assert len(_resends(caplog)) == 5
    assert len(connections) == 6
    # urllib3's own warning of the resend is left out.
    assert not [r for r in caplog.records
                if r.name == 'urllib3.connectionpool'
                and r.levelno >= logging.WARNING]


def test_no_resend_when_connect_retries_is_0(closing, caplog):
    url, seen, _ = closing
    site = _site(url, timeout=5, connect_retries=0)
    site._request('GET', '/sync')
    with pytest.raises(client.SiteError, match='unreachable'):
        site._request('GET', '/sync')
    assert len(seen) == 1


@pytest.fixture
def resetting():
    """A site that resets every connection it accepts, before any
    answer; ``calls`` counts the requests it read."""
    calls = []

    class Handler(stubhttp.JsonHandler):
        protocol_version = 'HTTP/1.1'

        def do_GET(self):
            calls.append(time.monotonic())
            import socket
            import struct
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack('ii', 1, 0))
            self.close_connection = True

    with _serve(Handler) as url:
        yield url, calls


def test_a_site_that_resets_every_connection_gets_keystoneauths_delays(
        resetting, caplog):
    """One immediate resend, then keystoneauth's retries and their delay:
    the outage is not hammered."""
    url, calls = resetting
    site = _site(url, timeout=5, connect_retries=1)
    start = time.monotonic()
    with pytest.raises(client.SiteError, match='unreachable'):
        site._request('GET', '/sync')
    elapsed = time.monotonic() - start
    # The first send, the resend, then keystoneauth's one retry, which
    # resends once more itself.
    assert len(calls) == 4
    assert elapsed >= client.CONNECT_RETRY_DELAY
    assert calls[2] - calls[1] >= client.CONNECT_RETRY_DELAY * 0.9
    assert calls[1] - calls[0] < client.CONNECT_RETRY_DELAY / 2
    assert len(_keystoneauth_retries(caplog)) == 1


@pytest.fixture
def hanging():
    """A site that reads each request and never answers it (until the
    block ends); ``calls`` counts them."""
    calls, release = [], threading.Event()

    class Handler(stubhttp.JsonHandler):
        protocol_version = 'HTTP/1.1'

        def do_GET(self):
            calls.append(1)
            release.wait(10)
            self.close_connection = True

    with _serve(Handler) as url:
        try:
            yield url, calls
        finally:
            release.set()


def test_a_timeout_stays_a_timeout_and_is_not_resent_at_once(hanging):
    url, calls = hanging
    site = _site(url, timeout=0.3, connect_retries=1)
    with pytest.raises(client.SiteError, match='no answer within'):
        site._request('GET', '/sync')
    # The first send and keystoneauth's one retry.
    assert len(calls) == 2


@pytest.fixture
def busy():
    """A site that answers 503 with a Retry-After to every request."""
    calls = []

    class Handler(stubhttp.JsonHandler):
        protocol_version = 'HTTP/1.1'

        def do_GET(self):
            calls.append(1)
            self.reply(503, {'error': {'message': 'busy'}},
                       headers=[('Retry-After', '0')])

    with _serve(Handler) as url:
        yield url, calls


def test_answers_are_never_retried_below_the_agent(busy):
    """urllib3 would honour a 503's Retry-After by itself; the agent
    waits a 503 out with its own bounds (busy_retries) instead."""
    url, calls = busy
    site = _site(url, timeout=5, connect_retries=2, busy_retries=0)
    with pytest.raises(client.SiteError) as e:
        site._request('GET', '/sync')
    assert e.value.status == 503
    assert len(calls) == 1
