"""``openstack sync ...`` against a real site: every command in every
format it offers parses and says what the site holds, and a caller the
site's policy refuses gets the ordinary ``openstack`` error.

The commands run in this process (python-openstackclient's own shell, as
``openstack`` runs it) to keep the suite cheap; the refusal also runs the
real ``openstack`` command."""

import csv
import io
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

from keystone_syncext.testing import sites
from keystone_syncext.tests import personas

pytestmark = pytest.mark.backend_independent

OPENSTACK = shutil.which('openstack', path=os.path.dirname(sys.executable))


def _user(call, site, secret_scan, role, grant):
    """A user holding ``role`` on ``grant`` (a path), with its password."""
    password = secrets.token_hex(12)
    secret_scan.secret(password, f'password of a {role} persona')
    user = call('POST', '/users', json={'user': {
        'name': f'osc-{role}-{uuid.uuid4().hex[:8]}', 'domain_id': 'default',
        'password': password}}).json()['user']
    role_id = call('GET', '/roles', params={'name': role}).json()[
        'roles'][0]['id']
    call('PUT', f'{grant}/users/{user["id"]}/roles/{role_id}')
    return {'auth_url': site.url, 'username': user['name'],
            'password': password, 'user_domain_id': 'default'}


@pytest.fixture(scope='module')
def site(secret_scan, shared_site, tmp_path_factory):
    """The shared current site, a project in it, and a clouds.yaml naming
    it as ``hub`` (its system admin), ``reader`` (a system reader) and
    ``member`` (a project member)."""
    site = shared_site()
    call = personas.admin_caller(site)
    before = call('GET', '/sync').json()['sync']['head_cursor']
    project = call('POST', '/projects', json={'project': {
        'name': f'osc-{uuid.uuid4().hex[:8]}',
        'domain_id': 'default'}}).json()['project']
    reader = dict(_user(call, site, secret_scan, 'reader', '/system'),
                  system_scope='all')
    member = dict(_user(call, site, secret_scan, 'member',
                        f'/projects/{project["id"]}'),
                  project_id=project['id'])
    path = str(tmp_path_factory.mktemp('osc') / 'clouds.yaml')
    sites.write_clouds_yaml(path, {'hub': site.admin_auth(),
                                   'reader': reader, 'member': member})
    site.project, site.before, site.clouds = project, before, path
    return site


@pytest.fixture
def osc(site, monkeypatch, capsys):
    """``openstack --os-cloud CLOUD sync ARGV`` in this process: (exit
    code, stdout, stderr)."""
    from openstack.config import cloud_region
    from openstackclient import shell
    from openstackclient.common import clientmanager
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', site.clouds)
    get_session = cloud_region.CloudRegion.get_session

    def retrying_session(region):
        # The test sites' uWSGI closes a connection after each answer
        # without saying so; the token request on a reused one is
        # retried on a fresh one, as the agent's client does
        # (client.retry_authentication). No public setter either.
        sess = get_session(region)
        sess._connect_retries = 3
        return sess
    monkeypatch.setattr(cloud_region.CloudRegion, 'get_session',
                        retrying_session)
    root = logging.getLogger()

    def run(cloud, *argv):
        # Each openstack run is a process of its own: its plugin client
        # (cached on the ClientManager class) and the log handlers it
        # adds must not outlive it.
        cache = next(vars(c)['sync'] for c in
                     clientmanager.ClientManager.__mro__ if 'sync' in vars(c))
        cache._handle = None
        handlers, level = list(root.handlers), root.level
        try:
            rc = shell.main(['--os-cloud', cloud, 'sync', *argv])
        finally:
            root.handlers[:], root.level = handlers, level
        out, err = capsys.readouterr()
        return rc, out, err
    return run


def _formats(osc, cloud, *argv, lister=True):
    """The command in json, yaml, table, value (one column, ``-c``) and
    csv (shell for a record, which has no csv): the json, having checked
    the others say the same."""
    rc, out, err = osc(cloud, *argv, '-f', 'json')
    assert rc == 0, err
    got = json.loads(out)
    rc, out, _ = osc(cloud, *argv, '-f', 'yaml')
    assert rc == 0 and yaml.safe_load(out) == got
    rc, out, _ = osc(cloud, *argv, '-f', 'table')
    assert rc == 0 and out.startswith('+')
    if lister:
        rc, out, _ = osc(cloud, *argv, '-f', 'csv')
        rows = list(csv.DictReader(io.StringIO(out)))
        assert rc == 0 and len(rows) == len(got)
        rc, out, _ = osc(cloud, *argv, '-f', 'value', '-c', 'hash')
        assert rc == 0 and out.split() == [r['hash'] for r in got]
    else:
        rc, out, _ = osc(cloud, *argv, '-f', 'shell')
        assert rc == 0 and out.count('="') >= len(got) - 1
        name = next(k for k in sorted(got) if isinstance(got[k], str))
        rc, out, _ = osc(cloud, *argv, '-f', 'value', '-c', name)
        assert rc == 0 and out == got[name] + '\n', (name, out)
    return got


