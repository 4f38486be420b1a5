"""keystone-sync end to end: a hub on Keystone 30.0, spoke1 on 30.0 and
spoke2 on 29.1, each a real Keystone process on its own SQLite database,
synced by the real command line (a subprocess), judged through Keystone's
ordinary v3 API (and the sync API's content hashes, which are the same
bytes on both releases when the fields are the same).

Every spoke was bootstrapped on its own and joined first, as an operator
would; the agent uses a spoke-local account at each spoke.
"""

import concurrent.futures
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

from keystone_syncext.testing import backends
from keystone_syncext.testing import secrets as secret_scan
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests import personas

AGENT = [sys.executable, '-m', 'keystone_syncext.agent.cli']
RUN_TIMEOUT = 240


class World:
    """The three sites, their clouds.yaml, and the agent's command line."""

    def __init__(self, workdir, hub, spokes):
        self.dir = workdir
        self.hub = hub
        self.spokes = spokes
        self.state = f'sqlite:///{workdir}/state.sqlite'
        self.conf = os.path.join(workdir, 'keystone-sync.conf')
        self.log = os.path.join(workdir, 'agent.log')
        self.env = dict(os.environ, OS_CLIENT_CONFIG_FILE=os.path.join(
            workdir, 'clouds.yaml'))
        self._sessions = {}
        self._runs = 0

    def session(self, site):
        """A system-admin session per site, kept: a token per request
        would make every check slow."""
        if site.name not in self._sessions:
            sess = site.admin_session()
            secret_scan.REGISTRY.secret(sess.get_token(),
                                        f'admin token at {site.name}')
            self._sessions[site.name] = sess
        return self._sessions[site.name]

    def write_conf(self, path=None, **extra):
        opts = dict(hub='hub', spokes='spoke1,spoke2', state=self.state,
                    poll_wait=1, retry_initial=0.2, retry_max=2,
                    once_attempts=3, log_file=self.log)
        opts.update(extra)
        with open(path or self.conf, 'w') as f:
            f.write('[DEFAULT]\n' + ''.join(f'{k} = {v}\n'
                                            for k, v in opts.items()))

    def cmd(self, *argv, conf=None):
        return AGENT + ['--config-file', conf or self.conf, *argv]

    def agent(self, *argv, check=True, timeout=RUN_TIMEOUT, conf=None):
        proc = subprocess.run(self.cmd(*argv, conf=conf), env=self.env,
                              capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        what = f'keystone-sync {argv[0]}'
        secret_scan.REGISTRY.output(f'{what} stdout', proc.stdout)
        secret_scan.REGISTRY.output(f'{what} stderr', proc.stderr)
        if check:
            assert proc.returncode == 0, (proc.stdout, proc.stderr[-3000:])
        return proc

    def sync(self, *extra):
        return self.agent('run', '--once', *extra)

    def start_agent(self, *extra):
        """The agent in the background; its stderr goes to a file in the
        work directory (``proc.stderr_path``), scanned for secrets with
        the other logs."""
        self._runs += 1
        path = os.path.join(self.dir, f'agent-run-{self._runs}.stderr.log')
        with open(path, 'w') as err:
            proc = subprocess.Popen(self.cmd('run', *extra), env=self.env,
                                    stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL,
                                    stderr=err, text=True)
        proc.stderr_path = path
        return proc

    def status(self):
        out = self.agent('status', '--json').stdout
        return {s['spoke']: s for s in json.loads(out)['spokes']}

    # -- judging ------------------------------------------------------

    def every(self):
        return [self.hub] + self.spokes

    def sync_items(self, site, type_):
        """id -> content hash of every resource of ``type_`` at ``site``."""
        sess, out, marker = self.session(site), {}, None
        while True:
            params = {'limit': 1000, **({'marker': marker} if marker
                                        else {})}
            page = sess.get(f'{site.url}/sync/resources/{type_}',
                            params=params).json()
            out.update({i['id']: i['hash'] for i in page['items']})
            marker = page['next_marker']
            if not marker:
                return out

    def assert_converged(self, types=None):
        """Every hub resource is at every spoke with the same hash.
        Spokes may hold more: their own agent account and its grant."""
        for type_ in types or TYPES:
            want = self.sync_items(self.hub, type_)
            for spoke in self.spokes:
                have = self.sync_items(spoke, type_)
                missing = {i for i in want if i not in have}
                differ = {i for i in want if i in have and have[i] != want[i]}
                assert not missing and not differ, (spoke.name, type_,
                                                    missing, differ)


TYPES = ('domain', 'project', 'role', 'implied_role', 'user', 'group',
         'group_membership', 'role_assignment', 'application_credential',
         'mapping', 'identity_provider', 'federation_protocol')


@pytest.fixture(scope='module')
def world(secret_scan, tmp_path_factory, sqlite_dir, schema_template,
          server_kind):
    workdir = str(tmp_path_factory.mktemp('agent'))
    # The agent's log and its runs' stderr, each site's Keystone and
    # uWSGI logs: all below the work directory.
    secret_scan.log_dir(workdir)
    db = backends.get('sqlite', sqlite_dir)
    specs = [('hub', conftest.VENV30), ('spoke1', conftest.VENV30),
             ('spoke2', conftest.release_venv(conftest.PREVIOUS))]
    made = []

    def new_site(name, venv):
        site, dbname = conftest._new_site(
            db, schema_template(db, venv), f'{workdir}/{name}', name, venv,
            app=sites.SYNC_APP, server_kind=server_kind,
            hub_site_id=None if name == 'hub' else 'hub')
        made.append((db, site, dbname))
        return site

    try:
        # Side by side: most of a site's setup is waiting on processes.
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            hub, *spokes = [f.result() for f in [
                pool.submit(new_site, name, venv) for name, venv in specs]]
        w = World(workdir, hub, spokes)
        clouds = {'hub': hub.admin_auth()}
        for spoke in spokes:
            clouds[spoke.name] = spoke.add_agent_account()
        for name, auth in clouds.items():
            secret_scan.secret(auth['password'], f'password of {name}')
        for site in w.every():
            secret_scan.secret(site.admin_password,
                               f'bootstrap password of {site.name}')
        sites.write_clouds_yaml(os.path.join(workdir, 'clouds.yaml'),
                                clouds)
        w.write_conf()
        for spoke in spokes:
            w.agent('join', '--spoke', spoke.name)
        w.sync()
        for spoke in spokes:
            # Joined and synced: the spoke's admin is the hub's admin.
            spoke.admin_password = hub.admin_password
        for site in w.every():
            # The spokes' own admin password hashes, before the hub's
            # replaced them.
            secret_scan.hashes_of(site.engine())
        yield w
    finally:
        try:
            for _, site, _ in made:
                secret_scan.hashes_of(site.engine())
            _scan_conflict_records(secret_scan, workdir)
        finally:
            conftest._stop_and_drop(made)


def _scan_conflict_records(secret_scan, workdir):
    """The conflict records of the agent's state database (kept for
    weeks, shown by ``keystone-sync conflicts``) go through the secret
    scan: they keep secret fields as keyed fingerprints, never a hash.
    The outbox and pending items carry hashes in transit by design."""
    path = os.path.join(workdir, 'state.sqlite')
    if not os.path.exists(path):
        return
    engine = sa.create_engine(f'sqlite:///{path}')
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text('SELECT * FROM agent_conflict'))
            text = '\n'.join(repr(tuple(r)) for r in rows)
    finally:
        engine.dispose()
    secret_scan.output('state database: agent_conflict', text)


