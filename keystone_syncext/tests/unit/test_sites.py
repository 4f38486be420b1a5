"""The test sites' own safety: a site never takes another server on its
port for itself (a readiness probe answered by the wrong server would send
the site's admin password there and fail with a puzzling 401)."""

import http.server
import subprocess
import threading

import pytest

from keystone_syncext.testing import sites


class _Keystonish(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'{}')

    def log_message(self, *args):
        pass


def test_ports_are_never_handed_out_twice():
    ports = [sites.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_probe_answered_by_another_server_is_not_ready(tmp_path):
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Keystonish)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    site = sites.Site('clash', str(tmp_path / 'clash'),
                      f'sqlite:///{tmp_path}/clash.db')
    site.port = httpd.server_address[1]
    # The site's own server is alive but never got the port (the state
    # in which uWSGI has not exited yet after failing to bind it).
    site.proc = subprocess.Popen(['sleep', '60'], start_new_session=True)
    try:
        with pytest.raises(RuntimeError, match='served by another process'):
            site._wait_ready(timeout=10)
        assert site.proc is None    # stopped, not left running
    finally:
        httpd.shutdown()
        httpd.server_close()
