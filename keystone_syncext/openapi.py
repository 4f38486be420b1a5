"""OpenAPI 3.1 description of the ``/v3/sync`` routes, built from the code.

The paths and methods come from ``keystone_syncext.api.sync.SyncAPI`` (a
route without a description here fails the build), the policy rule of each
operation from ``keystone_syncext.policies``, the resource schemas from
``keystone_syncext.resources.TYPES`` and the batch and re-key bodies from
``keystone_syncext.writes``; only the prose and the response shapes are
written here. ``doc/openapi.json`` is its output, and a unit test (and
``tools/run-tests``) fails when that file is stale::

    python -m keystone_syncext.openapi > doc/openapi.json
    tox -e genopenapi

The document depends on no configuration: limits that operators set
(``[sync] max_page_size``, ``max_wait_seconds``) are named, not valued.
"""

import argparse
import copy
import json
import re
import sys

from oslo_policy import policy

from keystone_syncext import policies
from keystone_syncext import reads
from keystone_syncext import resources
from keystone_syncext.api import sync
from keystone_syncext.digests import hashing as digest_hashing
from keystone_syncext.digests import tree as digest_tree
from keystone_syncext.resources import base
from keystone_syncext.writes import batch
from keystone_syncext.writes import rekey

OPENAPI_VERSION = '3.1.0'
URL_PREFIX = '/v3'
# Flask's path variables -> the names policies.py and the docs use.
PATH_PARAMS = {'type_name': 'type', 'resource_id': 'id'}
_FLASK_VAR = re.compile(r'<(?:[a-z]+:)?([a-z_]+)>')
SECURITY_SCHEME = 'keystoneToken'


def openapi_path(flask_url: str) -> str:
    """Flask's ``/sync/resources/<string:type_name>`` -> OpenAPI's
    ``/v3/sync/resources/{type}``."""
    return URL_PREFIX + _FLASK_VAR.sub(
        lambda m: '{%s}' % PATH_PARAMS[m.group(1)], flask_url)


def served_operations() -> list[tuple[str, str]]:
    """``(path, method)`` of every operation the SyncAPI registers, from its
    resource mapping and the handlers each Resource class defines (HEAD and
    OPTIONS, which Flask adds to every route, are left out)."""
    out = []
    for mapping in sync.SyncAPI.resource_mapping:
        path = openapi_path(mapping.url)
        for method in sorted(mapping.resource.methods):
            out.append((path, method))
    return out


def policy_rules() -> dict[tuple[str, str], policy.RuleDefault]:
    """``(path, method)`` -> the rule whose ``operations`` name it."""
    out = {}
    for rule in policies.list_rules():
        for op in rule.operations:
            key = (op['path'], op['method'])
            if key in out:
                raise ValueError(f'{key} is named by both {out[key].name} '
                                 f'and {rule.name}')
            out[key] = rule
    return out


def schema_name(type_name: str) -> str:
    """Component name of a resource type's schema: ``implied_role`` ->
    ``ImpliedRole``."""
    return ''.join(p.capitalize() for p in type_name.split('_'))


def _ref(name: str) -> dict:
    return {'$ref': f'#/components/schemas/{name}'}


def _json(schema: dict) -> dict:
    return {'application/json': {'schema': schema}}


# --- schemas ----------------------------------------------------------------

_CURSOR = {'type': 'string', 'description': 'An opaque feed cursor.'}
_HISTORY = {'type': 'string', 'pattern': '^[0-9a-f]{16}$',
            'description': "This site's change-log history: renewed when "
            'the log is known to miss changes (capture repaired by '
            'db_sync, or the database found restored from a backup); '
            'every cursor of an older history is answered 410.'}
_HASH = {'type': 'string', 'pattern': '^[0-9a-f]{64}$',
         'description': 'Protocol-v1 content hash (SHA-256, hex).'}
_TIMESTAMP = {'type': ['string', 'null'], 'format': 'date-time'}