def _hex():
    return uuid.uuid4().hex


def _token(site, identity, scope=None):
    body = {'auth': {'identity': identity}}
    if scope:
        body['auth']['scope'] = scope
    resp = requests.post(site.url + '/auth/tokens', json=body, timeout=60)
    secret_scan.REGISTRY.secret(resp.headers.get('X-Subject-Token'),
                                f'token issued by {site.name}')
    return resp


def _secret(value: str, what: str) -> str:
    """``value``, remembered as a secret the logs must not hold."""
    secret_scan.REGISTRY.secret(value, what)
    return value


def _password(user_id, password):
    return {'methods': ['password'],
            'password': {'user': {'id': user_id, 'password': password}}}


def make_everything(hub):
    """One of every v1 type at the hub, through the ordinary API; returns
    {label: (ordinary GET path, sync type, sync id)}."""
    call = personas.admin_caller(hub)

    def post(path, key, body):
        return call('POST', path, json={key: body}).json()[key]

    tag = _hex()[:8]
    dom = post('/domains', 'domain', {'name': f'd-{tag}'})
    parent = post('/projects', 'project', {'name': f'p-{tag}',
                                           'domain_id': dom['id'],
                                           'tags': ['a', 'b']})
    child = post('/projects', 'project', {'name': f'c-{tag}',
                                          'domain_id': dom['id'],
                                          'parent_id': parent['id']})
    role = post('/roles', 'role', {'name': f'r-{tag}'})
    implied = post('/roles', 'role', {'name': f'i-{tag}'})
    dom_role = post('/roles', 'role', {'name': f'dr-{tag}',
                                       'domain_id': dom['id']})
    call('PUT', f'/roles/{role["id"]}/implies/{implied["id"]}')
    password = _secret(f'pw-{tag}', 'password of a user')
    user = post('/users', 'user', {'name': f'u-{tag}', 'domain_id': dom['id'],
                                   'password': password,
                                   'default_project_id': parent['id']})
    group = post('/groups', 'group', {'name': f'g-{tag}',
                                      'domain_id': dom['id']})
    call('PUT', f'/groups/{group["id"]}/users/{user["id"]}')
    call('PUT', f'/projects/{parent["id"]}/users/{user["id"]}/roles/'
         f'{role["id"]}')
    call('PUT', f'/domains/{dom["id"]}/groups/{group["id"]}/roles/'
         f'{implied["id"]}')
    call('PUT', f'/OS-INHERIT/domains/{dom["id"]}/users/{user["id"]}/roles/'
         f'{implied["id"]}/inherited_to_projects')
    call('PUT', f'/system/users/{user["id"]}/roles/{implied["id"]}')
    mapping_id, idp_id = f'm-{tag}', f'idp-{tag}'
    call('PUT', f'/OS-FEDERATION/mappings/{mapping_id}', json={'mapping': {
        'rules': [{'local': [{'user': {'name': '{0}'}}],
                   'remote': [{'type': 'REMOTE_USER'}]}]}})
    call('PUT', f'/OS-FEDERATION/identity_providers/{idp_id}',
         json={'identity_provider': {'enabled': True,
                                     'remote_ids': [f'https://{tag}'],
                                     'domain_id': dom['id']}})
    call('PUT', f'/OS-FEDERATION/identity_providers/{idp_id}/protocols/'
         'saml2', json={'protocol': {'mapping_id': mapping_id}})
    # An application credential, made by its user.
    tok = _token(hub, _password(user['id'], password),
                 {'project': {'id': parent['id']}})
    assert tok.status_code == 201, tok.text
    secret = _secret(f'secret-{tag}', 'application credential secret')
    ac = requests.post(
        f'{hub.url}/users/{user["id"]}/application_credentials',
        headers={'X-Auth-Token': tok.headers['X-Subject-Token']},
        json={'application_credential': {'name': f'ac-{tag}',
                                         'secret': secret}},
        timeout=60)
    assert ac.status_code == 201, ac.text
    ac = ac.json()['application_credential']
    u, g, p, r, i = (user['id'], group['id'], parent['id'], role['id'],
                     implied['id'])
    made = {
        'domain': (f'/domains/{dom["id"]}', 'domain', dom['id']),
        'project': (f'/projects/{p}', 'project', p),
        'child project': (f'/projects/{child["id"]}', 'project',
                          child['id']),
        'role': (f'/roles/{r}', 'role', r),
        'domain role': (f'/roles/{dom_role["id"]}', 'role', dom_role['id']),
        'implied role': (f'/roles/{r}/implies/{i}', 'implied_role',
                         f'{r}:{i}'),
        'user': (f'/users/{u}', 'user', u),
        'group': (f'/groups/{g}', 'group', g),
        'membership': (f'/groups/{g}/users/{u}', 'group_membership',
                       f'{u}:{g}'),
        'project grant': (f'/projects/{p}/users/{u}/roles/{r}',
                          'role_assignment', f'UserProject:{u}:{p}:{r}:0'),
        'domain group grant': (f'/domains/{dom["id"]}/groups/{g}/roles/{i}',
                               'role_assignment',
                               f'GroupDomain:{g}:{dom["id"]}:{i}:0'),
        'inherited grant': (
            f'/OS-INHERIT/domains/{dom["id"]}/users/{u}/roles/{i}/'
            'inherited_to_projects', 'role_assignment',
            f'UserDomain:{u}:{dom["id"]}:{i}:1'),
        'system grant': (f'/system/users/{u}/roles/{i}', 'role_assignment',
                         f'UserSystem:{u}:system:{i}:0'),
        'application credential': (
            f'/users/{u}/application_credentials/{ac["id"]}',
            'application_credential', ac['id']),
        'mapping': (f'/OS-FEDERATION/mappings/{mapping_id}', 'mapping',
                    mapping_id),
        'identity provider': (f'/OS-FEDERATION/identity_providers/{idp_id}',
                              'identity_provider', idp_id),
        'protocol': (f'/OS-FEDERATION/identity_providers/{idp_id}/protocols/'
                     'saml2', 'federation_protocol', f'{idp_id}:saml2'),
    }
    return made, {'user': user, 'password': password, 'project': parent,
                  'role': role, 'implied': implied, 'domain': dom,
                  'group': group, 'app_cred': ac, 'secret': secret}


