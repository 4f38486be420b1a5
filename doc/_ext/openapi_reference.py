"""A Sphinx directive that renders the API reference from doc/openapi.json
at build time (the document ``python -m keystone_syncext.openapi`` writes
and CI diffs), so the reference can never drift from the routes::

    .. openapi-reference:: openapi.json

One section per operation (its summary, description, policy rule,
parameters, request body and responses), then one per schema with its
properties. Every ``$ref`` becomes a cross-reference to the schema's
section: a reference to a schema the document lacks fails the build.
"""

import json
import os

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util import nodes as sphinx_nodes

METHODS = ('get', 'head', 'post', 'put', 'patch', 'delete')


def _label(name: str) -> str:
    return f'openapi-schema-{name.lower()}'


def _one_line(text) -> str:
    return ' '.join(str(text or '').split())


def _type_of(schema: dict) -> str:
    """A schema's type in a few words, with references as links."""
    if '$ref' in schema:
        name = schema['$ref'].rsplit('/', 1)[-1]
        return f':ref:`{name} <{_label(name)}>`'
    for key in ('oneOf', 'anyOf', 'allOf'):
        if key in schema:
            return ' or '.join(_type_of(s) for s in schema[key])
    kind = schema.get('type', 'any')
    if isinstance(kind, list):
        kind = ' or '.join(kind)
    if kind == 'array':
        return f'array of {_type_of(schema.get("items", {}))}'
    if 'enum' in schema:
        return kind + ': ' + ', '.join(f'``{v}``' for v in schema['enum'])
    return kind


def _table(header, rows) -> list[str]:
    if not rows:
        return []
    out = ['.. list-table::', '   :header-rows: 1', '']
    for row in [header, *rows]:
        out.append('   * - ' + (row[0] or '\\ '))
        out += ['     - ' + (cell or '\\ ') for cell in row[1:]]
    return out + ['']


def _heading(text: str, mark: str) -> list[str]:
    return [text, mark * len(text), '']


def _parameter(doc: dict, param: dict) -> dict:
    if '$ref' in param:
        return doc['components']['parameters'][
            param['$ref'].rsplit('/', 1)[-1]]
    return param


def _content_type(content: dict) -> str:
    return ', '.join(_type_of(c.get('schema', {}))
                     for c in content.values()) or 'no body'


def operation_lines(doc: dict, path: str, method: str, op: dict):
    lines = _heading(f'{method.upper()} {path}', '-')
    lines += [_one_line(op.get('summary')) + '.', '']
    if op.get('description'):
        lines += [_one_line(op['description']), '']
    rows = []
    for param in (_parameter(doc, p) for p in op.get('parameters', [])):
        rows.append([f'``{param["name"]}``', param.get('in', ''),
                     'yes' if param.get('required') else 'no',
                     _type_of(param.get('schema', {})),
                     _one_line(param.get('description'))])
    lines += _table(['Parameter', 'In', 'Required', 'Type', 'Description'],
                    rows)
    body = op.get('requestBody')
    if body:
        lines += ['Request body: ' + _content_type(body.get('content', {}))
                  + '.', '']
    rows = [[f'``{code}``', _content_type(resp.get('content', {})),
             _one_line(resp.get('description'))]
            for code, resp in sorted(op.get('responses', {}).items())]
    lines += _table(['Status', 'Body', 'Meaning'], rows)
    return lines


def schema_lines(name: str, schema: dict):
    lines = [f'.. _{_label(name)}:', ''] + _heading(name, '-')
    if schema.get('description'):
        lines += [_one_line(schema['description']), '']
    required = set(schema.get('required', ()))
    rows = [[f'``{prop}``', _type_of(sub),
             'yes' if prop in required else 'no',
             _one_line(sub.get('description'))]
            for prop, sub in schema.get('properties', {}).items()]
    if rows:
        lines += _table(['Field', 'Type', 'Required', 'Description'], rows)
    else:
        lines += ['Type: ' + _type_of(schema) + '.', '']
    return lines


def reference_lines(doc: dict) -> list[str]:
    info = doc.get('info', {})
    lines = [_one_line(info.get('description')), '',
             f'OpenAPI {doc.get("openapi")}, API version '
             f'{info.get("version")}.', '']
    lines += _heading('Operations', '=')
    for path, item in doc['paths'].items():
        for method in METHODS:
            if method in item:
                lines += operation_lines(doc, path, method, item[method])
    lines += _heading('Schemas', '=')
    for name, schema in doc['components']['schemas'].items():
        lines += schema_lines(name, schema)
    return lines


class OpenAPIReference(Directive):
    required_arguments = 1

    def run(self):
        env = self.state.document.settings.env
        rel, path = env.relfn2path(self.arguments[0])
        env.note_dependency(rel)
        with open(path) as f:
            doc = json.load(f)
        node = nodes.section()
        node.document = self.state.document
        source = os.path.basename(path)
        content = StringList(reference_lines(doc), source=source)
        sphinx_nodes.nested_parse_with_titles(self.state, content, node)
        return node.children


def setup(app):
    app.add_directive('openapi-reference', OpenAPIReference)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
