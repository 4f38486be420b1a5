"""``keystone-syncext-manage``: migrations, health check and purge.

Shaped like ``keystone-manage``: one oslo.config ``SubCommandOpt`` on
Keystone's own CONF, so the same ``--config-file``/``--config-dir``
(default: keystone.conf) configure both, and the extension always talks to
the database Keystone uses. Each command is a thin layer over
``keystone_syncext.db.migration``, ``capture.install`` and ``changes``.
"""

import datetime
import sys

from keystone.common import sql
import keystone.conf
from oslo_config import cfg
from oslo_db.sqlalchemy import engines
from oslo_log import log
from oslo_upgradecheck import upgradecheck
import pbr.version
import sqlalchemy as sa

from keystone_syncext import conf as sync_conf
from keystone_syncext import exception
from keystone_syncext.capture import install
from keystone_syncext.db import migration
from keystone_syncext.db import tables
from keystone_syncext.feed import changes

CONF = keystone.conf.CONF
LOG = log.getLogger(__name__)

Code = upgradecheck.Code
Result = upgradecheck.Result


def _engine() -> sa.engine.Engine:
    db = CONF.database
    return engines.create_engine(
        db.connection, mysql_sql_mode=db.mysql_sql_mode,
        max_retries=db.max_retries, retry_interval=db.retry_interval)


class Command:
    """A subcommand: its name, its help (the docstring), its arguments."""

    name = ''
    # Its own arguments: each name with its keywords for add_argument.
    arguments: dict[str, dict] = {}

    @classmethod
    def add_argument_parser(cls, subparsers):
        parser = subparsers.add_parser(cls.name, help=cls.__doc__)
        for argument, keywords in cls.arguments.items():
            parser.add_argument(argument, **keywords)
        parser.set_defaults(cmd_class=cls)

    @staticmethod
    def main(engine) -> int:
        raise NotImplementedError


class DbSync(Command):
    """Upgrade the extension's schema and put back any missing capture."""

    name = 'db_sync'
    arguments = {'--revision': {
        'default': 'head', 'help': 'Revision to upgrade to (default: head).'}}

    @staticmethod
    def main(engine) -> int:
        repaired = migration.upgrade(engine, CONF.command.revision)
        # Something (usually a Keystone upgrade rebuilding a table) removed
        # part of capture; say so, since changes made meanwhile are lost.
        if repaired['columns']:
            print('Put back missing timestamp columns: ' + ', '.join(
                f'{t}.{c}' for t, c in repaired['columns']))
        if repaired['triggers']:
            print('Put back missing capture triggers: '
                  + ', '.join(repaired['triggers']))
        if repaired['columns'] or repaired['triggers']:
            print('Started a new feed history: every reader\'s cursor is '
                  'refused (410) and readers reconcile the changes that '
                  'went unrecorded.')
        print(f'Schema is at {migration.current(engine)}.')
        return 0


class DbDowngrade(Command):
    """Downgrade the extension's schema ('base' removes all it added)."""

    name = 'db_downgrade'
    arguments = {'revision': {'help': "Target revision, or 'base'."}}

    @staticmethod
    def main(engine) -> int:
        migration.downgrade(engine, CONF.command.revision)
        print(f'Schema is at {migration.current(engine)}.')
        return 0


class DbVersion(Command):
    """Print the extension's schema revision ('None' if never migrated)."""

    name = 'db_version'

    @staticmethod
    def main(engine) -> int:
        print(migration.current(engine))
        return 0


