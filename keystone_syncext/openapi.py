"""OpenAPI 3.1 description of the ``/v3/sync`` routes, generated from the
routes themselves.

Everything comes from the code that serves a request: the paths and
methods from ``keystone_syncext.api.sync.SyncAPI``; for each handler its
policy rule, request schemas (body, query, headers) and response schema
from the decorators of ``keystone_syncext.api.validation`` (schemas in
``keystone_syncext.api.schemas``), and its prose and answers from its
docstring (see ``api.sync``); the policy's defaults from
``keystone_syncext.policies``. Only what every operation shares (401, 403
and a busy database's 503) is said here. ``doc/openapi.json`` is its
output, and a unit test (and ``tools/run-tests``) fails when that file is
stale::

    python -m keystone_syncext.openapi --output-file doc/openapi.json
    tox -e genopenapi

The document depends on no configuration: limits that operators set
(``[sync] max_page_size``, ``max_wait_seconds``) are named, not valued.
"""

import argparse
import inspect
import json
import re
import sys

from oslo_policy import policy

from keystone_syncext import policies
from keystone_syncext.api import schemas
from keystone_syncext.api import sync
from keystone_syncext.api import validation

OPENAPI_VERSION = '3.1.0'
URL_PREFIX = '/v3'
_FLASK_VAR = re.compile(r'<(?:[a-z]+:)?([a-z_]+)>')
SECURITY_SCHEME = 'keystoneToken'
schema_name = schemas.schema_name

# What every operation may answer, besides what its docstring says.
_AUTH_ERRORS = {
    '401': 'No valid token (Keystone).',
    '403': 'The policy refuses the call, or the token is not system scoped '
           '(Keystone).',
}
_BUSY = ('The database is locked by another writer, deadlocked or '
         'unreachable; nothing was applied. Send the same request again '
         'after Retry-After seconds.')
_RETRY_AFTER = {'Retry-After': {'description': 'Seconds to wait.',
                                'schema': {'type': 'integer'}}}
# What a docstring's ``{capture}`` stands for.
_CAPTURE = ('Or change capture is incomplete here (capture_complete: '
            'false, with missing_triggers and missing_columns): changes '
            'are going unrecorded until an operator runs '
            'keystone-syncext-manage db_sync, which starts a new '
            'history_id.')


def _path_name(var: str) -> str:
    return schemas.path_parameters[var]['name']


def openapi_path(flask_url: str) -> str:
    """Flask's ``/sync/resources/<string:type_name>`` -> OpenAPI's
    ``/v3/sync/resources/{type}``."""
    return URL_PREFIX + _FLASK_VAR.sub(
        lambda m: '{%s}' % _path_name(m.group(1)), flask_url)


def served_operations() -> list[tuple[str, str]]:
    """``(path, method)`` of every operation the SyncAPI registers, from its
    resource mapping and the handlers each Resource class defines (HEAD and
    OPTIONS, which Flask adds to every route, are left out)."""
    return [(path, method) for path, method, _, _ in _handlers()]


def _handlers():
    """``(path, method, handler, flask_url)`` of every served operation."""
    for mapping in sync.SyncAPI.resource_mapping:
        for method in sorted(mapping.resource.methods):
            yield (openapi_path(mapping.url), method,
                   getattr(mapping.resource, method.lower()), mapping.url)


def policy_rules() -> dict[tuple[str, str], policy.RuleDefault]:
    """``(path, method)`` -> the rule whose ``operations`` name it."""
    out = {}
    for rule in policies.list_rules():
        for op in rule.operations:
            key = (op['path'], op['method'])
            if key in out:
                raise ValueError(f'{key} is named by both {out[key].name} '
                                 f'and {rule.name}')
            out[key] = rule
    return out


# --- the handler's docstring -------------------------------------------------

_FIELD = re.compile(r'^:([\w-]+)(?: ([^:]+))?:\s*(.*)$')


def parse_docstring(handler) -> dict:
    """``summary``, ``description`` and the fields (``operation-id``,
    ``status``: code -> text, ``resheader``: name -> text) of a
    handler's docstring."""
    text = inspect.cleandoc(handler.__doc__ or '')
    out = {'summary': '', 'description': [], 'status': {}, 'resheader': {}}
    field = None
    for line in text.splitlines():
        found = _FIELD.match(line)
        if found:
            name, arg, value = found.groups()
            field = (name, arg)
            if arg is None:
                out[name] = value
            else:
                out.setdefault(name, {})[arg] = value
        elif field and line.startswith(' '):
            name, arg = field
            out[name][arg] += ' ' + line.strip()
        elif not out['summary']:
            out['summary'] = line.strip().rstrip('.')
        elif line.strip():
            out['description'].append(line.strip())
    out['description'] = ' '.join(out['description'])
    return out


# --- schemas and parameters --------------------------------------------------

_NAMED = {id(s): n for n, s in schemas.COMPONENTS.items()}


def _ref(name: str, kind: str = 'schemas') -> dict:
    return {'$ref': f'#/components/{kind}/{name}'}


def document_schema(schema, top: bool = True):
    """``schema`` as the document has it: a schema of
    ``schemas.COMPONENTS`` inside it is a reference to that component."""
    if not top and id(schema) in _NAMED:
        return _ref(_NAMED[id(schema)])
    if isinstance(schema, dict):
        return {k: document_schema(v, False) for k, v in schema.items()}
    if isinstance(schema, list):
        return [document_schema(v, False) for v in schema]
    return schema


def _parameter(name: str, where: str, schema: dict, required=False) -> dict:
    schema = dict(schema)
    schema.pop('name', None)
    out = {'name': name, 'in': where, 'required': required,
           'description': schema.pop('description')}
    openapi = dict(schema.pop('x-openstack', {}).get('openapi', {}))
    out['schema'] = document_schema(openapi.pop('schema', schema))
    out.update(openapi)
    return out


