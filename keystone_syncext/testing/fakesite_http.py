"""Serving a :class:`keystone_syncext.testing.fakesite.FakeSite` over
HTTP on loopback, and what the agent's client logs in to it with: the
request handler, a token per authentication, and the ``cloud`` a
:class:`keystone_syncext.agent.client.Site` takes."""

import http.server
import json
import urllib.parse

from keystoneauth1 import plugin
from keystoneauth1 import session as ks_session


def handler(site):
    """The request handler class of ``site`` (its :meth:`answer`)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'   # keep-alive, as a real API server

        def _serve(self, method):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            size = int(self.headers.get('Content-Length') or 0)
            body = json.loads(self.rfile.read(size)) if size else None
            status, out, extra = site.answer(method, url.path, query, body,
                                             self.headers)
            if status == 'hang':
                site.released.wait()
                status = 'drop'
            if status == 'drop':
                self.close_connection = True
                return
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._serve('GET')

        def do_POST(self):
            self._serve('POST')

        def log_message(self, *args):
            pass

    return Handler


class Token(plugin.BaseAuthPlugin):
    """A token per authentication, a new one after ``invalidate``."""

    def __init__(self, site):
        super().__init__()
        self.site, self.token = site, None

    def get_token(self, session, **kwargs):
        if self.token is None:
            with self.site.lock:
                self.site.tokens += 1
                self.token = f'token-{self.site.tokens}'
        return self.token

    def invalidate(self):
        self.token = None
        return True


class Cloud:
    def __init__(self, site):
        self.site = site

    def get_session(self):
        return ks_session.Session(auth=Token(self.site))

    def get_interface(self, service):
        return 'public'

    def get_region_name(self, service):
        return None

    def get_endpoint(self, service):
        return self.site.url
