"""``keystone-sync``: the command line, a cliff application.

::

    keystone-sync [--config-file FILE] [--log-file FILE] [--debug] COMMAND
    keystone-sync run --hub CLOUD --spoke CLOUD [--spoke CLOUD ...]
                      [--state URL] [--once]
    keystone-sync status [--state URL] [-f FORMAT] [-c COLUMN]
    keystone-sync status hub [--state URL] [-f FORMAT]
    keystone-sync conflicts [--state URL] [--spoke CLOUD] [--limit N]
    keystone-sync conflict show ID [--state URL]
    keystone-sync join --hub CLOUD --spoke CLOUD [--exclude TYPE:NAME]
                       [--merge USER] [--dry-run]
    keystone-sync reconcile --hub CLOUD --spoke CLOUD [--spoke CLOUD ...]
                            [--state URL] [--dry-run]

Every report is a cliff Lister or ShowOne, so ``-f table|json|yaml|value|
csv`` and ``-c COLUMN`` work on each (``--json`` stays as an alias of
``-f json``). Every flag can come from a config file instead
(``--config-file``, or ``keystone-sync.conf`` where oslo.config looks for
it: ``[DEFAULT] hub``, ``spokes``, ``state`` and the tuning options; see
``etc/keystone-sync.conf.sample``). Flags override the file. The
selective sync rules (``[selection]``, ``[spoke:NAME]``) are in the file
only.
"""

import argparse
import faulthandler
import gc
from importlib import metadata
import signal
import sys

from cliff import app
from cliff import commandmanager
from oslo_config import cfg
from oslo_log import log

from keystone_syncext.agent import cli_sites
from keystone_syncext.agent import cli_state
from keystone_syncext.agent import opts

# Request logs could carry what the bodies carry: keep them out.
QUIET = ['keystoneauth=WARN', 'openstack=WARN', 'urllib3=WARN',
         'stevedore=WARN', 'alembic=WARN', 'cliff=WARN']


def _version() -> str:
    try:
        return metadata.version('keystone-syncext')
    except metadata.PackageNotFoundError:
        return 'unknown'


def _commands() -> dict:
    return {'run': cli_sites.Run, 'join': cli_sites.Join,
            'reconcile': cli_sites.Reconcile,
            'status': cli_state.Status, 'status hub': cli_state.HubStatus,
            'conflicts': cli_state.Conflicts,
            'conflict show': cli_state.ConflictShow}


class KeystoneSync(app.App):
    """The application: cliff parses the command line, oslo.config the
    config files (``self.conf``) and oslo.log sets up the logging."""

    def __init__(self):
        manager = commandmanager.CommandManager(None)
        for name, command in _commands().items():
            manager.add_command(name, command)
        super().__init__(description='keystone-sync: keep the spokes in '
                         'step with a hub', version=_version(),
                         command_manager=manager, deferred_help=True)
        self.conf = None

    def build_option_parser(self, description, version,
                            argparse_kwargs=None):
        parser = super().build_option_parser(description, version,
                                             argparse_kwargs)
        parser.add_argument('--config-file', action='append', default=[],
                            metavar='PATH',
                            help='a config file (repeatable; default: '
                            'keystone-sync.conf where oslo.config looks)')
        parser.add_argument('--config-dir', action='append', default=[],
                            metavar='DIR',
                            help='a directory of *.conf files (repeatable)')
        return parser

    def configure_logging(self):
        """oslo.config and oslo.log instead of cliff's own logging: the
        global options go to oslo.config as if they were its own."""
        self.conf = make_conf(self.options)
        log.setup(self.conf, 'keystone-sync')

    def clean_up(self, cmd, result, err):
        """cliff logs a command's error; when the log goes to a file,
        say it on stderr too, as the errors printed there always were."""
        if err is not None and (self.conf.log_file or self.conf.log_dir):
            self.stderr.write(f'keystone-sync: {err}\n')


def make_conf(options: argparse.Namespace) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    log.set_defaults(default_log_levels=log.get_default_log_levels()
                     + QUIET)
    opts.register(conf)
    args = [a for path in options.config_file
            for a in ('--config-file', path)]
    args += [a for path in options.config_dir for a in ('--config-dir', path)]
    if options.log_file:
        args += ['--log-file', options.log_file]
    if options.debug:
        args.append('--debug')
    conf(args, project='keystone-sync')
    return conf


def main(argv=None) -> int:
    # Where each thread is, on stderr, for an operator (or a test)
    # looking at a command that seems stuck (``run``, a long reconcile):
    # SIGUSR2, the signal OpenStack services' reports answer. Before
    # anything else, so that the signal never meets its default action
    # (the end of the process). To the process's stderr (file
    # descriptor 2): ``sys.stderr`` may be no file at all when main() is
    # called in-process (a test capturing its output).
    faulthandler.register(signal.SIGUSR2, file=2, all_threads=True)
    if argv is None:
        # As the command (not called in-process with its arguments):
        # what the imports made (some 120,000 objects, kept for the
        # process's life) out of every later full garbage collection;
        # each walked them all, a pause of about 60 ms in whatever a
        # thread of the run was doing (doc/benchmarks.md).
        gc.collect()
        gc.freeze()
        argv = sys.argv[1:]
    return KeystoneSync().run(argv)


if __name__ == '__main__':
    sys.exit(main())
