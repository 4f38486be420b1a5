"""Token revocation events through /v3/sync, on real Keystone processes
(every backend: the capture triggers compute the event's id in SQL).

An event Keystone makes (a logout) is listed under the id capture gave
its change; copied to the other site it is stored with its original
times, under the same id, and seen by Keystone there (the token is
refused); copying it again changes nothing; deleting it leaves a
tombstone. What is not an event of this form is refused, writing nothing.
"""

import sqlalchemy as sa

from keystone_syncext.common import revocation
from keystone_syncext.db import tables
from keystone_syncext.tests.functional.resources.client import hex_id
from keystone_syncext.tests.functional.resources.client import refused

TYPE = 'revocation_event'


def _events(client):
    return {i['id']: i for i in client.call(
        'GET', f'/sync/resources/{TYPE}?limit=1000',
        expect=200).json()['items']}


def _captured_ids(client, after):
    c = tables.change.c
    with client.site.engine().connect() as conn:
        return [r.resource_id for r in conn.execute(
            sa.select(c.resource_id).where(
                c.resource_type == TYPE, c.id > after).order_by(c.id))]


def _rows(client, audit_id):
    with client.site.engine().connect() as conn:
        return conn.execute(sa.text(
            'SELECT issued_before, revoked_at, expires_at, audit_id, '
            'audit_chain_id, project_id FROM revocation_event WHERE '
            'audit_id = :a OR audit_chain_id = :a'), {'a': audit_id}).all()


def _logout_at(client):
    """A user of the site logs in and out: Keystone records the token's
    audit id and audit chain. Returns the token and its audit id."""
    name, password = hex_id('rv-'), hex_id('pw-')
    client.call('POST', '/users', expect=201, json={'user': {
        'name': name, 'password': password, 'domain_id': 'default'}})
    resp = client.call('POST', '/auth/tokens', expect=201, json={'auth': {
        'identity': {'methods': ['password'], 'password': {'user': {
            'name': name, 'domain': {'id': 'default'},
            'password': password}}}}}, authenticated=False)
    token = resp.headers['X-Subject-Token']
    audit_id = resp.json()['token']['audit_ids'][0]
    client.call('DELETE', '/auth/tokens', expect=204,
                headers={'X-Subject-Token': token})
    return token, audit_id


def test_an_event_keeps_its_id_and_times_at_the_other_site(a, b):
    before_a, before_b = a.last_change(), b.last_change()
    token, audit_id = _logout_at(a)
    events = _events(a)
    mine = {i: e for i, e in events.items()
            if audit_id in (e['resource']['audit_id'],
                            e['resource']['audit_chain_id'])}
    assert len(mine) == 2, events
    # Capture named each change as the resource module names the event.
    assert set(mine) <= set(_captured_ids(a, before_a))
    for id_, env in mine.items():
        assert revocation.identity(env['resource']) == id_
        a.copy_to(b, TYPE, id_)
    # Stored with the original times, under the same ids, and captured so.
    assert set(_rows(b, audit_id)) == set(_rows(a, audit_id))
    assert set(_captured_ids(b, before_b)) == set(mine)
    # (That Keystone honours them is checked in the agent suite, with
    # sites sharing their token keys.)
    # Again: nothing changes.
    mark = b.last_change()
    for id_ in mine:
        assert b.put(TYPE, id_, mine[id_]['resource']).status_code == 200
    assert b.last_change() == mark
    # Deleted (as a purge elsewhere would be): gone, with a tombstone.
    id_ = sorted(mine)[0]
    b.delete(TYPE, id_)
    b.get(TYPE, id_, expect=404)
    assert b.tombstone(TYPE, id_) is not None


def _event(**fields):
    rep = {c: None for c in revocation.COLUMNS}
    rep.update(issued_before='2026-12-07T00:29:17.000000Z',
               revoked_at='2026-12-07T00:29:17.000000Z', **fields)
    rep['id'] = revocation.identity(rep)
    return rep


def test_what_is_not_an_event_is_refused(b):
    rep = _event(user_id=hex_id())
    # A fraction of a second: Keystone makes none, MySQL could not store.
    frac = dict(rep, revoked_at='2026-12-07T00:29:17.500000Z')
    assert "'revoked_at'" in refused(b, TYPE, rep['id'], frac, 400)[
        'message']
    # An id that is not the one the fields make.
    other = _event(user_id=hex_id())
    assert 'names id' in refused(b, TYPE, rep['id'], other, 400)['message']
    # Not of the form at all.
    resp = b.put(TYPE, 'not-an-event', rep)
    assert resp.status_code == 400
    assert 'YYYYMMDDHHMMSS' in resp.json()['error']['message']
    # An audit id longer than Keystone's column.
    long_audit = _event(audit_id='x' * 33)
    refused(b, TYPE, long_audit['id'], long_audit, 400)
