"""The hub's connection pool fits the agent's threads: many threads using
one site at once keep their connections instead of opening one per
request and dropping it (urllib3's "Connection pool is full")."""

import concurrent.futures
import http.server
import logging
import threading
import time

from keystoneauth1 import session as ks_session
import pytest

from keystone_syncext.agent import client

THREADS = 24


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'   # keep-alive, as a real API server

    def do_GET(self):
        time.sleep(0.2)             # every thread holds a connection at once
        self.send_response(200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'{}')

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Slow)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    httpd.shutdown()
    httpd.server_close()


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