def _resource_schemas() -> dict:
    out = {}
    for name, rtype in resources.TYPES.items():
        schema = copy.deepcopy(rtype.schema)
        schema['title'] = name
        if not rtype.synthetic:
            # The form check_id requires of an id chosen through the API.
            pattern, form = rtype.id_rule()
            schema['properties']['id'] = dict(
                schema['properties']['id'], pattern=f'^(?:{pattern})$',
                description=f'Its form: {form}.')
        lines = [f'Canonical representation (protocol v1) of a {name}.']
        if rtype.synthetic:
            lines.append("Its id is made of its fields joined with ':'.")
        if rtype.secrets:
            lines.append('Fields carrying hashes of secrets: '
                         + ', '.join(rtype.secrets) + '.')
        for field, why in sorted(rtype.site_local.items()):
            lines.append(f'Never synced: {field} ({why}).')
        schema['description'] = ' '.join(lines)
        out[schema_name(name)] = schema
    return out


def _any_resource() -> dict:
    return {'anyOf': [_ref(schema_name(n)) for n in resources.TYPES],
            'description': 'The representation of the type named in the '
            'path (or in the item).'}


def _schemas() -> dict:
    schemas = _resource_schemas()
    fixed = {
        'Error': {
            'type': 'object',
            'required': ['error'],
            'properties': {'error': _ref('ErrorDetail')},
            'description': "Keystone's error document; the sync routes add "
            'fields to it.',
        },
        'ErrorDetail': {
            'type': 'object',
            'required': ['code', 'title', 'message'],
            'properties': {
                'code': {'type': 'integer'},
                'title': {'type': 'string'},
                'message': {'type': 'string'},
                'existing_id': {
                    'type': 'string',
                    'description': '409: the id of the resource that '
                    'holds the name.'},
                'held_by': {
                    'type': 'string',
                    'description': '409: what already holds the id (a '
                    'resource of another type).'},
                'current_hash': {
                    'type': ['string', 'null'],
                    'description': '412: the hash the resource has '
                    'here (null: absent).'},
                'reconcile': {
                    'type': 'boolean',
                    'description': '410: the consumer must reconcile '
                    '(compare digests), then follow the feed from '
                    'head_cursor.'},
                'rewound': {
                    'type': 'boolean',
                    'description': '410 from the feed: true when the '
                    'cursor shows this database went back in time '
                    '(restored from a backup); what was written here '
                    'after the backup is gone.'},
                'oldest_valid_cursor': _CURSOR,
                'head_cursor': _CURSOR,
                'capture_complete': {
                    'type': 'boolean',
                    'description': '503 from the feed and the digests: '
                    'false, change capture is incomplete here (changes '
                    'are going unrecorded) until an operator runs '
                    'keystone-syncext-manage db_sync.'},
                'missing_triggers': {
                    'type': 'array', 'items': {'type': 'string'},
                    'description': 'With capture_complete.'},
                'missing_columns': {
                    'type': 'array', 'items': {'type': 'string'},
                    'description': 'With capture_complete: table.column.'},
            },
            'additionalProperties': True,
        },
        'Envelope': {
            'type': 'object',
            'required': ['type', 'id', 'hash', 'created_at', 'updated_at',
                         'resource'],
            'properties': {
                'type': {'type': 'string'},
                'id': {'type': 'string'},
                'hash': _HASH,
                'created_at': _TIMESTAMP,
                'updated_at': _TIMESTAMP,
                'resource': _any_resource(),
            },
            'description': "A resource as the API returns it; created_at "
            "and updated_at are this site's and not part of the hash.",
        },
        'ResourceBody': {
            'type': 'object',
            'required': ['resource'],
            'properties': {'resource': _any_resource()},
            'additionalProperties': False,
        },
        'Capabilities': {
            'type': 'object',
            'required': ['sync'],
            'properties': {'sync': {
                'type': 'object',
                'properties': {
                    'protocol_versions': {
                        'type': 'array', 'items': {'type': 'integer'},
                        'description': 'Every wire protocol version this '
                        'site speaks; an agent uses the highest one it '
                        'speaks too, and refuses the site when there is '
                        'none.'},
                    'protocol_version': {
                        'type': 'integer',
                        'description': 'The oldest of protocol_versions, '
                        'for consumers that read one value (kept for '
                        'compatibility).'},
                    'site_id': {'type': 'string'},
                    'keystone_version': {'type': 'string'},
                    'resource_types': {'type': 'array',
                                       'items': {'type': 'string'}},
                    'change_retention_days': {'type': 'integer'},
                    'tombstone_retention_days': {'type': 'integer'},
                    'history_id': _HISTORY,
                    'oldest_valid_cursor': _CURSOR,
                    'head_cursor': _CURSOR,
                    'max_page_size': {'type': 'integer'},
                    'max_wait_seconds': {'type': 'number'},
                    'rekey_types': {'type': 'array',
                                    'items': {'type': 'string'}},
                    'max_digests_per_request': {
                        'type': 'integer',
                        'description': 'The most nodes one POST '
                        '/v3/sync/digests may ask for. Absent at a site '
                        'from before that route: ask with GET '
                        '/v3/sync/digest/{type}, one node at a time.'},
                    'tombstone_lookup': {
                        'type': 'boolean',
                        'description': 'POST /v3/sync/tombstones is '
                        'served. Absent at a site from before that route.'},
                },
            }},
        },
        'Status': {
            'type': 'object',
            'required': ['status'],
            'properties': {'status': {
                'type': 'object',
                'properties': {
                    'site_id': {'type': 'string'},
                    'capture_complete': {'type': 'boolean'},
                    'missing_triggers': {'type': 'array',
                                         'items': {'type': 'string'}},
                    'missing_columns': {
                        'type': 'array', 'items': {'type': 'string'},
                        'description': 'table.column'},
                    'history_id': _HISTORY,
                    'oldest_valid_cursor': _CURSOR,
                    'head_cursor': _CURSOR,
                },
            }},
        },
        'Change': {
            'type': 'object',
            'properties': {
                'cursor': _CURSOR,
                'type': {'type': 'string'},
                'id': {'type': 'string'},
                'op': {'enum': ['create', 'update', 'delete']},
                'changed_at': {'type': 'string', 'format': 'date-time'},
                'origin': {
                    'type': ['string', 'null'],
                    'description': 'The site whose sync write made the '
                    'change; null when made at this site.'},
                'hash': {'anyOf': [_HASH, {'type': 'null'}]},
                'resource': {
                    'anyOf': [_any_resource(), {'type': 'null'}],
                    'description': 'The current representation; null once '
                    'the resource is gone.'},
            },
        },
        'Changes': {
            'type': 'object',
            'required': ['changes', 'next', 'head', 'more'],
            'properties': {
                'changes': {'type': 'array', 'items': _ref('Change')},
                'next': _CURSOR,
                'head': _CURSOR,
                'more': {'type': 'boolean'},
            },
        },
        'Listing': {
            'type': 'object',
            'required': ['items', 'next_marker'],
            'properties': {
                'items': {'type': 'array', 'items': _ref('Envelope')},
                'next_marker': {'type': ['string', 'null']},
            },
        },
        'DigestNode': {
            'type': 'object',
            'required': ['type', 'prefix', 'count', 'hash', 'buckets'],
            'properties': {
                'type': {'type': 'string'},
                'prefix': {'type': 'string'},
                'count': {'type': 'integer'},
                'hash': _HASH,
                'buckets': {'type': 'array', 'items': {
                    'type': 'object',
                    'properties': {'prefix': {'type': 'string'},
                                   'count': {'type': 'integer'},
                                   'hash': _HASH}}},
                'common_prefix': {
                    'type': 'string',
                    'description': 'The longest prefix every id '
                    'starting with prefix shares; absent when none '
                    'does.'},
                'items': {
                    'type': 'array',
                    'description': 'Present when at most '
                    f'{digest_hashing.LEAF_SIZE} ids start with '
                    'prefix.',
                    'items': {'type': 'object',
                              'properties': {'id': {'type': 'string'},
                                             'hash': _HASH}}},
            },
        },
        'Digest': {
            'type': 'object',
            'required': ['digest'],
            'properties': {'digest': _ref('DigestNode')},
        },
        'DigestsRequest': copy.deepcopy(digest_tree.DIGESTS_SCHEMA),
        'Digests': {
            'type': 'object',
            'required': ['digests'],
            'properties': {'digests': {
                'type': 'array', 'items': _ref('DigestNode'),
                'description': 'One digest per node asked for, in the '
                'order asked.'}},
        },
        'TombstonesRequest': copy.deepcopy(reads.TOMBSTONES_SCHEMA),
        'Tombstones': {
            'type': 'object',
            'required': ['tombstones'],
            'properties': {'tombstones': {
                'type': 'array',
                'description': 'The ids asked for that this site deleted '
                '(within its tombstone retention), ordered by id.',
                'items': {
                    'type': 'object',
                    'required': ['id', 'deleted_at', 'origin'],
                    'properties': {
                        'id': {'type': 'string'},
                        'deleted_at': {'type': 'string'},
                        'origin': {'type': ['string', 'null']},
                    }}}},
        },
        'Batch': copy.deepcopy(batch.BATCH_SCHEMA),
        'BatchResults': {
            'type': 'object',
            'required': ['results'],
            'properties': {'results': {'type': 'array', 'items': {
                'type': 'object',
                'required': ['index', 'op', 'type', 'id', 'status'],
                'properties': {
                    'index': {'type': 'integer'},
                    'op': {'enum': ['upsert', 'delete']},
                    'type': {'type': 'string'},
                    'id': {'type': 'string'},
                    'status': {
                        'type': 'integer',
                        'description': 'What the single-resource route '
                        'would have answered: 200, 201, 204, or an error '
                        'code with error.'},
                    'hash': _HASH,
                    'error': _ref('ErrorDetail'),
                }}}},
        },
        'Rekey': copy.deepcopy(rekey.REKEY_SCHEMA),
        'RekeyResult': {
            'type': 'object',
            'required': ['rekey'],
            'properties': {'rekey': {
                'type': 'object',
                'properties': {
                    'type': {'type': 'string'},
                    'from': {'type': 'string'},
                    'to': {'type': 'string'},
                    'references': {
                        'type': 'object',
                        'additionalProperties': {'type': 'integer'},
                        'description': 'Rows repointed, by table.column.'},
                    'resource': _ref('Envelope'),
                },
            }},
        },
    }
    clash = set(schemas) & set(fixed)
    if clash:
        raise ValueError(f'resource type schema names {sorted(clash)} clash '
                         'with the fixed schemas of keystone_syncext.openapi')
    schemas.update(fixed)
    return schemas


