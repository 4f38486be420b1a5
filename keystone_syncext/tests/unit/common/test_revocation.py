"""The identity of a revocation event: the capture triggers' SQL and the
resource module's Python name an event alike."""

import datetime

import pytest
import sqlalchemy as sa

from keystone_syncext.capture import ddl
from keystone_syncext.common import revocation

T1 = datetime.datetime(2026, 12, 7, 0, 29, 17)
T2 = datetime.datetime(2026, 12, 7, 1, 2, 3)

EVENTS = [
    # A password change or a disabled user.
    {'issued_before': T1, 'revoked_at': T1, 'user_id': 'u' * 32},
    # Keystone's group membership change: issued_before a second earlier.
    {'issued_before': T1 - datetime.timedelta(seconds=1), 'revoked_at': T1,
     'user_id': 'u' * 32},
    # A logout: the token's audit id, and its chain with a project.
    {'issued_before': T2, 'revoked_at': T2, 'audit_id': 'aZ-_09' * 3 + 'x'},
    {'issued_before': T2, 'revoked_at': T2, 'audit_chain_id': 'c' * 22,
     'project_id': 'p' * 64},
    # A domain-scoped revocation with an expiry.
    {'issued_before': T2, 'revoked_at': T2, 'expires_at': T1,
     'domain_id': 'default'},
    # Fractions of a second (never made by Keystone): cut, not rounded.
    {'issued_before': T1.replace(microsecond=999999), 'revoked_at': T2,
     'trust_id': 't1'},
]


def test_identity_names_every_column_in_a_fixed_order():
    assert revocation.identity(EVENTS[0]) == (
        '20261207002917:20261207002917::' + 'u' * 32 + ':' * 8)
    assert revocation.identity(EVENTS[4]) == (
        '20261207010203:20261207010203:20261207002917:::default' + ':' * 6)
    # Canonical times and datetimes give the same id.
    canonical = {k: revocation.canonical_time(v)
                 if isinstance(v, datetime.datetime) else v
                 for k, v in EVENTS[3].items()}
    assert revocation.identity(canonical) == revocation.identity(EVENTS[3])
    # Different events, different ids.
    assert len({revocation.identity(e) for e in EVENTS}) == len(EVENTS)


def test_canonical_time_is_whole_seconds():
    assert revocation.canonical_time(T1.replace(microsecond=5)) == \
        '2026-12-07T00:29:17.000000Z'
    assert revocation.canonical_time(None) is None


@pytest.mark.parametrize('event', EVENTS)
def test_ids_have_the_published_form(event):
    import re
    assert re.fullmatch(revocation.ID_PATTERN, revocation.identity(event))


def test_the_triggers_sql_makes_the_same_id_on_sqlite(tmp_path):
    """The id expression of the capture spec, as the SQLite triggers use
    it, on rows stored the way Keystone's model stores them."""
    engine = sa.create_engine(f'sqlite:///{tmp_path}/r.sqlite')
    meta = sa.MetaData()
    t = sa.Table('revocation_event', meta,
                 sa.Column('id', sa.Integer, primary_key=True),
                 *(sa.Column(c, sa.DateTime()) for c in revocation.TIMES),
                 *(sa.Column(c, sa.String(64)) for c in revocation.IDS))
    meta.create_all(engine)
    id_sql = ddl.for_dialect('sqlite').concat(
        [p.format(r='r') for p in revocation.ID_PARTS])
    with engine.begin() as conn:
        for event in EVENTS:
            conn.execute(t.insert().values(event))
        got = [row[0] for row in conn.exec_driver_sql(
            f'SELECT {id_sql} FROM revocation_event r ORDER BY r.id')]
    assert got == [revocation.identity(e) for e in EVENTS]
