"""The schema decorators of keystone_syncext.api.validation, on a bare
Flask request: what they refuse, with what message, and in what order
with the policy."""

import inspect

import flask
import pytest

from keystone_syncext import enforcement
from keystone_syncext import exception
from keystone_syncext.api import schemas
from keystone_syncext.api import sync
from keystone_syncext.api import validation

APP = flask.Flask(__name__)


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(enforcement, 'enforce_call',
                        lambda action: seen.append(action))
    return seen


def _run(handler, path='/', **kw):
    with APP.test_request_context(path, **kw):
        return handler()


@validation.enforced('identity:sync:create_batch')
@validation.request_header_schema(schemas.write_request_header)
@validation.request_body_schema(schemas.batch_request_body)
@validation.response_body_schema(schemas.batch_response_body)
def _batch():
    return validation.json_body()


@validation.enforced('identity:sync:list_changes')
@validation.request_query_schema(schemas.changes_request_query)
def _changes():
    return validation.query_arguments(schemas.changes_request_query)


def test_a_good_request_reaches_the_handler(calls):
    body = {'items': [{'op': 'delete', 'type': 'role', 'id': 'r1'}]}
    assert _run(_batch, method='POST', json=body) == body
    assert calls == ['identity:sync:create_batch']


@pytest.mark.parametrize('kw,says', [
    ({'data': b'{nope'}, 'the request body must be a JSON document'),
    ({'json': []}, "invalid batch: [] is not of type 'object'"),
    ({'json': {}}, "invalid batch: 'items' is a required property"),
    ({'json': {'items': [{'op': 'frob', 'type': 'role', 'id': 'x'}]}},
     "invalid batch: Invalid input for field 'items/0/op'"),
    ({'json': {'items': []}, 'headers': {
        'OpenStack-Sync-Origin': 'not a site!'}},
     "invalid headers: Invalid input for field 'OpenStack-Sync-Origin'"),
])
def test_bad_input_is_a_400_naming_what_is_wrong(calls, kw, says):
    with pytest.raises(exception.BadRequest) as e:
        _run(_batch, method='POST', **kw)
    assert e.value.code == 400
    assert str(e.value).startswith(says), str(e.value)


def test_the_policy_comes_before_the_schema(monkeypatch):
    def refuse(action):
        raise exception.Forbidden(f'no {action}')

    monkeypatch.setattr(enforcement, 'enforce_call', refuse)
    with pytest.raises(exception.Forbidden):
        _run(_batch, method='POST', data=b'{nope')


def test_an_error_never_shows_a_secret(calls):
    secret = '$2b$12$' + 'S' * 53
    body = {'items': [{'op': 'upsert', 'type': 'user', 'id': 'u',
                       'resource': {'password': secret}, 'surprise': 1}]}
    with pytest.raises(exception.BadRequest) as e:
        _run(_batch, method='POST', json=body)
    assert 'surprise' in str(e.value)
    assert secret not in str(e.value)


def test_query_numbers_are_read_as_numbers(calls):
    got = _run(_changes, '/?limit=5&wait=0.5&since=abc&types=role,user'
               '&limit=7')
    assert got == {'limit': 5, 'wait': 0.5, 'since': 'abc',
                   'types': 'role,user'}
    # An empty number is an absent one, as before the schemas.
    assert _run(_changes, '/?limit=&wait=') == {}


@pytest.mark.parametrize('query,says', [
    ('limit=zero', "'limit': 'zero' is not of type 'integer'"),
    ('limit=0', "'limit': 0 is less than the minimum of 1"),
    ('wait=soon', "'wait': 'soon' is not of type 'number'"),
    ('wait=-1', "'wait': -1.0 is less than the minimum of 0"),
])
def test_bad_query_is_a_400_naming_the_parameter(calls, query, says):
    with pytest.raises(exception.BadRequest) as e:
        _run(_changes, f'/?{query}')
    assert str(e.value).startswith('invalid query: Invalid input for '
                                   'field'), str(e.value)
    assert says in str(e.value)


def test_declarations_are_readable_through_the_wrappers():
    assert validation.declared(_batch, 'request_body') is \
        schemas.batch_request_body
    assert validation.declared(_batch, 'response_body') is \
        schemas.batch_response_body
    assert validation.declared(_batch, 'request_header') is \
        schemas.write_request_header
    assert validation.declared(_batch, 'policy_action') == \
        'identity:sync:create_batch'
    assert validation.declared(_changes, 'request_body') is None


def _routes():
    for mapping in sync.SyncAPI.resource_mapping:
        for method in ('get', 'put', 'post', 'delete'):
            if hasattr(mapping.resource, method):
                yield mapping.resource, method


@pytest.mark.parametrize('resource,method', list(_routes()))
def test_every_route_enforces_its_policy_before_reading_the_request(
        monkeypatch, resource, method):
    """A caller the policy refuses learns nothing about the request's
    form, whatever is wrong with it: sync._operation stacks every route's
    checks in that order, and renders the refusal as our error."""
    def refuse(action):
        raise exception.Forbidden(f'no {action}')

    monkeypatch.setattr(enforcement, 'enforce_call', refuse)
    handler = getattr(resource(), method)
    args = [a for a in inspect.signature(handler).parameters]
    with APP.test_request_context(
            '/?limit=zero&wait=soon&prefix=' + 'x' * 300,
            method=method.upper(), data=b'{nope',
            headers={'OpenStack-Sync-Origin': 'not a site!',
                     'If-Match': 'nope'}):
        _, code, _ = handler(*(['no such'] * len(args)))
    assert code == 403
    policy = validation.declared(getattr(resource, method), 'policy_action')
    assert policy.startswith('identity:sync:')
