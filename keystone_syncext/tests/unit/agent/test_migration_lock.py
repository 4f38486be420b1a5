"""The state database's migration lock is held until the migration's
transaction committed. Let go before, a member waiting for it on MariaDB
read a version row the migration had not committed yet and ran the last
step again ("Duplicate column name 'last_audit_at'", seen in CI in
test_members.py::test_members_starting_together_migrate_once)."""

import pytest
import sqlalchemy as sa

from keystone_syncext.agent import state as state_mod
from keystone_syncext.tests import conftest

HELD = {
    'mysql': "SELECT IS_USED_LOCK('keystone_sync_migrate') IS NOT NULL",
    'postgresql': "SELECT count(*) > 0 FROM pg_locks "
                  "WHERE locktype = 'advisory' AND granted",
}


def test_the_lock_is_held_when_the_migration_commits(backend):
    if backend.name not in HELD:
        pytest.skip('SQLite has no migration lock: one writer at a time')
    name = conftest.unique_name('agent_migrate')
    st = state_mod.State(backend.create(name))
    watcher = sa.create_engine(st.engine.url)
    held = []

    def at_commit(conn):
        with watcher.connect() as w:
            held.append(bool(w.execute(sa.text(HELD[backend.name]))
                             .scalar()))
    sa.event.listen(st.engine, 'commit', at_commit)
    try:
        st.migrate()
        assert held and all(held), held
    finally:
        sa.event.remove(st.engine, 'commit', at_commit)
        st.engine.dispose()
        watcher.dispose()
        backend.drop(name)
