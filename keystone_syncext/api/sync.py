"""``/v3/sync``: what this site offers to a sync agent."""

import functools
import importlib.metadata

import flask_restful
from keystone.common import json_home
from keystone.common import sql
import keystone.conf
from keystone.server import flask as ks_flask

from keystone_syncext import changes
from keystone_syncext import cursors
from keystone_syncext import enforcement
from keystone_syncext.capture import spec

CONF = keystone.conf.CONF
PROTOCOL_VERSION = 1
PROTOCOL_VERSIONS = (1,)

_build_resource_relation = functools.partial(
    json_home.build_v3_extension_resource_relation,
    extension_name='SYNC', extension_version='1.0')


def _keystone_version() -> str:
    return importlib.metadata.version('keystone')


def feed_bounds() -> tuple[int, int]:
    """``(purged_through, head)`` of the change feed, after stamping every
    committed change so the head covers them."""
    with sql.session_for_write() as session:
        conn = session.connection()
        # First in the transaction: see keystone_syncext.changes.
        top = changes.stamp(conn)
        oldest = changes.purged_through(conn)
    return oldest, top


class SyncResource(flask_restful.Resource):
    def get(self):
        """Capabilities: GET /v3/sync."""
        enforcement.enforce_call(action='identity:sync:get_capabilities')
        oldest, top = feed_bounds()
        return {'sync': {
            'protocol_versions': list(PROTOCOL_VERSIONS),
            'protocol_version': PROTOCOL_VERSION,
            'site_id': CONF.sync.site_id,
            'keystone_version': _keystone_version(),
            'resource_types': list(spec.TYPES),
            'change_retention_days': CONF.sync.change_retention_days,
            'tombstone_retention_days': CONF.sync.tombstone_retention_days,
            'oldest_valid_cursor': cursors.encode(oldest),
            'head_cursor': cursors.encode(top),
        }}


class SyncAPI(ks_flask.APIBase):
    _name = 'sync'
    _import_name = __name__
    _api_url_prefix = ''
    resources = []
    resource_mapping = [
        ks_flask.construct_resource_map(
            resource=SyncResource,
            url='/sync',
            resource_kwargs={},
            rel='sync',
            resource_relation_func=_build_resource_relation,
        ),
    ]


APIs = (SyncAPI,)
