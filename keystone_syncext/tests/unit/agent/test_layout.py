"""The agent's modules stay small parts: none over 500 lines, no import
cycle among them, no import of the package's own modules hidden inside a
function (what a cycle is dodged with), and no call of another module's
private names."""

import ast
import pathlib

from keystone_syncext import agent

PACKAGE = 'keystone_syncext.agent'
ROOT = pathlib.Path(agent.__file__).parent
MODULES = {p.stem: p for p in ROOT.glob('*.py') if p.stem != '__init__'}


def _tree(name):
    return ast.parse(MODULES[name].read_text())


def _own(node):
    """The agent modules ``node`` (an import) names."""
    if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
        return {a.name for a in node.names if a.name in MODULES}
    if isinstance(node, ast.ImportFrom) and node.module and \
            node.module.startswith(PACKAGE + '.'):
        return {node.module.split('.')[2]}
    if isinstance(node, ast.Import):
        return {a.name.split('.')[2] for a in node.names
                if a.name.startswith(PACKAGE + '.')}
    return set()


def _imports(name):
    return set().union(*[_own(n) for n in _tree(name).body]) & set(MODULES)


def test_no_module_over_500_lines():
    big = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: lines for n, lines in big.items() if lines >= 500} == {}


def test_no_import_cycle():
    graph = {n: _imports(n) for n in MODULES}
    done, path = set(), []

    def visit(n):
        assert n not in path, ' -> '.join(path + [n])
        if n in done:
            return
        path.append(n)
        for m in sorted(graph[n]):
            visit(m)
        path.pop()
        done.add(n)

    for n in sorted(graph):
        visit(n)


def test_no_own_import_inside_a_function():
    hidden = []
    for name in MODULES:
        for fn in ast.walk(_tree(name)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f'{name}.{fn.name}' for n in ast.walk(fn)
                           if _own(n)]
    assert hidden == []


def test_no_call_of_another_modules_private_names():
    """Through the module (``writer_mod._x``) or the run's objects the
    parts are handed (``agent._x``, ``ctx._x``)."""
    calls = []
    for name in MODULES:
        tree = _tree(name)
        own = {'agent', 'ctx', 'writer', 'connector', 'seeder', 'upward'}
        for node in tree.body:
            if _own(node):
                own |= {a.asname or a.name for a in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and \
                    node.attr.startswith('_') and \
                    not node.attr.startswith('__') and \
                    isinstance(node.value, ast.Name) and \
                    node.value.id in own:
                calls.append(f'{name}: {node.value.id}.{node.attr}')
    assert calls == []
