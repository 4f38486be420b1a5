"""Writes of the sync API, all in one transaction each.

- :mod:`.transaction`: the transaction (``writing``) every write runs in.
- :mod:`.origin`: which site a write came from, recorded with its changes.
- :mod:`.caching`: what a write made stale in Keystone's caches,
  invalidated after it ends.
- :mod:`.notify`: Keystone's notifications, one catalog read per batch.
- :mod:`.items`: ``PUT`` and ``DELETE`` of one resource, with
  ``If-Match`` / ``If-None-Match``.
- :mod:`.batch`: ``POST /v3/sync/batch``, many items in dependency order.
- :mod:`.rekey`: ``POST /v3/sync/rekey``, a resource's id and every
  reference to it.

The resource types use ``caching`` and ``origin``; this ``__init__``
imports nothing, so importing those does not import the writers (which
import the resource types).
"""
