"""The agent's own token requests are retried on a fresh connection, as
its API requests are: a site served by uWSGI's http-socket closes each
connection after its answer, and the token request after a 401 (a re-key
that revoked the agent's token, during ``join``) went out on such a
closed connection and ended the command."""

import socket
import struct

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
import pytest

from keystone_syncext.agent import client
from keystone_syncext.tests.unit.agent import stubhttp

TOKEN_BODY = {'token': {
    'methods': ['password'], 'expires_at': '2099-01-01T00:00:00.000000Z',
    'issued_at': '2026-01-01T00:00:00.000000Z',
    'user': {'id': 'u1', 'name': 'agent', 'domain': {'id': 'default',
                                                    'name': 'Default'}},
    'system': {'all': True}, 'roles': [{'id': 'r', 'name': 'admin'}],
    'catalog': []}}


@pytest.fixture
def site():
    """A token endpoint whose first token request has its connection
    reset (as a closed keep-alive connection fails); ``calls`` counts the
    token requests that reached it."""
    calls = []

    class Handler(stubhttp.JsonHandler):
        protocol_version = 'HTTP/1.1'

        def do_POST(self):
            self.rfile.read(int(self.headers['Content-Length']))
            calls.append(self.path)
            if len(calls) == 1:
                # RST instead of an answer.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack('ii', 1, 0))
                self.close_connection = True
                return
            self.reply(201, TOKEN_BODY,
                       headers=[('X-Subject-Token', 'a-token')])

    with stubhttp.serving(Handler) as url:
        yield url, calls


def _session(url):
    # As openstacksdk's loader makes it: the session's own default.
    return ks_session.Session(auth=v3.Password(
        auth_url=url, username='agent', password='pw',
        user_domain_id='default', system_scope='all'))


def test_token_request_is_retried_on_a_fresh_connection(site):
    url, calls = site
    session = _session(url)
    client.retry_authentication(session, 2)
    assert session.get_token() == 'a-token'
    assert len(calls) == 2


def test_without_it_the_reset_ends_the_token_request(site):
    url, calls = site
    with pytest.raises(ks_exc.ConnectFailure):
        _session(url).get_token()
    assert len(calls) == 1
