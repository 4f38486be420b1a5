"""The change feed: what a hub wrote, in an order a reader can follow.

- :mod:`.changes`: the change log capture fills; stamping (positions
  handed out after commit), the counters, the history id, purge.
- :mod:`.cursors`: the opaque cursors a reader holds (pure Python).
- :mod:`.history`: whether a cursor and this log tell one history, and
  whether capture is whole.
- :mod:`.reading`: ``GET /v3/sync/changes`` (pages, the long-poll) and the
  feed's bounds.

This ``__init__`` imports nothing, so ``cursors`` stays importable without
Keystone.
"""
