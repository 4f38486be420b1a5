"""The feed cannot be fooled by a restore, and does not hide lost capture.

On a real Keystone: a database restored from a backup taken before a
reader's cursor answers that cursor 410 (reconcile) even once new writes
have moved the head past it; a dropped capture trigger makes the feed and
the digests answer 503 naming it, and the ``db_sync`` that puts it back
starts a new history so every old cursor is refused. The restore drill
copies the SQLite database file, so it runs on SQLite only; the rest runs
on every backend.
"""

import base64
import sqlite3
import time
import uuid

import pytest

from keystone_syncext.capture import install
from keystone_syncext.feed import cursors
from keystone_syncext.feed import history
from keystone_syncext.testing import sites


@pytest.fixture(scope='module')
def feed_site(make_site):
    """The current release only (the conftest's, for ``call``, is of
    ``keystone_release``)."""
    return make_site('history', app=sites.SYNC_APP)


def caps(call):
    return call('GET', '/sync')['sync']


def new_roles(call, n):
    for _ in range(n):
        call('POST', '/roles', 201, json={'role': {
            'name': f'h-{uuid.uuid4().hex[:12]}'}})


def read_to_head(call, since):
    """Follow the feed from ``since`` to its end; the last cursor."""
    while True:
        page = call('GET', f'/sync/changes?since={since}&limit=1000')
        since = page['next']
        if not page['more']:
            return since


def assert_gone(call, cursor):
    err = call('GET', f'/sync/changes?since={cursor}', 410)['error']
    assert err['reconcile'] is True
    assert err['oldest_valid_cursor'] and err['head_cursor']
    assert 'reconcile' in err['message']
    return err


def sqlite_path(site):
    assert site.db_url.startswith('sqlite:///')
    return site.db_url[len('sqlite:///'):]


def copy_database(src_path, dst_path):
    """A consistent copy (SQLite's online backup), WAL or not."""
    src, dst = sqlite3.connect(src_path), sqlite3.connect(dst_path)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def test_capabilities_name_the_history(call):
    first = caps(call)
    assert len(first['history_id']) == 16
    int(first['history_id'], 16)
    assert caps(call)['history_id'] == first['history_id']
    status = call('GET', '/sync/status')['status']
    assert status['history_id'] == first['history_id']


def test_old_v1_cursor_is_gone(call):
    """Cursors from before history ids name none: reconcile once."""
    old = base64.urlsafe_b64encode(b'v1:1').decode().rstrip('=')
    err = assert_gone(call, old)
    # The head cursor it hands out works.
    call('GET', f'/sync/changes?since={err["head_cursor"]}')


def test_restore_drill(backend_name, call, feed_site, tmp_path):
    """Backup at P, a reader reads to Q > P, restore, new writes bring
    the head to R > Q: the reader's cursor Q is refused, not answered
    with only the changes after Q."""
    if backend_name != 'sqlite':
        pytest.skip('the drill copies the SQLite database file')
    new_roles(call, 1)
    backup = str(tmp_path / 'backup.db')
    copy_database(sqlite_path(feed_site), backup)         # at P
    history = caps(call)['history_id']
    start = caps(call)['head_cursor']
    new_roles(call, 1)
    mid = read_to_head(call, start)
    new_roles(call, 2)
    reader = read_to_head(call, mid)                      # at Q > P

    feed_site.stop()
    copy_database(backup, sqlite_path(feed_site))         # back to P
    feed_site.start()
    # Same database, same history id: only the cursor can tell.
    assert caps(call)['history_id'] == history
    new_roles(call, 5)                                    # head R > Q

    err = assert_gone(call, reader)
    # The rewind starts a new history: every cursor of the old one is
    # refused, also one below the restore point.
    renewed = caps(call)
    assert renewed['history_id'] != history
    assert err['head_cursor'] == renewed['head_cursor']
    assert_gone(call, start)
    assert_gone(call, mid)
    # From the new head the feed works, and carries what is written next.
    head = err['head_cursor']
    assert call('GET', f'/sync/changes?since={head}')['changes'] == []
    new_roles(call, 1)
    page = call('GET', f'/sync/changes?since={head}')
    assert [c['op'] for c in page['changes']] == ['create']


def test_cursor_above_the_head_renews_the_history(call):
    """A database that went back in time and has not moved on yet: the
    cursor is past the head."""
    before = caps(call)
    # The feed hands out cursors only up to the head; a restore is the
    # only way to be above it. Forge one with the site's history.
    head = cursors.decode(before['head_cursor'])
    future = cursors.encode(head.history, head.position + 1000)
    assert_gone(call, future)
    assert caps(call)['history_id'] != before['history_id']
    assert_gone(call, before['head_cursor'])


def _trigger_on(dialect, table, event):
    return next(t for t in install.expected_triggers(dialect)
                if t.table == table and f'_{event}_' in t.name)


def _status_of(feed_site, method, path, **kw):
    session = feed_site.admin_session()
    resp = session.request(feed_site.url + path, method, raise_exc=False,
                           **kw)
    return resp.status_code, resp.json()


def _until(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_lost_capture_stops_the_feed_and_db_sync_renews_the_history(
        call, feed_site):
    before = caps(call)
    cursor = before['head_cursor']
    engine = feed_site.engine()
    trig = _trigger_on(engine.dialect.name, 'role', 'ins')
    with engine.begin() as conn:
        for stmt in trig.drop:
            conn.exec_driver_sql(stmt)
    try:
        # Refused within the check's short cache (each API worker process
        # keeps its own for CAPTURE_CHECK_SECONDS), then by every worker.
        feed = f'/sync/changes?since={cursor}'
        for method, path, kw in (
                ('GET', feed, {}),
                ('GET', '/sync/digest/role', {}),
                ('POST', '/sync/digests',
                 {'json': {'digests': [{'type': 'role'}]}})):
            got = {}

            def refused(method=method, path=path, kw=kw, got=got):
                got['code'], got['body'] = _status_of(feed_site, method,
                                                      path, **kw)
                return got['code'] == 503

            # Four in a row: whichever worker answers.
            assert _until(lambda r=refused: all(r() for _ in range(4))), \
                (path, got)
            code, body = got['code'], got['body']
            assert code == 503, (path, body)
            err = body['error']
            assert err['capture_complete'] is False
            assert err['missing_triggers'] == [trig.name]
            assert trig.name in err['message']
            assert 'keystone-syncext-manage db_sync' in err['message']
        status = call('GET', '/sync/status')['status']
        assert status['capture_complete'] is False
        # A role made now goes unrecorded: the gap a reconcile must fill.
        new_roles(call, 1)
    finally:
        out = feed_site.run('keystone-syncext-manage', 'db_sync').stdout
    synced = time.monotonic()
    assert trig.name in out and 'new feed history' in out

    # Every worker's cached check is at most CAPTURE_CHECK_SECONDS old:
    # one worker answering 200 says nothing of the others' caches (CI
    # once saw the next request, answered by another worker, refused).
    time.sleep(max(0.0, history.CAPTURE_CHECK_SECONDS + 0.5 -
                   (time.monotonic() - synced)))
    assert _until(lambda: all(_status_of(
        feed_site, 'GET', '/sync/digest/role')[0] == 200 for _ in range(4)))
    after = caps(call)
    assert after['history_id'] != before['history_id']
    err = assert_gone(call, cursor)
    assert err['head_cursor'] == after['head_cursor']
    call('GET', f'/sync/changes?since={after["head_cursor"]}')
    assert call('GET', '/sync/status')['status']['capture_complete'] is True
