"""The secret scan finds a planted secret, says where, and never shows it
whole; it scans only logs, and refuses to pass by scanning nothing."""

import sqlite3

import pytest
import sqlalchemy as sa

from keystone_syncext.testing import secrets

SECRET = 'hunter2-0123456789abcdef'


@pytest.fixture
def collector():
    c = secrets.Collector()
    c.secret(SECRET, 'password of someone')
    return c


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_planted_secret_is_found_with_file_and_line(tmp_path, collector):
    log = _write(tmp_path / 'site' / 'keystone.log',
                 'INFO starting\n'
                 f'DEBUG auth with {SECRET} for user x\n')
    _write(tmp_path / 'site' / 'uwsgi.log', 'GET /v3 200\n')
    collector.log_dir(str(tmp_path))

    hits = collector.scan()

    assert [(h.where, h.line, h.what) for h in hits] == [
        (str(log), 2, 'password of someone')]
    shown = secrets.report(hits)
    assert f'{log}:2: password of someone hunt...' in shown
    assert SECRET not in shown


def test_clean_logs_pass(tmp_path, collector):
    _write(tmp_path / 'keystone.log', 'nothing to see\n')
    collector.log_dir(str(tmp_path))
    assert collector.scan() == []


def test_only_log_files_are_scanned(tmp_path, collector):
    # clouds.yaml holds passwords by design; it is not a log.
    _write(tmp_path / 'clouds.yaml', f'password: {SECRET}\n')
    _write(tmp_path / 'agent.log', 'synced\n')
    collector.log_dir(str(tmp_path))
    assert collector.scan() == []


def test_a_single_file_and_captured_output(tmp_path, collector):
    log = _write(tmp_path / 'somewhere.txt', f'{SECRET}\n')
    collector.log_file(str(log))
    collector.output('keystone-sync run stderr', f'ok\nfailed: {SECRET}\n')
    assert sorted((h.where, h.line) for h in collector.scan()) == [
        (str(log), 1), ('keystone-sync run stderr', 2)]


def test_a_directory_without_logs_fails(tmp_path, collector):
    collector.log_dir(str(tmp_path))
    with pytest.raises(AssertionError, match='no log file'):
        collector.scan()


def test_short_and_empty_values_are_not_secrets(collector):
    collector.secret('', 'empty')
    collector.secret(None, 'none')
    collector.secret('abc', 'short')
    assert set(collector.secrets) == {SECRET}


def test_hashes_are_read_from_a_keystone_database(tmp_path, collector):
    path = tmp_path / 'keystone.db'
    with sqlite3.connect(path) as db:
        db.execute('CREATE TABLE password (password_hash TEXT)')
        db.execute('CREATE TABLE application_credential (secret_hash TEXT)')
        db.execute("INSERT INTO password VALUES ('$2b$04$abcdefghijkl'), "
                   '(NULL)')
        db.execute("INSERT INTO application_credential "
                   "VALUES ('$2b$04$mnopqrstuvwx')")
    engine = sa.create_engine(f'sqlite:///{path}')
    collector.hashes_of(engine)
    engine.dispose()
    assert collector.secrets == {
        SECRET: 'password of someone',
        '$2b$04$abcdefghijkl': 'password.password_hash',
        '$2b$04$mnopqrstuvwx': 'application_credential.secret_hash'}
    _write(tmp_path / 'keystone.log', 'hash $2b$04$mnopqrstuvwx leaked\n')
    collector.log_dir(str(tmp_path))
    assert [h.what for h in collector.scan()] == [
        'application_credential.secret_hash']


def test_clear_forgets_everything(tmp_path, collector):
    collector.log_dir(str(tmp_path))
    collector.output('x', SECRET)
    collector.clear()
    assert (collector.secrets, collector.dirs, collector.outputs) == (
        {}, set(), [])
