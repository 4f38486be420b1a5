"""The README's first command: a hub and two spokes, synced by the agent.

Starts three real Keystone servers on SQLite, each with the extension
installed: the hub and spoke1 on Keystone 30.0, spoke2 on the previous
release (29.1) in its own virtualenv. Every site was bootstrapped on its
own, so ``keystone-sync join`` first gives each spoke the hub's ids for
the roles, admin project and admin user they share by name. Then it
creates domains, projects, roles, users, groups and assignments at the hub
through Keystone's ordinary v3 API, runs ``keystone-sync run --once``, and
shows, side by side, that every site has the same ids. It changes and
deletes some at the hub, syncs again, shows ``keystone-sync status`` and
``openstack sync status show --os-cloud hub`` (the sites' clouds.yaml is
in the work directory), and ends by logging in at each spoke
as a user created at the hub, with the hub's password, into the hub's
project id.

Run it with ``tools/demo`` (which prepares the virtualenvs first) or
``.venv/bin/python tools/demo.py [--workdir DIR] [--keep]``. A development
tool, not part of the installed package: it lives beside tools/demo and
uses the test harness (``keystone_syncext.testing``).
"""

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
import prettytable

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites

PASSWORD = 'demo-Passw0rd'


def _heading(text):
    print(f'\n== {text} ' + '=' * max(0, 70 - len(text)), flush=True)


def _venv29() -> str:
    venv = os.environ.get('KSSYNC_VENV29') or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        '.venv-29')
    if not os.path.exists(os.path.join(venv, 'bin', 'keystone-manage')):
        raise SystemExit(f'no Keystone 29.1 virtualenv at {venv}: run '
                         'tools/demo, which creates it')
    return venv


def make_resources(hub) -> dict:
    """Ordinary v3 API calls at the hub, as any operator makes them."""
    s, url = hub.admin_session(), hub.url

    def post(path, key, body):
        resp = s.post(url + path, json={key: body})
        return resp.json()[key]

    dom = post('/domains', 'domain', {'name': 'demo-domain'})
    proj = post('/projects', 'project', {'name': 'demo-project',
                                         'domain_id': dom['id'],
                                         'tags': ['demo']})
    child = post('/projects', 'project', {'name': 'demo-child',
                                          'domain_id': dom['id'],
                                          'parent_id': proj['id']})
    role = post('/roles', 'role', {'name': 'demo-role'})
    viewer = post('/roles', 'role', {'name': 'demo-viewer'})
    s.put(f'{url}/roles/{role["id"]}/implies/{viewer["id"]}')
    user = post('/users', 'user', {'name': 'demo-user',
                                   'domain_id': dom['id'],
                                   'password': PASSWORD})
    grp = post('/groups', 'group', {'name': 'demo-group',
                                    'domain_id': dom['id']})
    old = post('/groups', 'group', {'name': 'demo-old-group',
                                    'domain_id': dom['id']})
    s.put(f'{url}/groups/{grp["id"]}/users/{user["id"]}')
    s.put(f'{url}/projects/{proj["id"]}/users/{user["id"]}/roles/'
          f'{role["id"]}')
    s.put(f'{url}/projects/{child["id"]}/groups/{grp["id"]}/roles/'
          f'{viewer["id"]}')
    return {'domain': dom, 'project': proj, 'child project': child,
            'role': role, 'implied role': viewer, 'user': user,
            'group': grp, 'group (to delete)': old}


def _find(site, path, key, name, **params):
    s = site.admin_session()
    found = s.get(site.url + path, params=dict(params, name=name)) \
        .json()[key]
    return found[0]['id'] if found else None


def show_ids(hub, spokes, made) -> bool:
    """Each resource looked up by name at every site through the
    ordinary API; True when every id matches the hub's."""
    table = prettytable.PrettyTable(
        ['resource', 'name', hub.name] + [s.name for s in spokes]
        + ['same id'])
    table.align = 'l'
    all_same = True
    lookups = [('domain', '/domains', 'domains', {}),
               ('project', '/projects', 'projects', {}),
               ('child project', '/projects', 'projects', {}),
               ('role', '/roles', 'roles', {}),
               ('implied role', '/roles', 'roles', {}),
               ('user', '/users', 'users', {}),
               ('group', '/groups', 'groups', {}),
               ('group (to delete)', '/groups', 'groups', {})]
    rows = [('admin role', '/roles', 'roles', 'admin'),
            ('member role', '/roles', 'roles', 'member'),
            ('admin project', '/projects', 'projects', 'admin'),
            ('admin user', '/users', 'users', 'admin')]
    for label, path, key, name in rows:
        ids = [_find(site, path, key, name) for site in [hub] + spokes]
        same = len(set(ids)) == 1
        all_same &= same
        table.add_row([label, name] + ids + ['yes' if same else 'NO'])
    for label, path, key, params in lookups:
        name = made[label]['name']
        ids = [_find(site, path, key, name, **params)
               for site in [hub] + spokes]
        same = len(set(ids)) == 1
        all_same &= same
        table.add_row([label, name] + [i or '(none)' for i in ids]
                      + ['yes' if same else 'NO'])
    print(table)
    return all_same


def agent(workdir, *argv, program='keystone-sync') -> int:
    """The real command line (``keystone-sync``, or ``openstack``), as an
    operator runs it, with the sites' clouds.yaml."""
    cmd = [os.path.join(sys.prefix, 'bin', program), *argv]
    print('$ ' + ' '.join([program, *argv]), flush=True)
    env = dict(os.environ,
               OS_CLIENT_CONFIG_FILE=os.path.join(workdir, 'clouds.yaml'))
    return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL).returncode


