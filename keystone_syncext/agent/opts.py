"""keystone-sync's options: every one can live in a config file
(``--config-file``); the command line's flags override the file."""

from oslo_config import cfg

from keystone_syncext.common import types

DEFAULT_STATE = 'sqlite:///$state_dir/state.sqlite'

SITE_OPTS = [
    cfg.StrOpt('hub',
               help='The hub: a cloud name in clouds.yaml '
                    '(OS_CLIENT_CONFIG_FILE is honoured). Its credentials '
                    'must give a system-scoped admin token.'),
    cfg.ListOpt('spokes', default=[],
                help='The spokes: cloud names in clouds.yaml, each with '
                     'system-scoped admin credentials.'),
    cfg.ListOpt('spoke_originated_types',
                default=list(types.FLOWS_UP),
                help='Types that also flow up: a change made at a spoke '
                     'itself (not written there by the agent) goes to the '
                     'hub, and from there to the other spokes, never back '
                     'to where it came from. The hub\'s own changes of '
                     'these types flow down as always. Empty: one-way. '
                     'The default: application credentials (users make '
                     'them where they work) and token revocation events '
                     '(a logout or password change at a spoke must reach '
                     'every site). Trusts are not a '
                     'v1 type (see doc/agent.md, "Two-way sync").'),
    cfg.StrOpt('state_dir', default='~/.local/state/keystone-sync',
               help='Directory for the default SQLite state database.'),
    cfg.StrOpt('state', default=DEFAULT_STATE,
               help='SQLAlchemy URL of the state database (checkpoints, '
                    'outbox, pending items). It holds password hashes in '
                    'transit: keep it as private as the hub\'s database.'),
]

TUNING_OPTS = [
    cfg.IntOpt('poll_wait', default=20, min=0, max=300,
               help='Seconds a read of the hub\'s feed waits for a change '
                    '(long-poll; the hub caps it by its max_wait_seconds).'),
    cfg.IntOpt('feed_page_size', default=500, min=1, max=10000,
               help='Changes asked for per read of the hub\'s feed.'),
    cfg.IntOpt('batch_items', default=1000, min=1, max=10000,
               help='Most items sent in one batch request (and no more '
                    'than the site\'s max_page_size, 1000 by default).'),
    cfg.IntOpt('batch_bytes', default=100000, min=1024,
               help='Largest batch body, in bytes, as sent (compressed, '
                    'see compress_batches). Keep it under the sites\' '
                    '[oslo_middleware] max_request_body_size (114688 by '
                    'default).'),
    cfg.BoolOpt('compress_batches', default=True,
                help='Send batches gzip-compressed to sites that accept it '
                     '(their capabilities list gzip in '
                     'batch_content_encodings). batch_bytes then limits '
                     'the compressed body, which holds several times as '
                     'many items, up to batch_items and the site\'s '
                     'max_decompressed_batch_size: fewer requests, each '
                     'validating the agent\'s token at the site.'),
    cfg.IntOpt('max_parallel_spokes', default=16, min=1,
               help='Spokes written to at the same time.'),
    cfg.FloatOpt('retry_initial', default=0.5, min=0.01,
                 help='Seconds before the first retry after a failure; it '
                      'doubles with each failure in a row.'),
    cfg.FloatOpt('retry_max', default=60.0, min=0.1,
                 help='Longest wait between retries.'),
    cfg.IntOpt('once_attempts', default=5, min=1,
               help='With --once: failed attempts in a row after which a '
                    'spoke is given up and reported.'),
    cfg.FloatOpt('request_timeout', default=120.0, min=1,
                 help='Seconds to wait for one response (a long-poll adds '
                      'its wait to this).'),
    cfg.IntOpt('connect_retries', default=2, min=0, max=10,
               help='Times a request is sent again on a fresh connection '
                    'after the connection failed or timed out (a restart, '
                    'an outage), 0.5 s after the first failure and '
                    'doubling. Besides these, with any retries at all, a '
                    'request that went out on a kept connection the '
                    'server had closed (uWSGI with --http-socket closes '
                    'each one after its answer) is sent again at once. A '
                    're-key that applied before its answer was lost is '
                    'recognised as done by join.'),
    cfg.IntOpt('busy_retries', default=5, min=0, max=100,
               help='Times a request answered 503 (the site\'s database '
                    'is busy; nothing was applied) is sent again after '
                    'the wait its Retry-After asks for.'),
    cfg.FloatOpt('busy_wait_max', default=30.0, min=0,
                 help='Longest wait honoured of a 503\'s Retry-After, in '
                      'seconds.'),
    cfg.IntOpt('conflict_retention_days', default=30, min=1,
               help='Days a resolved conflict is kept in the state '
                    'database (keystone-sync conflicts); older records are '
                    'pruned by run.'),
    cfg.IntOpt('audit_interval', default=1200, min=0,
               help='Seconds between two audits of a spoke: run compares '
                    'each spoke it drives with the hub by digest in the '
                    'background (only while the spoke is caught up, one '
                    'spoke at a time, spread over the interval) and '
                    'repairs what differs by the reconcile rules. 0: no '
                    'audit.'),
    cfg.BoolOpt('progress', default=True,
                help='Show a progress bar while seeding a spoke, when '
                     'standard error is a terminal.'),
]

