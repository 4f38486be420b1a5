"""Conflict records at rest: the hashes of secrets are kept as keyed
fingerprints (never the hash), existing records are fingerprinted by the
migration, and records past the retention are pruned."""

import datetime
import hashlib
import hmac
import json

import sqlalchemy as sa

from keystone_syncext.agent import conflicts
from keystone_syncext.agent import state as state_mod

T0 = datetime.datetime(2026, 12, 1, 12, 0, 0)
PASSWORD_HASH = '$2b$04$' + 'P' * 53
SECRET_HASH = '$2b$04$' + 'S' * 53


def _user(password_hash):
    return {'id': 'u1', 'name': 'ops', 'domain_id': 'default',
            'local': {'name': 'ops', 'passwords': [
                {'hash': password_hash, 'created_at': 'x'}]}}


def _record(st, type_, id_, hub, spoke):
    change = state_mod.Change(1, type_, id_, 'upsert', resource=hub,
                              hash_=f'h-{id_}-hub', if_match='h-base')
    conflicts.record(st, conflicts.HUB_WINS, 's1', change,
                     conflicts.Side(hub, f'h-{id_}-hub', T0),
                     conflicts.Side(spoke, f'h-{id_}-spoke', T0),
                     conflicts.Verdict(conflicts.HUB, 'the hub wins'))


def _state(tmp_path, **kw):
    st = state_mod.State(f'sqlite:///{tmp_path}/state.sqlite', **kw)
    st.migrate()
    st.set_hub('h', 'hub-site', 'c0')
    st.spoke('s1')
    return st


def _raw(st) -> str:
    """Every stored byte of the conflict table, as text."""
    with st.engine.connect() as conn:
        return repr(conn.execute(sa.select(state_mod.conflict)).all())


def test_conflict_records_keep_fingerprints_not_hashes(tmp_path):
    st = _state(tmp_path)
    _record(st, 'user', 'u1', _user(PASSWORD_HASH), _user('$2b$04$' + 'Q' *
                                                          53))
    cred = {'id': 'c1', 'name': 'c', 'secret_hash': SECRET_HASH}
    _record(st, 'application_credential', 'c1', cred, cred)
    raw = _raw(st)
    assert PASSWORD_HASH not in raw and SECRET_HASH not in raw
    rows = {r.resource_id: r for r in st.conflicts()}
    key = st.fingerprint_key()
    want = 'hmac-sha256:' + hmac.new(key, PASSWORD_HASH.encode(),
                                     hashlib.sha256).hexdigest()
    hub_user = json.loads(rows['u1'].hub_version)
    spoke_user = json.loads(rows['u1'].spoke_version)
    assert hub_user['local']['passwords'][0]['hash'] == want
    # Different hashes, different fingerprints; the same, the same.
    assert spoke_user['local']['passwords'][0]['hash'] != want
    hub_cred = json.loads(rows['c1'].hub_version)
    assert hub_cred['secret_hash'] == \
        json.loads(rows['c1'].spoke_version)['secret_hash']
    assert hub_cred['secret_hash'].startswith('hmac-sha256:')
    # The key is random per state database, and kept.
    assert len(key) == 32
    assert state_mod.State(st.url).fingerprint_key() == key
    st.engine.dispose()


def test_the_migration_fingerprints_existing_records(tmp_path):
    st = state_mod.State(f'sqlite:///{tmp_path}/state.sqlite')
    st.migrate('a004')
    with st.engine.begin() as conn:
        conn.execute(sa.text(
            'INSERT INTO agent_conflict (detected_at, spoke, type, '
            'resource_id, strategy, winner, reason, hub_version, '
            'spoke_version) VALUES (:t, :s, :ty, :id, :st, :w, :r, :h, :sp)'
        ), [{'t': T0, 's': 's1', 'ty': 'user', 'id': 'u1', 'st': 'hub_wins',
             'w': 'hub', 'r': 'x', 'h': json.dumps(_user(PASSWORD_HASH)),
             'sp': None},
            {'t': T0, 's': 's1', 'ty': 'project', 'id': 'p1',
             'st': 'hub_wins', 'w': 'hub', 'r': 'x',
             'h': json.dumps({'id': 'p1', 'name': 'web'}), 'sp': None}])
    st.migrate()
    assert PASSWORD_HASH not in _raw(st)
    rows = {r.resource_id: r for r in st.conflicts()}
    stored = json.loads(rows['u1'].hub_version)
    assert stored['local']['passwords'][0]['hash'].startswith(
        'hmac-sha256:')
    assert rows['u1'].spoke_version is None
    assert json.loads(rows['p1'].hub_version) == {'id': 'p1', 'name': 'web'}
    # Fingerprinted with the key the agent uses from now on.
    key = st.fingerprint_key()
    assert stored['local']['passwords'][0]['hash'] == 'hmac-sha256:' + \
        hmac.new(key, PASSWORD_HASH.encode(), hashlib.sha256).hexdigest()
    st.downgrade('a004')
    st.migrate()
    st.engine.dispose()


def test_records_past_the_retention_are_pruned(tmp_path):
    st = _state(tmp_path, conflict_retention_days=30)
    for id_ in ('old', 'recent'):
        _record(st, 'project', id_, {'id': id_}, {'id': id_, 'x': 1})
    with st.engine.begin() as conn:
        conn.execute(state_mod.conflict.update()
                     .where(state_mod.conflict.c.resource_id == 'old')
                     .values(detected_at=state_mod.now() -
                             datetime.timedelta(days=31)))
    st.prune(['s1'])      # what run calls after each read of the feed
    assert [r.resource_id for r in st.conflicts()] == ['recent']
    assert st.report()['spokes'][0]['conflicts'] == 1
    # Without a retention (status, conflicts...), nothing is pruned.
    assert state_mod.State(st.url).prune(['s1']) == 0
    assert st.prune_conflicts(30) == 0
    st.engine.dispose()