def login(site, made) -> None:
    auth = v3.Password(auth_url=site.url, username='demo-user',
                       password=PASSWORD,
                       user_domain_id=made['domain']['id'],
                       project_id=made['project']['id'])
    access = auth.get_access(ks_session.Session())
    roles = sorted(access.role_names)
    print(f'{site.name} (Keystone {site.release}): demo-user logged in '
          f'with the hub\'s password; token for project '
          f'{access.project_id} with roles {roles}')


def make_site(workdir, name, **kwargs) -> sites.Site:
    """A site of the demo, ``name``, serving the sync API on a SQLite
    database of its own in ``workdir`` (not started).

    Behind uWSGI's HTTP router with keep-alive, as a deployment's proxy
    serves Keystone: with a bare ``--http-socket``, which closes each
    connection after its answer without saying so, the ``openstack``
    command's token request (sent on the connection its discovery request
    had used) failed with "Connection reset by peer" more often than not.
    """
    db = backends.get('sqlite', workdir)
    return sites.Site(name, os.path.join(workdir, name), db.create(name),
                      app=sites.SYNC_APP, keepalive=True, **kwargs)


def _sites(workdir):
    """The hub (Keystone 30) and two spokes (30, and 29.1 where its
    virtualenv is)."""
    hub = make_site(workdir, 'hub')
    spokes = [make_site(workdir, 'spoke1', hub_site_id='hub'),
              make_site(workdir, 'spoke2', venv=_venv29(),
                        hub_site_id='hub')]
    return hub, spokes


def start_sites(workdir, hub, spokes):
    """Start the sites and write their clouds.yaml in ``workdir``: the
    hub's admin as ``hub``, the agent's own account at each spoke."""
    _heading('Three Keystones on SQLite, each bootstrapped on its own')
    every = [hub] + spokes
    with concurrent.futures.ThreadPoolExecutor(len(every)) as pool:
        for done in [pool.submit(lambda s: s.setup().start(), site)
                     for site in every]:
            done.result()
    for site in every:
        site.release = site.keystone_version()
        print(f'{site.name}: Keystone {site.release} at {site.url}',
              flush=True)
    clouds = {'hub': hub.admin_auth()}
    for spoke in spokes:
        # The agent's own account at each spoke (see add_agent_account).
        clouds[spoke.name] = spoke.add_agent_account()
    sites.write_clouds_yaml(os.path.join(workdir, 'clouds.yaml'), clouds)


def _sync(workdir, run):
    if agent(workdir, *run):
        raise SystemExit('the agent did not converge')


def _change_and_delete(workdir, run, hub, spokes, made):
    _heading('Changing and deleting at the hub, then syncing again')
    s = hub.admin_session()
    s.patch(f'{hub.url}/projects/{made["project"]["id"]}',
            json={'project': {'description': 'changed at the hub'}})
    s.delete(f'{hub.url}/groups/{made["group (to delete)"]["id"]}')
    print('demo-project description changed; demo-old-group deleted')
    _sync(workdir, run)
    for spoke in spokes:
        p = spoke.admin_session().get(
            f'{spoke.url}/projects/{made["project"]["id"]}').json()
        gone = spoke.admin_session().get(
            f'{spoke.url}/groups/{made["group (to delete)"]["id"]}',
            raise_exc=False).status_code
        print(f'{spoke.name}: demo-project description '
              f'{p["project"]["description"]!r}; demo-old-group '
              f'answers {gone}')


def _show(workdir, hub, spokes) -> int:
    """Join, create at the hub, sync, change, sync; 0 when every site
    holds the same ids and both status commands answered."""
    state = f'sqlite:///{workdir}/keystone-sync-state.sqlite'
    run = ['run', '--hub', 'hub', '--spoke', 'spoke1', '--spoke', 'spoke2',
           '--state', state, '--once']
    start_sites(workdir, hub, spokes)

    _heading('Joining the spokes: the hub\'s ids for shared resources')
    for spoke in spokes:
        if agent(workdir, 'join', '--hub', 'hub', '--spoke', spoke.name):
            raise SystemExit(f'joining {spoke.name} failed')

    _heading('Creating resources at the hub (ordinary v3 API)')
    made = make_resources(hub)
    print(', '.join(f'{k} {v["name"]}' for k, v in made.items()))

    _heading('Syncing: keystone-sync run --once')
    _sync(workdir, run)
    for spoke in spokes:
        # Joined and synced, each spoke's admin is the hub's admin:
        # the same id and the same password.
        spoke.admin_password = hub.admin_password

    _heading('The same ids at every site (looked up by name)')
    same = show_ids(hub, spokes, made)
    _change_and_delete(workdir, run, hub, spokes, made)

    _heading('keystone-sync status, and the hub\'s own: openstack sync')
    shown = not agent(workdir, 'status', '--state', state, '-c', 'spoke',
                      '-c', 'state', '-c', 'lag_changes', '-c', 'pending',
                      '-c', 'last_success_at')
    shown &= not agent(workdir, 'sync', 'status', 'show', '--os-cloud', 'hub',
                       program='openstack')

    _heading('Logging in at the spokes as the hub\'s user')
    for spoke in spokes:
        login(spoke, made)
    return 0 if same and shown else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workdir', help='where the sites live '
                        '(default: a new temporary directory)')
    parser.add_argument('--keep', action='store_true',
                        help='leave the sites\' directory behind')
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix='kssync-demo-')
    os.makedirs(workdir, exist_ok=True)
    hub, spokes = _sites(workdir)
    try:
        return _show(workdir, hub, spokes)
    finally:
        for site in [hub] + spokes:
            site.stop()
        if args.keep or args.workdir:
            print(f'Sites left in {workdir} (stopped); their clouds.yaml: '
                  f'OS_CLIENT_CONFIG_FILE={workdir}/clouds.yaml')
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    raise SystemExit(main())
