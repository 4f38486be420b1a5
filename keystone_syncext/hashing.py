"""The protocol's hashes, with nothing of Keystone: a resource's content
hash and a digest bucket's hash.

The extension hashes with these (:mod:`keystone_syncext.resources.base`,
:mod:`keystone_syncext.service`), and so does the in-memory test site
(:mod:`keystone_syncext.testing.fakesite`), so that digests compare as
between real sites.
"""

import hashlib
import json


def canonical_json(value) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes a hash is taken of."""
    return json.dumps(value, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=False).encode('utf-8')


def content_hash(resource: dict) -> str:
    """Protocol-v1 content hash of a canonical representation."""
    return hashlib.sha256(b'v1\n' + canonical_json(resource)).hexdigest()


def bucket_hash(pairs) -> str:
    """The hash of a digest bucket: its ``(id, item hash)`` pairs, in id
    order."""
    h = hashlib.sha256()
    for id_, item_hash in pairs:
        h.update(f'{id_} {item_hash}\n'.encode())
    return h.hexdigest()
