"""Who may call each /v3/sync route, on a real Keystone serving them.

Every route and method is called by each of seven personas with a valid
request, so that the policy is the only reason for a refusal, and each call
must get exactly the status of ``MATRIX``: the success status of the route,
403 for a token of the wrong role or scope, 401 without a token. The table
is checked against the policy defaults in ``keystone_syncext.policies`` and
against the routes the API serves. A refused call must leave the database
as it was (no captured change), and what an allowed write did is judged
through Keystone's ordinary API.

Last, Keystone's own create routes must still never honour an id given by
the caller: the sync API is the only way to choose one.
"""

import dataclasses
import uuid

from keystone.common.policies import base as ks_policies
import pytest
import requests
import sqlalchemy as sa

from keystone_syncext import openapi
from keystone_syncext import policies
from keystone_syncext.db import tables
from keystone_syncext.tests import personas

# Policy, not SQL: the first selected database backend is enough.
pytestmark = pytest.mark.backend_independent

# The columns of MATRIX.
WHO = ('system_admin', 'system_member', 'system_reader', 'domain_admin',
       'project_admin', 'project_member', 'anonymous')
assert set(WHO) == set(personas.PERSONAS)

RESOURCE = 'resources/{type}/{id}'

# Expected status by persona (the order of WHO).
#                                      sys  sys  sys  dom  prj  prj
#                                      adm  mem  rdr  adm  adm  mem  anon
MATRIX = {
    'GET /v3/sync':                   (200, 200, 200, 403, 403, 403, 401),
    'GET /v3/sync/status':            (200, 200, 200, 403, 403, 403, 401),
    'GET /v3/sync/changes':           (200, 403, 403, 403, 403, 403, 401),
    'GET /v3/sync/resources/{type}':  (200, 403, 403, 403, 403, 403, 401),
    f'GET /v3/sync/{RESOURCE}':       (200, 403, 403, 403, 403, 403, 401),
    f'PUT /v3/sync/{RESOURCE}':       (201, 403, 403, 403, 403, 403, 401),
    f'DELETE /v3/sync/{RESOURCE}':    (204, 403, 403, 403, 403, 403, 401),
    'POST /v3/sync/batch':            (200, 403, 403, 403, 403, 403, 401),
    'POST /v3/sync/rekey':            (200, 403, 403, 403, 403, 403, 401),
    'GET /v3/sync/digest/{type}':     (200, 403, 403, 403, 403, 403, 401),
    'POST /v3/sync/digests':          (200, 403, 403, 403, 403, 403, 401),
    'POST /v3/sync/tombstones':       (200, 403, 403, 403, 403, 403, 401),
}
# Routes that only read, whatever their method.
READS = {r for r in MATRIX if r.startswith('GET ')} | {
    'POST /v3/sync/digests', 'POST /v3/sync/tombstones'}

# Who passes each check string of the defaults (any other token: 403).
PASSES = {
    ks_policies.SYSTEM_READER: {'system_admin', 'system_member',
                                'system_reader'},
    ks_policies.SYSTEM_ADMIN: {'system_admin'},
}


def _success(route: str) -> int:
    return MATRIX[route][WHO.index('system_admin')]


def _key(path: str, method: str) -> str:
    return f'{method} {path}'


# --- the table itself --------------------------------------------------------

def test_matrix_covers_exactly_the_served_routes():
    served = {_key(p, m) for p, m in openapi.served_operations()}
    assert set(MATRIX) == served


def test_matrix_follows_the_policy_defaults():
    rules = openapi.policy_rules()
    derived = {}
    for route in MATRIX:
        method, path = route.split(' ', 1)
        rule = rules[(path, method)]
        derived[route] = tuple(
            401 if who == 'anonymous'
            else _success(route) if who in PASSES[rule.check_str]
            else 403
            for who in WHO)
    assert derived == MATRIX
    assert {r.check_str for r in policies.list_rules()} <= set(PASSES)


# --- one site, one token per persona ----------------------------------------

@pytest.fixture(scope='module')
def admin(current_site):
    return personas.admin_caller(current_site)


@pytest.fixture(scope='module')
def admin_session(current_site):
    return current_site.admin_session()


@pytest.fixture(scope='module')
def reader_role_id(admin):
    return {r['name']: r['id'] for r in
            admin('GET', '/roles').json()['roles']}['reader']


def _role(id_: str) -> dict:
    return {'id': id_, 'name': f'rbac-{id_[:12]}', 'domain_id': None,
            'description': None, 'options': {}, 'extra': {}}


def _fresh() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope='module')
def standing_role(admin):
    """A role for the calls that are refused to delete or re-key."""
    return _made_role(admin)


@dataclasses.dataclass
class Call:
    """A valid request for one route; for an allowed write, the role ids
    that must exist, and those that must be gone, after it."""

    path: str
    kw: dict = dataclasses.field(default_factory=dict)
    present: tuple = ()
    absent: tuple = ()


def _made_role(admin) -> str:
    """A role made through the sync API by the site's own admin."""
    id_ = _fresh()
    admin('PUT', f'/sync/resources/role/{id_}',
          json={'resource': _role(id_)})
    return id_


