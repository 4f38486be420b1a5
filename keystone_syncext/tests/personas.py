"""Who calls: one Keystone user per persona, with a token of its scope.

Every persona is made through Keystone's ordinary API by the site's system
admin: a user in the default domain, one role grant on its target, and a
password-authenticated token scoped to that target. ``anonymous`` has no
token.
"""

import secrets
import uuid

import requests

from keystone_syncext.testing import secrets as secret_scan

# persona: (role, target) -- target 'system', 'domain' (the default domain)
# or 'project' (a project made for the personas); None for anonymous.
PERSONAS = {
    'system_admin': ('admin', 'system'),
    'system_member': ('member', 'system'),
    'system_reader': ('reader', 'system'),
    'domain_admin': ('admin', 'domain'),
    'project_admin': ('admin', 'project'),
    'project_member': ('member', 'project'),
    'anonymous': None,
}


def admin_caller(site, sess=None):
    """``call(method, path, **kw)`` as the site's system admin (through
    ``sess`` when given), relative to ``site.url``; fails the test on any
    error status."""
    sess = sess or site.admin_session()

    def call(method, path, **kw):
        resp = sess.request(site.url + path, method, raise_exc=False, **kw)
        assert resp.status_code < 300, (method, path, resp.text)
        return resp
    return call


def checked_caller(site):
    """``call(method, path, expect=None, **kw)`` as the site's system
    admin, relative to ``site.url``; asserts the status when ``expect``
    is given and returns the response either way."""
    sess = site.admin_session()

    def call(method, path, expect=None, **kw):
        resp = sess.request(site.url + path, method, raise_exc=False, **kw)
        if expect is not None:
            assert resp.status_code == expect, (method, path, resp.text)
        return resp
    return call


def json_caller(site):
    """``call(method, path, expect=200, **kw)`` as the site's system
    admin: asserts the status, returns the JSON body (None if empty)."""
    checked = checked_caller(site)

    def call(method, path, expect=200, **kw):
        resp = checked(method, path, expect, **kw)
        return resp.json() if resp.content else None
    return call


def token(site, user_id: str, password: str, scope: dict) -> str:
    body = {'auth': {
        'identity': {'methods': ['password'], 'password': {
            'user': {'id': user_id, 'password': password}}},
        'scope': scope}}
    resp = requests.post(site.url + '/auth/tokens', json=body, timeout=30)
    assert resp.status_code == 201, resp.text
    tok = resp.headers['X-Subject-Token']
    secret_scan.REGISTRY.secret(tok, f'token of {user_id}')
    return tok


def make_tokens(site, admin_call=None) -> dict[str, str | None]:
    """A token per persona (None for anonymous)."""
    admin_call = admin_call or admin_caller(site)
    roles = {r['name']: r['id'] for r in
             admin_call('GET', '/roles').json()['roles']}
    project = admin_call('POST', '/projects', json={'project': {
        'name': f'p-{uuid.uuid4().hex[:8]}',
        'domain_id': 'default'}}).json()['project']
    out = {}
    for persona, spec in PERSONAS.items():
        if spec is None:
            out[persona] = None
            continue
        role, target = spec
        password = secrets.token_hex(12)
        secret_scan.REGISTRY.secret(password, f'password of {persona}')
        user = admin_call('POST', '/users', json={'user': {
            'name': f'{persona}-{uuid.uuid4().hex[:8]}',
            'domain_id': 'default', 'password': password}}).json()['user']
        grant, scope = {
            'system': ('/system', {'system': {'all': True}}),
            'domain': ('/domains/default', {'domain': {'id': 'default'}}),
            'project': (f'/projects/{project["id"]}',
                        {'project': {'id': project['id']}}),
        }[target]
        admin_call('PUT', f'{grant}/users/{user["id"]}/roles/{roles[role]}')
        out[persona] = token(site, user['id'], password, scope)
    return out


def headers(tok: str | None) -> dict:
    return {'X-Auth-Token': tok} if tok else {}