# --- parameters and headers -------------------------------------------------

def _parameters() -> dict:
    def query(name, schema, description):
        return {'name': name, 'in': 'query', 'required': False,
                'schema': schema, 'description': description}

    return {
        'type': {
            'name': 'type', 'in': 'path', 'required': True,
            'schema': {'type': 'string', 'enum': list(resources.TYPES)},
            'description': 'A resource type this site syncs.'},
        'id': {
            'name': 'id', 'in': 'path', 'required': True,
            'schema': {'type': 'string', 'pattern': base.ID_PATTERN},
            'description': "The resource id (for synthetic types, fields "
            "joined with ':')."},
        'since': query('since', _CURSOR, 'Changes after this cursor '
                       '(default: from the start of the retained history).'),
        'limit': query('limit', {'type': 'integer', 'minimum': 1},
                       'At most this many items, up to [sync] '
                       'max_page_size.'),
        'types': {
            'name': 'types', 'in': 'query', 'required': False,
            'style': 'form', 'explode': False,
            'schema': {'type': 'array',
                       'items': {'type': 'string',
                                 'enum': list(resources.TYPES)}},
            'description': 'Only changes of these types (comma-separated).'},
        'wait': query('wait', {'type': 'number', 'minimum': 0},
                      'Long-poll up to this many seconds (capped by [sync] '
                      'max_wait_seconds) while there is no change.'),
        'marker': query('marker', {'type': 'string'},
                        'Only ids after this one (bytewise).'),
        'prefix': query('prefix', {'type': 'string', 'maxLength': 255},
                        'Only ids starting with this.'),
        'origin': {
            'name': sync.ORIGIN_HEADER, 'in': 'header', 'required': False,
            'schema': {'type': 'string', 'pattern': sync._SITE_ID.pattern},
            'description': 'The site id the write comes from, recorded in '
            'the change feed and in tombstones (so agents do not echo a '
            'change back to where it came from).'},
        'if_match': {
            'name': 'If-Match', 'in': 'header', 'required': False,
            'schema': {'type': 'string'},
            'description': 'Apply only when the current hash is one of '
            'these ETags (or "*": when the resource exists).'},
        'if_none_match': {
            'name': 'If-None-Match', 'in': 'header', 'required': False,
            'schema': {'type': 'string'},
            'description': 'Apply only when the current hash is none of '
            'these ETags ("*": only when the resource is absent).'},
    }