def make_some(hub):
    """A project, a role, a user and a grant at the hub, in the format of
    ``make_everything``: for tests about delivery, not about types."""
    call = personas.admin_caller(hub)
    tag = _hex()[:8]
    p = call('POST', '/projects', json={'project': {
        'name': f'sp-{tag}', 'domain_id': 'default'}}).json()['project']['id']
    r = call('POST', '/roles', json={'role': {
        'name': f'sr-{tag}'}}).json()['role']['id']
    password = _secret(f'pw-{tag}', 'password of a user')
    u = call('POST', '/users', json={'user': {
        'name': f'su-{tag}', 'domain_id': 'default',
        'password': password}}).json()['user']['id']
    call('PUT', f'/projects/{p}/users/{u}/roles/{r}')
    return {'project': (f'/projects/{p}', 'project', p),
            'role': (f'/roles/{r}', 'role', r),
            'user': (f'/users/{u}', 'user', u),
            'grant': (f'/projects/{p}/users/{u}/roles/{r}',
                      'role_assignment', f'UserProject:{u}:{p}:{r}:0')}


def _ordinary(world, site, path):
    resp = world.session(site).get(site.url + path, raise_exc=False)
    body = resp.json() if resp.content else None
    return resp.status_code, body


def _comparable(body):
    """An ordinary API body without what differs by site: links."""
    if not isinstance(body, dict):
        return body
    return {k: _comparable(v) for k, v in body.items() if k != 'links'}


