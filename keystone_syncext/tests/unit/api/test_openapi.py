"""doc/openapi.json is current, describes exactly the routes Flask serves
with the schemas their handlers declare, names for each operation the
policy rule that guards it, and is a valid OpenAPI 3.1 document."""

import copy
import json
import pathlib
import re

import flask
import openapi_spec_validator
from openapi_spec_validator.validation import exceptions as spec_exc
import pytest

from keystone_syncext import openapi
from keystone_syncext import policies
from keystone_syncext import resources
from keystone_syncext.api import schemas as api_schemas
from keystone_syncext.api import sync
from keystone_syncext.api import validation

DOC = pathlib.Path(__file__).resolve().parents[4] / 'doc' / 'openapi.json'
REGENERATE = ('python -m keystone_syncext.openapi > doc/openapi.json '
              '(or tox -e genopenapi)')
METHODS = ('get', 'put', 'post', 'delete', 'patch', 'head', 'options')
# What Flask adds to every route by itself.
IMPLICIT = {'HEAD', 'OPTIONS'}


@pytest.fixture(scope='module')
def doc():
    return openapi.build()


def _operations(doc):
    for path, item in doc['paths'].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method.upper(), op


def test_committed_document_is_current(doc):
    assert DOC.exists(), f'{DOC} is missing: run {REGENERATE}'
    committed = DOC.read_text(encoding='utf-8')
    assert committed == openapi.dumps(doc), (
        f'doc/openapi.json is stale: run {REGENERATE} and commit it')
    assert committed.endswith('}\n')


def _served_by_flask() -> set[tuple[str, str]]:
    """(path, method) of the sync routes in the url_map of a Flask app the
    SyncAPI is registered to, as Keystone's application does."""
    app = flask.Flask(__name__)
    sync.SyncAPI.instantiate_and_register_to_app(app)
    names = {'type_name': 'type', 'resource_id': 'id'}
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(f'{sync.SyncAPI._name}.'):
            continue
        path = re.sub(r'<(?:\w+:)?(\w+)>',
                      lambda m: '{%s}' % names[m.group(1)], rule.rule)
        served |= {(path, m) for m in rule.methods - IMPLICIT}
    return served


def test_document_covers_exactly_the_served_routes(doc):
    served = _served_by_flask()
    assert ('/v3/sync/resources/{type}/{id}', 'PUT') in served
    assert len(served) == 12
    documented = {(p, m) for p, m, _ in _operations(doc)}
    assert documented == served, (
        f'served, not documented: {sorted(served - documented)}; '
        f'documented, not served: {sorted(documented - served)}')


def test_every_operation_names_the_rule_that_guards_it(doc):
    rules = {r.name: r for r in policies.list_rules()}
    used = set()
    for path, method, op in _operations(doc):
        name = op['x-openstack-policy']
        assert name in rules, (method, path, name)
        assert {'path': path, 'method': method} in rules[name].operations, (
            f'{name} does not name {method} {path} in its operations')
        assert rules[name].check_str in op['description']
        used.add(name)
    assert used == set(rules), 'a policy rule guards no documented route'


def test_every_operation_documents_auth_errors_with_the_error_body(doc):
    for path, method, op in _operations(doc):
        codes = set(op['responses'])
        assert {'401', '403'} <= codes, (method, path)
        assert any(c.startswith('2') for c in codes), (method, path)
        for code, response in op['responses'].items():
            if int(code) >= 400:
                schema = response['content']['application/json']['schema']
                assert schema == {'$ref': '#/components/schemas/Error'}
    error = doc['components']['schemas']['ErrorDetail']
    assert error['required'] == ['code', 'title', 'message']


def test_write_routes_document_their_conflicts_and_preconditions(doc):
    item = doc['paths']['/v3/sync/resources/{type}/{id}']
    assert set(item['put']['responses']) == {
        '200', '201', '400', '401', '403', '404', '409', '412', '503'}
    assert set(item['delete']['responses']) == {
        '204', '400', '401', '403', '404', '412', '503'}
    changes = doc['paths']['/v3/sync/changes']['get']
    assert '410' in changes['responses']
    # Every operation may answer a busy database with 503 and Retry-After.
    for path in doc['paths'].values():
        for op in path.values():
            assert 'Retry-After' in op['responses']['503']['headers']
    headers = {p['$ref'].rsplit('/', 1)[1] for p in item['put']['parameters']}
    assert {'if_match', 'if_none_match', 'origin'} <= headers
    params = doc['components']['parameters']
    assert params['origin']['name'] == 'OpenStack-Sync-Origin'
    assert params['if_match']['name'] == 'If-Match'


def test_resource_types_come_from_the_registry(doc):
    params = doc['components']['parameters']
    assert params['type']['schema']['enum'] == list(resources.TYPES)
    schemas = doc['components']['schemas']
    for name, rtype in resources.TYPES.items():
        schema = copy.deepcopy(schemas[openapi.schema_name(name)])
        assert schema.pop('title') == name
        schema.pop('description')
        if not rtype.synthetic:
            # The id's form is the type's id rule (check_id).
            id_schema = schema['properties']['id']
            assert id_schema.pop('pattern') == f'^(?:{rtype.id_rule()[0]})$'
            assert rtype.id_rule()[1] in id_schema.pop('description')
            expected = copy.deepcopy(rtype.schema['properties']['id'])
            expected.pop('pattern', None)
            assert id_schema == expected
            schema['properties']['id'] = rtype.schema['properties']['id']
        assert schema == rtype.schema
    body = schemas['Envelope']['properties']['resource']['anyOf']
    assert body == [{'$ref': '#/components/schemas/'
                     + openapi.schema_name(n)} for n in resources.TYPES]


