"""The transaction every write of the sync API runs in.

One database transaction (Keystone's own ``session_for_write``; the
managers called inside join it), attributed to the origin site with
:func:`keystone_syncext.writes.origin.written_by`, and followed, after
commit, by invalidation of what it made stale in Keystone's caches
(:mod:`keystone_syncext.writes.caching`), so the ordinary API serves the
new state at once on every API node.
"""

import contextlib

from keystone.common import sql

from keystone_syncext.writes import caching
from keystone_syncext.writes import origin as origin_mod


@contextlib.contextmanager
def writing(origin: str | None):
    """A write transaction whose captured changes carry ``origin``.

    What the writes inside record with ``caching.touched`` is invalidated
    after the transaction ends, also when it fails: a manager called
    inside may have cached what was rolled back."""
    stale = None
    try:
        with sql.session_for_write() as session:
            stale = caching.begin(session)
            # The types that judge a write by who sent it read it here.
            session.info[origin_mod.SESSION_KEY] = origin
            conn = session.connection()
            ctx = (origin_mod.written_by(conn, origin) if origin
                   else contextlib.nullcontext())
            with ctx:
                yield session, conn
                session.flush()
    finally:
        if stale is not None:
            stale.invalidate()