def assert_same_everywhere(world, made):
    hashes = {}

    def hash_of(site, type_, id_):
        if (site.name, type_) not in hashes:
            hashes[site.name, type_] = world.sync_items(site, type_)
        return hashes[site.name, type_].get(id_)

    for label, (path, type_, id_) in made.items():
        status, body = _ordinary(world, world.hub, path)
        assert status in (200, 204), (label, status)
        hub_hash = hash_of(world.hub, type_, id_)
        assert hub_hash, label
        for spoke in world.spokes:
            s_status, s_body = _ordinary(world, spoke, path)
            assert s_status == status, (spoke.name, label, s_status)
            if body and s_body:
                a, b = _comparable(body), _comparable(s_body)
                for key in a:  # fields both releases show
                    common = set(a[key]) & set(b[key]) \
                        if isinstance(a[key], dict) else None
                    if common is not None:
                        assert {k: a[key][k] for k in common} == \
                            {k: b[key][k] for k in common}, (spoke.name,
                                                             label)
            assert hash_of(spoke, type_, id_) == hub_hash, (spoke.name,
                                                            label)


def assert_gone_everywhere(world, made):
    for site in world.every():
        held = {t: world.sync_items(site, t)
                for t in {t for _, t, _ in made.values()}}
        for label, (path, type_, id_) in made.items():
            status, _ = _ordinary(world, site, path)
            assert status == 404, (site.name, label, status)
            assert id_ not in held[type_], (site.name, label)


