"""Keystone's token validation middleware as our entry point serves it:
each request is judged with its own token, also in threaded workers."""

import threading

from keystone.models import token_model
import pytest

from keystone_syncext.wsgi import auth_busy


def _app(environ, start_response):  # never called here
    raise AssertionError('not reached')


def test_each_thread_keeps_the_token_it_validated():
    """Keystone's middleware keeps the token it validated in
    ``self.token``, on one object per process, from ``fetch_token`` until
    ``fill_context`` reads it back. Two requests in two threads of a
    worker, interleaved the way a database wait allows: the first must
    read back its own token, not the second's (with Keystone's own
    class it reads the second's)."""
    mw = auth_busy.AuthContextMiddleware(_app)
    set_first, set_second = threading.Event(), threading.Event()
    seen = {}

    def first():
        mw.token = 'token of the first caller'
        set_first.set()
        set_second.wait(10)
        seen['first'] = mw.token

    def second():
        set_first.wait(10)
        mw.token = 'token of the second caller'
        seen['second'] = mw.token
        set_second.set()

    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {'first': 'token of the first caller',
                    'second': 'token of the second caller'}
    # A thread that set nothing sees nothing.
    assert mw.token is None


def test_a_request_starts_without_the_previous_requests_token(monkeypatch):
    """A worker thread's next request does not start with the token its
    previous request validated (Keystone's ``fill_context`` would use a
    token left set instead of validating the request's own)."""
    mw = auth_busy.AuthContextMiddleware(_app)
    mw.token = 'token of the previous request'
    seen = []

    def process_request(self, request):
        seen.append(self.token)

    monkeypatch.setattr(auth_busy.auth_context.AuthContextMiddleware,
                        'process_request', process_request)

    class Request:
        path_info = '/v3/users'

    mw.process_request(Request())
    assert seen == [None]


def test_the_token_is_not_kept_past_its_request(monkeypatch):
    """Once Keystone has built the request's authorization context (the
    routes read the token from there), the middleware no longer holds
    it: an idle worker thread keeps no caller's token, even when
    Keystone's part failed."""
    mw = auth_busy.AuthContextMiddleware(_app)

    def process_request(self, request):
        self.token = request.token
        if request.fail:
            raise RuntimeError('validation failed')

    monkeypatch.setattr(auth_busy.auth_context.AuthContextMiddleware,
                        'process_request', process_request)

    class Request:
        path_info = '/v3/users'
        token, fail = 'token of this request', False

    mw.process_request(Request())
    assert mw.token is None
    Request.fail = True
    with pytest.raises(RuntimeError):
        mw.process_request(Request())
    assert mw.token is None


def _count_role_reads(monkeypatch) -> list:
    """Each computation of a system-scoped token's roles, recorded (the
    user's id), each giving a role of its own."""
    computed = []

    def system_roles(self):
        computed.append(self.user_id)
        return [{'id': f'role-{len(computed)}', 'name': 'admin'}]

    monkeypatch.setattr(token_model.TokenModel, '_get_system_roles',
                        system_roles)
    return computed


def test_a_requests_token_computes_its_roles_once(monkeypatch):
    """Keystone computes a token's roles from the database each time
    they are read: twice per request in its own rendering, more in the
    routes. A request's copy computes them once; the next request (a new
    copy of the same validated token, as Keystone's token cache hands it
    out) computes them again, and the validated token itself is left as
    it was."""
    computed = _count_role_reads(monkeypatch)
    validated = token_model.TokenModel()
    validated.user_id = 'agent'
    validated.system = 'all'
    assert validated.system_scoped
    mw = auth_busy.AuthContextMiddleware(_app)

    mw.token = validated
    first = mw.token
    assert isinstance(first, auth_busy.RequestToken) and first is not validated
    assert first.roles == first.roles == first.roles == [
        {'id': 'role-1', 'name': 'admin'}]
    assert computed == ['agent']
    assert (first.user_id, first.system) == ('agent', 'all')
    # Each read is a list of its own, as Keystone's are: what one reader
    # does to it no other reader sees.
    first.roles.append({'id': 'forged', 'name': 'admin'})
    first.roles[0]['name'] = 'forged'
    assert first.roles == [{'id': 'role-1', 'name': 'admin'}]
    assert computed == ['agent']

    mw.token = validated        # the next request, the same cached token
    assert mw.token is not first
    assert mw.token.roles == [{'id': 'role-2', 'name': 'admin'}]
    assert computed == ['agent', 'agent']
    assert type(validated) is token_model.TokenModel
    assert '_request_roles' not in vars(validated)
    assert validated.roles == [{'id': 'role-3', 'name': 'admin'}]


