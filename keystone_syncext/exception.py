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

from keystone import exception


class SyncError(exception.Error):
    """A sync API error with a clear message and optional extra fields in
    the error body (``existing_id``, ``reconcile``...)."""

    code = 400
    title = 'Bad Request'

    def __init__(self, message: str, **extra):
        super().__init__(message=message)
        self.extra = extra


class BadRequest(SyncError):
    pass


class NotFound(SyncError):
    code = 404
    title = 'Not Found'


class Forbidden(SyncError):
    """This site's rules do not let the write's origin make it."""

    code = 403
    title = 'Forbidden'


class Conflict(SyncError):
    """409 about site data the write may not change."""

    code = 409
    title = 'Conflict'


class NameConflict(SyncError):
    """The name is taken by another resource; ``existing_id`` names it."""

    code = 409
    title = 'Conflict'


class IdTaken(SyncError):
    """The id is already held here by a resource of another type (or one
    that is not synced); ``held_by`` says what holds it."""

    code = 409
    title = 'Conflict'


class DatabaseConflict(SyncError):
    """409: the database refused the write for the data already there (a
    duplicate, a missing referent) where the checks before it did not
    foresee it (``keystone_syncext.dberrors``)."""

    code = 409
    title = 'Conflict'


class PreconditionFailed(SyncError):
    code = 412
    title = 'Precondition Failed'


class Gone(SyncError):
    code = 410
    title = 'Gone'


class Unavailable(SyncError):
    """The database cannot take the request now (locked, deadlocked, or
    unreachable); nothing was applied and the same request may be sent
    again after ``retry_after`` seconds."""

    code = 503
    title = 'Service Unavailable'

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
