"""The README's first command: a real Keystone with change capture, shown.

Starts a Keystone on SQLite with the extension installed, makes resources
through Keystone's ordinary v3 API, changes and deletes some, and prints
what the extension captured: the change log in feed order, the tombstones
and the timestamps, then the operator's ``check``.

Run it with ``tools/demo`` (which prepares the virtualenv first) or
``python -m keystone_syncext.demo [--workdir DIR] [--keep]``.
"""

import argparse
import os
import shutil
import tempfile

import prettytable
import sqlalchemy as sa

from keystone_syncext import changes
from keystone_syncext.db import tables
from keystone_syncext.testing import sites


def _heading(text):
    print(f'\n== {text} ' + '=' * max(0, 70 - len(text)))


def make_resources(site) -> dict:
    """Ordinary v3 API calls, as any operator or tool makes them."""
    s, url = site.admin_session(), site.url

    def post(path, key, body):
        return s.post(url + path, json={key: body}).json()[key]

    dom = post('/domains', 'domain', {'name': 'demo-domain'})
    proj = post('/projects', 'project', {'name': 'demo-project',
                                         'domain_id': dom['id'],
                                         'tags': ['demo']})
    user = post('/users', 'user', {'name': 'demo-user',
                                   'domain_id': dom['id'],
                                   'password': 'demo-Passw0rd'})
    role = post('/roles', 'role', {'name': 'demo-role'})
    grp = post('/groups', 'group', {'name': 'demo-group',
                                    'domain_id': dom['id']})
    s.put(f'{url}/projects/{proj["id"]}/users/{user["id"]}/roles/'
          f'{role["id"]}')
    s.put(f'{url}/groups/{grp["id"]}/users/{user["id"]}')
    s.patch(f'{url}/projects/{proj["id"]}',
            json={'project': {'description': 'changed by the demo'}})
    s.patch(f'{url}/users/{user["id"]}',
            json={'user': {'password': 'demo-Passw0rd-2'}})
    # And delete some: the group (its membership goes with it) and the
    # role (its assignment goes with it, in one bulk delete).
    s.delete(f'{url}/groups/{grp["id"]}')
    s.delete(f'{url}/roles/{role["id"]}')
    return {'domain': dom, 'project': proj, 'user': user}


def show_changes(engine, since_position: int) -> None:
    with engine.begin() as conn:
        changes.stamp(conn)
    c = tables.change.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.position, c.resource_type, c.resource_id, c.op,
                      c.changed_at, c.origin)
            .where(c.position > since_position).order_by(c.position)).all()
    table = prettytable.PrettyTable(
        ['position', 'type', 'id', 'op', 'changed_at (UTC)', 'origin'])
    table.align = 'l'
    for pos, rtype, rid, op, at, origin in rows:
        table.add_row([pos, rtype, rid, op, at, origin or '(this site)'])
    print(table)


def show_tombstones(engine) -> None:
    t = tables.tombstone.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.resource_type, t.resource_id, t.deleted_at,
                      t.change_id).order_by(t.change_id)).all()
    table = prettytable.PrettyTable(['type', 'id', 'deleted_at (UTC)',
                                     'change id'])
    table.align = 'l'
    for row in rows:
        table.add_row(list(row))
    print(table)


def show_timestamps(engine, made) -> None:
    table = prettytable.PrettyTable(['type', 'id', 'created_at',
                                     'updated_at'])
    table.align = 'l'
    where = {'domain': 'project', 'project': 'project', 'user': 'user'}
    with engine.connect() as conn:
        for rtype, ref in made.items():
            row = conn.execute(sa.text(
                f'SELECT created_at, updated_at FROM "{where[rtype]}" '
                'WHERE id = :id'), {'id': ref['id']}).one()
            table.add_row([rtype, ref['id'], *row])
    print(table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workdir', help='where the site lives '
                        '(default: a new temporary directory)')
    parser.add_argument('--keep', action='store_true',
                        help='leave the site directory behind')
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix='kssync-demo-')
    os.makedirs(workdir, exist_ok=True)
    site = sites.Site('demo-hub', workdir,
                      f'sqlite:///{workdir}/keystone.db')
    try:
        _heading('Setting up Keystone on SQLite with keystone_syncext')
        site.setup()
        site.start()
        print(f'Keystone {site.url} (keystone-manage db_sync, '
              'keystone-syncext-manage db_sync, bootstrap)')
        with site.engine().begin() as conn:
            boot = changes.stamp(conn)
        print(f'keystone-manage bootstrap alone was captured as {boot} '
              'changes (admin user, project, roles, assignments).')

        _heading('Creating, changing and deleting through the v3 API')
        made = make_resources(site)
        print('domain, project (tagged), user, role, group, assignment, '
              'membership;\nproject renamed, password changed; group and '
              'role deleted.')

        _heading('The change log, in feed order (what the agent reads)')
        show_changes(site.engine(), boot)
        _heading('Tombstones (every delete, cascaded ones included)')
        show_tombstones(site.engine())
        _heading('Timestamps on the resources')
        show_timestamps(site.engine(), made)
        _heading('keystone-syncext-manage check')
        print(site.run('keystone-syncext-manage', 'check').stdout)
    finally:
        site.stop()
        if args.keep or args.workdir:
            print(f'Site left in {workdir}')
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
