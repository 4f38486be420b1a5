"""``/v3/sync``: what this site offers to a sync agent."""

import functools
import importlib.metadata
import re

import flask
import flask_restful
from keystone.common import json_home
from keystone.common import sql
import keystone.conf
from keystone.server import flask as ks_flask
from oslo_log import log

from keystone_syncext import dberrors
from keystone_syncext import enforcement
from keystone_syncext import exception
from keystone_syncext import reads
from keystone_syncext.capture import spec
from keystone_syncext.common import protocol
from keystone_syncext.digests import tree as digest_tree
from keystone_syncext.feed import history
from keystone_syncext.feed import reading as feed
from keystone_syncext.resources import base
from keystone_syncext.writes import batch
from keystone_syncext.writes import items as item_writes
from keystone_syncext.writes import rekey

CONF = keystone.conf.CONF
LOG = log.getLogger(__name__)
# The representations' version is the protocol's (common.protocol); kept
# as names of this module, which advertises them (tests replace them).
PROTOCOL_VERSION = protocol.PROTOCOL_VERSION
PROTOCOL_VERSIONS = protocol.PROTOCOL_VERSIONS

_build_resource_relation = functools.partial(
    json_home.build_v3_extension_resource_relation,
    extension_name='SYNC', extension_version='1.0')


def _keystone_version() -> str:
    return importlib.metadata.version('keystone')


ORIGIN_HEADER = protocol.ORIGIN_HEADER
_SITE_ID = re.compile(protocol.SITE_ID_PATTERN)


def _guarded(handler):
    """Render our errors (with their extra fields: ``existing_id``,
    ``reconcile``...) as Keystone renders its own, and a busy or
    unreachable database as 503 with ``Retry-After``. Keystone's
    exceptions raised by its managers go to Keystone's own handler."""
    def render(e: exception.SyncError):
        headers = ({'Retry-After': str(e.retry_after)}
                   if isinstance(e, exception.Unavailable) else {})
        return base.error_body(e), e.code, headers

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except exception.SyncError as e:
            return render(e)
        except dberrors.BUSY_ERRORS as e:
            busy = dberrors.database_busy(e)
            if busy is None:
                raise
            LOG.warning('%s %s: %s (%s)', flask.request.method,
                        flask.request.path, busy, type(e).__name__)
            return render(busy)
    return wrapper


def _origin() -> str | None:
    value = flask.request.headers.get(ORIGIN_HEADER)
    if value is None:
        return None
    if not _SITE_ID.match(value):
        raise exception.BadRequest(
            f'{ORIGIN_HEADER} must be a site id ({protocol.SITE_ID_FORM})')
    return value


def _json_body():
    body = flask.request.get_json(silent=True, force=True)
    if body is None:
        raise exception.BadRequest('the request body must be a JSON document')
    return body


def _etag(value: str) -> dict:
    return {'ETag': f'"{value}"'}


class SyncResource(flask_restful.Resource):
    @_guarded
    def get(self):
        """Capabilities: GET /v3/sync."""
        enforcement.enforce_call(action='identity:sync:get_capabilities')
        bounds = feed.feed_bounds()
        return {'sync': {
            'protocol_versions': list(PROTOCOL_VERSIONS),
            'protocol_version': PROTOCOL_VERSION,
            'site_id': CONF.sync.site_id,
            'keystone_version': _keystone_version(),
            'resource_types': list(spec.TYPES),
            'change_retention_days': CONF.sync.change_retention_days,
            'tombstone_retention_days': CONF.sync.tombstone_retention_days,
            **bounds,
            'max_page_size': CONF.sync.max_page_size,
            'max_wait_seconds': CONF.sync.max_wait_seconds,
            'rekey_types': rekey.rekeyable(),
            'max_digests_per_request': CONF.sync.max_digests_per_request,
            'tombstone_lookup': True,
        }}


class StatusResource(flask_restful.Resource):
    @_guarded
    def get(self):
        """Capture health: GET /v3/sync/status."""
        enforcement.enforce_call(action='identity:sync:get_status')
        bounds = feed.feed_bounds()
        with sql.session_for_read() as session:
            triggers, columns = history.capture_gaps(session.connection(),
                                                     fresh=True)
        return {'status': {
            'site_id': CONF.sync.site_id,
            'capture_complete': not triggers and not columns,
            'missing_triggers': triggers,
            'missing_columns': columns,
            'oldest_valid_cursor': bounds['oldest_valid_cursor'],
            'head_cursor': bounds['head_cursor'],
            'history_id': bounds['history_id'],
        }}


class ChangesResource(flask_restful.Resource):
    @_guarded
    def get(self):
        """The change feed: GET /v3/sync/changes."""
        enforcement.enforce_call(action='identity:sync:list_changes')
        args = flask.request.args
        return feed.changes(since=args.get('since'),
                            limit=args.get('limit'),
                            types=args.get('types'),
                            wait=args.get('wait'))