def test_create_update_delete_of_every_type_reach_both_spokes(world):
    made, ctx = make_everything(world.hub)
    world.sync()
    assert_same_everywhere(world, made)

    call = personas.admin_caller(world.hub)
    u, p = ctx['user']['id'], ctx['project']['id']
    call('PATCH', f'/projects/{p}', json={'project': {
        'description': 'changed', 'tags': ['c']}})
    call('PATCH', f'/users/{u}', json={'user': {'email': 'u@example.com'}})
    call('PATCH', f'/roles/{ctx["role"]["id"]}',
         json={'role': {'description': 'changed'}})
    call('PATCH', f'/groups/{ctx["group"]["id"]}',
         json={'group': {'description': 'changed'}})
    idp = made['identity provider'][2]
    call('PATCH', f'/OS-FEDERATION/identity_providers/{idp}',
         json={'identity_provider': {'description': 'changed'}})
    call('PATCH', f'/OS-FEDERATION/mappings/{made["mapping"][2]}',
         json={'mapping': {'rules': [{
             'local': [{'user': {'name': 'x{0}'}}],
             'remote': [{'type': 'REMOTE_USER'}]}]}})
    world.sync()
    # Every update, by content hash; and through the ordinary API below.
    changed = {k: made[k] for k in ('project', 'user', 'role', 'group',
                                    'identity provider', 'mapping')}
    assert_same_everywhere(world, changed)
    for spoke in world.spokes:
        _, body = _ordinary(world, spoke, f'/projects/{p}')
        assert (body['project']['description'], body['project']['tags']) \
            == ('changed', ['c'])

    # Deletes, dependents first as a user of the API would.
    for label in ('protocol', 'identity provider', 'mapping',
                  'application credential', 'system grant',
                  'inherited grant', 'domain group grant', 'project grant',
                  'membership', 'implied role'):
        call('DELETE', made[label][0])
    for label in ('group', 'user', 'domain role', 'role', 'child project',
                  'project'):
        call('DELETE', made[label][0])
    call('DELETE', f'/roles/{ctx["implied"]["id"]}')
    call('PATCH', f'/domains/{ctx["domain"]["id"]}',
         json={'domain': {'enabled': False}})
    call('DELETE', made['domain'][0])
    world.sync()
    assert_gone_everywhere(world, made)


def test_hub_user_logs_in_at_spokes_and_password_change_follows(world):
    made, ctx = make_everything(world.hub)
    world.sync()
    u, p = ctx['user']['id'], ctx['project']['id']
    want = {ctx['role']['id'], ctx['implied']['id']}
    for spoke in world.spokes:
        resp = _token(spoke, _password(u, ctx['password']),
                      {'project': {'id': p}})
        assert resp.status_code == 201, (spoke.name, resp.text)
        token = resp.json()['token']
        assert token['project']['id'] == p
        assert {r['id'] for r in token['roles']} == want
        # And the application credential, with its secret.
        resp = _token(spoke, {'methods': ['application_credential'],
                              'application_credential': {
                                  'id': ctx['app_cred']['id'],
                                  'secret': ctx['secret']}})
        assert resp.status_code == 201, (spoke.name, resp.text)

    personas.admin_caller(world.hub)('PATCH', f'/users/{u}', json={
        'user': {'password': _secret('the-new-Passw0rd', 'new password')}})
    world.sync()
    for spoke in world.spokes:
        assert _token(spoke, _password(u, ctx['password'])) \
            .status_code == 401, spoke.name
        assert _token(spoke, _password(u, 'the-new-Passw0rd')) \
            .status_code == 201, spoke.name


