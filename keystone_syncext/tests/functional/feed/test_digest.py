"""Digests answered from stored content hashes, on a real Keystone: they
follow every write (made through Keystone's own v3 API, through the sync
API or by raw SQL), are rebuilt when the change log was purged past them
or another release computed them, and agree with a full listing of the
same site, computed here on its own. Once per backend and release.
"""

import concurrent.futures
import datetime
import hashlib
import os.path
import uuid

import pytest
import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.tests import personas

TYPES = ('role', 'project', 'user', 'group_membership', 'role_assignment')


def listed(call, type_name) -> dict:
    """id -> hash of every resource, from a full listing (computed from
    the representations, not from the stored hashes)."""
    out, marker = {}, None
    while True:
        page = call('GET', f'/sync/resources/{type_name}?limit=1000'
                    + (f'&marker={marker}' if marker else ''))
        out.update({i['id']: i['hash'] for i in page['items']})
        marker = page['next_marker']
        if not marker:
            return out


def expected(pairs: dict, prefix: str = '') -> tuple:
    """(count, hash, common prefix) of a digest node over ``pairs``."""
    ids = sorted((i for i in pairs if i.startswith(prefix)),
                 key=str.encode)
    h = hashlib.sha256()
    for i in ids:
        h.update(f'{i} {pairs[i]}\n'.encode())
    return (len(ids), h.hexdigest(),
            os.path.commonprefix([ids[0], ids[-1]]) if ids else None)


def digest(call, type_name, prefix=''):
    d = call('GET', f'/sync/digest/{type_name}?prefix={prefix}')['digest']
    return d['count'], d['hash'], d.get('common_prefix')


def assert_digests_agree(call, types=TYPES):
    for t in types:
        assert digest(call, t) == expected(listed(call, t)), t


def state(feed_site, type_name):
    c = tables.digest_state.c
    with feed_site.engine().connect() as conn:
        return conn.execute(sa.select(c.position, c.version, c.built_at)
                            .where(c.resource_type == type_name)).one()


def tamper(feed_site, type_name, id_):
    """Change one stored hash behind the extension's back."""
    c = tables.digest_hash.c
    with feed_site.engine().begin() as conn:
        assert conn.execute(tables.digest_hash.update().where(
            c.resource_type == type_name, c.resource_id == id_)
            .values(hash='0' * 64)).rowcount == 1


def test_digests_follow_writes_through_keystone_and_raw_sql(call, feed_site):
    assert_digests_agree(call)  # the first digests build the hashes
    built = {t: state(feed_site, t) for t in TYPES}

    role = call('POST', '/roles', 201, json={'role': {
        'name': f'dg-{uuid.uuid4().hex[:8]}'}})['role']
    call('PATCH', f'/roles/{role["id"]}', json={'role': {
        'description': 'changed'}})
    gone = call('POST', '/roles', 201, json={'role': {
        'name': f'dg-{uuid.uuid4().hex[:8]}'}})['role']
    call('DELETE', f'/roles/{gone["id"]}', 204)
    project = call('POST', '/projects', 201, json={'project': {
        'name': f'dg-{uuid.uuid4().hex[:8]}', 'domain_id': 'default'}})[
        'project']
    call('PUT', f'/projects/{project["id"]}/tags/blue', 201)
    user = call('POST', '/users', 201, json={'user': {
        'name': f'dg-{uuid.uuid4().hex[:8]}', 'domain_id': 'default',
        'password': uuid.uuid4().hex}})['user']
    group = call('POST', '/groups', 201, json={'group': {
        'name': f'dg-{uuid.uuid4().hex[:8]}', 'domain_id': 'default'}})[
        'group']
    call('PUT', f'/groups/{group["id"]}/users/{user["id"]}', 204)
    call('PUT', f'/projects/{project["id"]}/users/{user["id"]}/roles/'
         f'{role["id"]}', 204)
    raw = uuid.uuid4().hex
    with feed_site.engine().begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO role (id, name, domain_id, extra) "
            "VALUES (:id, :id, '<<null>>', '{}')"), {'id': raw})

    assert_digests_agree(call)
    roles = listed(call, 'role')
    assert raw in roles and role['id'] in roles and gone['id'] not in roles
    # Caught up from the log, not rebuilt: the build time stays.
    for t in TYPES:
        now = state(feed_site, t)
        assert now.built_at == built[t].built_at
        assert now.position > built[t].position, t
        assert now.version == built[t].version

    # A revoke and a delete are caught up too.
    call('DELETE', f'/projects/{project["id"]}/users/{user["id"]}/roles/'
         f'{role["id"]}', 204)
    call('DELETE', f'/users/{user["id"]}', 204)
    assert_digests_agree(call)


