"""Shared fixtures: database backends and real Keystone sites.

Sites are expensive (a database, keys, bootstrap and a uWSGI process), so a
test module asks for one per backend and shares it; each test works on its
own resources and judges them through a ``Recorder``. A site's database is
a copy of a template that went through the db_syncs once per test process
(per backend and Keystone release); keys and bootstrap are the site's own.
"""

from concurrent import futures
import os
import sys
import threading
import uuid

import pytest

from keystone_syncext.testing import backends
from keystone_syncext.testing import secrets
from keystone_syncext.testing import sites

VENV30 = os.environ.get('KSSYNC_VENV30', sys.prefix)


# Keystone releases an API suite runs against (fixture ``keystone_release``);
# the oldest of the supported span (sites.RELEASES has them all).
CURRENT, PREVIOUS, OLDEST = sites.CURRENT, '29.1', '27.1'


def pytest_generate_tests(metafunc):
    if 'server_kind' in metafunc.fixturenames:
        # The uWSGI server kinds the sites run as (KSSYNC_SERVERS).
        kinds = sites.server_kinds()
        metafunc.parametrize('server_kind', kinds, scope='module',
                             ids=[f'server-{k}' for k in kinds])
    if 'backend_name' not in metafunc.fixturenames:
        return
    names = backends.selected()
    if metafunc.definition.get_closest_marker('concurrent_writers'):
        # Interleaved writers cannot happen on SQLite (one writer).
        names = [n for n in names if n != 'sqlite']
    if metafunc.definition.get_closest_marker('backend_independent') or \
            metafunc.definition.get_closest_marker('first_backend'):
        # Policy and caching behave the same on every database; SQL does
        # not, so everything that reads or writes through ours runs on all,
        # but for end-to-end flows that cost a minute a backend (their SQL
        # is judged per backend by the suites they build on).
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


# Test modules by how long they take (most first, from --durations on the
# 2-core CI machine); the rest (quick) keep their order after these.
# run-tests hands modules to the xdist workers in this order
# (--no-loadscope-reorder), so the two workers finish close together.
SLOWEST_FIRST = (
    'test_agent_ha.py',
    'test_faults.py',
    'test_agent.py',
    'test_bench_smoke.py',
    'test_agent_reconcile.py',
    'test_agent_conflicts.py',
    'test_agent_span.py',
    'test_fuzz.py',
    'test_upgrade.py',
    'test_agent_selective.py',
    'test_agent_join.py',
    'test_osc_sync.py',
    'test_agent_lock.py',
    'test_resources_identity.py',
    'test_resources_app_creds.py',
    'test_resources_assignments.py',
    'test_resources_federation.py',
    'test_api_resources.py',
    'test_feed.py',
    'test_digest.py',
    'test_api_busy.py',
    'test_migrations.py',
    'test_capture_api.py',
    'test_manage.py',
    'test_api_rbac.py',
    'test_capture_concurrency.py',
    'test_origin.py',
    'test_api_capabilities.py',
    'test_capture_managers.py',
    'test_api_cache.py',
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    # A stable sort: each module's own order (grouped by backend) stays.
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def release_venv(release: str) -> str:
    """The virtualenv holding Keystone ``release`` (any of
    ``sites.RELEASES``); fails (never skips) when the environment does
    not say where it is."""
    if release == CURRENT:
        return VENV30
    venv = sites.release_venv(release)
    if not venv:
        var = sites.RELEASES[release]
        how = ('tools/run-tests, which creates it and sets the variable'
               if release != '28.1' else 'tox -e span (or KSSYNC_SPAN=1 '
               'tools/run-tests), which creates it and sets the variable')
        pytest.fail(f'{var} is not set, so there is no Keystone {release} '
                    f'virtualenv to test with: run the tests through {how}',
                    pytrace=False)
    return venv


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


def site_server(backend_name: str, venv: str, kind: str,
                name: str = '') -> str:
    """The server kind for a site: ``kind``, but for Keystone 29.1 on
    SQLite, which only works as one process with threads (a token issued
    by one worker process makes the other's next write fail with
    "database is locked"; doc/install.md).

    ``mixed`` (the default of ``KSSYNC_SERVERS``) runs both kinds in one
    run: spokes and every MariaDB site threaded, the hub and the other
    sites as worker processes, so each agent suite has a hub of one kind
    and spokes of the other, and the API suites meet both."""
    if backend_name == 'sqlite' and venv != VENV30:
        return 'threads'
    if kind == sites.MIXED:
        threaded = backend_name == 'mysql' or name.startswith('spoke')
        return 'threads' if threaded else 'processes'
    return kind


def _new_site(backend, template, workdir, name, venv, capture=True,
              extra_config='', server_kind='processes', **kw):
    """A started site on a copy of ``template``; returns it and its
    database's name. On failure the database is dropped again. The site
    runs as ``server_kind`` (see :func:`site_server`) unless ``kw`` says
    how many processes or threads."""
    if not {'processes', 'threads', 'server'} & set(kw):
        kw['server'] = site_server(backend.name, venv, server_kind, name)
    dbname = unique_name(f'ks_{name}')
    url = backend.clone(template, dbname)
    site = sites.Site(name, workdir, url, venv=venv, capture=capture, **kw)
    try:
        site.setup(extra_config, schema=False)
        site.start()
    except BaseException:
        site.stop()
        backend.drop(dbname)
        raise
    return site, dbname


def _stop_and_drop(made):
    """Stop sites side by side (each takes a second or more), then drop
    their databases."""
    with futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda m: m[1].stop(), made))
    for backend, _, dbname in made:
        backend.drop(dbname)


