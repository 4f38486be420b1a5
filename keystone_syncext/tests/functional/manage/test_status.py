"""``keystone-syncext-status upgrade check``, run as operators run it: the
checks of ``keystone-syncext-manage check`` (test_manage.py tests each
one) behind oslo.upgradecheck's command line and exit codes: 0 success,
1 warning, 2 failure."""

import json
import os
import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

from keystone_syncext.db import migration
from keystone_syncext.testing import backends
from keystone_syncext.tests import conftest

# The console script as installed: its entry point, loaded and run as
# the script pip writes would run it.
STATUS = [sys.executable, '-c',
          'import sys; from importlib import metadata; sys.exit(metadata.'
          'entry_points(group="console_scripts")["keystone-syncext-status"]'
          '.load()())']
MANAGE = os.path.join(os.path.dirname(sys.executable),
                      'keystone-syncext-manage')
TRIGGER = 'sync_project_ins_v1'
CHECKS = ['Keystone schema', 'Sync migrations', 'Change capture', 'Site id',
          'Write context']


@pytest.fixture(scope='module')
def database(sqlite_dir, schema_template, tmp_path_factory):
    """A copy of a database with Keystone's schema and ours. SQLite only:
    the command adds no database code to the checks, which test_manage.py
    runs on every backend."""
    backend = backends.get('sqlite', sqlite_dir)
    dbname = conftest.unique_name('sx_status')
    url = backend.clone(schema_template(backend, conftest.VENV30), dbname)
    engine = sa.create_engine(url)
    yield url, engine, tmp_path_factory.mktemp(dbname)
    engine.dispose()
    backend.drop(dbname)


def _conf(database, site_id):
    url, _, tmp = database
    conf = tmp / 'keystone.conf'
    conf.write_text(f'[database]\nconnection = {url}\n\n[sync]\n'
                    + (f'site_id = {site_id}\n' if site_id else ''))
    return str(conf)


def status(database, *args, site_id='test'):
    return subprocess.run(
        [*STATUS, '--config-file', _conf(database, site_id), 'upgrade',
         'check', *args], capture_output=True, text=True, timeout=300)


def results(proc) -> dict:
    out = json.loads(proc.stdout)
    return {c['check']: (c['result'], c['details'])
            for c in out['checks']}


def test_a_ready_site_passes_every_check(database):
    proc = status(database, '--json')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(results(proc)) == CHECKS
    assert {code for code, _ in results(proc).values()} == {0}


def test_the_same_checks_as_keystone_syncext_manage_check(database):
    """The titles of ``keystone-syncext-manage check``'s table, in order."""
    proc = subprocess.run([MANAGE, '--config-file', _conf(database, 'test'),
                           'check'], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.findall(r'\| Check: (.+?) +\|', proc.stdout) == CHECKS


def test_a_missing_site_id_is_a_warning(database):
    proc = status(database, '--json', site_id='')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    code, details = results(proc)['Site id']
    assert code == 1
    assert 'site_id is not set' in details


def test_incomplete_capture_is_a_failure_naming_what_is_missing(database):
    _, engine, _ = database
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP TRIGGER {TRIGGER}')
    try:
        proc = status(database)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        # The human-readable table, details wrapped over its lines.
        text = ''.join(line.strip('| ') for line in proc.stdout.splitlines())
        assert 'Result: Failure' in text
        assert TRIGGER in text
    finally:
        migration.upgrade(engine)
