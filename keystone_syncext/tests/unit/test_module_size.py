"""No module of the package, its tests and harness included, is 500 lines
or more: a module that grows splits by what its parts do (doc/testing.md
for the tests; tests/unit/agent/test_layout.py holds the agent to the
same bound and more)."""

import pathlib

import keystone_syncext

ROOT = pathlib.Path(keystone_syncext.__file__).parent
LIMIT = 500


def test_no_module_of_500_lines_or_more():
    big = {str(p.relative_to(ROOT)): n for p in ROOT.rglob('*.py')
           if (n := len(p.read_text().splitlines())) >= LIMIT}
    assert big == {}