def _feed_of(world, site, id_):
    """(op, origin) of each change of application credential ``id_`` in
    ``site``'s feed."""
    sess, since, out = world.session(site), None, []
    while True:
        page = sess.get(f'{site.url}/sync/changes', params={
            'limit': 1000, 'types': 'application_credential',
            **({'since': since} if since else {})}).json()
        out += [(c['op'], c['origin']) for c in page['changes']
                if c['id'] == id_]
        since = page['next']
        if not page['more']:
            return out


def test_application_credential_made_at_a_spoke_reaches_everywhere(world):
    """Two-way: a user's application credential made at spoke1 (30.0)
    authenticates at the hub and at spoke2 (29.1) with the same id and
    secret, and its delete at spoke1 removes it everywhere; nothing is
    echoed back to spoke1."""
    _made, ctx = make_everything(world.hub)
    spoke1, spoke2 = world.spokes
    u, p = ctx['user']['id'], ctx['project']['id']
    # A user with a system role may not have credentials written at the
    # hub on a spoke's behalf (test_attacks.py): this one is a member.
    personas.admin_caller(world.hub)(
        'DELETE', f'/system/users/{u}/roles/{ctx["implied"]["id"]}')
    world.sync()
    resp = _token(spoke1, _password(u, ctx['password']),
                  {'project': {'id': p}})
    assert resp.status_code == 201, resp.text
    user_token = {'X-Auth-Token': resp.headers['X-Subject-Token']}
    resp = requests.post(
        f'{spoke1.url}/users/{u}/application_credentials',
        headers=user_token, timeout=60, json={'application_credential': {
            'name': f'made-at-spoke1-{_hex()[:6]}'}})
    assert resp.status_code == 201, resp.text
    ac = resp.json()['application_credential']
    login = {'methods': ['application_credential'],
             'application_credential': {'id': ac['id'],
                                        'secret': ac['secret']}}

    world.sync()
    for site in (world.hub, spoke2):
        resp = _token(site, login)
        assert resp.status_code == 201, (site.name, resp.text)
        assert resp.json()['token']['application_credential']['id'] == \
            ac['id']
        assert resp.json()['token']['project']['id'] == p
    # The hub holds it as spoke1's (its role rows are captured as updates
    # of it); spoke1 never got it back: every change there is its own.
    spoke1_id = world.session(spoke1).get(
        f'{spoke1.url}/sync').json()['sync']['site_id']
    at_hub = _feed_of(world, world.hub, ac['id'])
    assert at_hub[0] == ('create', spoke1_id), at_hub
    assert {origin for _, origin in at_hub} == {spoke1_id}, at_hub
    at_spoke1 = _feed_of(world, spoke1, ac['id'])
    assert at_spoke1[0] == ('create', None), at_spoke1
    assert {origin for _, origin in at_spoke1} == {None}, at_spoke1

    resp = requests.delete(
        f'{spoke1.url}/users/{u}/application_credentials/{ac["id"]}',
        headers=user_token, timeout=60)
    assert resp.status_code == 204, resp.text
    world.sync()
    for site in world.every():
        # Keystone answers 404 for a credential it does not know.
        assert _token(site, login).status_code in (401, 404), site.name
        assert world.session(site).get(
            f'{site.url}/sync/resources/application_credential/{ac["id"]}',
            raise_exc=False).status_code == 404, site.name
    assert _feed_of(world, world.hub, ac['id'])[-1] == ('delete', spoke1_id)
    at_spoke1 = _feed_of(world, spoke1, ac['id'])
    assert at_spoke1[-1] == ('delete', None), at_spoke1
    assert {origin for _, origin in at_spoke1} == {None}, at_spoke1