SELECTION_GROUP = cfg.OptGroup(
    'selection', title='Selective sync',
    help='Which resources the agent writes at the spokes. A rule is '
         'type:TYPE, domain:DOMAIN (id or name; the domain and everything '
         'in it), project:PROJECT (id or name; the project and its '
         'subtree) or name:TYPE:GLOB (fnmatch on the name; a user\'s local '
         'name). A resource is synced when it matches an include rule (no '
         'include rules: everything) and no exclude rule; exclude wins, '
         'and whatever is inside or refers to an excluded resource is '
         'excluded too. An excluded resource is never created, changed or '
         'deleted at a spoke by the agent (run and join). See '
         'doc/agent.md, "Selective sync".')
SELECTION_OPTS = [
    cfg.ListOpt('include', default=[], mutable=True,
                help='Rules of what to sync (comma-separated); empty: '
                     'everything.'),
    cfg.ListOpt('exclude', default=[], mutable=True,
                help='Rules of what never to write at a spoke '
                     '(comma-separated), e.g. ``domain:service-local``, '
                     '``name:user:svc-*``.'),
]
CONFLICTS_GROUP = cfg.OptGroup(
    'conflicts', title='Conflicts',
    help='What wins when a resource changed both at the hub and at a '
         'spoke since the agent last synced it there (the base). Every '
         'such conflict is recorded with both versions, the winner and '
         'why: keystone-sync conflicts lists them. A spoke\'s '
         '[spoke:NAME] authoritative rules come first. See doc/agent.md, '
         '"Conflicts".')
CONFLICTS_OPTS = [
    cfg.StrOpt('strategy', default='hub_wins', mutable=True,
               choices=[('hub_wins', 'the hub\'s version wins'),
                        ('last_writer_wins',
                         'the times (updated_at, each site\'s clock) are '
                         'compared and named in the reason; the hub still '
                         'wins, as a spoke\'s version reaches the hub only '
                         'inside its authoritative subset')],
               help='How a conflict outside every authoritative subset is '
                    'resolved: the hub wins either way (doc/security.md).'),
]
COORDINATION_GROUP = cfg.OptGroup(
    'coordination', title='Several agents',
    help='Several keystone-sync run processes sharing one state database '
         '(MariaDB or PostgreSQL) and a tooz coordination backend: the '
         'spokes are shared out among the live members, one elected '
         'member reads the hub\'s feed, and a dead member\'s spokes are '
         'taken over. Without backend_url one agent runs, and a second one '
         'on the same state database is refused. See doc/agent.md, '
         '"Several agents (HA)".')