def _p(name: str) -> dict:
    return {'$ref': f'#/components/parameters/{name}'}


_ETAG = {'ETag': {'description': 'The content hash, quoted.',
                  'schema': {'type': 'string'}}}


# --- operations -------------------------------------------------------------

_AUTH_ERRORS = {
    '401': 'No valid token (Keystone).',
    '403': 'The policy refuses the call, or the token is not system scoped '
           '(Keystone).',
}

# Every operation: the database could not take the request now.
_BUSY = ('The database is locked by another writer, deadlocked or '
         'unreachable; nothing was applied. Send the same request again '
         'after Retry-After seconds.')
_RETRY_AFTER = {'Retry-After': {'description': 'Seconds to wait.',
                                'schema': {'type': 'integer'}}}

_CAPTURE = ('Or change capture is incomplete here (capture_complete: '
            'false, with missing_triggers and missing_columns): changes '
            'are going unrecorded until an operator runs '
            'keystone-syncext-manage db_sync, which starts a new '
            'history_id.')

RESOURCE = '/v3/sync/resources/{type}/{id}'

# (path, method) -> what the document says about it. ``errors`` are the
# codes besides 401 and 403 (which every operation can answer).
OPERATIONS = {
    ('/v3/sync', 'GET'): {
        'operationId': 'getCapabilities',
        'summary': 'What this site offers to a sync agent',
        'ok': {'200': ('Capabilities.', 'Capabilities', None)},
        'errors': {},
    },
    ('/v3/sync/status', 'GET'): {
        'operationId': 'getStatus',
        'summary': 'Whether change capture is complete here',
        'ok': {'200': ('Capture health.', 'Status', None)},
        'errors': {},
    },
    ('/v3/sync/changes', 'GET'): {
        'operationId': 'listChanges',
        'summary': 'The change feed',
        'description': 'Changes after cursor since, in feed order, each with '
        'the current representation. A consumer stores next and asks again '
        'from it; more says whether a full page was returned.',
        'parameters': ['since', 'limit', 'types', 'wait'],
        'ok': {'200': ('A page of the feed.', 'Changes', None)},
        'errors': {
            '400': 'since is not a cursor of this site, limit is not an '
                   'integer from 1 to [sync] max_page_size, or wait is not '
                   'a non-negative number.',
            '404': 'types names a type this site does not sync.',
            '410': 'since is outside the history this site keeps (purged, '
                   'from another history_id, from before history ids, or '
                   'the database was restored from a backup since): the '
                   'body has reconcile, oldest_valid_cursor and head_cursor.',
        },
        '503': _CAPTURE,
    },
    ('/v3/sync/resources/{type}', 'GET'): {
        'operationId': 'listResources',
        'summary': 'The resources of one type, ordered by id',
        'parameters': ['type', 'marker', 'limit', 'prefix'],
        'ok': {'200': ('A page of resources; next_marker is null on the '
                       'last page.', 'Listing', None)},
        'errors': {
            '400': 'limit is not an integer from 1 to [sync] max_page_size.',
            '404': 'The type is not one this site syncs.',
        },
    },
    (RESOURCE, 'GET'): {
        'operationId': 'getResource',
        'summary': 'One resource',
        'description': 'HEAD is answered too (same rule), without a body.',
        'parameters': ['type', 'id'],
        'ok': {'200': ('The resource.', 'Envelope', _ETAG)},
        'errors': {'404': 'Unknown type, or no such resource here.'},
    },
    (RESOURCE, 'PUT'): {
        'operationId': 'putResource',
        'summary': 'Create or update a resource with the id in the URL',
        'description': 'Writes through Keystone (its rules, notifications '
        'and cache invalidation apply). Writing the representation the '
        'resource already has is a no-op answered with 200.',
        'parameters': ['type', 'id', 'if_match', 'if_none_match', 'origin'],
        'body': 'ResourceBody',
        'ok': {'200': ('Updated, or already so.', 'Envelope', _ETAG),
               '201': ('Created.', 'Envelope', _ETAG)},
        'errors': {
            '400': 'The body is not {"resource": {...}}, the id is not of '
                   "the type's form, the representation is invalid for the "
                   'type or names another id, a resource it refers to is '
                   'missing, the origin header is not a site id, the '
                   'database refuses a value, or Keystone refuses the '
                   'change.',
            '404': 'The type is not one this site syncs.',
            '409': 'Another resource holds the name (existing_id names '
                   'it), a resource of another type holds the id (held_by '
                   'says what), the database refuses the row as a '
                   'duplicate or a reference to a row it lacks, or the '
                   'write would change an application credential\'s '
                   'secret hash, or change one on behalf of another site '
                   '(doc/security.md).',
            '412': 'If-Match or If-None-Match does not hold: current_hash '
                   'is the hash here.',
        },
        'auth_403': 'Also when an application credential written on behalf '
                    'of another site (the origin header, not [sync] '
                    'hub_site_id) breaks Keystone\'s creation rules at this '
                    'site, or belongs to a privileged user '
                    '(doc/security.md).',
    },
    (RESOURCE, 'DELETE'): {
        'operationId': 'deleteResource',
        'summary': 'Delete a resource, leaving a tombstone with the origin',
        'parameters': ['type', 'id', 'if_match', 'origin'],
        'ok': {'204': ('Deleted.', None, None)},
        'errors': {
            '400': "The id is not of the type's form, the origin header is "
                   'not a site id, or Keystone refuses the deletion.',
            '404': 'Unknown type, or no such resource here.',
            '412': 'If-Match does not hold: current_hash is the hash here.',
        },
        'auth_403': 'Also when Keystone refuses the deletion (a project '
                    'that has children), or another site deletes an '
                    'application credential it did not make here.',
    },
    ('/v3/sync/batch', 'POST'): {
        'operationId': 'createBatch',
        'summary': 'Many upserts and deletes, in dependency order',
        'description': 'A body that is not a batch is refused whole. Each '
        'item is checked as its PUT or DELETE would be (a malformed one '
        'gets that 4xx as its result); the others are applied each in its '
        'own savepoint (deletes first, dependents first; then upserts, '
        'dependencies first) and get their own result.',
        'parameters': ['origin'],
        'body': 'Batch',
        'ok': {'200': ('One result per item, in request order.',
                       'BatchResults', None)},
        'errors': {
            '400': 'The body does not match the batch schema, has more '
                   'than [sync] max_page_size items, or the origin header '
                   'is not a site id. Nothing is written.',
        },
    },
    ('/v3/sync/rekey', 'POST'): {
        'operationId': 'createRekey',
        'summary': 'Give a resource a new id, and every reference to it',
        'parameters': ['origin'],
        'body': 'Rekey',
        'ok': {'200': ('Re-keyed.', 'RekeyResult', None)},
        'errors': {
            '400': 'The body does not match the schema, an id is not of '
                   "the type's form, the type cannot be re-keyed, from "
                   'equals to, or the origin header is not a site id.',
            '404': 'Unknown type, or no resource from here.',
            '409': 'A resource to exists already (existing_id names it), '
                   'or a resource of another type holds that id (held_by).',
        },
    },
    ('/v3/sync/digest/{type}', 'GET'): {
        'operationId': 'getDigest',
        'summary': 'Hash buckets of one type by id prefix',
        'description': 'One bucket per next character after prefix; compare '
        'with another site and drill down where the buckets differ.',
        'parameters': ['type', 'prefix'],
        'ok': {'200': ('The digest.', 'Digest', None)},
        'errors': {
            '400': 'prefix is longer than any id.',
            '404': 'The type is not one this site syncs.',
        },
        '503': _CAPTURE,
    },
    ('/v3/sync/digests', 'POST'): {
        'operationId': 'getDigests',
        'summary': 'Many digests, of any types and prefixes, in one request',
        'description': 'A read, like GET /v3/sync/digest/{type}: each '
        'answer is what that route gives for the same type and prefix. '
        'The whole body is checked before anything is read.',
        'body': 'DigestsRequest',
        'ok': {'200': ('The digests, in the order asked.', 'Digests',
                       None)},
        'errors': {
            '400': 'The body does not match the schema (a prefix longer '
                   'than any id included), or asks for more than [sync] '
                   'max_digests_per_request digests.',
            '404': 'A type is not one this site syncs.',
        },
        '503': _CAPTURE,
    },
    ('/v3/sync/tombstones', 'POST'): {
        'operationId': 'listTombstones',
        'summary': 'Which of these ids this site deleted',
        'description': 'A read: the tombstones this site keeps (within '
        '[sync] tombstone_retention_days) for the ids asked. A reconcile '
        'asks the hub this about what a spoke holds and the hub lacks, '
        'so a spoke restored from backup cannot bring a deleted resource '
        'back. A re-created id has no tombstone.',
        'body': 'TombstonesRequest',
        'ok': {'200': ('The tombstones of the ids asked, by id.',
                       'Tombstones', None)},
        'errors': {
            '400': 'The body does not match the schema, or asks for more '
                   'than [sync] max_page_size ids.',
            '404': 'The type is not one this site syncs.',
        },
    },
}