def _bulk(world, count):
    """``count`` projects and roles at the hub, fast: through the hub's
    own batch route (hub changes like any other)."""
    items = []
    for _ in range(count // 2):
        p, r = _hex(), _hex()
        items.append({'op': 'upsert', 'type': 'project', 'id': p,
                      'resource': {'id': p, 'name': f'bulk-{p}',
                                   'description': '', 'enabled': True,
                                   'domain_id': 'default',
                                   'parent_id': 'default', 'tags': [],
                                   'options': {}, 'extra': {}}})
        items.append({'op': 'upsert', 'type': 'role', 'id': r,
                      'resource': {'id': r, 'name': f'bulk-{r}',
                                   'domain_id': None, 'description': None,
                                   'options': {}, 'extra': {}}})
    sess = world.hub.admin_session()
    for n in range(0, len(items), 200):
        results = sess.post(world.hub.url + '/sync/batch', json={
            'items': items[n:n + 200]}).json()['results']
        assert all(r['status'] == 201 for r in results), results


def test_a_spoke_down_catches_up_and_never_delays_the_other(world):
    spoke1, spoke2 = world.spokes
    spoke1.stop()
    try:
        made = make_some(world.hub)
        started = time.monotonic()
        # spoke1 is retried for about 10 s before it is given up.
        slow = os.path.join(world.dir, 'slow-retries.conf')
        world.write_conf(path=slow, once_attempts=6, retry_initial=1)
        proc = world.agent('run', '--once', check=False, conf=slow)
        assert proc.returncode == 1
        assert 'spoke spoke1: not converged' in proc.stderr
        assert 'unreachable' in proc.stderr
        assert 'spoke spoke2: converged' in proc.stdout
        status = world.status()
        # spoke2 was done before the agent gave spoke1 up.
        assert status['spoke2']['last_success_at'] < \
            status['spoke1']['last_error_at']
        assert status['spoke1']['lag_changes'] > 0
        assert time.monotonic() - started < RUN_TIMEOUT
        for label, (path, _, _) in made.items():
            assert _ordinary(world, spoke2, path)[0] in (200, 204), label
    finally:
        spoke1.start()
    world.sync()
    assert world.status()['spoke1']['lag_changes'] == 0
    assert_same_everywhere(world, made)


def test_agent_killed_at_random_points_loses_nothing(world):
    """SIGKILL during a seed (a fresh state database) and during feed
    application; each next run converges with nothing missing."""
    rng = random.Random(4242)
    state = f'sqlite:///{world.dir}/killed-state.sqlite'
    kills = 0
    for _phase in ('seed', 'feed'):  # a fresh state seeds; then the feed
        _bulk(world, 120)
        for _ in range(2):
            proc = world.start_agent('--state', state)
            time.sleep(rng.uniform(1.0, 3.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        world.sync('--state', state)
        world.assert_converged(('project', 'role'))
    assert kills >= 3


def test_hub_restarted_during_a_sync_and_clean_shutdown(world):
    proc = world.start_agent()
    try:
        _bulk(world, 60)
        time.sleep(1)
        world.hub.restart()
        made = make_some(world.hub)
        last = made['grant'][0]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
                _ordinary(world, s, last)[0] == 204 for s in world.spokes):
            time.sleep(0.5)
        world.assert_converged(('project', 'role', 'user',
                                'role_assignment'))
        assert_same_everywhere(world, made)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    with open(proc.stderr_path) as f:
        assert rc == 0, f.read()[-3000:]


def test_status_and_logs_hold_no_secret(world):
    """The agent's log file, after every test above, holds no password,
    password hash or token."""
    with open(world.log) as f:
        log = f.read()
    assert 'following hub hub' in log
    secrets = [world.hub.admin_password, 'the-new-Passw0rd', '$2b$']
    with open(os.path.join(world.dir, 'clouds.yaml')) as f:
        secrets += [line.split(':', 1)[1].strip() for line in f
                    if line.strip().startswith('password:')]
    for secret in secrets:
        assert secret not in log
