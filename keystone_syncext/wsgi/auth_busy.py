"""Token validation in front of /v3/sync: a busy database answers 503.

Keystone validates the request's token (reading the user's roles and the
revocation events from the database) in its ``AuthContextMiddleware``,
before any route runs, and turns every unexpected error there into 500.
For a /v3/sync request, this subclass answers a busy database
(``keystone_syncext.dberrors``) with 503 and ``Retry-After`` instead, as
the routes themselves do, so that an agent retries rather than giving up;
every other request, and every other error, is Keystone's as before.
"""

import json
import re
import threading

from keystone.server.flask.request_processing.middleware import auth_context
from oslo_log import log
import webob

from keystone_syncext import dberrors
from keystone_syncext.resources import base

LOG = log.getLogger(__name__)
SYNC_PATH = re.compile(r'/v3/sync(/|$)')


class AuthContextMiddleware(auth_context.AuthContextMiddleware):
    """Keystone's middleware, with 503 for a busy database on /v3/sync."""

    def __init__(self, app):
        super().__init__(app)
        # Keystone's decorator renders the error before we see it, so
        # fetch_token leaves it here for process_request (one request
        # per thread at a time).
        self._busy = threading.local()

    def fetch_token(self, token, **kwargs):
        try:
            return super().fetch_token(token, **kwargs)
        except dberrors.BUSY_ERRORS as e:
            self._busy.error = dberrors.database_busy(e)
            raise

    def process_request(self, request):
        self._busy.error = None
        resp = super().process_request(request)
        busy = self._busy.error
        self._busy.error = None
        if busy is None or not SYNC_PATH.match(request.path_info):
            return resp
        LOG.warning('%s %s: %s while validating the token',
                    request.method, request.path_info, busy)
        # Read the body the route never will: a server that answers and
        # closes with unread bytes makes the client's kernel see a reset
        # instead of the answer. The sizelimit middleware bounds it.
        request.body  # noqa: B018
        return webob.Response(
            body=json.dumps(base.error_body(busy)).encode(),
            status=busy.code, content_type='application/json',
            headers={'Retry-After': str(busy.retry_after)})
