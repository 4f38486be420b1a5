"""The fault suite's fixtures: ``world`` (the sites, built once per
module), ``judge`` and ``rng`` (per trial)."""

import concurrent.futures
import os
import random
import time

import pytest

from keystone_syncext.testing import backends
from keystone_syncext.testing import mariadb
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests.functional.faults.judge import Judge
from keystone_syncext.tests.functional.faults.world import FaultWorld
from keystone_syncext.tests.functional.faults.world import random_seed


@pytest.fixture(scope='module')
def world(secret_scan, tmp_path_factory, sqlite_dir, schema_template):
    """hub (30.0, SQLite), spoke1 (30.0, private MariaDB), spoke2 (29.1,
    SQLite); joined, not yet synced: the first trial's sync is the seed
    (every trial starts with a ``--once``, which seeds when it comes
    first). Every log is below the work directory, which the secret scan
    covers."""
    workdir = str(tmp_path_factory.mktemp('faults'))
    secret_scan.log_dir(workdir)
    db = mariadb.PrivateMariaDB(os.path.join(workdir, 'mariadb'))
    reason = db.unavailable()
    if reason:
        pytest.fail(f'private MariaDB server: {reason}', pytrace=False)
    made, started = [], []
    began = time.monotonic()
    try:
        hub, spoke1, spoke2 = _start_sites(
            workdir, db, backends.get('sqlite', sqlite_dir), schema_template,
            made, started)
        print(f'sites up in {time.monotonic() - began:.1f}s')
        clouds = {'hub': hub.admin_auth()}
        w = FaultWorld(workdir, hub, [spoke1, spoke2], db, clouds)
        w.join(clouds, secret_scan)
        for site in w.every():
            secret_scan.hashes_of(site.engine())
        print(f'world ready in {time.monotonic() - began:.1f}s')
        yield w
    finally:
        _tear_down(secret_scan, db, made, started)


def _start_sites(workdir, db, sqlite, schema_template, made, started):
    """hub and spoke2 (29.1) on SQLite, spoke1 on the private MariaDB
    server ``db``, set up side by side. Each site goes to ``made`` (SQLite:
    stopped and its database dropped at the end) or ``started`` (stopped)
    as soon as it exists, so that a failure halfway leaves nothing
    running."""
    def on_sqlite(name, venv):
        site, dbname = conftest._new_site(
            sqlite, schema_template(sqlite, venv), f'{workdir}/{name}', name,
            venv, app=sites.SYNC_APP,
            hub_site_id=None if name == 'hub' else 'hub')
        made.append((sqlite, site, dbname))
        return site

    def on_mariadb(name):
        db.install().start()
        site = sites.Site(name, f'{workdir}/{name}',
                          db.create(f'ks_{name}'), venv=conftest.VENV30,
                          app=sites.SYNC_APP, hub_site_id='hub')
        started.append(site)
        site.setup()
        site.start()
        return site

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(on_sqlite, 'hub', conftest.VENV30),
                pool.submit(on_mariadb, 'spoke1'),
                pool.submit(on_sqlite, 'spoke2',
                            conftest.release_venv(conftest.PREVIOUS))]
        return [j.result() for j in jobs]


def _tear_down(secret_scan, db, made, started):
    """Every site's password hashes to the secret scan (spoke1's only
    while its database server runs), then every site stopped, the SQLite
    databases dropped and the MariaDB server's data removed."""
    try:
        for site in [m[1] for m in made] + started:
            if db.proc is not None or site not in started:
                secret_scan.hashes_of(site.engine())
    finally:
        try:
            conftest._stop_and_drop(made)
            for site in started:
                site.stop()
        finally:
            db.remove_data()


@pytest.fixture
def rng(request):
    """A seeded random generator per trial; the seed is printed (and shown
    in a failure's captured output) and ``KSSYNC_FAULT_SEED`` replays it."""
    seed = random_seed()
    print(f'{request.node.name}: KSSYNC_FAULT_SEED={seed}')
    return random.Random(seed)


@pytest.fixture
def judge(world):
    return Judge(world)
