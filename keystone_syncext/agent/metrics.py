"""The agent's Prometheus metrics (``[metrics] listen``).

What ``keystone-sync status`` shows is read from the state database at
each scrape by :class:`StateCollector`, with the same
:meth:`keystone_syncext.agent.state.State.report`, so the two always
agree: per spoke the lag (changes and seconds), pending items, conflicts
recorded, failures in a row, state, last success and the last audit with
what it found. What only the running process knows is counted as it
happens (:class:`Metrics`): resources written per site, errors per site
and kind, audits and what they repaired. Ownership and leadership come
from the run's :class:`~keystone_syncext.agent.context.Context`
(``member_id``, ``owned_spokes()``, ``is_leader()``).

Every metric name is in :data:`NAMES` (the dashboard and the alert rules
in ``doc/`` use only those: ``tests/unit/agent/test_metrics.py``).
"""

import datetime
import logging

import prometheus_client
from prometheus_client import core

from keystone_syncext.agent import client

LOG = logging.getLogger(__name__)

P = 'keystone_sync_'

# The gauges read from the state at each scrape, per spoke (label
# ``spoke``): name -> help.
SPOKE_GAUGES = {
    'spoke_lag_changes': 'Outbox changes the spoke has not applied yet.',
    'spoke_lag_seconds': 'Age of the oldest change or pending item the '
                         'spoke has not applied (0: caught up).',
    'spoke_pending_items': 'Items the spoke (or the hub, for its own '
                           'changes) refused, retried on every pass.',
    'spoke_conflicts': 'Conflicts recorded for the spoke (kept for '
                       'conflict_retention_days).',
    'spoke_failures': 'Failed passes in a row (0: the last went through).',
    'spoke_last_success_timestamp_seconds': 'When a pass last applied '
                                            'everything (Unix time).',
    'spoke_last_audit_timestamp_seconds': 'When the periodic audit last '
                                          'compared the spoke with the '
                                          'hub (Unix time).',
    'spoke_audit_found': 'Differences the last audit of the spoke found '
                         '(drift; repaired by it).',
}
COUNTERS = {
    'applied': ('Resources written at a site (upserts and deletes the '
                'site accepted; the hub for spokes\' own changes).',
                ['site']),
    'errors': ('Failed reads or passes, by site and kind (unreachable, '
               'timeout, auth, busy, gone, capture_incomplete, refused, '
               'server, agent).', ['site', 'kind']),
    'audits': ('Periodic audits of a spoke completed.', ['spoke']),
    'audit_repaired': ('Writes the periodic audits made to repair drift.',
                       ['spoke']),
}
OTHER = {
    'spoke_state': 'The spoke\'s state: 1 for the one it is in (new, '
                   'seeding, live, reconcile, reconciling).',
    'spoke_owned': 'Which member of the agents drives which spoke: 1 on '
                   'the member that owns it.',
    'leader': '1 when this member is the leader (reads the hub\'s feed).',
    'hub_last_read_timestamp_seconds': 'When the hub\'s feed was last '
                                       'read (Unix time).',
    'hub_error': '1 while the last read of the hub failed.',
}
STATES = ('new', 'seeding', 'live', 'reconcile', 'reconciling')


def _names() -> set[str]:
    out = {P + n for n in list(SPOKE_GAUGES) + list(OTHER)}
    for n in COUNTERS:
        out |= {P + n + '_total', P + n + '_created'}
    return out


# Every name the agent exports.
NAMES = frozenset(_names())


def error_kind(e: BaseException) -> str:
    """The ``kind`` label of a failure."""
    if not isinstance(e, client.SiteError):
        return 'agent'
    if isinstance(e, client.CaptureIncomplete):
        return 'capture_incomplete'
    if isinstance(e, client.Gone):
        return 'gone'
    if e.status is None:
        text = str(e)
        return 'timeout' if 'no answer within' in text else 'unreachable'
    if e.status in (401, 403):
        return 'auth'
    if e.status == 503:
        return 'busy'
    return 'refused' if e.status < 500 else 'server'


def _epoch(when: datetime.datetime | None) -> float | None:
    """A state time (naive UTC) as Unix time."""
    if when is None:
        return None
    return when.replace(tzinfo=datetime.UTC).timestamp()


