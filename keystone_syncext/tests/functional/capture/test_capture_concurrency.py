"""Several writers at once: every committed change appears exactly once.

Writers are client threads against a Keystone served by several uWSGI
processes, plus separate OS processes writing through Keystone's managers,
all at the same time. Bounded: a fixed number of writes, each thread and
process with a timeout.
"""

import concurrent.futures
import json
import os
import subprocess
import uuid

import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.feed import changes

THREADS = 4
PROJECTS_PER_THREAD = 6
PROCESSES = 2

# A process that creates and deletes roles through Keystone's managers
# (never loading keystone_syncext), printing the IDs as JSON.
_MANAGER_WRITER = """
import json, os, sys, uuid
import keystone.conf
from keystone.common import provider_api, sql
from keystone.server import backends
keystone.conf.configure(); sql.initialize()
keystone.conf.CONF(args=sys.argv[1:], project='keystone')
backends.load_backends()
roles = provider_api.ProviderAPIs.role_api
made, deleted, failed = [], [], []
for _ in range(int(os.environ['WRITES'])):
    rid = uuid.uuid4().hex
    # SQLite: 'database is locked' under load; such a write commits nothing.
    try:
        roles.create_role(rid, {'id': rid, 'name': rid})
        made.append(rid)
        roles.delete_role(rid)
        deleted.append(rid)
    except Exception as exc:
        failed.append(repr(exc)[:200])
print(json.dumps({'made': made, 'deleted': deleted, 'failed': failed}))
"""


def _create_projects(site, session, n):
    """IDs of the projects whose create committed (on SQLite a writer can
    lose the lock race: Keystone then answers 500 and commits nothing)."""
    made = []
    for _ in range(n):
        resp = session.post(site.url + '/projects', raise_exc=False,
                            json={'project': {
                                'name': f'conc-{uuid.uuid4().hex[:12]}',
                                'domain_id': 'default'}})
        if resp.status_code == 201:
            made.append(resp.json()['project']['id'])
    return made


def test_concurrent_writers_each_change_exactly_once(site):
    with site.engine().connect() as conn:
        start = conn.execute(
            sa.select(sa.func.max(tables.change.c.id))).scalar() or 0

    argv = [site.bin('python'), '-c', _MANAGER_WRITER, '--config-file',
            site.conf]
    env = dict(os.environ, WRITES=str(PROJECTS_PER_THREAD))
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.PIPE, env=env)
             for _ in range(PROCESSES)]
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        sessions = [site.admin_session() for _ in range(THREADS)]
        futures = [pool.submit(_create_projects, site, s,
                               PROJECTS_PER_THREAD) for s in sessions]
        projects = [p for f in futures for p in f.result(timeout=600)]
    roles, deleted = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result['made'], result['failed']
        roles += result['made']
        deleted += result['deleted']

    with site.engine().begin() as conn:
        changes.stamp(conn)
    with site.engine().connect() as conn:
        c = tables.change.c
        rows = conn.execute(
            sa.select(c.resource_type, c.resource_id, c.op, c.position)
            .where(c.id > start)).all()

    creates = [(t, i) for t, i, op, _ in rows if op == 'create']
    deletes = [(t, i) for t, i, op, _ in rows if op == 'delete']
    assert sorted(i for t, i in creates if t == 'project') == sorted(projects)
    assert sorted(i for t, i in creates if t == 'role') == sorted(roles)
    assert sorted(i for t, i in deletes if t == 'role') == sorted(deleted)
    assert len(projects) >= THREADS  # most writes got through
    # Only what the writers did, and every row got its own feed position.
    assert {t for t, *_ in rows} == {'project', 'role'}
    positions = [p for *_, p in rows]
    assert None not in positions and len(set(positions)) == len(rows)
