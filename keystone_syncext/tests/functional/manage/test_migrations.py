"""Our migrations on a real Keystone database, for each Keystone release.

For every backend and each supported Keystone release (30.0, the current
one, and 29.1, the previous one, each in its own virtualenv), a Keystone
database is made with that release's ``keystone-manage db_sync`` and
``bootstrap`` (so there are real rows to backfill), then that venv's
``keystone-syncext-manage`` takes it up, all the way down and up again:

- up: our head, ``created_at``/``updated_at`` on every resource table and
  filled in on every existing row, every capture trigger in place, and
  Keystone's own data untouched;
- down to base: Keystone's schema and data exactly as they were before we
  came (our columns gone, Keystone's own ``user.created_at`` kept), none of
  our tables, triggers or functions left;
- up again: capture works (a raw SQL insert and delete of a role are
  recorded, the delete with a tombstone).

Each test makes and drops its own database; no Keystone server is started.
"""

import os
import secrets
import sys
import uuid

import pytest
import sqlalchemy as sa

from keystone_syncext.capture import ddl
from keystone_syncext.capture import install
from keystone_syncext.capture import spec
from keystone_syncext.db import migration
from keystone_syncext.db import tables
from keystone_syncext.testing import sites

# Keystone release -> environment variable naming the virtualenv holding it.
RELEASES = {'30.0': 'KSSYNC_VENV30', '29.1': 'KSSYNC_VENV29'}
MANAGE = 'keystone-syncext-manage'
SYNC_PREFIX = 'sync_'


def release_venv(release: str) -> str:
    """The virtualenv holding ``release``; fails (never skips) when the
    environment does not say where it is."""
    var = RELEASES[release]
    venv = os.environ.get(var)
    if venv is None and release == '30.0':
        venv = sys.prefix
    if not venv:
        pytest.fail(f'{var} is not set, so there is no Keystone {release} '
                    'virtualenv to test with: run the tests through '
                    'tools/run-tests, which creates it and sets the variable',
                    pytrace=False)
    for tool in ('keystone-manage', MANAGE):
        if not os.access(os.path.join(venv, 'bin', tool), os.X_OK):
            pytest.fail(f'{var}={venv} has no bin/{tool}: run '
                        'tools/run-tests to (re)create the virtualenv',
                        pytrace=False)
    return venv


# -- snapshots ------------------------------------------------------------

def _sorted(items):
    return sorted(items, key=repr)


def _type(col, dialect):
    try:
        return str(col['type'].compile(dialect=dialect))
    except Exception:  # noqa: BLE001 - a type the dialect cannot render
        return repr(col['type'])


def keystone_tables(conn) -> list[str]:
    """Keystone's tables: everything but ours (``sync_*``, which includes
    ``sync_alembic_version``)."""
    return sorted(t for t in sa.inspect(conn).get_table_names()
                  if not t.startswith(SYNC_PREFIX))


def schema_snapshot(conn) -> dict:
    """Per Keystone table: columns (in order, with type, nullability and
    default), primary key, indexes, unique constraints, foreign keys and
    check constraints."""
    insp = sa.inspect(conn)
    out = {}
    for table in keystone_tables(conn):
        checks = insp.get_check_constraints(table)
        out[table] = {
            'columns': [(c['name'], _type(c, conn.dialect), c['nullable'],
                         c.get('default'))
                        for c in insp.get_columns(table)],
            'primary_key': (tuple(insp.get_pk_constraint(table)
                                  ['constrained_columns'])),
            'indexes': _sorted((i['name'], tuple(i['column_names']),
                                bool(i['unique']))
                               for i in insp.get_indexes(table)),
            'unique': _sorted((u['name'], tuple(u['column_names']))
                              for u in insp.get_unique_constraints(table)),
            'foreign_keys': _sorted(
                (f['name'], tuple(f['constrained_columns']),
                 f['referred_table'], tuple(f['referred_columns']),
                 tuple(sorted((f.get('options') or {}).items())))
                for f in insp.get_foreign_keys(table)),
            'checks': _sorted((c['name'], c['sqltext']) for c in checks),
        }
    return out


def data_snapshot(conn, columns: dict | None = None) -> dict:
    """Every row of every Keystone table, sorted. ``columns`` (table ->
    column names) limits what is read, to compare only Keystone's own
    columns once ours have been added."""
    insp = sa.inspect(conn)
    out = {}
    for table in keystone_tables(conn):
        names = (columns[table] if columns is not None else
                 [c['name'] for c in insp.get_columns(table)])
        t = sa.table(table, *[sa.column(n) for n in names])
        out[table] = _sorted(tuple(row) for row in conn.execute(sa.select(t)))
    return out


