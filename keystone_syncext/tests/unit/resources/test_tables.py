"""Each id-keyed type reads and writes Keystone's own table: by default the
table named as the type (common.IdTable.table_name), domains and projects
the shared ``project`` table."""

from keystone_syncext import resources
from keystone_syncext.resources import common

TABLES = {
    'domain': 'project', 'project': 'project', 'role': 'role',
    'user': 'user', 'group': 'group',
    'application_credential': 'application_credential',
    'mapping': 'mapping', 'identity_provider': 'identity_provider',
}


def test_id_tables():
    found = {t.name: t.table_name for t in resources.TYPES.values()
             if isinstance(t, common.IdTable)}
    assert found == TABLES