def _reads(reader_role_id: str) -> dict[str, Call]:
    """The requests of the routes that write nothing, by route."""
    return {
        'GET /v3/sync': Call('/sync'),
        'GET /v3/sync/status': Call('/sync/status'),
        'GET /v3/sync/changes': Call('/sync/changes',
                                     {'params': {'limit': 5}}),
        'GET /v3/sync/resources/{type}': Call('/sync/resources/role',
                                              {'params': {'limit': 5}}),
        f'GET /v3/sync/{RESOURCE}': Call(
            f'/sync/resources/role/{reader_role_id}'),
        'GET /v3/sync/digest/{type}': Call('/sync/digest/role'),
        'POST /v3/sync/digests': Call('/sync/digests', {'json': {
            'digests': [{'type': 'role'},
                        {'type': 'project', 'prefix': 'a'}]}}),
        'POST /v3/sync/tombstones': Call('/sync/tombstones', {'json': {
            'type': 'role', 'ids': [_fresh()]}}),
    }


def _put(_target) -> Call:
    id_ = _fresh()
    return Call(f'/sync/resources/role/{id_}',
                {'json': {'resource': _role(id_)}}, present=(id_,))


def _delete(target: str) -> Call:
    return Call(f'/sync/resources/role/{target}', absent=(target,))


def _batch(_target) -> Call:
    id_ = _fresh()
    return Call('/sync/batch', {'json': {'items': [
        {'op': 'upsert', 'type': 'role', 'id': id_,
         'resource': _role(id_)}]}}, present=(id_,))


def _rekey(target: str) -> Call:
    new = _fresh()
    return Call('/sync/rekey', {'json': {'type': 'role', 'from': target,
                                         'to': new}},
                present=(new,), absent=(target,))


# The routes that write, and whether their request removes a role that
# exists (``target``): the others make a role of their own.
WRITES = {f'PUT /v3/sync/{RESOURCE}': (_put, False),
          f'DELETE /v3/sync/{RESOURCE}': (_delete, True),
          'POST /v3/sync/batch': (_batch, False),
          'POST /v3/sync/rekey': (_rekey, True)}


def _call_for(route: str, admin, reader_role_id, standing_role,
              allowed: bool) -> Call:
    """The request; a refused call is judged by the database alone, so it
    deletes or re-keys a role that stands for the whole module (no write
    is made for it) and an allowed one a role of its own."""
    if route in WRITES:
        make, removes = WRITES[route]
        target = None
        if removes:
            target = _made_role(admin) if allowed else standing_role
        return make(target)
    reads = _reads(reader_role_id)
    if route not in reads:
        raise AssertionError(f'no request for {route}')
    return reads[route]


def _last_change_id(site) -> int:
    with site.engine().connect() as conn:
        return conn.execute(sa.select(sa.func.max(tables.change.c.id))
                            ).scalar() or 0


@pytest.mark.parametrize('who', WHO)
@pytest.mark.parametrize('route', list(MATRIX))
def test_who_may_call(current_site, admin_session, admin, tokens,
                      reader_role_id, standing_role, route, who):
    expected = MATRIX[route][WHO.index(who)]
    allowed = expected < 400
    method = route.split(' ', 1)[0]
    call = _call_for(route, admin, reader_role_id, standing_role, allowed)
    before = _last_change_id(current_site)

    resp = requests.request(method, current_site.url + call.path, timeout=30,
                            headers=personas.headers(tokens[who]), **call.kw)

    assert resp.status_code == expected, (route, who, resp.text)
    after = _last_change_id(current_site)
    if not allowed:
        # Keystone's error document, and nothing written.
        assert resp.json()['error']['code'] == expected
        assert after == before, f'{who} was refused {route} but it wrote'
        return
    assert (after > before) == (route not in READS), (route, before, after)
    # What the write did, through Keystone's ordinary API.
    for id_, status in [(i, 200) for i in call.present] + \
            [(i, 404) for i in call.absent]:
        got = admin_session.get(current_site.url + f'/roles/{id_}',
                                raise_exc=False).status_code
        assert got == status, (route, who, id_)
    if route == 'POST /v3/sync/batch':
        assert [r['status'] for r in resp.json()['results']] == [201]


def test_refused_calls_left_the_standing_role(current_site, admin_session,
                                              standing_role):
    assert admin_session.get(current_site.url + f'/roles/{standing_role}',
                             raise_exc=False).status_code == 200


# --- Keystone's own create routes --------------------------------------------

# What Keystone 30 does with an "id" in the body of its create routes:
# 'ignored' (created under an id of its own) or a 4xx status (refused).
ORDINARY_CREATE = {
    'projects': 'ignored',
    'roles': 'ignored',
    'users': 'ignored',
    'groups': 'ignored',
}


def _ordinary_body(collection: str, given: str) -> dict:
    name = f'given-{given[:12]}'
    body = {'id': given, 'name': name}
    if collection in ('projects', 'users', 'groups'):
        body['domain_id'] = 'default'
    return {collection[:-1]: body}


@pytest.mark.parametrize('collection', sorted(ORDINARY_CREATE))
def test_keystone_create_routes_never_honour_a_given_id(
        current_site, admin_session, collection):
    given = _fresh()
    sess = admin_session
    resp = sess.post(current_site.url + f'/{collection}', raise_exc=False,
                     json=_ordinary_body(collection, given))
    found = sess.get(current_site.url + f'/{collection}/{given}',
                     raise_exc=False)
    assert found.status_code == 404, f'{collection} honoured a given id'
    if ORDINARY_CREATE[collection] == 'ignored':
        assert resp.status_code == 201, resp.text
        made = resp.json()[collection[:-1]]['id']
        assert made != given
        assert sess.get(current_site.url + f'/{collection}/{made}',
                        raise_exc=False).status_code == 200
    else:
        assert resp.status_code == ORDINARY_CREATE[collection], resp.text