def _parameters(handler, flask_url: str) -> list[tuple[str, dict]]:
    """``(component name, parameter)`` of what the handler reads from the
    path, the query and the headers, in that order."""
    out = []
    for var in _FLASK_VAR.findall(flask_url):
        name = _path_name(var)
        out.append((name, _parameter(name, 'path',
                                     schemas.path_parameters[var], True)))
    for where, decl in (('query', 'request_query'),
                        ('header', 'request_header')):
        declared = validation.declared(handler, decl) or {}
        for name, schema in declared.get('properties', {}).items():
            # If-Match -> if_match; our OpenStack-Sync-Origin -> origin.
            key = name.lower().replace('-', '_')
            out.append((key.removeprefix('openstack_sync_'),
                        _parameter(name, where, schema)))
    return out


# --- operations --------------------------------------------------------------

def _error(text: str) -> dict:
    return {'description': text,
            'content': {'application/json': {'schema': _ref('Error')}}}


def _responses(doc: dict, body) -> dict:
    out = {}
    statuses = {c: t.replace('{capture}', _CAPTURE)
                for c, t in doc['status'].items()}
    for code, text in sorted(statuses.items()):
        if code.startswith('2'):
            response = {'description': text}
            if body is not None and code != '204':
                response['content'] = {'application/json': {
                    'schema': document_schema(body, top=False)}}
            if doc['resheader']:
                response['headers'] = {
                    h: {'description': t, 'schema': {'type': 'string'}}
                    for h, t in doc['resheader'].items()}
            out[code] = response
    for code, text in _AUTH_ERRORS.items():
        out[code] = _error(' '.join(filter(None, [text,
                                                  statuses.get(code)])))
    for code, text in statuses.items():
        if int(code) >= 400 and code not in out and code != '503':
            out[code] = _error(text)
    out['503'] = dict(_error(' '.join(filter(None, [_BUSY,
                                                    statuses.get('503')]))),
                      headers=dict(_RETRY_AFTER))
    return out


def _operation(path, method, handler, rule) -> dict:
    action = validation.declared(handler, 'policy_action')
    if action != rule.name:
        raise ValueError(f'{method} {path} enforces {action}, but policy '
                         f'{rule.name} names it in its operations')
    doc = parse_docstring(handler)
    if not doc['summary'] or not doc.get('operation-id') or not any(
            c.startswith('2') for c in doc['status']):
        raise KeyError(f'{method} {path} is served but not described: its '
                       'handler needs a docstring with a summary, '
                       ':operation-id: and a :status 2xx:')
    description = [doc['description'], f'Policy rule {rule.name}, by '
                   f'default "{rule.check_str}".']
    op = {
        'operationId': doc['operation-id'],
        'summary': doc['summary'],
        'description': ' '.join(d for d in description if d),
        'tags': ['sync'],
        'x-openstack-policy': rule.name,
        'responses': _responses(
            doc, validation.declared(handler, 'response_body')),
    }
    body = validation.declared(handler, 'request_body')
    if body is not None:
        op['requestBody'] = {'required': True, 'content': {
            'application/json': {'schema': document_schema(body, False)}}}
    return op


def build() -> dict:
    """The OpenAPI document, as a dict."""
    rules = policy_rules()
    paths: dict[str, dict] = {}
    parameters: dict[str, dict] = {}
    for path, method, handler, flask_url in _handlers():
        try:
            rule = rules[(path, method)]
        except KeyError:
            raise KeyError(f'no rule in keystone_syncext/policies.py names '
                           f'{method} {path} in its operations') from None
        op = _operation(path, method, handler, rule)
        refs = []
        for name, param in _parameters(handler, flask_url):
            if parameters.setdefault(name, param) != param:
                raise ValueError(f'parameter {name} is declared two ways')
            refs.append(_ref(name, 'parameters'))
        if refs:
            op['parameters'] = refs
        paths.setdefault(path, {})[method.lower()] = op
    return {
        'openapi': OPENAPI_VERSION,
        'info': {
            'title': 'Keystone sync API',
            'version': str(sync.PROTOCOL_VERSION),
            'description': 'The /v3/sync routes keystone_syncext adds to '
            'Keystone, so a sync agent can copy identity data between '
            'Keystone deployments with the same ids (wire protocol v%d). '
            'Generated by python -m keystone_syncext.openapi; do not edit.'
            % sync.PROTOCOL_VERSION,
            'license': {'name': 'Apache-2.0',
                        'identifier': 'Apache-2.0'},
        },
        'tags': [{'name': 'sync', 'description': 'Keystone sync API'}],
        'security': [{SECURITY_SCHEME: []}],
        'paths': paths,
        'components': {
            'securitySchemes': {SECURITY_SCHEME: {
                'type': 'apiKey', 'in': 'header', 'name': 'X-Auth-Token',
                'description': 'A Keystone token; every rule is system '
                'scoped.'}},
            'parameters': parameters,
            'schemas': {n: document_schema(s)
                        for n, s in schemas.COMPONENTS.items()},
        },
    }


def dumps(doc: dict) -> str:
    """The committed form: sorted keys, indent 2, trailing newline."""
    return json.dumps(doc, sort_keys=True, indent=2) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m keystone_syncext.openapi',
        description='Write the OpenAPI document of /v3/sync.')
    parser.add_argument('--output-file', metavar='PATH',
                        help='write here instead of to standard output')
    args = parser.parse_args(argv)
    text = dumps(build())
    if args.output_file:
        with open(args.output_file, 'w', encoding='utf-8') as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