def test_stored_hashes_are_what_is_answered_until_a_change(call, feed_site):
    """Proof that digests come from the stored hashes, and that a change
    of the resource replaces its stored hash."""
    rid = call('POST', '/roles', 201, json={'role': {
        'name': f'dg-{uuid.uuid4().hex[:8]}'}})['role']['id']
    assert_digests_agree(call, ['role'])
    tamper(feed_site, 'role', rid)
    honest = listed(call, 'role')
    assert digest(call, 'role') == expected(dict(honest, **{rid: '0' * 64}))
    call('PATCH', f'/roles/{rid}', json={'role': {'description': 'x'}})
    assert_digests_agree(call, ['role'])


def test_rebuilt_for_another_release(call, feed_site):
    rid = next(iter(listed(call, 'role')))
    assert_digests_agree(call, ['role'])
    tamper(feed_site, 'role', rid)
    with feed_site.engine().begin() as conn:
        conn.execute(tables.digest_state.update().where(
            tables.digest_state.c.resource_type == 'role')
            .values(version='computed by another release'))
    assert_digests_agree(call, ['role'])
    assert state(feed_site, 'role').version != 'computed by another release'


def test_rebuilt_when_the_log_was_purged_past_them(call, feed_site):
    rid = next(iter(listed(call, 'role')))
    assert_digests_agree(call, ['role'])
    tamper(feed_site, 'role', rid)
    before = state(feed_site, 'role')
    # A change the stored hashes have not seen, then purged away: it can
    # no longer be caught up from the log.
    other = call('POST', '/roles', 201, json={'role': {
        'name': f'dg-{uuid.uuid4().hex[:8]}'}})['role']['id']
    call('GET', '/sync/changes?limit=1')  # stamps it
    long_ago = datetime.datetime.now(datetime.UTC).replace(
        tzinfo=None) - datetime.timedelta(days=60)
    with feed_site.engine().begin() as conn:
        conn.execute(tables.change.update().values(changed_at=long_ago))
    feed_site.run('keystone-syncext-manage', 'purge')
    assert_digests_agree(call, ['role'])
    assert other in listed(call, 'role')
    after = state(feed_site, 'role')
    assert after.position > before.position
    assert after.built_at > before.built_at


def test_two_identical_revocation_events_are_one(call, feed_site):
    """Keystone can record the same revocation twice in one second (a
    user's password changed, then the user revoked again): two rows, one
    id (keystone_syncext.common.revocation). Their stored hash is one,
    when the type is rebuilt and when caught up; before, the digest broke
    on the second (500: a unique key of sync_digest_hash)."""
    user = uuid.uuid4().hex
    when = datetime.datetime.now(datetime.UTC).replace(tzinfo=None,
                                                       microsecond=0)
    row = {'user_id': user, 'issued_before': when, 'revoked_at': when}
    with feed_site.engine().begin() as conn:
        events = sa.Table('revocation_event', sa.MetaData(),
                          autoload_with=conn)
        conn.execute(events.insert(), [row, row])
    assert_digests_agree(call, ['revocation_event'])       # caught up
    with feed_site.engine().begin() as conn:
        conn.execute(tables.digest_state.delete().where(
            tables.digest_state.c.resource_type == 'revocation_event'))
    assert_digests_agree(call, ['revocation_event'])       # rebuilt
    assert sum(user in i for i in listed(call, 'revocation_event')) == 1


