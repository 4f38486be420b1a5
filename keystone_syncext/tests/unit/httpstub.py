"""A keep-alive HTTP server on loopback that answers every GET with
``200 {}``, after ``delay`` seconds: a stand-in for a site where only the
connection handling is under test."""

import contextlib
import http.server
import threading
import time


@contextlib.contextmanager
def serve(delay: float = 0.0):
    """Yields the server's port while it runs."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'   # keep-alive, as a real API server

        def do_GET(self):
            time.sleep(delay)
            self.send_response(200)
            self.send_header('Content-Length', '2')
            self.end_headers()
            self.wfile.write(b'{}')

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
