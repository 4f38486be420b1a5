"""Request and response schemas of a route, declared on its handler.

The decorators have the names, the signatures and the attributes
(``_request_body_schema``, ``_request_query_schema``,
``_response_body_schema``) of Keystone's own ``keystone.api.validation``,
so a handler reads like one of ``keystone/api/*.py``, and
``keystone_syncext.openapi`` builds the OpenAPI document from them. They
are local rather than Keystone's because Keystone's differ where it
matters here:

- its refusal quotes the refused value (``Value: {...}``), and our
  bodies carry password and secret hashes (doc/security.md); ours says
  the field and the reason, as ``resources.base.check_body`` always has;
- it reads a body that is not JSON as ``{}``; ours says so;
- its response check runs on every response and differs by release
  (Keystone 27 answers 500 on a mismatch, 29 and 30 follow ``[api]
  response_validation``): for a feed page of a thousand representations
  that is a cost on the hottest route. Ours declares the response schema
  only; the tests check real responses against it.

A refused request is a 400 rendered by ``api.sync._guarded``; the policy
is enforced before any of this runs (``enforced``), as before.
``api.sync._operation`` stacks them on every route in that order.
"""

import functools

import flask

from keystone_syncext import enforcement
from keystone_syncext import exception
from keystone_syncext.resources import base
from keystone_syncext.wsgi import compressed_batches


def enforced(action: str):
    """Enforce the policy rule ``action`` before the handler and the
    schema checks below it run: a caller the policy refuses learns
    nothing about what the body should be."""
    def add_enforcement(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            enforcement.enforce_call(action=action)
            return func(*args, **kwargs)

        wrapper._policy_action = action
        return wrapper
    return add_enforcement


def request_body_schema(schema: dict):
    """Check the JSON body against ``schema`` before the handler runs;
    400 ``invalid <schema's title>: <what is wrong>`` otherwise. The
    handler reads the checked body with :func:`json_body`."""
    what = schema.get('title', 'request body')

    def add_validator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            base.check_body(schema, json_body(), what)
            return func(*args, **kwargs)

        wrapper._request_body_schema = schema
        return wrapper
    return add_validator


def json_body():
    """The request's JSON body; for a batch sent compressed, its body
    decompressed now, after the route's policy
    (:mod:`keystone_syncext.wsgi.compressed_batches`), once."""
    environ = flask.request.environ
    body = environ.get(_DECOMPRESSED)
    if body is None:
        raw = compressed_batches.decompressed(environ)
        if raw is None:
            body = flask.request.get_json(silent=True, force=True)
        else:
            try:
                body = flask.json.loads(raw)
            except ValueError:
                body = None
            environ[_DECOMPRESSED] = body
    if body is None:
        raise exception.BadRequest('the request body must be a JSON document')
    return body


_DECOMPRESSED = 'keystone_syncext.gzip_body.json'


def _typed(schema: dict, value: str):
    """A query string value as the number its property declares, when it
    reads as one (else the string, which the type check then names)."""
    kind = schema.get('type')
    try:
        if kind == 'integer':
            return int(value)
        if kind == 'number':
            return float(value)
    except ValueError:
        pass
    return value


def query_arguments(schema: dict) -> dict:
    """The query string as ``schema`` reads it: the first value of each
    parameter, numbers as numbers; an empty number is an absent one."""
    props = schema.get('properties', {})
    out = {}
    for name, value in flask.request.args.items():
        prop = props.get(name, {})
        if value == '' and prop.get('type') in ('integer', 'number'):
            continue
        out[name] = _typed(prop, value)
    return out


def request_query_schema(schema: dict):
    """Check the query string against ``schema`` (numbers read as
    numbers: :func:`query_arguments`) before the handler runs; 400
    ``invalid query: <what is wrong>`` otherwise."""
    def add_validator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            base.check_body(schema, query_arguments(schema), 'query')
            return func(*args, **kwargs)

        wrapper._request_query_schema = schema
        return wrapper
    return add_validator


def request_header_schema(schema: dict):
    """Check the request headers ``schema`` names (the others are not
    ours to judge) before the handler runs; 400 ``invalid headers: <what
    is wrong>`` otherwise."""
    names = list(schema.get('properties', {}))

    def add_validator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            headers = flask.request.headers
            base.check_body(schema, {n: headers[n] for n in names
                                     if n in headers}, 'headers')
            return func(*args, **kwargs)

        wrapper._request_header_schema = schema
        return wrapper
    return add_validator


def response_body_schema(schema: dict | None):
    """Declare the body of the handler's successful answer (None: no
    body). Not checked at run time: see the module's docstring."""
    def add_schema(func):
        func._response_body_schema = schema
        return func
    return add_schema


def declared(handler, name: str):
    """What a decorator above declared on ``handler`` (``'request_body'``,
    ``'request_query'``, ``'request_header'``, ``'response_body'``,
    ``'policy_action'``), or None. ``functools.wraps`` copies the
    attributes up the chain of wrappers."""
    attr = '_policy_action' if name == 'policy_action' else f'_{name}_schema'
    return getattr(handler, attr, None)
