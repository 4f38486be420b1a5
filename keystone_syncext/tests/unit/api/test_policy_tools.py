"""The oslopolicy-* tools see the sync rules through the
``oslo.policy.enforcer`` entry point (``keystone_syncext``), with an
operator's policy file read through keystone.conf as Keystone reads it.

Each tool runs as the operator runs it: a subprocess, its own command line.
"""

import json
import os
import subprocess
import sys

import pytest
import yaml

from keystone_syncext import policies

BIN = os.path.dirname(sys.executable)
RULES = sorted(rule.name for rule in policies.list_rules())
# The operator's file: one rule that repeats its default, one override.
POLICY = {
    'identity:sync:get_status': 'role:reader and system_scope:all',
    'identity:sync:list_changes': 'role:admin and role:auditor',
}


def _tool(name, *args):
    proc = subprocess.run([os.path.join(BIN, name), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('policy')
    (tmp / 'policy.yaml').write_text(yaml.safe_dump(POLICY))
    conf = tmp / 'keystone.conf'
    conf.write_text(f'[oslo_policy]\npolicy_file = {tmp / "policy.yaml"}\n')
    return tmp, str(conf)


@pytest.fixture(scope='module')
def effective(site):
    tmp, conf = site
    out = tmp / 'effective.yaml'
    _tool('oslopolicy-policy-generator', '--namespace', 'keystone_syncext',
          '--config-file', conf, '--output-file', str(out))
    return out


def test_policy_generator_merges_the_file_with_the_sync_defaults(effective):
    rules = yaml.safe_load(effective.read_text())
    assert sorted(r for r in rules if r.startswith('identity:sync:')) == RULES
    defaults = {rule.name: rule.check_str for rule in policies.list_rules()}
    assert rules['identity:sync:list_changes'] == 'role:admin and role:auditor'
    for name in set(RULES) - {'identity:sync:list_changes'}:
        assert rules[name] == defaults[name], name
    # Keystone's base rules, which overrides may refer to, are there too.
    assert 'admin_required' in rules


def test_list_redundant_flags_the_rule_that_repeats_its_default(site):
    _, conf = site
    out = _tool('oslopolicy-list-redundant', '--namespace',
                'keystone_syncext', '--config-file', conf)
    flagged = [line.split('"')[1] for line in out.splitlines() if line]
    assert flagged == ['identity:sync:get_status']


def test_checker_evaluates_every_sync_rule(effective, tmp_path):
    access = tmp_path / 'access.json'
    access.write_text(json.dumps({'token': {
        'roles': [{'name': 'admin'}, {'name': 'reader'}],
        'system': {'all': True}, 'user': {'id': 'u1'}}}))
    out = _tool('oslopolicy-checker', '--policy', str(effective),
                '--access', str(access))
    verdicts = dict(reversed(line.split(': ', 1))
                    for line in out.splitlines()
                    if 'identity:sync:' in line)
    assert sorted(verdicts) == RULES
    # A system admin passes every default; the override wants an auditor.
    assert verdicts.pop('identity:sync:list_changes') == 'failed'
    assert set(verdicts.values()) == {'passed'}
