"""``/v3/sync``: what this site offers to a sync agent."""

import functools
import importlib.metadata

import flask
import flask_restful
from keystone.common import json_home
from keystone.common import sql
import keystone.conf
from keystone.server import flask as ks_flask
from oslo_log import log

from keystone_syncext import dberrors
from keystone_syncext import exception
from keystone_syncext import reads
from keystone_syncext.api import schemas
from keystone_syncext.api import validation
from keystone_syncext.capture import spec
from keystone_syncext.common import protocol
from keystone_syncext.digests import tree as digest_tree
from keystone_syncext.feed import history
from keystone_syncext.feed import reading as feed
from keystone_syncext.resources import base
from keystone_syncext.writes import batch
from keystone_syncext.writes import fence
from keystone_syncext.writes import items as item_writes
from keystone_syncext.writes import rekey

CONF = keystone.conf.CONF
LOG = log.getLogger(__name__)
# The representations' version (resources.base) is the protocol's.
PROTOCOL_VERSION = protocol.PROTOCOL_VERSION
PROTOCOL_VERSIONS = protocol.PROTOCOL_VERSIONS

_build_resource_relation = functools.partial(
    json_home.build_v3_extension_resource_relation,
    extension_name='SYNC', extension_version='1.0')


def _keystone_version() -> str:
    return importlib.metadata.version('keystone')


ORIGIN_HEADER = protocol.ORIGIN_HEADER


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


def _operation(policy: str, response: dict | None, *, header=None,
               query=None, body=None):
    """A handler's contract (:mod:`.validation`), stacked in the one
    order every route needs: our errors rendered (:func:`_guarded`); the
    policy rule ``policy`` enforced first, so that a caller it refuses
    learns nothing about what the request should be; then the ``header``,
    ``query`` and ``body`` schemas checked, in that order; the
    ``response`` schema declared (None: no body)."""
    checks = ((validation.request_header_schema, header),
              (validation.request_query_schema, query),
              (validation.request_body_schema, body))

    def decorate(handler):
        handler = validation.response_body_schema(response)(handler)
        for check, schema in reversed(checks):
            if schema is not None:
                handler = check(schema)(handler)
        return _guarded(validation.enforced(policy)(handler))
    return decorate


def _origin() -> str | None:
    """The origin header, checked by the route's header schema."""
    return flask.request.headers.get(ORIGIN_HEADER)


def _etag(value: str) -> dict:
    return {'ETag': f'"{value}"'}


# The prose of each operation in doc/openapi.json is its handler's
# docstring: the first line its summary, the paragraphs after it its
# description, ``:status N:`` what each answer means (401, 403 and 503
# are said of every operation by keystone_syncext.openapi; a ``:status``
# of those adds to it), ``:resheader H:`` a header of every success.
# ``{capture}`` stands for what the generator says of incomplete capture.


class SyncResource(flask_restful.Resource):
    @_operation('identity:sync:get_capabilities',
                schemas.capabilities_response_body)
    def get(self):
        """What this site offers to a sync agent.

        :operation-id: getCapabilities
        :status 200: Capabilities.
        """
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
            'batch_content_encodings': list(protocol.BATCH_CONTENT_ENCODINGS),
            'max_decompressed_batch_size':
                CONF.sync.max_decompressed_batch_size,
        }}


class StatusResource(flask_restful.Resource):
    @_operation('identity:sync:get_status', schemas.status_response_body)
    def get(self):
        """Whether change capture is complete here.

        :operation-id: getStatus
        :status 200: Capture health.
        """
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
    @_operation('identity:sync:list_changes', schemas.changes_response_body,
                query=schemas.changes_request_query)
    def get(self):
        """The change feed.

        Changes after cursor since, in feed order, each with the current
        representation. A consumer stores next and asks again from it;
        more says whether a full page was returned.

        :operation-id: listChanges
        :status 200: A page of the feed.
        :status 400: since is not a cursor of this site, limit is not an
            integer from 1 to [sync] max_page_size, or wait is not a
            non-negative number.
        :status 404: types names a type this site does not sync.
        :status 410: since is outside the history this site keeps
            (purged, from another history_id, from before history ids,
            or the database was restored from a backup since): the body
            has reconcile, oldest_valid_cursor and head_cursor.
        :status 503: {capture}
        """
        args = validation.query_arguments(schemas.changes_request_query)
        return feed.changes(since=args.get('since'),
                            limit=args.get('limit'),
                            types=args.get('types'),
                            wait=args.get('wait'))