def _error_response(description: str) -> dict:
    return {'description': description, 'content': _json(_ref('Error'))}


def _operation(path: str, method: str, rule) -> dict:
    try:
        spec = OPERATIONS[(path, method)]
    except KeyError:
        raise KeyError(f'{method} {path} is served but not described in '
                       'keystone_syncext/openapi.py OPERATIONS') from None
    description = [spec.get('description', ''),
                   f'Policy rule {rule.name}, by default '
                   f'"{rule.check_str}".']
    op = {
        'operationId': spec['operationId'],
        'summary': spec['summary'],
        'description': ' '.join(d for d in description if d),
        'tags': ['sync'],
        'x-openstack-policy': rule.name,
        'responses': {},
    }
    if spec.get('parameters'):
        op['parameters'] = [_p(n) for n in spec['parameters']]
    if spec.get('body'):
        op['requestBody'] = {'required': True,
                             'content': _json(_ref(spec['body']))}
    for code, (text, schema, headers) in spec['ok'].items():
        response = {'description': text}
        if schema:
            response['content'] = _json(_ref(schema))
        if headers:
            response['headers'] = copy.deepcopy(headers)
        op['responses'][code] = response
    errors = dict(_AUTH_ERRORS, **spec['errors'])
    if spec.get('auth_403'):
        errors['403'] += ' ' + spec['auth_403']
    for code, text in errors.items():
        op['responses'][code] = _error_response(text)
    busy = ' '.join(t for t in (_BUSY, spec.get('503')) if t)
    op['responses']['503'] = dict(
        _error_response(busy), headers=copy.deepcopy(_RETRY_AFTER))
    return op


