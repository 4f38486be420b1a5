"""JSON schemas of the ``/v3/sync`` requests and responses, as Keystone
declares its own (``keystone/*/schema.py``): ``<route>_request_body``,
``<route>_request_query``, ``<route>_response_body``, applied to the
handlers of ``keystone_syncext.api.sync`` by the decorators of
``keystone_syncext.api.validation``.

Request schemas are checked on every request; response schemas describe
what the handlers answer (the tests check real answers against them).
``keystone_syncext.openapi`` builds doc/openapi.json from these objects:
every schema named in :data:`COMPONENTS` becomes a component, referred to
wherever the same object is used. The representation of each resource
type is its own schema (``keystone_syncext.resources``), checked by the
type with the id of the path (``ResourceType.validate``): a request
body's ``resource`` is declared an object here.

Limits that operators set (``[sync] max_page_size``...) are the
service's checks: the document depends on no configuration.
"""

import copy

from keystone_syncext import resources
from keystone_syncext.common import protocol
from keystone_syncext.digests import hashing as digest_hashing
from keystone_syncext.resources import base

# --- parts -----------------------------------------------------------------

cursor = {'type': 'string', 'description': 'An opaque feed cursor.'}
history_id = {
    'type': 'string', 'pattern': '^[0-9a-f]{16}$',
    'description': "This site's change-log history: renewed when the log is "
    'known to miss changes (capture repaired by db_sync, or the database '
    'found restored from a backup); every cursor of an older history is '
    'answered 410.'}
content_hash = {'type': 'string', 'pattern': '^[0-9a-f]{64}$',
                'description': 'Protocol-v1 content hash (SHA-256, hex).'}
timestamp = {'type': ['string', 'null'], 'format': 'date-time'}
_strings = {'type': 'array', 'items': {'type': 'string'}}


def schema_name(type_name: str) -> str:
    """Component name of a resource type's schema: ``implied_role`` ->
    ``ImpliedRole``."""
    return ''.join(p.capitalize() for p in type_name.split('_'))


def _representation(name: str, rtype) -> dict:
    """A type's schema, with the id's form (``check_id``) and what the
    representation says about secrets and site-local fields."""
    schema = copy.deepcopy(rtype.schema)
    schema['title'] = name
    if not rtype.synthetic:
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
    return schema


representations = {schema_name(n): _representation(n, t)
                   for n, t in resources.TYPES.items()}
any_representation = {
    'anyOf': list(representations.values()),
    'description': 'The representation of the type named in the path (or '
    'in the item).'}

error_detail = {
    'type': 'object',
    'required': ['code', 'title', 'message'],
    'properties': {
        'code': {'type': 'integer'},
        'title': {'type': 'string'},
        'message': {'type': 'string'},
        'existing_id': {'type': 'string', 'description': '409: the id of '
                        'the resource that holds the name.'},
        'held_by': {'type': 'string', 'description': '409: what already '
                    'holds the id (a resource of another type).'},
        'current_hash': {'type': ['string', 'null'], 'description': '412: '
                         'the hash the resource has here (null: absent).'},
        'reconcile': {
            'type': 'boolean', 'description': '410: the consumer must '
            'reconcile (compare digests), then follow the feed from '
            'head_cursor.'},
        'rewound': {
            'type': 'boolean', 'description': '410 from the feed: true when '
            'the cursor shows this database went back in time (restored '
            'from a backup); what was written here after the backup is '
            'gone.'},
        'oldest_valid_cursor': cursor,
        'head_cursor': cursor,
        'capture_complete': {
            'type': 'boolean', 'description': '503 from the feed and the '
            'digests: false, change capture is incomplete here (changes '
            'are going unrecorded) until an operator runs '
            'keystone-syncext-manage db_sync.'},
        'missing_triggers': dict(_strings, description='With '
                                 'capture_complete.'),
        'missing_columns': dict(_strings, description='With '
                                'capture_complete: table.column.'),
    },
    'additionalProperties': True,
}
error = {
    'type': 'object',
    'required': ['error'],
    'properties': {'error': error_detail},
    'description': "Keystone's error document; the sync routes add fields "
    'to it.',
}

