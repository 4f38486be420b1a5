"""The capture spec is consistent, and its SQL fits every database."""

import pytest
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.capture import ddl
from keystone_syncext.capture import install
from keystone_syncext.capture import spec
from keystone_syncext.common import types


def test_every_child_and_cascade_names_known_tables():
    tables = set(spec.RESOURCE_BY_TABLE) | set(spec.CHILD_BY_TABLE)
    for child in spec.CHILDREN:
        assert child.parent in spec.RESOURCE_BY_TABLE, child
    for cascade in spec.CASCADES:
        assert {cascade.parent, cascade.child} <= tables, cascade


def test_types_are_exactly_what_the_resources_produce():
    produced = set()
    for res in spec.RESOURCES:
        produced.update(t.strip("'") for t in
                        res.type_sql.replace('CASE WHEN {r}.is_domain THEN',
                                             '').replace('ELSE', '')
                        .replace('END', '').split())
    assert produced == set(spec.TYPES)


def test_each_rows_capture_is_its_own():
    """A row's capture entries make changes of that type: its tables
    produce its name (the project table: domains too), its child tables
    belong to its tables, and its cascades remove rows of its tables."""
    for info in types.TABLE:
        own = {e.table for e in info.capture
               if isinstance(e, spec.Resource)}
        for entry in info.capture:
            if isinstance(entry, spec.Resource):
                assert f"'{info.name}'" in entry.type_sql, entry
            elif isinstance(entry, spec.Child):
                assert entry.parent in own, entry
            else:
                assert entry.child in own | {
                    e.table for e in info.capture
                    if isinstance(e, spec.Child)}, entry
    assert types.lookup('domain').capture == ()


def test_site_local_columns_never_make_a_change():
    """Columns Keystone moves on every login are not in any synced list."""
    local = {('user', 'last_active_at'), ('local_user', 'failed_auth_count'),
             ('local_user', 'failed_auth_at')}
    synced = {(r.table, c) for r in spec.RESOURCES for c in r.synced} | {
        (c.table, col) for c in spec.CHILDREN for col in c.synced}
    assert not local & synced


@pytest.mark.parametrize('dialect', sorted(ddl.DIALECTS))
def test_one_trigger_per_table_and_event(dialect):
    triggers = ddl.for_dialect(dialect).triggers()
    names = [t.name for t in triggers]
    assert len(names) == len(set(names))
    expected = 3 * (len(spec.RESOURCES) + len(spec.CHILDREN)) + 1
    assert len(triggers) == expected
    assert all(len(n) <= 63 for n in names)  # PostgreSQL's limit


def test_unknown_dialect_is_refused_clearly():
    with pytest.raises(ValueError, match='supports mysql, postgresql, '
                                         'sqlite, not oracle'):
        ddl.for_dialect('oracle')


class _Orig(Exception):
    pass


class _Conn:
    """Raises what PyMySQL raises for CREATE TRIGGER without SUPER while
    binary logging is on (there is no binlog on the test server)."""

    def exec_driver_sql(self, stmt):
        raise sa.exc.OperationalError(stmt, {}, _Orig(
            1419, 'You do not have the SUPER privilege and binary logging '
            'is enabled'))


def test_binlog_privilege_error_says_what_to_do():
    with pytest.raises(exception.CaptureError) as err:
        install._execute_ddl(_Conn(), 'CREATE TRIGGER x')
    assert 'log_bin_trust_function_creators' in str(err.value)
    assert 'SUPER' in str(err.value)
