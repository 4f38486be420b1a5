"""A busy database: every /v3/sync route answers 503 with Retry-After,
never 500, and the extension's reads do not make Keystone's writes fail.

SQLite only: its whole-database lock is what a held lock means there, and
Keystone on SQLite is where "database is locked" reaches clients. The
sites run as one uWSGI process with four threads.

1. The test holds an exclusive lock on the site's database file (``BEGIN
   EXCLUSIVE`` on its own sqlite3 connection) and calls every route. The
   site's database uses the rollback journal, where that lock keeps out
   readers as well as writers (with WAL a reader would still read), and
   a busy timeout of one second (``?timeout=1`` in the URL) instead of
   five, to keep the test short. Keystone's cache is on and the admin's
   token validated before the lock is taken, so that Keystone's own token
   validation, which runs before our route and is not ours to answer,
   does not need the database.
2. The read routes do not write when there is nothing to stamp: with
   another writer holding SQLite's write lock on a site in WAL mode (as
   deployments and the test sites use it), capabilities, status and the
   feed answer 200 at once, as Keystone's own reads do. Before, each took
   the write lock, so each waited behind every Keystone write and, by
   committing, failed Keystone transactions that had read before they
   wrote ("database is locked" at once, whatever the busy timeout).
3. Keystone's own writes through its v3 API run beside an eager sync
   reader (capabilities, status and the feed, back to back) on that
   site: not one 5xx from either.
"""

import contextlib
import sqlite3
import uuid

import pytest
import requests

from keystone_syncext.testing import backends
from keystone_syncext.testing import load
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest

CACHE = ('[cache]\nenabled = true\nbackend = oslo_cache.dict\n'
         '[token]\ncaching = true\n')


@pytest.fixture(scope='module')
def sqlite_backend(sqlite_dir):
    return backends.SQLite(sqlite_dir)


@pytest.fixture(scope='module')
def threaded_site(sqlite_backend, schema_template, tmp_path_factory):
    """``make(journal)``: a started Keystone 30 site serving our API on a
    copy of the schema template, SQLite in ``journal`` mode."""
    made, by_journal = [], {}

    def make(journal: str, url_query: str = '', extra: str = ''):
        if journal in by_journal:
            return by_journal[journal]
        dbname = conftest.unique_name('ks_busy')
        url = sqlite_backend.clone(
            schema_template(sqlite_backend, conftest.VENV30), dbname)
        path = url[len('sqlite:///'):]
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute(f'PRAGMA journal_mode={journal}')
        site = sites.Site('busy', str(tmp_path_factory.mktemp('busy')),
                          url + url_query, app=sites.SYNC_APP,
                          server='threads')
        made.append((site, dbname))
        site.setup(extra, schema=False)
        site.start()
        by_journal[journal] = site, path
        return site, path

    yield make
    for site, dbname in made:
        site.stop()
        sqlite_backend.drop(dbname)


@contextlib.contextmanager
def exclusive_lock(path: str, mode: str = 'EXCLUSIVE'):
    """Hold SQLite's exclusive (or, with ``IMMEDIATE``, write) lock on
    ``path`` until the block ends."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f'BEGIN {mode}')
        yield
        db.execute('ROLLBACK')
    finally:
        db.close()


def _routes(role_id: str, other_id: str) -> list[tuple]:
    """(method, path, json body) of every /v3/sync route."""
    role = {'id': other_id, 'name': f'busy-{uuid.uuid4().hex[:8]}',
            'domain_id': None, 'description': None, 'options': {},
            'extra': {}}
    return [
        ('GET', '/sync', None),
        ('GET', '/sync/status', None),
        ('GET', '/sync/changes', None),
        ('GET', '/sync/changes?wait=1', None),
        ('GET', '/sync/resources/role', None),
        ('GET', f'/sync/resources/role/{role_id}', None),
        ('PUT', f'/sync/resources/role/{other_id}', {'resource': role}),
        ('DELETE', f'/sync/resources/role/{role_id}', None),
        ('POST', '/sync/batch', {'items': [
            {'op': 'upsert', 'type': 'role', 'id': other_id,
             'resource': role}]}),
        ('POST', '/sync/rekey', {'type': 'role', 'from': role_id,
                                 'to': other_id}),
        ('GET', '/sync/digest/role', None),
        ('POST', '/sync/digests', {'digests': [{'type': 'role'}]}),
    ]


def test_every_route_answers_503_while_the_database_is_locked(
        threaded_site):
    site, path = threaded_site('DELETE', '?timeout=1', CACHE)
    token = site.admin_session().get_token()
    headers = {'X-Auth-Token': token}
    role_id = requests.post(site.url + '/roles', headers=headers, timeout=30,
                            json={'role': {'name': uuid.uuid4().hex}}
                            ).json()['role']['id']
    routes = _routes(role_id, uuid.uuid4().hex)
    # Warm up: the token is validated (and cached), every route answers.
    for method, route, body in routes[:2]:
        resp = requests.request(method, site.url + route, json=body,
                                headers=headers, timeout=30)
        assert resp.status_code == 200, resp.text
    wrong = []
    with exclusive_lock(path):
        for method, route, body in routes:
            resp = requests.request(method, site.url + route, json=body,
                                    headers=headers, timeout=60)
            if resp.status_code != 503 or \
                    not resp.headers.get('Retry-After', '').isdigit() or \
                    'retry' not in resp.json()['error']['message']:
                wrong.append(f'{method} {route}: {resp.status_code} '
                             f'{resp.headers.get("Retry-After")} '
                             f'{resp.text[:200]}')
    assert not wrong, '\n'.join(wrong)
    # Nothing was applied: the role is still there, under its own id.
    resp = requests.get(f'{site.url}/roles/{role_id}', headers=headers,
                        timeout=30)
    assert resp.status_code == 200, resp.text


def test_read_routes_take_no_write_lock(threaded_site):
    site, path = threaded_site('WAL', '?timeout=1')
    headers = {'X-Auth-Token': site.admin_session().get_token()}

    def get(route):
        return requests.get(site.url + route, headers=headers, timeout=30)

    def status(route):
        try:
            resp = get(route)
        except requests.ConnectionError as e:
            return f'no answer ({type(e).__name__})'
        return (None if resp.status_code == 200 else
                f'{resp.status_code} {resp.text[:200]}')

    head = get('/sync').json()['sync']['head_cursor']   # stamps all
    wrong = []
    with exclusive_lock(path, 'IMMEDIATE'):
        for route in ('/sync', '/sync/status', f'/sync/changes?since={head}',
                      '/sync/changes?limit=5', '/projects'):
            problem = status(route)
            if problem:
                wrong.append(f'GET {route}: {problem}')
    assert not wrong, '\n'.join(wrong)


def test_sync_reads_beside_keystone_writes_cause_no_server_error(
        threaded_site):
    site, _ = threaded_site('WAL', '?timeout=1')
    tally = load.run_load(site, seconds=30, writers=3, readers=2)
    summary = tally.summary()
    assert tally.routes, 'the load made no request'
    assert sum(n for (route, status), n in tally.routes.items()
               if route.startswith('GET /sync') and status == 200) >= 5, \
        summary
    assert tally.server_errors(sync=False) == 0, summary
    assert tally.server_errors(sync=True) == 0, summary
