"""A stub HTTP server for the client's unit tests: a handler class that
answers JSON, served on 127.0.0.1 in a thread of its own."""

import contextlib
import http.server
import json
import threading


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """A request handler with :meth:`reply`; quiet."""

    def reply(self, status: int, body, headers=()) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(handler_class):
    """``handler_class`` served until the block ends; yields the
    server's ``/v3`` URL."""
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}/v3'
    finally:
        server.shutdown()
        server.server_close()
