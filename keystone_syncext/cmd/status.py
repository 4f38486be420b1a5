"""``keystone-syncext-status upgrade check``: the extension's checks where
operators of OpenStack look for them (``<service>-status upgrade check``,
oslo.upgradecheck's command line and exit codes: 0 success, 1 warning,
2 failure, 255 the check itself broke).

The checks are ``keystone-syncext-manage check``'s (``manage.Checks``),
read from the same keystone.conf (``--config-file``/``--config-dir``).
"""

import sys

from oslo_upgradecheck import upgradecheck

from keystone_syncext.cmd import manage


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``keystone-syncext-status``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    manage.register_opts()
    checks = manage.Checks()
    try:
        return upgradecheck.main(manage.CONF, project='keystone',
                                 upgrade_command=checks, argv=argv)
    finally:
        checks.dispose()


if __name__ == '__main__':
    sys.exit(main())