class ResourceListResource(flask_restful.Resource):
    @_guarded
    def get(self, type_name):
        """GET /v3/sync/resources/{type}."""
        enforcement.enforce_call(action='identity:sync:list_resources')
        args = flask.request.args
        return reads.listing(type_name, marker=args.get('marker'),
                             limit=args.get('limit'),
                             prefix=args.get('prefix'))


class ResourceItemResource(flask_restful.Resource):
    @_guarded
    def get(self, type_name, resource_id):
        """GET /v3/sync/resources/{type}/{id}."""
        enforcement.enforce_call(action='identity:sync:get_resource')
        env = reads.read(type_name, resource_id)
        return env, 200, _etag(env['hash'])

    @_guarded
    def put(self, type_name, resource_id):
        """PUT /v3/sync/resources/{type}/{id}: create or update."""
        enforcement.enforce_call(action='identity:sync:update_resource')
        body = _json_body()
        if not isinstance(body, dict) or set(body) != {'resource'}:
            raise exception.BadRequest(
                'the body must be {"resource": {...}} and nothing else')
        status, env = item_writes.put(
            type_name, resource_id, body['resource'],
            if_match=flask.request.headers.get('If-Match'),
            if_none_match=flask.request.headers.get('If-None-Match'),
            origin=_origin())
        return env, status, _etag(env['hash'])

    @_guarded
    def delete(self, type_name, resource_id):
        """DELETE /v3/sync/resources/{type}/{id}."""
        enforcement.enforce_call(action='identity:sync:delete_resource')
        item_writes.delete(type_name, resource_id,
                           if_match=flask.request.headers.get('If-Match'),
                           origin=_origin())
        return None, 204


class BatchResource(flask_restful.Resource):
    @_guarded
    def post(self):
        """POST /v3/sync/batch."""
        enforcement.enforce_call(action='identity:sync:create_batch')
        return {'results': batch.apply(_json_body(), origin=_origin())}


class RekeyResource(flask_restful.Resource):
    @_guarded
    def post(self):
        """POST /v3/sync/rekey."""
        enforcement.enforce_call(action='identity:sync:create_rekey')
        return {'rekey': rekey.rekey(_json_body(), origin=_origin())}


class DigestResource(flask_restful.Resource):
    @_guarded
    def get(self, type_name):
        """GET /v3/sync/digest/{type}."""
        enforcement.enforce_call(action='identity:sync:get_digest')
        return {'digest': digest_tree.digest(
            type_name, prefix=flask.request.args.get('prefix', ''))}


class DigestsResource(flask_restful.Resource):
    @_guarded
    def post(self):
        """POST /v3/sync/digests: many digests in one request."""
        enforcement.enforce_call(action='identity:sync:get_digest')
        return {'digests': digest_tree.digest_many(_json_body())}


class TombstonesResource(flask_restful.Resource):
    @_guarded
    def post(self):
        """POST /v3/sync/tombstones: which of these ids were deleted."""
        enforcement.enforce_call(action='identity:sync:list_tombstones')
        return {'tombstones': reads.tombstones(_json_body())}


def _route(resource, url, rel, path_vars=None):
    return ks_flask.construct_resource_map(
        resource=resource, url=url, resource_kwargs={}, rel=rel,
        path_vars=path_vars, resource_relation_func=_build_resource_relation)


_TYPE = json_home.build_v3_extension_parameter_relation(
    extension_name='SYNC', extension_version='1.0', parameter_name='type')
_ID = json_home.build_v3_extension_parameter_relation(
    extension_name='SYNC', extension_version='1.0', parameter_name='id')


class SyncAPI(ks_flask.APIBase):
    _name = 'sync'
    _import_name = __name__
    _api_url_prefix = ''
    resources = []
    resource_mapping = [
        _route(SyncResource, '/sync', 'sync'),
        _route(StatusResource, '/sync/status', 'sync_status'),
        _route(ChangesResource, '/sync/changes', 'sync_changes'),
        _route(BatchResource, '/sync/batch', 'sync_batch'),
        _route(RekeyResource, '/sync/rekey', 'sync_rekey'),
        _route(ResourceListResource, '/sync/resources/<string:type_name>',
               'sync_resources', {'type_name': _TYPE}),
        _route(ResourceItemResource,
               '/sync/resources/<string:type_name>/<string:resource_id>',
               'sync_resource', {'type_name': _TYPE, 'resource_id': _ID}),
        _route(DigestResource, '/sync/digest/<string:type_name>',
               'sync_digest', {'type_name': _TYPE}),
        _route(DigestsResource, '/sync/digests', 'sync_digests'),
        _route(TombstonesResource, '/sync/tombstones', 'sync_tombstones'),
    ]


APIs = (SyncAPI,)
