"""Digests: the hashed tree two sites compare to find what differs.

- :mod:`.hashing`: a node's hashes, pure Python (no Keystone), so a test
  site answers digests exactly as a real one does.
- :mod:`.store`: the stored ``(id, hash)`` pairs, kept current from the
  change log.
- :mod:`.tree`: ``GET /v3/sync/digest/{type}`` and ``POST
  /v3/sync/digests``.

This ``__init__`` imports nothing, so ``hashing`` stays importable without
Keystone.
"""
