"""An operator who runs the agent before joining a spoke, on real
Keystone processes: ``run --once`` ends non-zero naming the name clashes
and ``keystone-sync join``; join (with a spoke-local service user left out
by ``--exclude``) then re-keys the bootstrap roles, admin project and
admin user, and the next ``run --once`` converges.

The agent logs in at the spoke with an account of its own, as
doc/install.md says: join never merges the agent's own account into a hub
account (doc/security.md), so an agent logged in as the spoke's bootstrap
admin would keep that admin out of the join. (A revoked agent token
mid-run is covered in tests/unit/agent/test_retries.py.)
"""

import os
import subprocess
import sys

import pytest

from keystone_syncext.testing import sites

AGENT = [sys.executable, '-m', 'keystone_syncext.agent.cli']
TIMEOUT = 240

pytestmark = pytest.mark.first_backend


@pytest.fixture(scope='module')
def world(secret_scan, make_site, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('join'))
    secret_scan.log_dir(workdir)
    hub, spoke = (make_site(name, app=sites.SYNC_APP)
                  for name in ('hub', 'spoke1'))
    for site in (hub, spoke):
        secret_scan.secret(site.admin_password,
                           f'bootstrap password of {site.name}')
    s = spoke.admin_session()
    admin = s.get(spoke.url + '/users', params={'name': 'admin'}) \
        .json()['users'][0]
    # The operator gave both admins one password.
    s.patch(f'{spoke.url}/users/{admin["id"]}',
            json={'user': {'password': hub.admin_password}}) \
        .raise_for_status()
    spoke.admin_password = hub.admin_password
    # The change revoked the admin's tokens, by the second: the new
    # session's login waits that second out if it falls in it.
    # A service user of the spoke's own, left alone by join.
    s = spoke.admin_session()
    s.post(spoke.url + '/users', json={'user': {
        'name': 'svc-backup', 'domain_id': 'default'}}).raise_for_status()
    hub.admin_session().post(hub.url + '/users', json={'user': {
        'name': 'svc-backup', 'domain_id': 'default'}}).raise_for_status()
    agent_account = spoke.add_agent_account()
    secret_scan.secret(agent_account['password'], 'agent password at spoke1')
    sites.write_clouds_yaml(os.path.join(workdir, 'clouds.yaml'),
                            {'hub': hub.admin_auth(),
                             'spoke1': agent_account})
    conf = os.path.join(workdir, 'keystone-sync.conf')
    with open(conf, 'w') as f:
        f.write('[DEFAULT]\nhub = hub\nspokes = spoke1\n'
                f'state = sqlite:///{workdir}/state.sqlite\n'
                'poll_wait = 1\nretry_initial = 0.2\nretry_max = 2\n'
                f'once_attempts = 3\nlog_file = {workdir}/agent.log\n'
                '[selection]\nexclude = name:user:svc-*\n')
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=os.path.join(
        workdir, 'clouds.yaml'))

    def agent(*argv):
        proc = subprocess.run(AGENT + ['--config-file', conf, *argv],
                              env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        secret_scan.output(f'{argv[0]} stdout', proc.stdout)
        secret_scan.output(f'{argv[0]} stderr', proc.stderr)
        return proc

    yield hub, spoke, agent


def _ids(site, collection, name):
    """The ids of ``collection``'s resources named ``name`` at ``site``,
    as its bootstrap admin reads them (right after a sync that wrote
    that admin: ``Site.admin_session`` waits out the revocation second)."""
    resp = site.admin_session().get(f'{site.url}/{collection}',
                                    params={'name': name}, raise_exc=False)
    assert resp.status_code == 200, resp.text
    return [r['id'] for r in resp.json()[collection]]


def test_run_before_join_names_join_then_join_converges(world):
    hub, spoke, agent = world
    first = agent('run', '--once')
    assert first.returncode == 1, (first.stdout, first.stderr[-3000:])
    [line] = [x for x in first.stderr.splitlines()
              if x.startswith('spoke spoke1:')]
    assert 'name clashes' in line, first.stderr[-3000:]
    assert 'keystone-sync join --hub hub --spoke spoke1' in line, line

    joined = agent('join', '--spoke', 'spoke1', '--exclude', 'user:svc-*')
    assert joined.returncode == 0, (joined.stdout, joined.stderr[-3000:])
    # Each re-key is said on stderr as it is done; the plan is the table.
    assert 're-keyed user admin' in joined.stderr
    assert 'svc-backup' not in joined.stdout + joined.stderr
    # Join again: nothing left to do, and it says so.
    again = agent('join', '--spoke', 'spoke1', '--exclude', 'user:svc-*')
    assert again.returncode == 0 and 're-keying 0 resources' in again.stderr

    second = agent('run', '--once')
    assert second.returncode == 0, (second.stdout, second.stderr[-3000:])
    assert second.stdout.strip() == 'spoke spoke1: converged with hub hub'
    for collection, name in (('roles', 'admin'), ('roles', 'reader'),
                             ('projects', 'admin'), ('users', 'admin')):
        assert _ids(spoke, collection, name) == \
            _ids(hub, collection, name), (collection, name)
    assert _ids(spoke, 'users', 'svc-backup') != \
        _ids(hub, 'users', 'svc-backup')
    third = agent('run', '--once')
    assert third.returncode == 0, (third.stdout, third.stderr[-3000:])
