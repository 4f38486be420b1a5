"""Serving a :class:`keystone_syncext.testing.fakesite.FakeSite` over
HTTP on loopback, and what the agent's client logs in to it with: the
request handler, a token per authentication, and the ``cloud`` a
:class:`keystone_syncext.agent.client.Site` takes."""

import gzip
import http.server
import json
import urllib.parse

from keystoneauth1 import plugin
from keystoneauth1 import session as ks_session


def decoded(site, sent: bytes, encoding: str | None):
    """The JSON body of a request to ``site`` sent as ``sent`` in
    ``encoding``, and None; or None and the (status, body) of its
    refusal, as the extension refuses a compressed batch over its limit
    (``site.gzip_limit``) or an encoding it does not take."""
    if not encoding:
        return json.loads(sent), None
    if encoding != 'gzip' or not site.gzip_limit:
        return None, (415, {'error': {'code': 415}})
    body = gzip.decompress(sent)
    if len(body) > site.gzip_limit:
        return None, (413, {'error': {'code': 413}})
    with site.lock:
        site.compressed.append((len(sent), len(body)))
    return json.loads(body), None


def handler(site):
    """The request handler class of ``site`` (its :meth:`answer`)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'   # keep-alive, as a real API server

        def _serve(self, method):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            size = int(self.headers.get('Content-Length') or 0)
            body, refused = (decoded(
                site, self.rfile.read(size),
                self.headers.get('Content-Encoding'))
                if size else (None, None))
            status, out, extra = refused + ({},) if refused else \
                site.answer(method, url.path, query, body, self.headers)
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