envelope = {
    'type': 'object',
    'required': ['type', 'id', 'hash', 'created_at', 'updated_at',
                 'resource'],
    'properties': {
        'type': {'type': 'string'},
        'id': {'type': 'string'},
        'hash': content_hash,
        'created_at': timestamp,
        'updated_at': timestamp,
        'resource': any_representation,
    },
    'description': "A resource as the API returns it; created_at and "
    "updated_at are this site's and not part of the hash.",
}

# --- path parameters and headers --------------------------------------------

# Flask's path variables; ``name``: what the document and policies say.
path_parameters = {
    'type_name': {
        'name': 'type', 'type': 'string', 'enum': list(resources.TYPES),
        'description': 'A resource type this site syncs.'},
    'resource_id': {
        'name': 'id', 'type': 'string', 'pattern': base.ID_PATTERN,
        'description': "The resource id (for synthetic types, fields "
        "joined with ':')."},
}

ORIGIN_HEADER = protocol.ORIGIN_HEADER
origin = {
    'type': 'string', 'pattern': protocol.SITE_ID_PATTERN,
    'description': 'The site id the write comes from '
    f'({protocol.SITE_ID_FORM}), recorded in the change feed '
    'and in tombstones (so agents do not echo a change back to where it '
    'came from).'}
if_match = {
    'type': 'string', 'description': 'Apply only when the current hash is '
    'one of these ETags (or "*": when the resource exists).'}
if_none_match = {
    'type': 'string', 'description': 'Apply only when the current hash is '
    'none of these ETags ("*": only when the resource is absent).'}


write_request_header = {'type': 'object', 'properties': {
    ORIGIN_HEADER: origin}}
FENCE_HEADER = protocol.FENCE_HEADER
fence = {
    'type': 'string', 'pattern': protocol.FENCE_PATTERN,
    'description': 'The sending agent\'s fencing token, '
    '"<group>:<generation>": the batch is refused (409, nothing applied) '
    'when an agent of the group already wrote here under a higher '
    'generation (it lost its claim on this site). Absent: not fenced.'}
batch_request_header = {'type': 'object', 'properties': {
    ORIGIN_HEADER: origin, FENCE_HEADER: fence}}
delete_request_header = {'type': 'object', 'properties': {
    ORIGIN_HEADER: origin, 'If-Match': if_match}}
put_request_header = {'type': 'object', 'properties': {
    ORIGIN_HEADER: origin, 'If-Match': if_match,
    'If-None-Match': if_none_match}}

# --- query parameters --------------------------------------------------------

limit = {'type': 'integer', 'minimum': 1, 'description': 'At most this many '
         'items, up to [sync] max_page_size.'}
prefix = {'type': 'string', 'maxLength': 255,
          'description': 'Only ids starting with this.'}

changes_request_query = {
    'type': 'object',
    'properties': {
        'since': dict(cursor, description='Changes after this cursor '
                      '(default: from the start of the retained history).'),
        'limit': limit,
        'types': {
            'type': 'string',
            'description': 'Only changes of these types (comma-separated).',
            # As Keystone's parameter_types.tags: a list, sent as CSV.
            'x-openstack': {'openapi': {
                'schema': {'type': 'array', 'items': {
                    'type': 'string', 'enum': list(resources.TYPES)}},
                'style': 'form', 'explode': False}}},
        'wait': {'type': 'number', 'minimum': 0,
                 'description': 'Long-poll up to this many seconds (capped '
                 'by [sync] max_wait_seconds) while there is no change.'},
    },
}
resources_request_query = {
    'type': 'object',
    'properties': {
        'marker': {'type': 'string',
                   'description': 'Only ids after this one (bytewise).'},
        'limit': limit,
        'prefix': prefix,
    },
}
digest_request_query = {'type': 'object', 'properties': {'prefix': prefix}}

# --- request bodies ----------------------------------------------------------

resource_request_body = {
    'title': 'resource body',
    'type': 'object',
    'required': ['resource'],
    'properties': {'resource': {
        'type': 'object',
        'description': 'The representation of the type named in the path '
        '(components.schemas, by type), checked with the id of the path.'}},
    'additionalProperties': False,
}

