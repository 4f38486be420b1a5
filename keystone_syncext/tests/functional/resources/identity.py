"""Representations and checks of the identity types (users, groups,
memberships, role assignments) for the identity resource suites."""

import secrets
import uuid

import bcrypt
import requests
import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.testing import sites

ORIGIN = {'OpenStack-Sync-Origin': 'site-a'}
# Tables whose row counts must not move when a write is refused.
WATCHED = ('user', 'local_user', 'password', 'user_option',
           'federated_user', 'group', 'user_group_membership', 'assignment',
           'system_assignment', 'revocation_event')


def new_id() -> str:
    return uuid.uuid4().hex


def hash_password(password: str) -> str:
    # The format Keystone's default hasher writes (bcrypt, cost as the
    # test sites are configured).
    return bcrypt.hashpw(password.encode(),
                         bcrypt.gensalt(sites.HASH_ROUNDS)).decode()


def login(site, user_id, password, scope=None):
    body = {'auth': {'identity': {'methods': ['password'], 'password': {
        'user': {'id': user_id, 'password': password}}}}}
    if scope:
        body['auth']['scope'] = scope
    return requests.post(site.url + '/auth/tokens', json=body, timeout=30)


def token_valid(site, admin, token) -> bool:
    resp = admin('GET', '/auth/tokens', headers={'X-Subject-Token': token})
    assert resp.status_code in (200, 404), resp.text
    return resp.status_code == 200


def snapshot(site) -> dict:
    """Row counts of the identity tables and the newest captured change."""
    with site.engine().connect() as conn:
        quote = conn.dialect.identifier_preparer.quote
        out = {name: conn.execute(sa.text(
            f'SELECT COUNT(*) FROM {quote(name)}')).scalar()
            for name in WATCHED}
        out['sync_change'] = conn.execute(
            sa.select(sa.func.max(tables.change.c.id))).scalar()
    return out


def user_rep(id_=None, name=None, password=None, **fields):
    id_ = id_ or new_id()
    rep = {
        'id': id_, 'domain_id': 'default', 'enabled': True,
        'default_project_id': None, 'options': {}, 'extra': {},
        'local': {'name': name or f'u-{id_[:10]}', 'passwords': [{
            'hash': hash_password(password or secrets.token_hex(8)),
            'created_at': '2026-01-02T03:04:05.123456Z',
            'expires_at': None, 'self_service': False}]},
        'federated': [],
    }
    rep.update(fields)
    return rep


def group_rep(id_=None, name=None, **fields):
    id_ = id_ or new_id()
    rep = {'id': id_, 'domain_id': 'default',
           'name': name or f'g-{id_[:10]}', 'description': 'synced',
           'extra': {}}
    rep.update(fields)
    return rep


def assignment_rep(type_, actor, target, role, inherited=False):
    rep = {'type': type_, 'actor_id': actor, 'target_id': target,
           'role_id': role, 'inherited': inherited}
    rep['id'] = ':'.join([type_, actor, target, role,
                          '1' if inherited else '0'])
    return rep


def listed(b, query):
    return b('GET', f'/role_assignments?{query}',
             expect=200).json()['role_assignments']
