"""Reuse SQLite connections within one request, never across requests.

oslo.db gives an engine on a SQLite file a ``NullPool``: every Keystone
session opens a connection of its own (about 60 per write request), and
SQLite parses the whole schema, our capture triggers included, on each
one. :class:`RequestScopedPool` takes its place in our WSGI entry point:

- while a thread serves a request (:func:`wrap_wsgi` marks its start
  and end), a connection returned by one of its sessions is kept for
  that thread, and the thread's next checkout takes it instead of
  opening a new one (a session that starts while another is open, a
  nested one, still gets a connection of its own);
- at the end of the request every connection the thread opened during
  it is closed; one still checked out then is closed when it comes
  back. No connection outlives the request it served, so no request can
  see another's read snapshot (Python 3.11's ``sqlite3`` does not reset
  statements on rollback, and a statement not reset keeps its snapshot);
- a connection is kept only by the thread that opened it, in the
  request it was opened for; any other return closes it, as does every
  return outside a request (startup, background threads): there the
  pool behaves as the ``NullPool`` it replaces;
- before a connection is kept, the cursors opened on it that are still
  open are closed, which resets their statements: a result a session
  left unread cannot hold a snapshot (or, without WAL, a shared lock
  that blocks writers) for the rest of the request.
"""

import threading
import weakref

import sqlalchemy as sa
from sqlalchemy import pool as sa_pool


def _tracking_factory():
    import sqlite3

    class _Conn(sqlite3.Connection):
        """A ``sqlite3`` connection that remembers its open cursors.

        SQLAlchemy opens each of its cursors through ``cursor()``, so
        all of them are seen. The cursor of the shortcut
        ``Connection.execute`` is not (CPython makes it without calling
        ``cursor()``); oslo.db uses it only for PRAGMAs on connect, and
        this package only for the long-poll's one-row ``PRAGMA
        data_version``: their cursors are dropped (and their statements
        reset) at once."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.kssync_cursors = weakref.WeakSet()

        def cursor(self, *args, **kwargs):
            cur = super().cursor(*args, **kwargs)
            self.kssync_cursors.add(cur)
            return cur

    return _Conn


_FACTORY = None


def _factory():
    global _FACTORY
    if _FACTORY is None:
        _FACTORY = _tracking_factory()
    return _FACTORY


def close_cursors(dbapi_connection) -> int:
    """Close the cursors still open on ``dbapi_connection``; how many."""
    cursors = getattr(dbapi_connection, 'kssync_cursors', None)
    if not cursors:
        return 0
    closed = 0
    for cur in list(cursors):
        try:
            cur.close()
            closed += 1
        except Exception:  # noqa: BLE001 - a cursor of a dead connection
            pass
    cursors.clear()
    return closed


class _Request:
    """One thread's request: the connections opened for it."""

    __slots__ = ('thread', 'idle', 'open', '__weakref__')

    def __init__(self):
        self.thread = threading.get_ident()
        self.idle = []
        self.open = True


