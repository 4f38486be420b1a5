"""Every error the extension raises, in one place (as ``keystone.exception``).

The :class:`SyncError` family is what a ``/v3/sync`` route answers with:
Keystone renders an ``exception.Error`` as its usual JSON error body, and
``keystone_syncext.api.sync`` adds each error's ``extra`` fields
(``existing_id``, ``reconcile``...) and, for a 503, ``Retry-After``. The
other classes never reach a client as such: capture that cannot be
installed and an operator's mistake are printed by
``keystone-syncext-manage``, a stamp race is retried, and the batch's
set-wise path falls back to item-by-item writes.

Pure classes: this module imports nothing of the extension, so every
other module may import it.
"""

import http

from keystone import exception


class SyncError(exception.Error):
    """A sync API error with a clear message and optional extra fields in
    the error body (``existing_id``, ``reconcile``...).

    A subclass names only its HTTP ``code``; its ``title`` is that
    status's standard phrase (``409`` -> ``'Conflict'``).
    """

    code = 400
    title = 'Bad Request'

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.title = http.HTTPStatus(cls.code).phrase

    def __init__(self, message: str, **extra):
        super().__init__(message=message)
        self.extra = extra


class BadRequest(SyncError):
    pass


class NotFound(SyncError):
    code = 404


class Forbidden(SyncError):
    """This site's rules do not let the write's origin make it."""

    code = 403


class _Conflict(SyncError):
    """The base of the 409s below. They share code and title only: each
    is its own class, so catching one does not catch the others."""

    code = 409


class Conflict(_Conflict):
    """409 about site data the write may not change."""


class NameConflict(_Conflict):
    """The name is taken by another resource; ``existing_id`` names it."""


class IdTaken(_Conflict):
    """The id is already held here by a resource of another type (or one
    that is not synced); ``held_by`` says what holds it."""


class DatabaseConflict(_Conflict):
    """409: the database refused the write for the data already there (a
    duplicate, a missing referent) where the checks before it did not
    foresee it (``keystone_syncext.dberrors``)."""


class PreconditionFailed(SyncError):
    code = 412


class TooLarge(SyncError):
    code = 413


class Gone(SyncError):
    code = 410


class Unavailable(SyncError):
    """The database cannot take the request now (locked, deadlocked, or
    unreachable); nothing was applied and the same request may be sent
    again after ``retry_after`` seconds."""

    code = 503

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class CaptureIncomplete(Unavailable):
    """Capture is missing pieces: changes are going unlogged, so the feed
    and the digests would mislead a reader."""

    def __init__(self, triggers: list[str], columns: list[str]):
        super().__init__(
            'change capture at this site is incomplete, so changes are '
            'going unrecorded; missing: %s. An operator must run '
            '"keystone-syncext-manage db_sync" here, after which every '
            'reader reconciles' % ', '.join(triggers + columns),
            retry_after=60)
        self.extra = {'capture_complete': False,
                      'missing_triggers': triggers,
                      'missing_columns': columns}


class CaptureError(Exception):
    """Capture cannot be installed; the message says what to do."""


class CommandError(Exception):
    """A failure the operator can fix; printed as one line, no traceback
    (``keystone-syncext-manage``)."""


class StampConflict(RuntimeError):
    """Another stamper numbered rows this one saw as unstamped."""


class BulkFallback(Exception):
    """The batch's set-wise path cannot judge this run exactly; apply it
    item by item (``keystone_syncext.resources.bulk``)."""
