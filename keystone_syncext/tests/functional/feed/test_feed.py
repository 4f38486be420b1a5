"""The change feed on a real Keystone: a reader that follows it misses
nothing (even when transactions commit out of capture order), pages
through many changes, long-polls, and is told to reconcile once its
cursor is older than the kept history. Runs once per database backend.
"""

import datetime
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.feed import cursors


def head(call):
    return call('GET', '/sync')['sync']['head_cursor']


def follow(call, since, types='role', limit=1000):
    """Every change after ``since`` (all pages) and the cursor after."""
    out = []
    while True:
        page = call('GET', f'/sync/changes?since={since}&limit={limit}'
                    f'&types={types}')
        out += page['changes']
        since = page['next']
        if not page['more']:
            return out, since


def _insert_roles(conn, ids):
    conn.execute(sa.text(
        "INSERT INTO role (id, name, domain_id, extra) "
        "VALUES (:id, :id, '<<null>>', '{}')"), [{'id': i} for i in ids])


def test_feed_items_carry_the_current_representation(call, feed_site):
    start = head(call)
    rid = uuid.uuid4().hex
    role = call('POST', '/roles', 201, json={'role': {'name': rid}})['role']
    call('PATCH', f'/roles/{role["id"]}', json={'role': {
        'description': 'later'}})
    call('DELETE', f'/roles/{role["id"]}', 204)
    other = call('POST', '/roles', 201, json={'role': {
        'name': uuid.uuid4().hex}})['role']
    changes, _ = follow(call, start)
    mine = [c for c in changes if c['id'] in (role['id'], other['id'])]
    assert [(c['id'], c['op']) for c in mine] == [
        (role['id'], 'create'), (role['id'], 'update'),
        (role['id'], 'delete'), (other['id'], 'create')]
    # Deleted since: no representation, for the create and update too.
    assert [c['resource'] for c in mine[:3]] == [None, None, None]
    assert mine[3]['resource']['name'] == other['name']
    assert mine[3]['hash']
    assert all(c['origin'] is None for c in mine)  # made at this site
    positions = [cursors.decode(c['cursor']).position for c in mine]
    assert positions == sorted(positions)


def test_feed_pages_through_10k_changes(call, feed_site):
    start = head(call)
    ids = [f'bulk{n:05d}{uuid.uuid4().hex[:8]}' for n in range(10_000)]
    with feed_site.engine().begin() as conn:
        _insert_roles(conn, ids)
    seen, pages, since = [], 0, start
    while True:
        page = call('GET', f'/sync/changes?since={since}&limit=1000'
                    '&types=role')
        pages += 1
        seen += [c['id'] for c in page['changes']]
        since = page['next']
        if not page['more']:
            break
    assert seen == ids  # each once, in capture order
    assert pages in (10, 11)
    # The last cursor is the head: nothing more.
    assert call('GET', f'/sync/changes?since={since}')['changes'] == []


def test_long_poll_returns_when_a_change_arrives(call, feed_site):
    since = head(call)
    rid = uuid.uuid4().hex

    def later():
        time.sleep(1.0)
        with feed_site.engine().begin() as conn:
            _insert_roles(conn, [rid])
    writer = threading.Thread(target=later)
    t0 = time.monotonic()
    writer.start()
    page = call('GET', f'/sync/changes?since={since}&wait=20')
    waited = time.monotonic() - t0
    writer.join()
    assert [c['id'] for c in page['changes']] == [rid]
    assert 0.9 < waited < 15
    # Nothing new: waits about as long as asked, then answers empty.
    t0 = time.monotonic()
    empty = call('GET', f'/sync/changes?since={page["next"]}&wait=1')
    assert empty['changes'] == [] and time.monotonic() - t0 >= 0.9


def test_waiting_long_poll_skips_other_types_and_blocks_no_writer(
        call, feed_site):
    """While a long-poll for roles waits, other commits come and go: each
    commits at once (the wait holds no read transaction open between its
    looks), the poll keeps waiting through them, and it still answers
    with the role committed after them."""
    since = head(call)
    rid = uuid.uuid4().hex
    commit_s = []

    def later():
        time.sleep(0.5)
        for _ in range(5):
            t0 = time.monotonic()
            call('POST', '/projects', expect=201, json={'project': {
                'name': f'poll-{uuid.uuid4().hex}'}})
            commit_s.append(time.monotonic() - t0)
            time.sleep(0.2)
        with feed_site.engine().begin() as conn:
            _insert_roles(conn, [rid])
    writer = threading.Thread(target=later)
    writer.start()
    page = call('GET', f'/sync/changes?since={since}&types=role&wait=20')
    writer.join()
    assert [c['id'] for c in page['changes']] == [rid]
    assert len(commit_s) == 5 and max(commit_s) < 3, commit_s


@pytest.mark.concurrent_writers
def test_out_of_order_commits_are_not_skipped(call, feed_site):
    """Transaction A captures first but commits last; a reader that read
    B's change in between still gets A's after its cursor."""
    since = head(call)
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    engine = feed_site.engine()
    conn_a = engine.connect()
    try:
        tx_a = conn_a.begin()
        _insert_roles(conn_a, [first])   # captured first (lower id)
        with engine.begin() as conn_b:
            _insert_roles(conn_b, [second])
        got_b, since_b = follow(call, since)
        assert [c['id'] for c in got_b] == [second]
        tx_a.commit()
    finally:
        conn_a.close()
    got_a, _ = follow(call, since_b)
    assert [c['id'] for c in got_a] == [first]
    with engine.connect() as conn:
        c = tables.change.c
        ids = dict(conn.execute(sa.select(c.resource_id, c.id).where(
            c.resource_id.in_([first, second]))).all())
    assert ids[first] < ids[second]  # it really was out of order


def test_cursor_past_the_kept_history_is_410_with_reconcile(call,
                                                            feed_site):
    old_cursor = head(call)
    rid = uuid.uuid4().hex
    with feed_site.engine().begin() as conn:
        _insert_roles(conn, [rid])
    follow(call, old_cursor)  # stamps it
    long_ago = datetime.datetime.now(datetime.UTC).replace(
        tzinfo=None) - datetime.timedelta(days=60)
    with feed_site.engine().begin() as conn:
        conn.execute(tables.change.update().values(changed_at=long_ago))
    feed_site.run('keystone-syncext-manage', 'purge')
    resp = call('GET', f'/sync/changes?since={old_cursor}', 410)
    err = resp['error']
    assert err['reconcile'] is True
    assert 'reconcile' in err['message']
    caps = call('GET', '/sync')['sync']
    assert err['oldest_valid_cursor'] == caps['oldest_valid_cursor']
    assert cursors.decode(caps['oldest_valid_cursor']).position >= \
        cursors.decode(old_cursor).position + 1
    # From the oldest valid cursor the feed works again.
    call('GET', f'/sync/changes?since={caps["oldest_valid_cursor"]}')
    # A cursor beyond this site's head (another site's, or a restored
    # database) is not trusted either.
    top = cursors.decode(caps['head_cursor'])
    future = cursors.encode(top.history, top.position + 1000)
    assert call('GET', f'/sync/changes?since={future}', 410)[
        'error']['reconcile'] is True