def column_names(schema: dict) -> dict:
    return {table: [c[0] for c in info['columns']]
            for table, info in schema.items()}


def database_objects(conn) -> dict:
    """Triggers, and on PostgreSQL functions and sequences: things our
    migrations create besides tables and columns."""
    gen = ddl.for_dialect(conn.dialect.name)
    out = {'triggers': sorted(r[0] for r in
                              conn.exec_driver_sql(gen.existing_triggers_sql()))}
    if conn.dialect.name == 'postgresql':
        out['functions'] = sorted(conn.exec_driver_sql(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = current_schema()"
        ).scalars())
        out['sequences'] = sorted(conn.exec_driver_sql(
            "SELECT sequence_name FROM information_schema.sequences "
            "WHERE sequence_schema = current_schema()").scalars())
    return out


def sync_tables(conn) -> list[str]:
    return sorted(t for t in sa.inspect(conn).get_table_names()
                  if t.startswith(SYNC_PREFIX))


# -- the site -------------------------------------------------------------

@pytest.fixture
def make_keystone_site(backend, tmp_path):
    """Factory: a bootstrapped Keystone database of a release on
    ``backend``, without our schema; dropped afterwards. A factory rather
    than a fixture so that a missing virtualenv fails the test itself."""
    made = []

    def make(release: str, bootstrap: bool = True) -> sites.Site:
        venv = release_venv(release)
        dbname = f'ks_mig_{uuid.uuid4().hex[:10]}'
        url = backend.create(dbname)
        site = sites.Site(f'mig{release.replace(".", "")}', str(tmp_path),
                          url, venv=venv, capture=False)
        made.append((site, dbname))
        site.write_config()
        site.write_keys()  # bootstrap refuses to run without keys
        site.run('keystone-manage', 'db_sync')
        if not bootstrap:
            return site
        # The password goes through the environment, never argv.
        site.run('keystone-manage', 'bootstrap',
                 '--bootstrap-region-id', 'RegionOne',
                 '--bootstrap-public-url', site.url,
                 env={'OS_BOOTSTRAP_PASSWORD': secrets.token_hex(16)})
        return site

    yield make
    for site, dbname in made:
        site.stop()  # disposes of the engine
        backend.drop(dbname)


def manage(site, *args) -> str:
    """Run the site venv's keystone-syncext-manage; returns its stdout."""
    return site.run(MANAGE, *args).stdout


def assert_capture_installed(site, originals: dict) -> None:
    engine = site.engine()
    with engine.connect() as conn:
        assert migration.current(engine) == migration.head()
        assert set(sync_tables(conn)) >= set(tables.metadata.tables) | {
            migration.VERSION_TABLE}

        insp = sa.inspect(conn)
        gen = ddl.for_dialect(conn.dialect.name)
        backfilled = 0
        for res in spec.RESOURCES:
            have = {c['name'] for c in insp.get_columns(res.table)}
            assert set(spec.TIMESTAMPS) <= have, res.table
            t = gen.quote(res.table)
            total, unset = conn.exec_driver_sql(
                f'SELECT COUNT(*), COALESCE(SUM(CASE WHEN created_at IS NULL '
                f'OR updated_at IS NULL THEN 1 ELSE 0 END), 0) FROM {t}'
            ).one()
            assert unset == 0, f'{res.table}: {unset} of {total} rows ' \
                               'have no created_at/updated_at'
            backfilled += total
        # bootstrap made a domain, project, user, roles, implied roles
        # and assignments: the backfill had real rows to fill.
        assert backfilled >= 8

        expected = {t.name for t in install.expected_triggers(
            conn.dialect.name)}
        missing = expected - install.existing_trigger_names(conn)
        assert not missing, f'capture triggers missing: {sorted(missing)}'

        # Keystone's own columns and data are untouched by the upgrade.
        schema = schema_snapshot(conn)
        for table, info in originals['schema'].items():
            cols = schema[table]['columns']
            assert cols[:len(info['columns'])] == info['columns'], table
            assert [c[0] for c in cols[len(info['columns']):]] in (
                [], ['created_at', 'updated_at'], ['updated_at']), table
        assert data_snapshot(conn, column_names(originals['schema'])) == \
            originals['data']