def build() -> dict:
    """The OpenAPI document, as a dict."""
    rules = policy_rules()
    paths: dict[str, dict] = {}
    for path, method in served_operations():
        try:
            rule = rules[(path, method)]
        except KeyError:
            raise KeyError(f'no rule in keystone_syncext/policies.py names '
                           f'{method} {path} in its operations') from None
        paths.setdefault(path, {})[method.lower()] = _operation(
            path, method, rule)
    described = set(OPERATIONS) - set(served_operations())
    if described:
        raise KeyError(f'described but not served: {sorted(described)}')
    return {
        'openapi': OPENAPI_VERSION,
        'info': {
            'title': 'Keystone sync API',
            'version': str(sync.PROTOCOL_VERSION),
            'description': 'The /v3/sync routes keystone_syncext adds to '
            'Keystone, so a sync agent can copy identity data between '
            'Keystone deployments with the same ids (wire protocol v%d). '
            'Generated by python -m keystone_syncext.openapi; do not edit.'
            % sync.PROTOCOL_VERSION,
            'license': {'name': 'Apache-2.0',
                        'identifier': 'Apache-2.0'},
        },
        'tags': [{'name': 'sync', 'description': 'Keystone sync API'}],
        'security': [{SECURITY_SCHEME: []}],
        'paths': paths,
        'components': {
            'securitySchemes': {SECURITY_SCHEME: {
                'type': 'apiKey', 'in': 'header', 'name': 'X-Auth-Token',
                'description': 'A Keystone token; every rule is system '
                'scoped.'}},
            'parameters': _parameters(),
            'schemas': _schemas(),
        },
    }


def dumps(doc: dict) -> str:
    """The committed form: sorted keys, indent 2, trailing newline."""
    return json.dumps(doc, sort_keys=True, indent=2) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m keystone_syncext.openapi',
        description='Write the OpenAPI document of /v3/sync.')
    parser.add_argument('--output-file', metavar='PATH',
                        help='write here instead of to standard output')
    args = parser.parse_args(argv)
    text = dumps(build())
    if args.output_file:
        with open(args.output_file, 'w', encoding='utf-8') as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
