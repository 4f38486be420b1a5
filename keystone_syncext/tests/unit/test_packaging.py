"""The two deployments stay apart, and the documents stay in the tree.

The agent installs without Keystone (``pip install '.[agent]'``), so no
agent module may import Keystone or the extension's modules, and the
agent's dependency set must not pull Keystone in. tools/check-agent-alone
proves it in a real virtualenv; these catch the same mistakes in a second
and name the line. The product never imports the test harness. README and
doc/ never send a reader outside the repository.
"""

import ast
import configparser
import pathlib
import re

import keystone_syncext

PKG = pathlib.Path(keystone_syncext.__file__).resolve().parent
REPO = PKG.parent
# What an agent module may import from this distribution.
AGENT_MAY_IMPORT = ('keystone_syncext.agent', 'keystone_syncext.common')


def _imports(path):
    """(line, module) of every import in the file, relative ones resolved
    against its package."""
    tree = ast.parse(path.read_text(), str(path))
    package = '.'.join(path.relative_to(REPO).with_suffix('').parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit('.', node.level - 1)[0]
                mod = f'{base}.{node.module}' if node.module else base
            else:
                mod = node.module
            yield node.lineno, mod
            for alias in node.names:
                yield node.lineno, f'{mod}.{alias.name}'


def _within(module, prefix):
    return module == prefix or module.startswith(prefix + '.')


def test_the_agent_imports_neither_keystone_nor_the_extension():
    bad = []
    for path in sorted((PKG / 'agent').rglob('*.py')):
        for line, mod in _imports(path):
            rel = f'{path.relative_to(REPO)}:{line}: {mod}'
            if _within(mod, 'keystone'):
                bad.append(rel)
            elif _within(mod, 'keystone_syncext') and not any(
                    _within(mod, p) for p in AGENT_MAY_IMPORT):
                bad.append(rel)
    assert not bad, 'the agent must install without Keystone:\n' + \
        '\n'.join(bad)


def test_the_product_never_imports_the_test_harness():
    bad = []
    for path in sorted(PKG.rglob('*.py')):
        parts = path.relative_to(PKG).parts
        if parts[0] in ('tests', 'testing'):
            continue
        for line, mod in _imports(path):
            if _within(mod, 'keystone_syncext.testing') or \
                    _within(mod, 'keystone_syncext.tests'):
                bad.append(f'{path.relative_to(REPO)}:{line}: {mod}')
    assert not bad, '\n'.join(bad)


def _names(lines):
    """Project names of requirement lines (comments and blanks dropped)."""
    out = []
    for raw in lines:
        line = raw.split('#', 1)[0].strip()
        if line:
            out.append(re.split(r'[<>=!~;\[ ]', line, maxsplit=1)[0]
                       .lower())
    return out


def test_the_agent_dependency_set_has_no_keystone():
    base = _names((REPO / 'requirements.txt').read_text().splitlines())
    cfg = configparser.ConfigParser()
    cfg.read(REPO / 'setup.cfg')
    extras = {name: _names(cfg['extras'][name].splitlines())
              for name in cfg['extras']}
    assert 'keystone' not in base
    assert 'keystone' not in extras['agent']
    assert 'keystone' in extras['keystone']
    # What the agent's modules import from outside the standard library
    # must come with its set.
    for needed in ('openstacksdk', 'keystoneauth1', 'cliff', 'osc-lib'):
        assert needed in extras['agent'], needed
    for needed in ('oslo.config', 'oslo.log', 'sqlalchemy', 'alembic'):
        assert needed in base, needed
    # The extension's own import beyond what Keystone brings
    # (resources.compiled).
    assert 'fastjsonschema' in extras['keystone']


def test_no_data_files_guessing_the_migrations():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / 'setup.cfg')
    assert 'data_files' not in cfg['files']
    assert (PKG / 'db' / 'migrations' / 'env.py').is_file()


LINK = re.compile(r'\]\(([^)#\s]+)[^)]*\)')


def test_readme_and_doc_stay_inside_the_repository():
    docs = [REPO / 'README.md', *sorted((REPO / 'doc').glob('*.md'))]
    bad = []
    for doc in docs:
        text = doc.read_text()
        for word in ('DESIGN.md', '../shared'):
            if word in text:
                bad.append(f'{doc.relative_to(REPO)}: mentions {word}')
        for target in LINK.findall(text):
            if re.match(r'[a-z]+:', target):
                continue  # https:, mailto:
            where = (doc.parent / target).resolve()
            if not where.is_relative_to(REPO):
                bad.append(f'{doc.relative_to(REPO)}: links {target}, '
                           f'outside the repository')
    assert not bad, '\n'.join(bad)