def assert_capture_works(site) -> None:
    role_id = uuid.uuid4().hex
    role = sa.table('role', sa.column('id'), sa.column('name'),
                    sa.column('domain_id'), sa.column('extra'),
                    sa.column('created_at'), sa.column('updated_at'))
    change = tables.change.c
    tomb = tables.tombstone.c
    engine = site.engine()

    def changes(conn):
        return conn.execute(
            sa.select(change.id, change.resource_type, change.op,
                      change.origin)
            .where(change.resource_id == role_id).order_by(change.id)).all()

    with engine.begin() as conn:
        conn.execute(role.insert().values(
            id=role_id, name=f'mig-{role_id[:8]}', domain_id='<<null>>',
            extra='{}'))
    with engine.connect() as conn:
        created = changes(conn)
        assert [tuple(r[1:]) for r in created] == [('role', 'create', None)]
        stamps = conn.execute(sa.select(role.c.created_at, role.c.updated_at)
                              .where(role.c.id == role_id)).one()
        assert None not in stamps, 'the new role got no timestamps'

    with engine.begin() as conn:
        conn.execute(role.delete().where(role.c.id == role_id))
    with engine.connect() as conn:
        rows = changes(conn)
        assert [tuple(r[1:]) for r in rows] == [
            ('role', 'create', None), ('role', 'delete', None)]
        tombstone = conn.execute(
            sa.select(tomb.origin, tomb.change_id, tomb.deleted_at)
            .where(tomb.resource_type == 'role',
                   tomb.resource_id == role_id)).all()
        assert len(tombstone) == 1, tombstone
        assert tombstone[0].origin is None
        assert tombstone[0].change_id == rows[-1].id
        assert tombstone[0].deleted_at is not None


# -- the test -------------------------------------------------------------

@pytest.mark.parametrize('release', list(RELEASES))
def test_up_down_up(make_keystone_site, release):
    site = make_keystone_site(release)
    engine = site.engine()
    with engine.connect() as conn:
        assert sync_tables(conn) == []
        schema = schema_snapshot(conn)
        data = data_snapshot(conn)
        objects = database_objects(conn)
    originals = {'schema': schema, 'data': data}
    # What the downgrade must leave alone: Keystone's own created_at.
    assert 'created_at' in column_names(schema)['user']
    assert data['project'] and data['user'] and data['role']

    # Up, with this release's keystone-syncext-manage.
    out = manage(site, 'db_sync')
    assert f'Schema is at {migration.head()}.' in out, out
    assert 'Put back' not in out, out
    assert manage(site, 'db_version').splitlines()[-1] == migration.head()
    assert_capture_installed(site, originals)

    # Down to base: exactly what Keystone had, nothing of ours.
    out = manage(site, 'db_downgrade', 'base')
    assert 'Schema is at None.' in out, out
    with engine.connect() as conn:
        assert schema_snapshot(conn) == schema
        assert data_snapshot(conn) == data
        # Not even our version table.
        left = sync_tables(conn)
        assert left == [], f'sync tables left after downgrade: {left}'
        after = database_objects(conn)
        assert after == objects
        assert not [n for names in after.values() for n in names
                    if n.startswith(SYNC_PREFIX)]
    assert migration.current(engine) is None

    # Up again, and capture works.
    out = manage(site, 'db_sync')
    assert f'Schema is at {migration.head()}.' in out, out
    assert_capture_installed(site, originals)
    assert_capture_works(site)
    # The operator's check agrees that capture is complete.
    proc = site.run(MANAGE, 'check', check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_downgrade_restores_keystone_null_created_at(make_keystone_site):
    """A user older than Keystone's ``user.created_at`` has NULL there;
    our upgrade leaves it alone (it is Keystone's data), so going back to
    base leaves Keystone's data exactly as it was. In-process migrations,
    Keystone 30.0 only: what is judged is the data, not the release."""
    site = make_keystone_site('30.0', bootstrap=False)
    engine = site.engine()
    user = sa.table('user', sa.column('id'), sa.column('extra'),
                    sa.column('enabled'), sa.column('created_at'),
                    sa.column('domain_id'))
    with engine.begin() as conn:
        conn.execute(user.insert().values(
            id=uuid.uuid4().hex, extra='{}', enabled=True, created_at=None,
            domain_id='default'))
    with engine.connect() as conn:
        before = data_snapshot(conn)
    migration.upgrade(engine)
    migration.downgrade(engine, 'base')
    with engine.connect() as conn:
        assert data_snapshot(conn)['user'] == before['user']