def test_concurrent_first_digests_build_once_and_agree(call, feed_site):
    with feed_site.engine().begin() as conn:
        conn.execute(tables.digest_state.delete().where(
            tables.digest_state.c.resource_type == 'project'))
        conn.execute(tables.digest_hash.delete().where(
            tables.digest_hash.c.resource_type == 'project'))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: digest(call, 'project'), range(4)))
    assert got == [expected(listed(call, 'project'))] * 4


def test_prefixes_are_exact_ranges(call, feed_site):
    """Deeper nodes read a range of the stored ids: every prefix of a few
    ids agrees with the listing, including ids with ':' and the last
    character of a prefix at the top of its range."""
    pairs = listed(call, 'role_assignment')
    some = sorted(pairs)[:3]
    for id_ in some:
        for n in (1, 5, 12, 13, len(id_) - 1, len(id_)):
            assert digest(call, 'role_assignment', id_[:n]) == expected(
                pairs, id_[:n]), id_[:n]
    # Beyond the Basic Multilingual Plane (which MySQL's utf8 tables and
    # connections cannot hold), at the end of a prefix and before it.
    for prefix in ('User\U0010ffff', 'Use\U0001f600r', '\uffff'):
        assert digest(call, 'role_assignment', prefix) == (
            0, hashlib.sha256().hexdigest(), None), prefix
        assert call('GET', '/sync/resources/role_assignment?prefix='
                    + prefix)['items'] == []


def test_many_digests_in_one_request_are_the_single_ones(call):
    """POST /v3/sync/digests answers each node exactly as GET does."""
    ids = sorted(listed(call, 'role_assignment'))
    nodes = [{'type': t} for t in TYPES] + [
        {'type': 'role_assignment', 'prefix': ids[0][:13]},
        {'type': 'role_assignment', 'prefix': ids[0]},
        {'type': 'project', 'prefix': ''},
        {'type': 'role', 'prefix': 'User\U0010ffff'},
        {'type': 'role', 'prefix': 'no-such-prefix'},
        {'type': 'user'},  # asked twice: answered twice
    ]

    got = call('POST', '/sync/digests', json={'digests': nodes})['digests']

    single = [call('GET', f'/sync/digest/{n["type"]}',
                   params={'prefix': n.get('prefix', '')})['digest']
              for n in nodes]
    assert got == single
    assert [(d['type'], d['prefix']) for d in got] == [
        (n['type'], n.get('prefix', '')) for n in nodes]
    assert got[len(TYPES) + 1]['items'] == [
        {'id': ids[0], 'hash': listed(call, 'role_assignment')[ids[0]]}]


@pytest.mark.parametrize('body,status,says', [
    ('not json', 400, 'valid JSON'),
    ({}, 400, "'digests' is a required property"),
    ({'digests': []}, 400, 'invalid digest request'),
    ({'digests': [{'prefix': 'a'}]}, 400, "'type' is a required property"),
    ({'digests': [{'type': 'role', 'depth': 2}]}, 400,
     'Additional properties are not allowed'),
    ({'digests': [{'type': 'role', 'prefix': 7}]}, 400,
     'invalid digest request'),
    ({'digests': [{'type': 'role', 'prefix': 'x' * 256}]}, 400,
     'invalid digest request'),
    ({'digests': [{'type': 'role'}] * 101}, 400,
     'at most 100 digests ([sync] max_digests_per_request), not 101'),
    ({'digests': [{'type': 'role'}, {'type': 'credential'}]}, 404,
     "unknown resource type 'credential'"),
])
def test_many_digests_refuse_a_bad_request(feed_site, body, status, says):
    checked = personas.checked_caller(feed_site)
    kw = ({'data': body, 'headers': {'Content-Type': 'application/json'}}
          if isinstance(body, str) else {'json': body})
    resp = checked('POST', '/sync/digests', status, **kw)
    error = resp.json()['error']
    assert error['code'] == status and says in error['message'], error
