"""``keystone-sync run`` as a service: metrics, systemd, SIGHUP.

- ``[metrics] listen`` set: Prometheus metrics served over HTTP from the
  start of the run (:mod:`keystone_syncext.agent.metrics`).
- Under systemd (``Type=notify``, ``etc/keystone-sync.service``):
  ``READY=1`` once the hub answered and every thread started,
  ``WATCHDOG=1`` from the run's main loop (about once a second) when the
  unit sets ``WatchdogSec``, ``RELOADING=1`` around a reload and
  ``STOPPING=1`` at the end (``sdnotify``; nothing is sent without
  ``NOTIFY_SOCKET``).
- SIGHUP: the selection and conflict rules are read again from the
  config files (options marked mutable; oslo.config's
  ``mutate_config_files`` keeps every other option as it was, with a
  warning naming it) and take effect at each spoke's next pass. Rules
  that do not parse are refused, logged, and the rules in force kept.
"""

import logging
import os
import signal
import threading
import time

import sdnotify

from keystone_syncext.agent import context as context_mod

LOG = logging.getLogger(__name__)


class Service:
    """The service side of one run (a :class:`context.Context`)."""

    def __init__(self, ctx: context_mod.Context):
        self.ctx = ctx
        self.notifier = sdnotify.SystemdNotifier()
        self.server = None
        self.reloads = 0
        self._last_ping = 0.0
        # WatchdogSec in the unit: ping twice per period.
        usec = os.environ.get('WATCHDOG_USEC', '')
        self._ping_every = int(usec) / 2e6 if usec.isdigit() else None
        self._reloading = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        """Serve the metrics, when ``[metrics] listen`` says where."""
        listen = self.ctx.conf.metrics.listen
        if not listen or self.server is not None:
            return
        self.ctx.metrics.watch(self.ctx)
        try:
            self.server = self.ctx.metrics.serve(listen)
        except (OSError, ValueError) as e:
            raise SystemExit(f'keystone-sync: cannot serve metrics at '
                             f'{listen}: {e}') from None

    def ready(self) -> None:
        """The run is connected and its threads started."""
        self.notifier.notify('READY=1\nSTATUS=syncing '
                             f'{len(self.ctx.spokes)} spokes')

    def tick(self) -> None:
        """From the run's main loop (about once a second): the systemd
        watchdog's ping, twice per ``WatchdogSec`` when the unit sets
        one."""
        now = time.monotonic()
        if self._ping_every and now - self._last_ping >= self._ping_every:
            self._last_ping = now
            self.notifier.notify('WATCHDOG=1')

    def stopping(self) -> None:
        """The run is ending (its threads finish what is in flight)."""
        if not self._stopping:
            self._stopping = True
            self.notifier.notify('STOPPING=1')

    def stop(self) -> None:
        """The run ended: stop serving the metrics."""
        self.stopping()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- SIGHUP -------------------------------------------------------

    def on_sighup(self, rules) -> None:
        """Reload the rules on SIGHUP: ``rules()`` re-reads the config
        files and returns (selections, resolver), or raises
        ``SystemExit`` with what is wrong. The reload runs in a thread of
        its own, not in the signal handler."""
        def handler(_signum, _frame):
            threading.Thread(target=self.reload, args=(rules,),
                             name='reload', daemon=True).start()
        signal.signal(signal.SIGHUP, handler)

    def reload(self, rules) -> bool:
        """Take the rules ``rules()`` gives; whether they were taken."""
        with self._reloading:
            self.notifier.notify('RELOADING=1')
            LOG.info('SIGHUP: reading the selection and conflict rules '
                     'again')
            try:
                selections, resolver = rules()
            except SystemExit as e:
                LOG.error('SIGHUP: %(err)s; the rules in force are kept',
                          {'err': e})
                return False
            except Exception as e:
                LOG.error('SIGHUP: the config files could not be read '
                          '(%(err)s); the rules in force are kept',
                          {'err': e})
                return False
            finally:
                self.notifier.notify('READY=1')
            self.ctx.selections = selections
            self.ctx.resolver = resolver
            self.reloads += 1
            LOG.info('SIGHUP: new rules in force for %(n)d spokes '
                     '(reload %(k)d)', {'n': len(self.ctx.spokes),
                                        'k': self.reloads})
            return True