class RequestScopedPool(sa_pool.Pool):
    """A pool that keeps connections only for the request that opened
    them (see the module's docstring)."""

    def __init__(self, creator, **kw):
        super().__init__(creator, **kw)
        self._local = threading.local()

    # -- request boundaries (called by the thread serving the request) --

    def begin_request(self) -> None:
        """Start keeping this thread's connections for its request."""
        depth = getattr(self._local, 'depth', 0)
        self._local.depth = depth + 1
        if depth == 0:
            self._local.request = _Request()

    def end_request(self) -> None:
        """Close every idle connection this thread opened in its request;
        one still checked out is closed when it is returned."""
        depth = getattr(self._local, 'depth', 0)
        if depth > 1:
            self._local.depth = depth - 1
            return
        self._local.depth = 0
        req = getattr(self._local, 'request', None)
        self._local.request = None
        if req is None:
            return
        req.open = False
        idle, req.idle = req.idle, []
        for record in idle:
            record.close()

    def _current(self):
        req = getattr(self._local, 'request', None)
        if req is not None and req.open:
            return req
        return None

    # -- sqlalchemy.pool.Pool --

    def _do_get(self):
        req = self._current()
        if req is not None and req.idle:
            return req.idle.pop()
        record = self._create_connection()
        if req is not None:
            record.info['kssync_request'] = weakref.ref(req)
        return record

    def _do_return_conn(self, record) -> None:
        ref = record.info.get('kssync_request')
        owner = ref() if ref is not None else None
        req = self._current()
        if (owner is None or owner is not req
                or owner.thread != threading.get_ident()
                or record.dbapi_connection is None):
            record.info.pop('kssync_request', None)
            record.close()
            return
        try:
            close_cursors(record.dbapi_connection)
        except Exception:  # noqa: BLE001 - then do not keep it
            record.info.pop('kssync_request', None)
            record.close()
            return
        req.idle.append(record)

    def status(self) -> str:
        req = self._current()
        return (f'RequestScopedPool (this thread: '
                f'{len(req.idle) if req else 0} idle)')

    def dispose(self) -> None:
        # Connections live only inside a request and are closed at its
        # end by the thread serving it; there is nothing to close here.
        # A dispose from the serving thread closes its idle ones now.
        req = self._current()
        if req is not None:
            idle, req.idle = req.idle, []
            for record in idle:
                record.close()

    def recreate(self) -> 'RequestScopedPool':
        return self.replacing(self)

    @classmethod
    def replacing(cls, old: sa_pool.Pool) -> 'RequestScopedPool':
        """A pool like ``old`` (its creator, settings and listeners)."""
        return cls(
            old._creator,
            recycle=old._recycle,
            echo=old.echo,
            logging_name=old._orig_logging_name,
            reset_on_return=old._reset_on_return,
            pre_ping=old._pre_ping,
            _dispatch=old.dispatch,
            dialect=old._dialect,
        )


def is_file_sqlite_url(url) -> bool:
    """Whether ``url`` names a SQLite database in a file."""
    if not url:
        return False
    url = sa.engine.make_url(url)
    return (url.get_backend_name() == 'sqlite'
            and url.database not in (None, '', ':memory:')
            and not str(url.database).startswith('file::memory:')
            and 'mode=memory' not in str(url.database))


def _set_factory(dialect, conn_rec, cargs, cparams):
    cparams.setdefault('factory', _factory())


def install(engine: sa.engine.Engine) -> RequestScopedPool | None:
    """Put a :class:`RequestScopedPool` in ``engine``'s place of its
    ``NullPool``, if ``engine`` is on a SQLite file; the new pool, or
    ``None`` when ``engine`` is left as it was."""
    if isinstance(engine.pool, RequestScopedPool):
        return engine.pool
    if not is_file_sqlite_url(engine.url) or not isinstance(engine.pool,
                                                    sa_pool.NullPool):
        return None
    sa.event.listen(engine, 'do_connect', _set_factory)
    new = RequestScopedPool.replacing(engine.pool)
    # What Engine.dispose() does too: a pool is replaced by assignment.
    engine.pool = new
    return new


def wrap_wsgi(wsgi_app, pools):
    """``wsgi_app`` with each of ``pools`` scoped to one request: begun
    before the request reaches Keystone's middleware (token validation
    included), ended when ``wsgi_app`` returns, before the server sends
    the response. Not when the server closes the response: until then
    the server holds the client's connection open, and a client that
    reuses it meanwhile (keystoneauth does) finds it closed under it.
    A body produced after the return (a streamed one) checks out
    connections outside the request, and those are closed when returned.
    """

    def app(environ, start_response):
        for p in pools:
            p.begin_request()
        try:
            return wsgi_app(environ, start_response)
        finally:
            _end(pools)

    return app


def _end(pools):
    for p in pools:
        p.end_request()
