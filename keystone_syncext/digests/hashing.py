"""The digest tree's hashing, pure Python: no Keystone, no database.

A digest node is built from the sorted ``(id, content hash)`` pairs under
a prefix (:mod:`keystone_syncext.digests.store` keeps them). Anything that
answers digests as a site does (the agent's test sites) builds its nodes
with :func:`node`, so its answers hash exactly as a real site's.
"""

import hashlib
import os.path

# A digest lists the items of a bucket itself once it is this small.
LEAF_SIZE = 64


def bucket_hash(pairs) -> str:
    """SHA-256 over ``id hash`` lines, one per pair, in the given order."""
    h = hashlib.sha256()
    for id_, item_hash in pairs:
        h.update(f'{id_} {item_hash}\n'.encode())
    return h.hexdigest()


def node(type_name: str, prefix: str, pairs: list[tuple]) -> dict:
    """The digest node of ``pairs``, the ids under ``prefix``."""
    buckets: dict[str, list] = {}
    for id_, h in pairs:
        key = id_[:len(prefix) + 1]
        buckets.setdefault(key, []).append((id_, h))
    out = {
        'type': type_name,
        'prefix': prefix,
        'count': len(pairs),
        'hash': bucket_hash(pairs),
        'buckets': [{'prefix': key, 'count': len(v), 'hash': bucket_hash(v)}
                    for key, v in sorted(buckets.items(),
                                         key=lambda kv: kv[0].encode())],
    }
    if pairs:
        # Ordered by bytes: the first and the last id share what all do.
        out['common_prefix'] = os.path.commonprefix([pairs[0][0],
                                                     pairs[-1][0]])
    if len(pairs) <= LEAF_SIZE:
        out['items'] = [{'id': i, 'hash': h} for i, h in pairs]
    return out