def _keystones_provider(monkeypatch, cached, revoked=False):
    """Keystone's token provider (its own ``validate_token``, expiry and
    revocation checks), around ``cached`` as its token cache hands it
    out; what it asks the revocation store is recorded."""
    from keystone import exception
    from keystone.models import revoke_model
    from keystone.token import provider as provider_mod

    asked = []

    class Provider(provider_mod.Manager):
        def __init__(self):  # no driver: only the validation is used
            pass

        def _validate_token(self, token_id):
            return cached

        def check_revocation_v3(self, token_values):
            asked.append(token_values['roles'])
            if revoked:
                raise exception.TokenNotFound(token_id='revoked')

    class Revoke:
        model = revoke_model

    class Identity:
        def get_user(self, user_id):
            return {'id': user_id, 'enabled': True,
                    'domain_id': 'default'}

    class Resource:
        def get_domain(self, domain_id):
            return {'id': domain_id, 'name': 'Default'}

    provider = Provider()
    # Keystone's ProviderAPIMixin would look these up in its registry.
    monkeypatch.setattr(Provider, 'revoke_api', Revoke(), raising=False)
    apis = type('Providers', (), {'identity_api': Identity(),
                                  'resource_api': Resource()})()
    monkeypatch.setattr(provider_mod, 'PROVIDERS', apis)
    monkeypatch.setattr(token_model, 'PROVIDERS', apis)
    monkeypatch.setattr(auth_busy, 'PROVIDERS', type(
        'Providers', (), {'token_provider_api': provider})())
    return asked


def test_the_revocation_check_reads_the_roles_the_request_is_judged_with(
        monkeypatch):
    """Keystone's ``validate_token`` reads the token's roles for its
    revocation check, and each rendering after it reads them again: three
    times the same queries per request. Through the middleware, the
    token Keystone's own validation checks is already the request's
    copy: the roles are computed once, the revocation check is asked
    about exactly those, and a revoked token is still refused."""
    import datetime

    from keystone import exception

    computed = _count_role_reads(monkeypatch)
    cached = token_model.TokenModel()
    cached.user_id, cached.system = 'agent', 'all'
    now = datetime.datetime.now(datetime.UTC)
    cached.issued_at = now.strftime('%Y-%m-%dT%H:%M:%S.000000Z')
    cached.expires_at = (now + datetime.timedelta(hours=1)).strftime(
        '%Y-%m-%dT%H:%M:%S.000000Z')
    asked = _keystones_provider(monkeypatch, cached)
    mw = auth_busy.AuthContextMiddleware(_app)

    mw.token = mw.token_provider_api.validate_token('the agent token')
    token = mw.token
    assert isinstance(token, auth_busy.RequestToken) and token is not cached
    assert asked == [['role-1']]
    assert token.roles == token.roles == [{'id': 'role-1', 'name': 'admin'}]
    assert computed == ['agent']
    assert '_request_roles' not in vars(cached)

    # The next request computes them again, and asks again.
    mw.token = mw.token_provider_api.validate_token('the agent token')
    assert mw.token.roles == [{'id': 'role-2', 'name': 'admin'}]
    assert asked == [['role-1'], ['role-2']]

    _keystones_provider(monkeypatch, cached, revoked=True)
    with pytest.raises(exception.TokenNotFound):
        mw.token_provider_api.validate_token('the agent token')