class Metrics:
    """The counters of one run, and its registry."""

    def __init__(self):
        self.registry = prometheus_client.CollectorRegistry()
        self.counters = {
            name: prometheus_client.Counter(P + name, help_, labels,
                                            registry=self.registry)
            for name, (help_, labels) in COUNTERS.items()}
        self._collector = None

    def applied(self, site: str, n: int) -> None:
        if n:
            self.counters['applied'].labels(site).inc(n)

    def error(self, site: str, e: BaseException) -> None:
        self.counters['errors'].labels(site, error_kind(e)).inc()

    def audit(self, spoke: str, repaired: int) -> None:
        self.counters['audits'].labels(spoke).inc()
        self.counters['audit_repaired'].labels(spoke).inc(repaired)

    def watch(self, ctx) -> None:
        """Export the state gauges of ``ctx``'s run (once), and start the
        counters of its sites at 0: a series that first appears at its
        first increment (a seed's 1,000 writes) shows no increase to
        ``rate()`` and ``increase()``, so the dashboard's "Applied per
        second" missed the first batch of every spoke."""
        if self._collector is None:
            self._collector = StateCollector(ctx)
            self.registry.register(self._collector)
        spokes = [s.name for s in ctx.spokes]
        for site in [ctx.hub.name] + spokes:
            self.counters['applied'].labels(site)
        for spoke in spokes:
            self.counters['audits'].labels(spoke)
            self.counters['audit_repaired'].labels(spoke)

    def text(self) -> bytes:
        """The exposition, as a scrape reads it."""
        return prometheus_client.generate_latest(self.registry)

    def serve(self, listen: str):
        """Serve the metrics at ``listen`` (``HOST:PORT``); returns the
        server (``shutdown()`` it)."""
        host, port = parse_listen(listen)
        server, _thread = prometheus_client.start_http_server(
            port, addr=host, registry=self.registry)
        LOG.info('serving metrics at http://%(host)s:%(port)d/metrics',
                 {'host': host, 'port': server.server_address[1]})
        return server


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) -> (host, port); a
    ValueError saying what is wrong."""
    host, sep, port = text.strip().rpartition(':')
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'[metrics] listen: {text!r} is not HOST:PORT')
    host = host.strip('[]') or '0.0.0.0'
    return host, int(port)


class StateCollector:
    """The gauges, read from the state database at each scrape."""

    def __init__(self, ctx):
        self.ctx = ctx

    def describe(self):
        return []

    def collect(self):
        report = self.ctx.state.report()
        yield from self._spokes(report['spokes'])
        yield from self._hub(report['hub'])
        yield from self._membership()

    @staticmethod
    def _spokes(rows):
        values = {
            'spoke_lag_changes': lambda r: r['lag_changes'],
            'spoke_lag_seconds': lambda r: r['lag_seconds'],
            'spoke_pending_items': lambda r: r['pending'],
            'spoke_conflicts': lambda r: r['conflicts'],
            'spoke_failures': lambda r: r['failures'],
            'spoke_last_success_timestamp_seconds':
                lambda r: _epoch(r['last_success_at']),
            'spoke_last_audit_timestamp_seconds':
                lambda r: _epoch(r['last_audit_at']),
            'spoke_audit_found': lambda r: r['audit_found'],
        }
        for name, get in values.items():
            family = core.GaugeMetricFamily(P + name, SPOKE_GAUGES[name],
                                            labels=['spoke'])
            for r in rows:
                value = get(r)
                if value is not None:
                    family.add_metric([r['spoke']], value)
            yield family
        family = core.GaugeMetricFamily(P + 'spoke_state',
                                        OTHER['spoke_state'],
                                        labels=['spoke', 'state'])
        for r in rows:
            for state in STATES:
                family.add_metric([r['spoke'], state],
                                  1 if r['state'] == state else 0)
        yield family

    @staticmethod
    def _hub(hub):
        read = core.GaugeMetricFamily(
            P + 'hub_last_read_timestamp_seconds',
            OTHER['hub_last_read_timestamp_seconds'], labels=['hub'])
        error = core.GaugeMetricFamily(P + 'hub_error', OTHER['hub_error'],
                                       labels=['hub'])
        if hub is not None:
            if hub['last_read_at']:
                read.add_metric([hub['name']], _epoch(hub['last_read_at']))
            error.add_metric([hub['name']], 1 if hub['last_error'] else 0)
        yield read
        yield error

    def _membership(self):
        ctx = self.ctx
        owned = {getattr(s, 'name', s) for s in ctx.owned_spokes()}
        family = core.GaugeMetricFamily(P + 'spoke_owned',
                                        OTHER['spoke_owned'],
                                        labels=['spoke', 'member'])
        for s in ctx.spokes:
            family.add_metric([s.name, ctx.member_id],
                              1 if s.name in owned else 0)
        yield family
        leader = core.GaugeMetricFamily(P + 'leader', OTHER['leader'],
                                        labels=['member'])
        leader.add_metric([ctx.member_id], 1 if ctx.is_leader() else 0)
        yield leader
