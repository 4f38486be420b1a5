"""Constants of the ``/v3/sync`` wire protocol that both ends use.

The extension (:mod:`keystone_syncext.api.sync`) and the agent
(:mod:`keystone_syncext.agent.client`) read these names from here, so a
header or version cannot be spelled one way at one end and another way at
the other.
"""

import hashlib
import json

# The representations' version, which is the protocol's (doc/api.md).
PROTOCOL_VERSION = 1
# The protocol versions spoken here. A site advertises its own in
# ``GET /v3/sync``; the agent uses the highest version both speak, so an
# extension one release ahead or behind keeps syncing as long as the two
# still share a version.
PROTOCOL_VERSIONS = (PROTOCOL_VERSION,)

# The header carrying the site a write comes from (its ``[sync] site_id``).
ORIGIN_HEADER = 'OpenStack-Sync-Origin'

# How a site's refusal of a field (or resource option) its Keystone
# release cannot store begins, after the type and id: the agent keeps
# such an item pending without sending it again until the site reports
# another release (doc/api.md, "Fields by Keystone release").
UNSTORABLE = 'this site (Keystone {release}) cannot store'
# What a site id looks like (``[sync] site_id``, ``hub_site_id`` and the
# origin header).
SITE_ID_PATTERN = r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'
SITE_ID_FORM = ('letters, digits, "_", "." and "-", at most 64 '
                'characters')
# The fencing token an agent sends with a batch: ``<group>:<generation>``,
# the agent group (one state database) and the generation of the sending
# member's claim on this spoke. The site refuses (409) a generation lower
# than the highest it recorded for the group; no header: no fencing.
FENCE_HEADER = 'OpenStack-Sync-Fence'
FENCE_PATTERN = r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:[0-9]{1,18}$'
# The Content-Encoding values a ``POST /v3/sync/batch`` body may be sent
# in besides none; a site lists those it accepts in its capabilities
# (``batch_content_encodings``), and the agent compresses a batch only
# for a site that lists gzip.
BATCH_CONTENT_ENCODINGS = ('gzip',)


def canonical_json(value) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes a hash is taken of."""
    return json.dumps(value, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=False).encode('utf-8')


def content_hash(resource: dict) -> str:
    """Protocol-v1 content hash of a canonical representation (the ETag
    and what digests are made of)."""
    return hashlib.sha256(b'v1\n' + canonical_json(resource)).hexdigest()
