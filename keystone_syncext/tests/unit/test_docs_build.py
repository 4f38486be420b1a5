"""The docs build (doc/conf.py, tox -e docs) fails on a broken
cross-reference: a copy of the doc tree whose links point nowhere (one
to a missing guide, one to a missing section) makes Sphinx exit non-zero
and name both. CI builds the real tree (tools/run-tests), which shows the
same configuration passes when every link resolves."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), '..', '..', '..')
BROKEN = [('architecture.md', '(types.md)', '(no-such-guide.md)'),
          ('install.md', '(agent.md)', '(agent.md#no-such-section)')]


def test_a_broken_cross_reference_fails_the_build(tmp_path):
    shutil.copytree(os.path.join(ROOT, 'doc'), tmp_path / 'doc',
                    ignore=shutil.ignore_patterns('_build'))
    # What the guides link to outside doc/.
    shutil.copytree(os.path.join(ROOT, 'etc'), tmp_path / 'etc')
    shutil.copy(os.path.join(ROOT, 'policy.yaml.sample'), tmp_path)
    for name, old, new in BROKEN:
        path = tmp_path / 'doc' / name
        text = path.read_text()
        assert old in text, f'doc/{name} no longer has {old!r}'
        path.write_text(text.replace(old, new, 1))
    # The dummy builder resolves every reference without writing pages.
    proc = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b',
         'dummy', str(tmp_path / 'doc'), str(tmp_path / 'out')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    warnings = [line for line in proc.stderr.splitlines()
                if 'WARNING' in line]
    assert any('architecture.md' in w and 'no-such-guide' in w
               for w in warnings), proc.stderr
    assert any('install.md' in w and 'no-such-section' in w
               for w in warnings), proc.stderr
    assert 'Traceback' not in proc.stderr


def test_the_api_reference_has_every_operation_and_schema():
    """doc/_ext/openapi_reference.py renders every operation of
    doc/openapi.json under its method and path, and every schema under
    the label its references point to."""
    spec = importlib.util.spec_from_file_location(
        'openapi_reference',
        os.path.join(ROOT, 'doc', '_ext', 'openapi_reference.py'))
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    with open(os.path.join(ROOT, 'doc', 'openapi.json')) as f:
        doc = json.load(f)
    text = '\n'.join(ext.reference_lines(doc))
    for path, item in doc['paths'].items():
        for method in item:
            assert f'\n{method.upper()} {path}\n' in text, (method, path)
    for name in doc['components']['schemas']:
        assert f'.. _openapi-schema-{name.lower()}:' in text, name
    labels = set(re.findall(r'<(openapi-schema-[a-z]+)>', text))
    assert labels and labels <= {f'openapi-schema-{n.lower()}'
                                 for n in doc['components']['schemas']}
