"""Capture of every v1 type written through Keystone's managers in-process,
by a process that never loads keystone_syncext (also: keystone-manage
bootstrap, which made the site's admin resources)."""

import json
import subprocess

import sqlalchemy as sa

from keystone_syncext.capture import spec
from keystone_syncext.db import tables
from keystone_syncext.tests.capture_oracle import Recorder


def test_every_type_through_managers(site):
    rec = Recorder(site.engine())
    with rec:
        proc = subprocess.run(
            [site.bin('python'), '-m',
             'keystone_syncext.tests.functional.capture.manager_ops',
             '--config-file', site.conf],
            capture_output=True, text=True, timeout=300, check=True)
    made = json.loads(proc.stdout.strip().splitlines()[-1])
    rec.check()
    assert set(made) == set(spec.TYPES)
    for rtype, rid in made.items():
        ops = rec.ops(rtype, rid)
        assert ops[0] == 'create' and ops[-1] == 'delete', (rtype, ops)
        assert (rtype, rid) in rec.tombstones, rtype
    for rtype in ('domain', 'project', 'user', 'group', 'role',
                  'identity_provider'):
        assert 'update' in rec.ops(rtype, made[rtype]), rtype


def test_bootstrap_was_captured(site):
    """keystone-manage bootstrap ran before any of our code was loaded in a
    Keystone process: its admin user, project, roles and assignments must
    all be in the log."""
    with site.engine().connect() as conn:
        c = tables.change.c
        logged = {(r.resource_type, r.resource_id) for r in conn.execute(
            sa.select(c.resource_type, c.resource_id).where(c.op == 'create'))}
        admin_id = conn.exec_driver_sql(
            "SELECT user_id FROM local_user WHERE name = 'admin'").scalar()
        roles = conn.exec_driver_sql(
            "SELECT id FROM role WHERE name IN ('admin', 'member', 'reader',"
            " 'manager', 'service')").scalars().all()
    assert ('user', admin_id) in logged
    assert ('domain', 'default') in logged
    assert all(('role', r) in logged for r in roles)
    system_admin = f'UserSystem:{admin_id}:system:'
    assert any(t == 'role_assignment' and i.startswith(system_admin)
               for t, i in logged)
    assert ('domain', spec.ROOT_DOMAIN_ID) not in logged