COORDINATION_OPTS = [
    cfg.StrOpt('backend_url', secret=True,
               help='The tooz backend, e.g. redis://127.0.0.1:6379, '
                    'etcd3+http://127.0.0.1:2379 or zookeeper://host:2181. '
                    'Unset: one agent.'),
    cfg.FloatOpt('heartbeat', default=1.0, min=0.1, max=60,
                 help='Seconds between two looks at the group (members '
                      'joined or gone, leader) and two renewals of the '
                      'leases this member holds.'),
    cfg.FloatOpt('lease', default=30.0, min=2, max=3600,
                 help='Seconds a claim (the single-agent lock, the feed, a '
                      'spoke) outlives its holder\'s last renewal: after '
                      'that, another member (or a new agent) takes it '
                      'over. Keep it at least the backend\'s membership '
                      'timeout (tooz\'s redis driver: 30 s) and several '
                      'heartbeats.'),
]
METRICS_GROUP = cfg.OptGroup(
    'metrics', title='Prometheus metrics',
    help='keystone-sync run serves Prometheus metrics over HTTP: each '
         'spoke\'s lag, pending items, conflicts, writes, errors, last '
         'success and last audit, and which member owns which spoke. See '
         'doc/agent.md, "Metrics".')
METRICS_OPTS = [
    cfg.StrOpt('listen', default='',
               help='HOST:PORT to serve /metrics on (e.g. '
                    '127.0.0.1:9464, [::]:9464); empty: no metrics.'),
]
# [spoke:NAME]: the same options for one spoke; each one set there
# replaces [selection]'s for that spoke.
SPOKE_GROUP_PREFIX = 'spoke:'
SPOKE_OPTS = [
    cfg.ListOpt('include', default=None, mutable=True,
                help='Replaces [selection] include for this spoke.'),
    cfg.ListOpt('exclude', default=None, mutable=True,
                help='Replaces [selection] exclude for this spoke.'),
    cfg.ListOpt('authoritative', default=[], mutable=True,
                help='What this spoke is authoritative for, as selection '
                     'rules (e.g. domain:emea, project:web): in a conflict '
                     'over a resource inside, this spoke\'s version wins '
                     'and goes to the hub and every other spoke; so does '
                     'a change made only at this spoke, once the agent '
                     'sees it (a hub change of the same resource, or a '
                     'reconcile). Give each subset to one spoke only.'),
]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(SITE_OPTS)
    conf.register_opts(TUNING_OPTS)
    conf.register_group(SELECTION_GROUP)
    conf.register_opts(SELECTION_OPTS, group=SELECTION_GROUP)
    conf.register_group(CONFLICTS_GROUP)
    conf.register_opts(CONFLICTS_OPTS, group=CONFLICTS_GROUP)
    conf.register_group(COORDINATION_GROUP)
    conf.register_opts(COORDINATION_OPTS, group=COORDINATION_GROUP)
    conf.register_group(METRICS_GROUP)
    conf.register_opts(METRICS_OPTS, group=METRICS_GROUP)


def _spoke_group(conf: cfg.ConfigOpts, spoke: str):
    group = SPOKE_GROUP_PREFIX + spoke
    if group not in conf:
        conf.register_opts(SPOKE_OPTS, group=group)
    return conf[group]


def spoke_rules(conf: cfg.ConfigOpts, spoke: str) -> tuple[list, list]:
    """(include, exclude) rule texts for ``spoke``: its ``[spoke:NAME]``
    group where set, ``[selection]`` otherwise."""
    own = _spoke_group(conf, spoke)
    return ((conf.selection.include if own.include is None
             else own.include),
            (conf.selection.exclude if own.exclude is None
             else own.exclude))


def authoritative_rules(conf: cfg.ConfigOpts, spoke: str) -> list[str]:
    """What spoke ``spoke`` is authoritative for (rule texts)."""
    return list(_spoke_group(conf, spoke).authoritative or ())


def list_opts():
    """For oslo-config-generator (namespace keystone_syncext.agent)."""
    return [(None, SITE_OPTS + TUNING_OPTS),
            (SELECTION_GROUP, SELECTION_OPTS),
            (CONFLICTS_GROUP, CONFLICTS_OPTS),
            (COORDINATION_GROUP, COORDINATION_OPTS),
            (METRICS_GROUP, METRICS_OPTS),
            (cfg.OptGroup(SPOKE_GROUP_PREFIX + 'example',
                          help='Selection and conflict rules for one '
                               'spoke, here the cloud named "example": one '
                               '[spoke:NAME] group per spoke that needs its '
                               'own. Each selection option set here '
                               'replaces the [selection] one for that '
                               'spoke.'),
             SPOKE_OPTS)]