batch_request_body = {
    'title': 'batch',
    'type': 'object',
    'properties': {
        'items': {
            'type': 'array',
            'items': {
                'type': 'object',
                'properties': {
                    'op': {'enum': ['upsert', 'delete']},
                    'type': {'type': 'string'},
                    'id': {'type': 'string', 'minLength': 1,
                           'maxLength': 255},
                    'resource': {'type': 'object'},
                    'if_match': {'type': 'string'},
                },
                'required': ['op', 'type', 'id'],
                'additionalProperties': False,
            },
        },
    },
    'required': ['items'],
    'additionalProperties': False,
}

rekey_request_body = {
    'title': 're-key',
    'type': 'object',
    # The ids' form is the type's (ResourceType.check_id).
    'properties': {'type': {'type': 'string'},
                   'from': {'type': 'string'}, 'to': {'type': 'string'}},
    'required': ['type', 'from', 'to'],
    'additionalProperties': False,
}

digests_request_body = {
    'title': 'digest request',
    'type': 'object',
    'properties': {
        'digests': {
            'type': 'array',
            'minItems': 1,
            'items': {
                'type': 'object',
                'properties': {'type': {'type': 'string'}, 'prefix': prefix},
                'required': ['type'],
                'additionalProperties': False,
            },
        },
    },
    'required': ['digests'],
    'additionalProperties': False,
}

tombstones_request_body = {
    'title': 'tombstone request',
    'type': 'object',
    'properties': {
        'type': {'type': 'string'},
        'ids': {'type': 'array', 'minItems': 1,
                'items': {'type': 'string', 'maxLength': 255}},
    },
    'required': ['type', 'ids'],
    'additionalProperties': False,
}

# --- response bodies ---------------------------------------------------------


def _under(key: str, schema: dict) -> dict:
    """A response body that is one value under one key, as Keystone's
    (``{"status": {...}}``)."""
    return {'type': 'object', 'required': [key], 'properties': {key: schema}}


capabilities_response_body = _under('sync', {
    'type': 'object',
    'properties': {
        'protocol_versions': {
            'type': 'array', 'items': {'type': 'integer'},
            'description': 'Every wire protocol version this site '
            'speaks; an agent uses the highest one it speaks too, and '
            'refuses the site when there is none.'},
        'protocol_version': {
            'type': 'integer', 'description': 'The oldest of '
            'protocol_versions, for consumers that read one value '
            '(kept for compatibility).'},
        'site_id': {'type': 'string'},
        'keystone_version': {'type': 'string'},
        'resource_types': _strings,
        'change_retention_days': {'type': 'integer'},
        'tombstone_retention_days': {'type': 'integer'},
        'history_id': history_id,
        'oldest_valid_cursor': cursor,
        'head_cursor': cursor,
        'max_page_size': {'type': 'integer'},
        'max_wait_seconds': {'type': 'number'},
        'rekey_types': _strings,
        'max_digests_per_request': {
            'type': 'integer', 'description': 'The most nodes one POST '
            '/v3/sync/digests may ask for. Absent at a site from before '
            'that route: ask with GET /v3/sync/digest/{type}, one node '
            'at a time.'},
        'tombstone_lookup': {
            'type': 'boolean', 'description': 'POST /v3/sync/tombstones '
            'is served. Absent at a site from before that route.'},
        'batch_content_encodings': {
            **_strings, 'description': 'The Content-Encoding values a '
            'POST /v3/sync/batch body may be sent in besides none '
            '(gzip). Absent at a site from before compressed batches: '
            'send them as they are.'},
        'max_decompressed_batch_size': {
            'type': 'integer', 'description': 'The most bytes a '
            'compressed batch body may decompress to ([sync] '
            'max_decompressed_batch_size); the body as sent is limited '
            'by the site\'s max_request_body_size.'},
    },
})

status_response_body = _under('status', {
    'type': 'object',
    'properties': {
        'site_id': {'type': 'string'},
        'capture_complete': {'type': 'boolean'},
        'missing_triggers': _strings,
        'missing_columns': dict(_strings, description='table.column'),
        'history_id': history_id,
        'oldest_valid_cursor': cursor,
        'head_cursor': cursor,
    },
})

