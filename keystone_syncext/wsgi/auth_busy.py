"""Keystone's token validation middleware, with two changes.

**Each request's own token, in threaded workers.** Keystone's
``AuthContextMiddleware`` is one object per process, and it keeps the
token it validated in an attribute of that object (``self.token``)
between validating it (``fetch_token``) and building the request's
authorization context from it (``fill_context``: the domain and trust
scope, the token that application credentials and EC2 credentials take
their roles from). Under threaded workers (uWSGI ``--threads``, mod_wsgi
daemon threads) another request's validation can replace it in between,
and a request is then judged, in part, with another caller's token.
Here the attribute is per thread, and cleared as each request starts and
once its authorization context is built. (Per OS thread: a server that
runs requests as greenlets must monkey-patch ``threading``, as eventlet
and gevent servers do.)

**A token's roles read once per request.** Keystone's validation reads the
token's roles for its revocation check, then renders the validated token
twice in every request (for keystonemiddleware's headers, then for the
request context), and each of the three computes the token's roles
again from the database (``TokenModel.roles``: the user's groups, their
grants, the implied roles), as do the routes that read them. Here each
request holds its own copy of the validated token, whose roles are
computed the first time they are read and kept until the request ends:
the same roles, read at the same point (the revocation check of
Keystone's own ``validate_token``, which this request's copy goes
through), never reused by another request; revocation and validation
are Keystone's, unchanged.

**A busy database answers 503 on /v3/sync.** Keystone validates the
request's token (reading the user's roles and the revocation events from
the database) in its ``AuthContextMiddleware``, before any route runs,
and turns every unexpected error there into 500.
For a /v3/sync request, this subclass answers a busy database
(``keystone_syncext.dberrors``) with 503 and ``Retry-After`` instead, as
the routes themselves do, so that an agent retries rather than giving up;
every other request, and every other error, is Keystone's as before.
"""

import copy
import json
import re
import threading

from keystone.common import provider_api
from keystone.models import token_model
from keystone.server.flask.request_processing.middleware import auth_context
from oslo_log import log
import webob

from keystone_syncext import dberrors
from keystone_syncext.resources import base

LOG = log.getLogger(__name__)
PROVIDERS = provider_api.ProviderAPIs
SYNC_PATH = re.compile(r'/v3/sync(/|$)')


class RequestToken(token_model.TokenModel):
    """A validated token as one request holds it: its roles are computed
    once, when first read, and kept for this request only."""

    @classmethod
    def of(cls, token: token_model.TokenModel) -> 'RequestToken':
        """A copy of ``token`` for one request (the token Keystone
        validated may be the one its token cache holds: it is never
        changed)."""
        held = copy.copy(token)
        held.__class__ = cls
        return held

    @property
    def roles(self):
        """The roles, computed once for this request; each read gets a
        copy of its own, as each read of Keystone's gets a new list."""
        try:
            roles = self.__dict__['_request_roles']
        except KeyError:
            roles = self.__dict__['_request_roles'] = super().roles
        return copy.deepcopy(roles)


class _OneValidation:
    """Keystone's token provider as one request's validation uses it.

    ``validate_token`` is Keystone's own, unchanged (expiry, revocation,
    the user enabled, access rules); only the token it checks and returns
    is this request's own copy (:class:`RequestToken`) of the one
    Keystone's token cache holds, so that the roles its revocation check
    reads are the ones the request is then judged with, computed once.
    Everything else is the provider's own."""

    def __init__(self, provider):
        self._provider = provider

    def __getattr__(self, name):
        return getattr(self._provider, name)

    def _validate_token(self, token_id):
        return RequestToken.of(self._provider._validate_token(token_id))

    def validate_token(self, token_id, *args, **kwargs):
        return type(self._provider).validate_token(self, token_id, *args,
                                                   **kwargs)


class AuthContextMiddleware(auth_context.AuthContextMiddleware):
    """Keystone's middleware, with the validated token kept per thread,
    its roles read once per request, and 503 for a busy database on
    /v3/sync."""

    def __init__(self, app):
        # What this thread's request holds: its token, and a busy
        # database met in fetch_token (Keystone's decorator renders the
        # error before process_request sees it). Made before Keystone's
        # __init__, which sets self.token.
        self._request = threading.local()
        super().__init__(app)

    @property
    def token_provider_api(self):
        """Keystone's token provider, for this request's validation
        (Keystone's ``fetch_token`` calls its ``validate_token``)."""
        return _OneValidation(PROVIDERS.token_provider_api)

    @property
    def token(self):
        """The token this thread's request validated (Keystone's
        middleware reads and writes ``self.token``)."""
        return getattr(self._request, 'token', None)

    @token.setter
    def token(self, value):
        if isinstance(value, token_model.TokenModel) and \
                not isinstance(value, RequestToken):
            value = RequestToken.of(value)
        self._request.token = value

    def fetch_token(self, token, **kwargs):
        try:
            return super().fetch_token(token, **kwargs)
        except dberrors.BUSY_ERRORS as e:
            self._request.busy = dberrors.database_busy(e)
            raise

    def process_request(self, request):
        # Nothing of this thread's previous request is taken for this
        # one's (Keystone's fill_context validates again when unset),
        # and the token is not kept past the request's authorization
        # context (the routes read it from there).
        self.token = self._request.busy = None
        try:
            resp = super().process_request(request)
        finally:
            self.token = None
        busy, self._request.busy = self._request.busy, None
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
