"""Each sync error answers with the HTTP code and title the API documents
(the title is derived from the code, so a wrong derivation shows here)."""

import pytest

from keystone_syncext import exception

BY_STATUS = {
    (400, 'Bad Request'): ['SyncError', 'BadRequest'],
    (403, 'Forbidden'): ['Forbidden'],
    (404, 'Not Found'): ['NotFound'],
    (409, 'Conflict'): ['_Conflict', 'Conflict', 'NameConflict', 'IdTaken',
                        'DatabaseConflict'],
    (410, 'Gone'): ['Gone'],
    (412, 'Precondition Failed'): ['PreconditionFailed'],
    (413, 'Request Entity Too Large'): ['TooLarge'],
    (503, 'Service Unavailable'): ['Unavailable', 'CaptureIncomplete'],
}
EXPECTED = {name: status for status, names in BY_STATUS.items()
            for name in names}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_code_and_title(name):
    cls = getattr(exception, name)
    assert (cls.code, cls.title) == EXPECTED[name]


def test_every_sync_error_is_listed():
    listed = {name for name, value in vars(exception).items()
              if isinstance(value, type)
              and issubclass(value, exception.SyncError)}
    assert listed == set(EXPECTED)


def test_the_409s_stay_distinct():
    # NameConflict is not caught as Conflict; each keeps its own class.
    assert not issubclass(exception.NameConflict, exception.Conflict)
    assert not issubclass(exception.IdTaken, exception.Conflict)