def test_capabilities_and_status(site, osc):
    caps = _formats(osc, 'hub', 'capabilities', 'show', lister=False)
    about = personas.json_caller(site)('GET', '/sync')['sync']
    assert caps == about
    assert 'project' in caps['resource_types']
    rc, out, _ = osc('hub', 'capabilities', 'show', '-f', 'value', '-c',
                     'site_id')
    assert rc == 0 and out.strip() == about['site_id']
    status = _formats(osc, 'reader', 'status', 'show', lister=False)
    assert status['capture_complete'] is True
    assert status['history_id'] == about['history_id']


def test_changes_resources_and_digests(site, osc):
    project = site.project
    changes = _formats(osc, 'hub', 'change', 'list', '--since', site.before,
                       '--type', 'project')
    mine = [c for c in changes if c['id'] == project['id']]
    assert mine and mine[0]['op'] == 'create' and mine[0]['type'] == \
        'project'
    assert {c['type'] for c in changes} == {'project'}
    rc, out, err = osc('hub', 'change', 'list', '--since', mine[0]['cursor'],
                       '--limit', '1', '--long', '-f', 'json')
    assert rc == 0 and 'next cursor:' in err
    assert all(c['cursor'] != mine[0]['cursor'] for c in json.loads(out))

    listed = _formats(osc, 'hub', 'resource', 'list', 'project')
    held = {i['id']: i['hash'] for i in listed}
    assert held[project['id']] == mine[0]['hash']
    shown = _formats(osc, 'hub', 'resource', 'show', 'project',
                     project['id'], lister=False)
    assert (shown['id'], shown['name'], shown['hash']) == (
        project['id'], project['name'], held[project['id']])

    digest = _formats(osc, 'hub', 'digest', 'show', 'project',
                      lister=False)
    assert digest['count'] == len(held)
    buckets = _formats(osc, 'hub', 'digest', 'bucket', 'list', 'project')
    assert sum(b['count'] for b in buckets) == len(held)
    assert {b['prefix'] for b in buckets} == {i[0] for i in held}
    first = project['id'][0]
    rc, out, _ = osc('hub', 'digest', 'show', 'project', '--bucket', first,
                     '-f', 'json')
    assert rc == 0 and json.loads(out)['count'] == sum(
        1 for i in held if i.startswith(first))


def test_a_system_admin_sees_password_hashes_as_the_api_gives_them(site,
                                                                    osc):
    api = personas.json_caller(site)
    [admin] = api('GET', '/users', params={'name': 'admin'})['users']
    rc, out, _ = osc('hub', 'resource', 'show', 'user', admin['id'],
                     '-f', 'json')
    shown = json.loads(out)
    served = api('GET', f'/sync/resources/user/{admin["id"]}')['resource']
    assert rc == 0 and shown['local'] == served['local']
    assert shown['local']['passwords'][-1]['hash'].startswith('$')


@pytest.mark.parametrize('cloud,argv', [
    ('reader', ('change', 'list')),
    ('reader', ('resource', 'show', 'project', 'PROJECT')),
    ('reader', ('digest', 'show', 'project')),
    ('member', ('capabilities', 'show')),
    ('member', ('status', 'show')),
])
def test_a_refusal_is_the_ordinary_openstack_error(site, osc, cloud, argv):
    argv = [site.project['id'] if a == 'PROJECT' else a for a in argv]
    rc, out, err = osc(cloud, *argv, '-f', 'json')
    assert rc == 1 and out == ''
    assert f'{cloud}: GET /sync' in err and ': 403 ' in err, err
    assert 'Traceback' not in err, err


def test_a_resource_the_site_lacks_is_an_error_naming_it(site, osc):
    rc, out, err = osc('hub', 'resource', 'show', 'project', 'nope')
    assert rc == 1 and out == '' and 'no project nope at the site' in err


def _openstack(site, *argv):
    """The real ``openstack`` command; a token request on a connection
    the test site dropped (see ``osc``) is tried again."""
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=site.clouds)
    for _ in range(3):
        proc = subprocess.run([OPENSTACK, *argv], env=env,
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if 'Unable to establish connection' not in proc.stderr:
            break
    return proc


def test_the_openstack_command_says_a_refusal_and_exits_1(site):
    proc = _openstack(site, '--os-cloud', 'reader', 'sync', 'resource',
                      'list', 'project')
    assert proc.returncode == 1 and proc.stdout == ''
    assert 'reader: GET /sync/resources/project: 403' in proc.stderr, \
        proc.stderr
    # The site's answer as one line, as openstack says any error.
    assert proc.stderr.strip().splitlines() == [
        line for line in proc.stderr.strip().splitlines()
        if 'reader: GET /sync/resources/project: 403' in line], proc.stderr
    proc = _openstack(site, '--os-cloud', 'reader', 'sync', 'status',
                      'show', '-f', 'json')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)['capture_complete'] is True