def _resolve(doc, schema):
    """A schema of the document with its references replaced."""
    if isinstance(schema, dict):
        if set(schema) == {'$ref'}:
            name = schema['$ref'].rsplit('/', 1)[1]
            return _resolve(doc, doc['components']['schemas'][name])
        return {k: _resolve(doc, v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(doc, v) for v in schema]
    return schema


def _handlers():
    for mapping in sync.SyncAPI.resource_mapping:
        for method in mapping.resource.methods:
            yield (openapi.openapi_path(mapping.url), method,
                   getattr(mapping.resource, method.lower()))


def test_every_route_has_the_schemas_its_handler_declares(doc):
    """Each handler's request body, query, header and response schemas
    are those of its operation in the document, and each handler
    declares a response (and a body where it reads one)."""
    seen = 0
    for path, method, handler in _handlers():
        op = doc['paths'][path][method.lower()]
        body = validation.declared(handler, 'request_body')
        assert (body is not None) == (method in ('PUT', 'POST')), path
        if body is not None:
            got = op['requestBody']['content']['application/json']
            assert _resolve(doc, got['schema']) == body
        response = validation.declared(handler, 'response_body')
        ok = [c for c in op['responses'] if c.startswith('2')]
        for code in ok:
            content = op['responses'][code].get('content')
            if response is None:
                assert content is None, (path, method, code)
            else:
                assert _resolve(doc, content['application/json'][
                    'schema']) == response, (path, method, code)
        assert response is not None or ok == ['204'], (path, method)
        params = {}
        for ref in op.get('parameters', []):
            p = doc['components']['parameters'][ref['$ref'].rsplit(
                '/', 1)[1]]
            params[(p['in'], p['name'])] = p
        for where, decl in (('query', 'request_query'),
                            ('header', 'request_header')):
            declared = validation.declared(handler, decl) or {}
            names = {n for w, n in params if w == where}
            assert names == set(declared.get('properties', {})), (
                path, method, where)
        seen += 1
    assert seen == 12


def test_no_type_schema_is_shadowed_by_a_fixed_one():
    for name in resources.TYPES:
        component = api_schemas.COMPONENTS[openapi.schema_name(name)]
        assert component['title'] == name


def test_request_bodies_are_the_declared_schemas(doc):
    schemas = doc['components']['schemas']
    assert schemas['Batch'] == api_schemas.batch_request_body
    assert schemas['Rekey'] == api_schemas.rekey_request_body
    assert _resolve(doc, schemas['DigestsRequest']) == \
        api_schemas.digests_request_body


def test_security_is_the_keystone_token_header(doc):
    scheme, = doc['components']['securitySchemes'].values()
    assert scheme == dict(scheme, type='apiKey', **{'in': 'header'},
                          name='X-Auth-Token')
    assert doc['security'] == [{openapi.SECURITY_SCHEME: []}]


def test_document_is_valid_openapi_3_1(doc):
    assert doc['openapi'].startswith('3.1.')
    # Through JSON, as a client reads the file.
    openapi_spec_validator.validate(json.loads(openapi.dumps(doc)))


def test_validator_is_not_a_rubber_stamp(doc):
    broken = json.loads(openapi.dumps(doc))
    del broken['paths']['/v3/sync']['get']['responses']['200'][
        'description']
    with pytest.raises(spec_exc.OpenAPIValidationError):
        openapi_spec_validator.validate(broken)


def test_an_undescribed_route_fails_the_build(monkeypatch):
    monkeypatch.setattr(sync.RekeyResource.post, '__doc__', 'Re-key.')
    with pytest.raises(KeyError, match='not described'):
        openapi.build()


def test_a_handler_enforcing_another_rule_fails_the_build(monkeypatch):
    monkeypatch.setattr(sync.RekeyResource.post, '_policy_action',
                        'identity:sync:create_batch')
    with pytest.raises(ValueError, match='enforces identity:sync:create_b'):
        openapi.build()


def test_docstring_fields_become_the_operation():
    op = openapi.build()['paths']['/v3/sync/resources/{type}/{id}']['put']
    assert op['summary'] == ('Create or update a resource with the id in '
                             'the URL')
    assert op['operationId'] == 'putResource'
    assert op['responses']['412']['description'].startswith(
        'If-Match or If-None-Match does not hold: current_hash is')
    # A continued field is one sentence, its lines joined.
    assert '  ' not in op['responses']['409']['description']
    assert op['responses']['403']['description'].startswith(
        openapi._AUTH_ERRORS['403'] + ' Also when an application')
    assert op['responses']['201']['headers']['ETag']
    changes = openapi.build()['paths']['/v3/sync/changes']['get']
    assert changes['responses']['503']['description'].endswith(
        openapi._CAPTURE)


def test_main_writes_the_committed_form(tmp_path, capsys):
    out = tmp_path / 'openapi.json'
    assert openapi.main(['--output-file', str(out)]) == 0
    assert out.read_text(encoding='utf-8') == DOC.read_text(encoding='utf-8')
    assert openapi.main([]) == 0
    assert capsys.readouterr().out == DOC.read_text(encoding='utf-8')
