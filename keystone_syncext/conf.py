"""The ``[sync]`` option group, registered on Keystone's own CONF."""

from oslo_config import cfg

from keystone_syncext.common import protocol

GROUP_NAME = 'sync'

site_id = cfg.StrOpt(
    'site_id',
    regex=protocol.SITE_ID_PATTERN,
    help='Name of this Keystone deployment (the site), unique among all '
    'sites that sync with each other. It is stamped as the origin of the '
    'changes made here and reported by the sync API. All API nodes of one '
    'deployment share one site_id. Letters, digits, "_", "." and "-", at '
    'most 64 characters.',
)

change_retention_days = cfg.IntOpt(
    'change_retention_days',
    default=7,
    min=1,
    help='How many days of the change log `keystone-syncext-manage purge` '
    'keeps. A consumer whose cursor is older than the retained history '
    'must reconcile instead of reading the feed.',
)

tombstone_retention_days = cfg.IntOpt(
    'tombstone_retention_days',
    default=30,
    min=1,
    help='How many days `keystone-syncext-manage purge` keeps the record of '
    'a deleted resource (its tombstone). Keep it at least as long as '
    'change_retention_days so that a reconcile can still tell a delete '
    'from a resource that was never synced.',
)

max_wait_seconds = cfg.IntOpt(
    'max_wait_seconds',
    default=30,
    min=0,
    max=300,
    help='Longest long-poll of `GET /v3/sync/changes?wait=S`: a larger '
    '`wait` is cut to this. A waiting request holds one API worker (process '
    'or thread) for that long, so size the workers for the number of '
    'agents that follow this site; 0 disables long-polling.',
)

max_page_size = cfg.IntOpt(
    'max_page_size',
    default=1000,
    min=1,
    max=10000,
    help='Largest `limit` accepted by the change feed and the resource '
    'listings, and the most items one `POST /v3/sync/batch` may carry. '
    'Larger requests are refused with 400.',
)

max_digests_per_request = cfg.IntOpt(
    'max_digests_per_request',
    default=100,
    min=1,
    max=1000,
    help='Most digest nodes (type and prefix) one `POST /v3/sync/digests` '
    'may ask for; more are refused with 400. Each costs about what one '
    '`GET /v3/sync/digest/{type}` costs, but a reconcile asks for a whole '
    'level of its walk at once instead of making a request per node.',
)

hub_site_id = cfg.StrOpt(
    'hub_site_id',
    regex=protocol.SITE_ID_PATTERN,
    help='At a spoke: the site_id of its hub. Writes through the sync API '
    'carrying this origin are the hub\'s and are applied as the hub\'s '
    'system admins wrote them. Leave it unset at the hub. A write carrying '
    'any other origin (or this site\'s own site_id) comes from another '
    'site: application credentials in it are judged by Keystone\'s '
    'creation rules against this site\'s own data (doc/security.md). A '
    'spoke without it judges the hub\'s credentials that way too, and so '
    'refuses those of privileged users.',
)

upward_privileged_application_credentials = cfg.BoolOpt(
    'upward_privileged_application_credentials',
    default=False,
    help='Whether an application credential written here on behalf of '
    'another site (not hub_site_id) may belong to a user who holds a '
    'system role, or the admin role anywhere, at this site, or be system '
    'scoped. Off, such a credential is refused with 403: a spoke\'s '
    'administrators could otherwise make credentials for this site\'s '
    'administrators.',
)

sqlite_request_connections = cfg.BoolOpt(
    'sqlite_request_connections',
    default=True,
    help='Only when [database] connection is a SQLite file, and only in '
    'processes serving `keystone_syncext.wsgi.api:application`: reuse '
    'database connections within one request instead of opening one per '
    'Keystone session (oslo.db\'s NullPool), and close every connection '
    'a request opened before its response is sent, so that no '
    'connection outlives the request it served. SQLite parses the whole '
    'schema, capture triggers included, on each new connection, and a '
    'write request opened about 60. Cursors still open on a connection '
    'are closed before a later session of the same request reuses it. '
    'Off, such processes keep oslo.db\'s NullPool. Other databases, '
    'keystone-manage and plain Keystone are not affected either way.',
)

freeze_loaded_objects = cfg.BoolOpt(
    'freeze_loaded_objects',
    default=True,
    help='Only in processes serving `keystone_syncext.wsgi.api:'
    'application`: once Keystone and the extension are loaded, move every '
    'object they made into Python\'s permanent generation (gc.freeze). A '
    'loaded Keystone holds about 250,000 objects that live as long as '
    'the process, and each full garbage collection walks them all (about '
    '125 ms here), a pause in whichever request it falls on; frozen, a '
    'collection walks only what was made since. Under a pre-forking '
    'server (uWSGI without lazy-apps) the workers inherit them frozen. '
    'Off, Python\'s collector is left as it is.',
)

max_decompressed_batch_size = cfg.IntOpt(
    'max_decompressed_batch_size',
    default=8 * 1024 * 1024,
    min=65536,
    max=256 * 1024 * 1024,
    help='Largest body, in bytes, that a gzip-compressed `POST '
    '/v3/sync/batch` may decompress to; larger ones are refused with 413 '
    'as they are read. `[oslo_middleware] max_request_body_size` limits '
    'the body as sent, compressed; this limits what it may take in memory '
    'once decompressed. A body is decompressed only after the route\'s '
    'policy allowed the caller. A batch also carries at most '
    'max_page_size items.',
)

GROUP_OPTS = [
    site_id,
    hub_site_id,
    upward_privileged_application_credentials,
    change_retention_days,
    tombstone_retention_days,
    max_wait_seconds,
    max_page_size,
    max_digests_per_request,
    max_decompressed_batch_size,
    sqlite_request_connections,
    freeze_loaded_objects,
]
ALL_OPTS = GROUP_OPTS


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the [sync] options on ``conf`` (idempotent)."""
    conf.register_opts(GROUP_OPTS, group=GROUP_NAME)


def list_opts():
    """Options for oslo-config-generator (entry point ``oslo.config.opts``)."""
    return [(GROUP_NAME, GROUP_OPTS)]
