"""The timestamp helpers the resources share (keystone_syncext.resources.base):
Keystone's DateTimeInt columns and the API's ISO 8601 text."""

import datetime

from keystone_syncext.resources import base
from keystone_syncext.resources import passwords

WHEN = datetime.datetime(2031, 5, 6, 7, 8, 9, 123457)


def test_micros_are_exact_both_ways():
    assert base.micros(WHEN) == 1935817689123457
    assert base.from_micros(1935817689123457) == WHEN
    assert base.micros(datetime.datetime(1970, 1, 1)) == 0


def test_iso_text_round_trips():
    assert base.iso(WHEN) == '2031-05-06T07:08:09.123457Z'
    assert base.parse_iso('2031-05-06T07:08:09.123457Z') == WHEN
    assert base.parse_iso(None) is None


def test_a_password_time_reads_the_integer_column_first():
    # Keystone's DateTimeInt column wins; 0 (unset) falls back to the
    # datetime column, as keystone.identity.backends.sql_model does.
    fallback = datetime.datetime(2030, 1, 1)
    assert passwords.password_time(1935817689123457, fallback) == WHEN
    assert passwords.password_time(0, fallback) == fallback
    assert passwords.password_time(None, None) is None