class ResourceListResource(flask_restful.Resource):
    @_operation('identity:sync:list_resources',
                schemas.resources_response_body,
                query=schemas.resources_request_query)
    def get(self, type_name):
        """The resources of one type, ordered by id.

        :operation-id: listResources
        :status 200: A page of resources; next_marker is null on the last
            page.
        :status 400: limit is not an integer from 1 to [sync]
            max_page_size.
        :status 404: The type is not one this site syncs.
        """
        args = validation.query_arguments(schemas.resources_request_query)
        return reads.listing(type_name, marker=args.get('marker'),
                             limit=args.get('limit'),
                             prefix=args.get('prefix'))


class ResourceItemResource(flask_restful.Resource):
    @_operation('identity:sync:get_resource', schemas.envelope)
    def get(self, type_name, resource_id):
        """One resource.

        HEAD is answered too (same rule), without a body.

        :operation-id: getResource
        :status 200: The resource.
        :resheader ETag: The content hash, quoted.
        :status 404: Unknown type, or no such resource here.
        """
        env = reads.read(type_name, resource_id)
        return env, 200, _etag(env['hash'])

    @_operation('identity:sync:update_resource', schemas.envelope,
                header=schemas.put_request_header,
                body=schemas.resource_request_body)
    def put(self, type_name, resource_id):
        """Create or update a resource with the id in the URL.

        Writes through Keystone (its rules, notifications and cache
        invalidation apply). Writing the representation the resource
        already has is a no-op answered with 200.

        :operation-id: putResource
        :status 200: Updated, or already so.
        :status 201: Created.
        :resheader ETag: The content hash, quoted.
        :status 400: The body is not {"resource": {...}}, the id is not of
            the type's form, the representation is invalid for the type
            or names another id, a resource it refers to is missing, the
            origin header is not a site id, the database refuses a value,
            or Keystone refuses the change.
        :status 403: Also when an application credential written on
            behalf of another site (the origin header, not [sync]
            hub_site_id) breaks Keystone's creation rules at this site, or
            belongs to a privileged user (doc/security.md).
        :status 404: The type is not one this site syncs.
        :status 409: Another resource holds the name (existing_id names
            it), a resource of another type holds the id (held_by says
            what), the database refuses the row as a duplicate or a
            reference to a row it lacks, or the write would change an
            application credential's secret hash, or change one on behalf
            of another site (doc/security.md).
        :status 412: If-Match or If-None-Match does not hold: current_hash
            is the hash here.
        """
        status, env = item_writes.put(
            type_name, resource_id, validation.json_body()['resource'],
            if_match=flask.request.headers.get('If-Match'),
            if_none_match=flask.request.headers.get('If-None-Match'),
            origin=_origin())
        return env, status, _etag(env['hash'])

    @_operation('identity:sync:delete_resource', None,
                header=schemas.delete_request_header)
    def delete(self, type_name, resource_id):
        """Delete a resource, leaving a tombstone with the origin.

        :operation-id: deleteResource
        :status 204: Deleted.
        :status 400: The id is not of the type's form, the origin header
            is not a site id, or Keystone refuses the deletion.
        :status 403: Also when Keystone refuses the deletion (a project
            that has children), or another site deletes an application
            credential it did not make here.
        :status 404: Unknown type, or no such resource here.
        :status 412: If-Match does not hold: current_hash is the hash
            here.
        """
        item_writes.delete(type_name, resource_id,
                           if_match=flask.request.headers.get('If-Match'),
                           origin=_origin())
        return None, 204


class BatchResource(flask_restful.Resource):
    @_operation('identity:sync:create_batch', schemas.batch_response_body,
                header=schemas.batch_request_header,
                body=schemas.batch_request_body)
    def post(self):
        """Many upserts and deletes, in dependency order.

        A body that is not a batch is refused whole. Each item is checked
        as its PUT or DELETE would be (a malformed one gets that 4xx as
        its result); the others are applied each in its own savepoint
        (deletes first, dependents first; then upserts, dependencies
        first) and get their own result.

        :operation-id: createBatch
        :status 200: One result per item, in request order.
        :status 400: The body does not match the batch schema, has more
            than [sync] max_page_size items, or the origin header is not a
            site id. Nothing is written.
        :status 409: The fencing header's generation is lower than one an
            agent of its group already wrote here under (that agent lost
            its claim on this site). Nothing is written.
        """
        return {'results': batch.apply(
            validation.json_body(), origin=_origin(),
            fence=fence.parse(flask.request.headers.get(
                schemas.FENCE_HEADER)))}


