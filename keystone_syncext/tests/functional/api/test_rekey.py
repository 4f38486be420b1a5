"""Re-key moves every reference Keystone keeps to an id, judged on the full
Keystone 29.1 and 30.0 schemas (a real site of each release, on every
backend for the current one).

What counts as a reference is in ``keystone_syncext.resources.references``:
the schema's foreign keys plus each type's reviewed columns. The coverage
test reads every id-like column of the live schema, so a Keystone release
that adds a reference (or a review that misses one) fails here rather
than leaving a dangling id at a joined spoke.
"""

import json
import re
import uuid

import pytest
import sqlalchemy as sa

from keystone_syncext import resources
from keystone_syncext.resources import references

ORIGIN = {'OpenStack-Sync-Origin': 'hub-1'}

# Column names that look like they hold an id of each re-keyable type.
LOOKS_LIKE = {
    'project': re.compile(r'(project_id|^parent_id$|^target_id$)'),
    'user': re.compile(r'(user_id|^actor_id$|^public_id$)'),
    'group': re.compile(r'(group_id|^actor_id$|^public_id$)'),
    'role': re.compile(r'role_ids?$'),
}


def _id():
    return uuid.uuid4().hex


def _reference_columns(conn, type_name):
    """Every (table, column) of the live schema named like a reference to
    ``type_name`` (its own table's primary key aside)."""
    inspector = sa.inspect(conn)
    own = resources.get(type_name).table_name
    found = set()
    for table in inspector.get_table_names():
        if table.startswith('sync_'):
            continue
        for col in inspector.get_columns(table):
            if table == own and col['name'] == 'id':
                continue
            if LOOKS_LIKE[type_name].search(col['name']):
                found.add((table, col['name']))
    return found


@pytest.mark.parametrize('type_name', sorted(LOOKS_LIKE))
def test_every_reference_in_the_schema_is_moved_or_reviewed(api_site,
                                                            type_name):
    rtype = resources.get(type_name)
    assert rtype.rekey_refs, f'{type_name} is re-keyable'
    with api_site.engine().connect() as conn:
        moved = set(references.columns(conn, rtype))
        moved |= set(references.JSON_LIST_REFERENCES.get(type_name, ()))
        in_schema = _reference_columns(conn, type_name)
        columns = {(t, c['name']) for t in sa.inspect(conn).get_table_names()
                   for c in sa.inspect(conn).get_columns(t)}
    reviewed = set(references.NOT_REFERENCES.get(type_name, {}))
    assert in_schema - moved - reviewed == set(), (
        f'columns that may hold a {type_name} id, neither moved by re-key '
        'nor reviewed in references.NOT_REFERENCES')
    # The review names columns that exist: a typo would cover nothing.
    assert set(rtype.rekey_refs) - columns == set()
    assert reviewed - columns == set()


def _oauth1_rows(api_site, project_id, role_ids):
    consumer, request, access = _id(), _id(), _id()
    with api_site.engine().begin() as conn:
        conn.execute(sa.text(
            'INSERT INTO consumer (id, description, secret, extra) '
            "VALUES (:id, 'rekey test', 'x', '{}')"), {'id': consumer})
        for table, id_, columns, values in (
                ('request_token', request,
                 'request_secret, requested_project_id', "'x', :p"),
                ('access_token', access,
                 'access_secret, authorizing_user_id, project_id',
                 "'x', 'u', :p")):
            conn.execute(sa.text(
                f'INSERT INTO {table} (id, {columns}, role_ids, '
                f'consumer_id) VALUES (:id, {values}, :r, :c)'),
                {'id': id_, 'p': project_id, 'r': json.dumps(role_ids),
                 'c': consumer})
    return request, access


def _oauth1_state(api_site, request, access):
    with api_site.engine().connect() as conn:
        req = conn.execute(sa.text(
            'SELECT requested_project_id, role_ids FROM request_token '
            'WHERE id = :id'), {'id': request}).one()
        acc = conn.execute(sa.text(
            'SELECT project_id, role_ids FROM access_token WHERE id = :id'),
            {'id': access}).one()
    return (req[0], json.loads(req[1])), (acc[0], json.loads(acc[1]))


def test_rekey_moves_limits_and_oauth1_tokens(call, api_site):
    project, role, other_role = _id(), _id(), _id()
    for rid in (role, other_role):
        call('PUT', f'/sync/resources/role/{rid}', 201, headers=ORIGIN,
             json={'resource': {'id': rid, 'name': f'r-{rid[:8]}',
                                'domain_id': None, 'description': None,
                                'options': {}, 'extra': {}}})
    call('PUT', f'/sync/resources/project/{project}', 201, headers=ORIGIN,
         json={'resource': {'id': project, 'name': f'p-{project[:8]}',
                            'description': '', 'enabled': True,
                            'domain_id': 'default', 'parent_id': 'default',
                            'tags': [], 'options': {}, 'extra': {}}})
    service = call('POST', '/services', 201, json={'service': {
        'type': f'rekey{project[:6]}', 'name': 'rekey'}}).json()['service']
    call('POST', '/registered_limits', 201, json={'registered_limits': [{
        'service_id': service['id'], 'resource_name': 'cores',
        'default_limit': 10}]})
    limit = call('POST', '/limits', 201, json={'limits': [{
        'service_id': service['id'], 'project_id': project,
        'resource_name': 'cores', 'resource_limit': 5}]}).json()['limits'][0]
    request, access = _oauth1_rows(api_site, project, [other_role, role])

    new_project, new_role = _id(), _id()
    moved = call('POST', '/sync/rekey', 200, headers=ORIGIN, json={
        'type': 'project', 'from': project, 'to': new_project}
    ).json()['rekey']['references']
    assert moved['limit.project_id'] == 1
    assert moved['request_token.requested_project_id'] == 1
    assert moved['access_token.project_id'] == 1
    moved = call('POST', '/sync/rekey', 200, headers=ORIGIN, json={
        'type': 'role', 'from': role, 'to': new_role}
    ).json()['rekey']['references']
    assert moved['request_token.role_ids'] == 1
    assert moved['access_token.role_ids'] == 1

    got = call('GET', f'/limits/{limit["id"]}', 200).json()['limit']
    assert got['project_id'] == new_project
    assert _oauth1_state(api_site, request, access) == (
        (new_project, [other_role, new_role]),
        (new_project, [other_role, new_role]))