@pytest.fixture(scope='module')
def make_site(backend, tmp_path_factory, schema_template):
    """Factory for started Keystone sites on this module's backend, for
    this module alone (a site it reconfigures, purges or counts on)."""
    made = []

    def make(name='site', venv=None, capture=True, extra_config='', **kw):
        venv = venv or VENV30
        site, dbname = _new_site(
            backend, schema_template(backend, venv, capture),
            str(tmp_path_factory.mktemp(name)), name, venv, capture,
            extra_config, **kw)
        made.append((backend, site, dbname))
        return site

    yield make
    _stop_and_drop(made)


@pytest.fixture(scope='session')
def site_pool(tmp_path_factory, schema_template):
    """``get(backend, name, venv, extra_config='', **site_kw)``: a started
    site that the modules run by this test process share, one per
    (backend, name); made on first use, stopped at the end of the session.
    A site costs a bootstrap and a uWSGI start (several seconds of
    Keystone imports); the modules using one work on resources of their
    own and leave its configuration and history as they found them."""
    made, entries = [], {}
    lock = threading.Lock()

    def get(backend, name, venv, extra_config='', **kw):
        with lock:
            entry = entries.setdefault((backend.name, name),
                                       {'lock': threading.Lock()})
        # Per site: two sites may be set up side by side.
        with entry['lock']:
            if 'site' not in entry:
                site, dbname = _new_site(
                    backend, schema_template(backend, venv),
                    str(tmp_path_factory.mktemp(name)), name, venv,
                    extra_config=extra_config, **kw)
                made.append((backend, site, dbname))
                entry['site'] = site
            assert entry['site'].venv == venv, (name, venv)
            return entry['site']

    yield get
    _stop_and_drop(made)


@pytest.fixture(scope='module')
def shared_site(backend, site_pool, server_kind):
    """``get(release=CURRENT, second=False)``: a started site of Keystone
    ``release`` serving our API on this module's backend, shared with the
    other modules of this test process (see ``site_pool``); ``second``
    gives another one, for tests that need two sites of one release. It
    runs as ``server_kind`` (``KSSYNC_SERVERS``)."""
    def get(release=CURRENT, second=False):
        venv = release_venv(release)
        kind = site_server(backend.name, venv, server_kind)
        name = (f'sync{release.replace(".", "")}{"b" if second else "a"}'
                f'{"" if kind == "processes" else kind}')
        return site_pool(backend, name, venv, app=sites.SYNC_APP,
                         server_kind=kind)
    return get


@pytest.fixture(scope='module')
def site(backend, site_pool):
    """A Keystone 30 site with capture, lockout and inactivity tracking on
    (so that site-local columns really change during the tests), serving
    Keystone's own application; shared by the capture modules."""
    return site_pool(backend, 'site', VENV30, extra_config=(
        '[security_compliance]\n'
        'lockout_failure_attempts = 3\n'
        'lockout_duration = 1800\n'
        'disable_user_account_days_inactive = 90\n'))


@pytest.fixture(scope='module')
def admin(site):
    return site.admin_session()


@pytest.fixture(scope='module')
def secret_scan():
    """The registry of secrets and product logs (``testing.secrets``);
    at the end of the module, every registered log is searched for every
    registered secret, and any hit fails the module. A fixture that starts
    processes asks for this one first, so that its own teardown (which
    stops them and finishes their logs) runs before the scan."""
    yield secrets.REGISTRY
    try:
        hits = secrets.REGISTRY.scan()
    finally:
        # Never hand this module's registrations to the next module of
        # the worker, whatever the scan raised.
        secrets.REGISTRY.clear()
    if hits:
        pytest.fail(secrets.report(hits), pytrace=False)
