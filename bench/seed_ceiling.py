"""The ceiling for seeding: the resources a seed writes, written straight
into an empty Keystone database with the capture triggers installed,
through SQLAlchemy Core multi-row inserts (no HTTP, no Keystone managers,
no validation, no per-resource reads).

The database is what a spoke starts from: ``keystone-manage db_sync``,
``keystone-syncext-manage db_sync`` and ``keystone-manage bootstrap``
(``sites.Site.setup``, no server started). The resources are
``batch_rate.batch_items`` -- the mix ``agent_sync.py`` fills the hub with
and the agent then seeds each spoke with -- turned into the rows Keystone
keeps for them (``project``, ``role``, ``user`` + ``local_user``,
``group``, ``user_group_membership``, ``assignment``) and inserted table
by table, ``--chunk`` resources per transaction, each table's rows of a
chunk in multi-row INSERT statements. The triggers fire as they do for
the agent's writes; the run fails unless they recorded at least one
``sync_change`` row per resource.

- ``ceiling_resources_per_s``: median over ``--rounds`` rounds (a fresh
  database each) of resources / seconds, one writer, one database.

``bench/run.py`` divides the agent's per-spoke seed rate by it
(``seed_vs_ceiling_ratio``). The last line of output is one JSON object.

    python bench/seed_ceiling.py --backend sqlite --resources 2000
"""

import argparse
import datetime
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid

from batch_rate import batch_items
import sqlalchemy as sa

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites

# Keystone's domain_id of a global role (keystone.common.resource_options
# ... role_backends.sql_model.NULL_DOMAIN_ID).
NULL_DOMAIN_ID = '<<null>>'
# Bound parameters per statement: under SQLite's 32,766.
MAX_PARAMS = 30000


def _rows(item, now) -> dict[str, list[dict]]:
    """Keystone's rows for one batch item, by table."""
    r, t = item['resource'], item['type']
    if t == 'project':
        return {'project': [{
            'id': r['id'], 'name': r['name'], 'extra': '{}',
            'description': r['description'], 'enabled': r['enabled'],
            'domain_id': r['domain_id'], 'parent_id': r['parent_id'],
            'is_domain': False}]}
    if t == 'role':
        return {'role': [{
            'id': r['id'], 'name': r['name'], 'extra': '{}',
            'domain_id': r['domain_id'] or NULL_DOMAIN_ID,
            'description': r['description']}]}
    if t == 'user':
        return {'user': [{
            'id': r['id'], 'extra': '{}', 'enabled': r['enabled'],
            'default_project_id': None, 'created_at': now,
            'domain_id': r['domain_id']}],
            'local_user': [{'user_id': r['id'], 'domain_id': r['domain_id'],
                            'name': r['local']['name'],
                            'failed_auth_count': 0}]}
    if t == 'group':
        return {'group': [{
            'id': r['id'], 'domain_id': r['domain_id'], 'name': r['name'],
            'description': r['description'], 'extra': '{}'}]}
    if t == 'group_membership':
        return {'user_group_membership': [{'user_id': r['user_id'],
                                           'group_id': r['group_id']}]}
    if t == 'role_assignment':
        return {'assignment': [{
            'type': r['type'], 'actor_id': r['actor_id'],
            'target_id': r['target_id'], 'role_id': r['role_id'],
            'inherited': r['inherited']}]}
    raise SystemExit(f'seed_ceiling: no rows for type {t}')


# Parents before children: the foreign keys Keystone declares.
ORDER = ('project', 'role', 'user', 'local_user', 'group',
         'user_group_membership', 'assignment')


def write(engine, items, chunk: int) -> float:
    """Insert ``items``' rows, ``chunk`` items per transaction; seconds."""
    meta = sa.MetaData()
    tables = {n: sa.Table(n, meta, autoload_with=engine) for n in ORDER}
    now = datetime.datetime.utcnow()
    start = time.perf_counter()
    for n in range(0, len(items), chunk):
        by_table = {}
        for item in items[n:n + chunk]:
            for name, rows in _rows(item, now).items():
                by_table.setdefault(name, []).extend(rows)
        with engine.begin() as conn:
            for name in ORDER:
                rows = by_table.get(name)
                if not rows:
                    continue
                step = max(1, MAX_PARAMS // len(rows[0]))
                for i in range(0, len(rows), step):
                    conn.execute(tables[name].insert().values(
                        rows[i:i + step]))
    return time.perf_counter() - start


def one_round(workdir, backend, count, chunk) -> float:
    dbname = f'bench_ceiling_{uuid.uuid4().hex[:8]}'
    site = sites.Site('ceiling', f'{workdir}/{dbname}',
                      backend.create(dbname))
    try:
        site.setup()
        engine = site.engine()
        with engine.connect() as conn:
            before = conn.execute(sa.text(
                'SELECT count(*) FROM sync_change')).scalar()
        items = batch_items(count)
        secs = write(engine, items, chunk)
        with engine.connect() as conn:
            captured = conn.execute(sa.text(
                'SELECT count(*) FROM sync_change')).scalar() - before
        if captured < len(items):
            raise SystemExit(f'only {captured} changes captured for '
                             f'{len(items)} resources: triggers missing?')
        engine.dispose()
        return len(items) / secs
    finally:
        backend.drop(dbname)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backend', default='sqlite',
                        choices=('sqlite', 'mysql', 'postgresql'))
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--resources', type=int, default=2000)
    parser.add_argument('--chunk', type=int, default=1000,
                        help='resources per transaction')
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix='kssync-bench-ceiling-')
    backend = backends.get(args.backend, workdir)
    rates = []
    try:
        for n in range(args.rounds):
            rates.append(one_round(workdir, backend, args.resources,
                                   args.chunk))
            print(f'round {n + 1}: {rates[-1]:8.1f} resources/s',
                  flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rate = statistics.median(rates)
    print(f'\nceiling ({args.backend}): {rate:.1f} resources/s')
    print(json.dumps({
        'backend': args.backend, 'chunk': args.chunk,
        'resources_per_round': args.resources, 'rounds': args.rounds,
        'ceiling_resources_per_s': round(rate, 1),
        'ceiling_rounds': [round(r, 1) for r in rates],
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