class Checks(upgradecheck.UpgradeCommands):
    """Is this database ready for sync, and is capture complete?

    The checks of both ``keystone-syncext-manage check`` and
    ``keystone-syncext-status upgrade check`` (cmd/status.py). Without an
    engine, the checks make one from CONF when they first need it: the
    status command builds its checks before it parses the configuration.
    """

    display_title = 'keystone-syncext check'

    def __init__(self, engine: sa.engine.Engine | None = None):
        self._engine = engine

    @property
    def engine(self) -> sa.engine.Engine:
        if self._engine is None:
            self._engine = _engine()
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _keystone_schema(self):
        # Imported here: it drags in eventlet (and its warnings), which
        # only this check needs.
        from keystone.common.sql import upgrades
        expected = set(upgrades.get_head_revisions().values())
        with self.engine.connect() as conn:
            have = set()
            if sa.inspect(conn).has_table('alembic_version'):
                have = set(conn.exec_driver_sql(
                    'SELECT version_num FROM alembic_version').scalars())
        if not have:
            return Result(Code.FAILURE, 'Keystone\'s schema is missing from '
                          'this database: run "keystone-manage db_sync".')
        if have != expected:
            return Result(Code.FAILURE, 'Keystone\'s schema is at %s, this '
                          'Keystone expects %s: run "keystone-manage '
                          'db_sync".' % (sorted(have), sorted(expected)))
        return Result(Code.SUCCESS)

    def _migrations(self):
        have, want = migration.current(self.engine), migration.head()
        if have != want:
            return Result(Code.FAILURE, f'Sync schema is at {have}, not '
                          f'{want}: run "keystone-syncext-manage db_sync".')
        return Result(Code.SUCCESS)

    def _capture(self):
        if migration.current(self.engine) is None:
            return Result(Code.FAILURE, 'Change capture is not installed: '
                          'run "keystone-syncext-manage db_sync".')
        with self.engine.connect() as conn:
            try:
                install.require_keystone_schema(conn)
            except exception.CaptureError as exc:
                return Result(Code.FAILURE, str(exc))
            triggers, columns = install.missing(conn)
        if triggers or columns:
            return Result(Code.FAILURE, 'Change capture is incomplete, so '
                          'changes are going unrecorded. Missing: %s. Run '
                          '"keystone-syncext-manage db_sync" to put them '
                          'back.' % ', '.join(triggers + columns))
        return Result(Code.SUCCESS)

    def _site_id(self):
        if not CONF.sync.site_id:
            return Result(Code.WARNING, '[sync] site_id is not set: set it '
                          'to the name of this deployment, unique among the '
                          'sites that sync together.')
        return Result(Code.SUCCESS)

    def _write_context(self):
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(tables.write_context.name):
                return Result(Code.SUCCESS, 'No sync tables yet.')
            origins = conn.execute(
                sa.select(tables.write_context.c.origin)).scalars().all()
        if origins:
            # The row is never meant to be committed. On PostgreSQL the
            # triggers read it, so every local change would look as if it
            # came from that site; everywhere, it blocks the next sync write.
            return Result(Code.FAILURE, 'sync_write_context holds committed '
                          'rows (origin %s): local changes may be recorded as '
                          'coming from elsewhere and sync writes will fail. '
                          'Delete them: DELETE FROM sync_write_context;'
                          % ', '.join(sorted(set(origins))))
        return Result(Code.SUCCESS)

    _upgrade_checks = (
        ('Keystone schema', _keystone_schema),
        ('Sync migrations', _migrations),
        ('Change capture', _capture),
        ('Site id', _site_id),
        ('Write context', _write_context),
    )


class Check(Command):
    """Check the database is ready for sync and capture is complete."""

    name = 'check'

    @staticmethod
    def main(engine) -> int:
        return int(Checks(engine).check())


class Purge(Command):
    """Remove changes and tombstones older than their retention."""

    name = 'purge'
    arguments = {'--dry-run': {
        'action': 'store_true',
        'help': 'Say what would be removed; remove nothing.'}}

    @staticmethod
    def main(engine) -> int:
        if migration.current(engine) is None:
            raise exception.CommandError('No sync tables here: run '
                               '"keystone-syncext-manage db_sync" first.')
        dry_run = CONF.command.dry_run
        change_days = CONF.sync.change_retention_days
        tomb_days = CONF.sync.tombstone_retention_days
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        with engine.connect() as conn, conn.begin() as tx:
            done = changes.purge(conn, now,
                                 datetime.timedelta(days=change_days),
                                 datetime.timedelta(days=tomb_days))
            # A dry run is the real purge, rolled back: the numbers it
            # prints are exactly what a real run would have removed.
            if dry_run:
                tx.rollback()
        verb = 'Would remove' if dry_run else 'Removed'
        print(f'{verb} {done["changes"]} change(s) older than {change_days} '
              f'day(s) and {done["tombstones"]} tombstone(s) older than '
              f'{tomb_days} day(s).')
        print(f'Oldest valid cursor: position {done["purged_through"]} '
              '(the change feed resumes after it).')
        return 0


COMMANDS = [DbSync, DbDowngrade, DbVersion, Check, Purge]


def add_command_parsers(subparsers):
    for command in COMMANDS:
        command.add_argument_parser(subparsers)


command_opt = cfg.SubCommandOpt('command', title='Commands',
                                help='Available commands',
                                handler=add_command_parsers)


def register_opts() -> None:
    """As keystone-manage does: Keystone's options and defaults first, so
    keystone.conf parses exactly as it does for Keystone itself; then
    ours."""
    keystone.conf.configure()
    sql.initialize()
    keystone.conf.set_default_for_default_log_levels()
    sync_conf.register_opts(CONF)


def version() -> str:
    return pbr.version.VersionInfo('keystone-syncext').version_string()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``keystone-syncext-manage``; returns the exit code."""
    argv = sys.argv if argv is None else argv
    CONF.register_cli_opt(command_opt)
    register_opts()
    CONF(args=argv[1:], project='keystone', version=version(),
         usage='%(prog)s [' + '|'.join(c.name for c in COMMANDS) + ']')
    log.setup(CONF, 'keystone_syncext')
    engine = _engine()
    try:
        return CONF.command.cmd_class.main(engine)
    except (exception.CaptureError, exception.CommandError) as exc:
        print(f'ERROR: {exc}', file=sys.stderr)
        return 1
    finally:
        engine.dispose()


if __name__ == '__main__':
    sys.exit(main())
