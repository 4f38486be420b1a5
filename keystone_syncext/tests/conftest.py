"""Shared fixtures: database backends and real Keystone sites.

Sites are expensive (a database, keys, bootstrap and a uWSGI process), so a
test module asks for one per backend and shares it; each test works on its
own resources and judges them through a ``Recorder``. A site's database is
a copy of a template that went through the db_syncs once per test process
(per backend and Keystone release); keys and bootstrap are the site's own.
"""

import os
import sys
import threading
import uuid

import pytest

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites

VENV30 = os.environ.get('KSSYNC_VENV30', sys.prefix)
VENV29 = os.environ.get('KSSYNC_VENV29')


# Keystone releases an API suite runs against (fixture ``keystone_release``).
CURRENT, PREVIOUS = '30.0', '29.1'


def pytest_generate_tests(metafunc):
    if 'backend_name' not in metafunc.fixturenames:
        return
    names = backends.selected()
    if metafunc.definition.get_closest_marker('concurrent_writers'):
        # Interleaved writers cannot happen on SQLite (one writer).
        names = [n for n in names if n != 'sqlite']
    if metafunc.definition.get_closest_marker('backend_independent'):
        # Policy and caching behave the same on every database; SQL does
        # not, so everything that reads or writes through ours runs on all.
        names = names[:1]
    if 'keystone_release' in metafunc.fixturenames:
        # The current release on every backend; the previous one on the
        # embedded database (what differs between releases is Keystone's
        # code, which the database does not change).
        combos = [(n, CURRENT) for n in names]
        if 'sqlite' in names:
            combos.append(('sqlite', PREVIOUS))
        metafunc.parametrize(('backend_name', 'keystone_release'), combos,
                             scope='module',
                             ids=[f'{n}-{r}' for n, r in combos])
    else:
        metafunc.parametrize('backend_name', names, scope='module')


def release_venv(release: str) -> str:
    """The virtualenv holding Keystone ``release``; fails (never skips)
    when the environment does not say where it is."""
    if release == CURRENT:
        return VENV30
    if not VENV29:
        pytest.fail('KSSYNC_VENV29 is not set, so there is no Keystone '
                    f'{PREVIOUS} virtualenv to test with: run the tests '
                    'through tools/run-tests, which creates it and sets '
                    'the variable', pytrace=False)
    return VENV29


@pytest.fixture(scope='session')
def sqlite_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('sqlite'))


@pytest.fixture(scope='module')
def backend(backend_name, sqlite_dir):
    be = backends.get(backend_name, sqlite_dir)
    reason = getattr(be, 'available', lambda: None)()
    if reason:
        # In CI a missing database is a failure, never a skip.
        pytest.fail(f'database backend unavailable: {reason}')
    return be


def unique_name(prefix: str) -> str:
    return f'{prefix}_{uuid.uuid4().hex[:10]}'


@pytest.fixture(scope='session')
def schema_template(tmp_path_factory):
    """``get(backend, venv, capture=True)``: the name of a database with
    the schema ``venv``'s db_syncs make (Keystone's, and ours with
    ``capture``), made once per test process and dropped at its end.
    Sites and tests copy it (``backend.clone``) instead of running the
    db_syncs again: those cost seconds each, mostly Keystone's imports."""
    made, to_drop = {}, []
    lock = threading.Lock()  # sites may be set up side by side

    def get(backend, venv, capture=True):
        key = (backend.name, venv, capture)
        with lock:
            return made.get(key) or make(key, backend, venv, capture)

    def make(key, backend, venv, capture):
        dbname = unique_name('ks_template')
        url = backend.create(dbname)
        to_drop.append((backend, dbname))
        site = sites.Site('template', str(tmp_path_factory.mktemp(
            'template')), url, venv=venv, capture=capture)
        site.write_config()
        site.sync_schema()
        made[key] = dbname
        return dbname

    yield get
    for backend, dbname in to_drop:
        backend.drop(dbname)


@pytest.fixture(scope='module')
def make_site(backend, tmp_path_factory, schema_template):
    """Factory for started Keystone sites on this module's backend."""
    made = []

    def make(name='site', venv=None, capture=True, extra_config='', **kw):
        venv = venv or VENV30
        dbname = unique_name(f'ks_{name}')
        url = backend.clone(schema_template(backend, venv, capture), dbname)
        workdir = tmp_path_factory.mktemp(name)
        site = sites.Site(name, str(workdir), url, venv=venv,
                          capture=capture, **kw)
        made.append((site, dbname))
        site.setup(extra_config, schema=False)
        site.start()
        return site

    yield make
    for site, dbname in made:
        site.stop()
        backend.drop(dbname)


@pytest.fixture(scope='module')
def site(make_site):
    """A Keystone 30 site with capture, lockout and inactivity tracking on
    (so that site-local columns really change during the tests)."""
    return make_site('site', extra_config=(
        '[security_compliance]\n'
        'lockout_failure_attempts = 3\n'
        'lockout_duration = 1800\n'
        'disable_user_account_days_inactive = 90\n'))


@pytest.fixture(scope='module')
def admin(site):
    return site.admin_session()
