"""The hub's connection pool fits the agent's threads: many threads using
one site at once keep their connections instead of opening one per
request and dropping it (urllib3's "Connection pool is full")."""

import concurrent.futures
import logging

from keystoneauth1 import session as ks_session
import pytest

from keystone_syncext.agent import client
from keystone_syncext.tests.unit import httpstub

THREADS = 24


@pytest.fixture
def server():
    # Every thread holds a connection at once while the server waits.
    with httpstub.serve(delay=0.2) as port:
        yield f'http://127.0.0.1:{port}/'


def _discarded(session, url, caplog) -> int:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='urllib3.connectionpool'):
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            for resp in pool.map(lambda _: session.get(url),
                                 range(THREADS * 2)):
                assert resp.status_code == 200
    return sum('Connection pool is full' in r.getMessage()
               for r in caplog.records)


def test_default_pool_drops_connections_under_many_threads(server, caplog):
    # The check below can fail: requests' default pool is too small.
    assert _discarded(ks_session.Session(), server, caplog) > 0


def test_kept_connections_fit_the_threads(server, caplog):
    session = ks_session.Session()
    client.keep_connections(session, THREADS)
    for mounted in session.session.adapters.values():
        # Keystoneauth's adapter (TCP keepalive, TLS settings) is kept.
        assert isinstance(mounted, ks_session.TCPKeepAliveAdapter)
    assert _discarded(session, server, caplog) == 0