change = {
    'type': 'object',
    'properties': {
        'cursor': cursor,
        'type': {'type': 'string'},
        'id': {'type': 'string'},
        'op': {'enum': ['create', 'update', 'delete']},
        'changed_at': {'type': 'string', 'format': 'date-time'},
        'origin': {'type': ['string', 'null'], 'description': 'The site '
                   'whose sync write made the change; null when made at '
                   'this site.'},
        'hash': {'anyOf': [content_hash, {'type': 'null'}]},
        'resource': {'anyOf': [any_representation, {'type': 'null'}],
                     'description': 'The current representation; null '
                     'once the resource is gone.'},
    },
}
changes_response_body = {
    'type': 'object',
    'required': ['changes', 'next', 'head', 'more'],
    'properties': {
        'changes': {'type': 'array', 'items': change},
        'next': cursor,
        'head': cursor,
        'more': {'type': 'boolean'},
    },
}

resources_response_body = {
    'type': 'object',
    'required': ['items', 'next_marker'],
    'properties': {
        'items': {'type': 'array', 'items': envelope},
        'next_marker': {'type': ['string', 'null']},
    },
}

digest_node = {
    'type': 'object',
    'required': ['type', 'prefix', 'count', 'hash', 'buckets'],
    'properties': {
        'type': {'type': 'string'},
        'prefix': {'type': 'string'},
        'count': {'type': 'integer'},
        'hash': content_hash,
        'buckets': {'type': 'array', 'items': {
            'type': 'object',
            'properties': {'prefix': {'type': 'string'},
                           'count': {'type': 'integer'},
                           'hash': content_hash}}},
        'common_prefix': {
            'type': 'string', 'description': 'The longest prefix every id '
            'starting with prefix shares; absent when none does.'},
        'items': {
            'type': 'array',
            'description': f'Present when at most {digest_hashing.LEAF_SIZE}'
            ' ids start with prefix.',
            'items': {'type': 'object',
                      'properties': {'id': {'type': 'string'},
                                     'hash': content_hash}}},
    },
}
digest_response_body = _under('digest', digest_node)
digests_response_body = _under('digests', {
    'type': 'array', 'items': digest_node,
    'description': 'One digest per node asked for, in the order '
    'asked.'})

tombstones_response_body = _under('tombstones', {
    'type': 'array',
    'description': 'The ids asked for that this site deleted (within '
    'its tombstone retention), ordered by id.',
    'items': {
        'type': 'object',
        'required': ['id', 'deleted_at', 'origin'],
        'properties': {
            'id': {'type': 'string'},
            'deleted_at': {'type': 'string'},
            'origin': {'type': ['string', 'null']},
        }}})

batch_response_body = _under('results', {'type': 'array', 'items': {
    'type': 'object',
    'required': ['index', 'op', 'type', 'id', 'status'],
    'properties': {
        'index': {'type': 'integer'},
        'op': {'enum': ['upsert', 'delete']},
        'type': {'type': 'string'},
        'id': {'type': 'string'},
        'status': {
            'type': 'integer', 'description': 'What the '
            'single-resource route would have answered: 200, 201, 204, '
            'or an error code with error.'},
        'hash': content_hash,
        'error': error_detail,
    }}})

rekey_response_body = _under('rekey', {
    'type': 'object',
    'properties': {
        'type': {'type': 'string'},
        'from': {'type': 'string'},
        'to': {'type': 'string'},
        'references': {
            'type': 'object', 'additionalProperties': {'type': 'integer'},
            'description': 'Rows repointed, by table.column.'},
        'resource': envelope,
    },
})

COMPONENTS = dict(representations, **{
    'Error': error,
    'ErrorDetail': error_detail,
    'Envelope': envelope,
    'ResourceBody': resource_request_body,
    'Capabilities': capabilities_response_body,
    'Status': status_response_body,
    'Change': change,
    'Changes': changes_response_body,
    'Listing': resources_response_body,
    'DigestNode': digest_node,
    'Digest': digest_response_body,
    'DigestsRequest': digests_request_body,
    'Digests': digests_response_body,
    'TombstonesRequest': tombstones_request_body,
    'Tombstones': tombstones_response_body,
    'Batch': batch_request_body,
    'BatchResults': batch_response_body,
    'Rekey': rekey_request_body,
    'RekeyResult': rekey_response_body,
})
"""Schemas the document names: each is a component, and every use of the
same object refers to it. (A type named like a fixed one would fail
test_openapi.)"""