class RekeyResource(flask_restful.Resource):
    @_operation('identity:sync:create_rekey', schemas.rekey_response_body,
                header=schemas.write_request_header,
                body=schemas.rekey_request_body)
    def post(self):
        """Give a resource a new id, and every reference to it.

        :operation-id: createRekey
        :status 200: Re-keyed.
        :status 400: The body does not match the schema, an id is not of
            the type's form, the type cannot be re-keyed, from equals to,
            or the origin header is not a site id.
        :status 404: Unknown type, or no resource from here.
        :status 409: A resource to exists already (existing_id names it),
            or a resource of another type holds that id (held_by).
        """
        return {'rekey': rekey.rekey(validation.json_body(),
                                     origin=_origin())}


class DigestResource(flask_restful.Resource):
    @_operation('identity:sync:get_digest', schemas.digest_response_body,
                query=schemas.digest_request_query)
    def get(self, type_name):
        """Hash buckets of one type by id prefix.

        One bucket per next character after prefix; compare with another
        site and drill down where the buckets differ.

        :operation-id: getDigest
        :status 200: The digest.
        :status 400: prefix is longer than any id.
        :status 404: The type is not one this site syncs.
        :status 503: {capture}
        """
        return {'digest': digest_tree.digest(
            type_name, prefix=flask.request.args.get('prefix', ''))}


class DigestsResource(flask_restful.Resource):
    @_operation('identity:sync:get_digest', schemas.digests_response_body,
                body=schemas.digests_request_body)
    def post(self):
        """Many digests, of any types and prefixes, in one request.

        A read, like GET /v3/sync/digest/{type}: each answer is what that
        route gives for the same type and prefix. The whole body is
        checked before anything is read.

        :operation-id: getDigests
        :status 200: The digests, in the order asked.
        :status 400: The body does not match the schema (a prefix longer
            than any id included), or asks for more than [sync]
            max_digests_per_request digests.
        :status 404: A type is not one this site syncs.
        :status 503: {capture}
        """
        return {'digests': digest_tree.digest_many(validation.json_body())}


class TombstonesResource(flask_restful.Resource):
    @_operation('identity:sync:list_tombstones',
                schemas.tombstones_response_body,
                body=schemas.tombstones_request_body)
    def post(self):
        """Which of these ids this site deleted.

        A read: the tombstones this site keeps (within [sync]
        tombstone_retention_days) for the ids asked. A reconcile asks the
        hub this about what a spoke holds and the hub lacks, so a spoke
        restored from backup cannot bring a deleted resource back. A
        re-created id has no tombstone.

        :operation-id: listTombstones
        :status 200: The tombstones of the ids asked, by id.
        :status 400: The body does not match the schema, or asks for more
            than [sync] max_page_size ids.
        :status 404: The type is not one this site syncs.
        """
        return {'tombstones': reads.tombstones(validation.json_body())}


def _route(resource, url, rel, path_vars=None):
    return ks_flask.construct_resource_map(
        resource=resource, url=url, resource_kwargs={}, rel=rel,
        path_vars=path_vars, resource_relation_func=_build_resource_relation)


_TYPE = json_home.build_v3_extension_parameter_relation(
    extension_name='SYNC', extension_version='1.0', parameter_name='type')
_ID = json_home.build_v3_extension_parameter_relation(
    extension_name='SYNC', extension_version='1.0', parameter_name='id')


def _log_request(response):
    """One INFO line per sync request. Keystone logs requests only at
    DEBUG; this line carries the caller's ``X-OpenStack-Request-ID``
    (oslo.log's context format prints the request context's
    ``global_request_id``), so one id finds an agent's pass here."""
    LOG.info('%s %s -> %s', flask.request.method, flask.request.full_path
             if flask.request.query_string else flask.request.path,
             response.status_code)
    return response


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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.blueprint.after_request(_log_request)


APIs = (SyncAPI,)
