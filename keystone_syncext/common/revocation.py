"""The identity of a token revocation event, the same at every site.

Keystone keeps revocation events in its ``revocation_event`` table under
an autoincrement integer: each site numbers its own, so that number
cannot name an event everywhere. An event is instead named by what it
is, every column but that integer, in one fixed order::

    ISSUED_BEFORE:REVOKED_AT:EXPIRES_AT:user_id:project_id:domain_id:
    role_id:trust_id:consumer_id:access_token_id:audit_id:audit_chain_id

(on one line), a time as ``YYYYMMDDHHMMSS`` (UTC, whole seconds: Keystone
makes every revocation time in whole seconds, and MySQL's column holds
no fraction) and an absent value as nothing. The same columns make the
same id, so an event written at a spoke with its original times has the
id it has at the hub, and the capture triggers (SQL, ``ID_PARTS``) and
the resource module (Python, :func:`identity`) compute it alike; a unit
test runs both on the same rows.

Not a hash: the capture triggers compute the id in SQL on SQLite,
MySQL/MariaDB and PostgreSQL, and SQLite has no hash function. Every
event Keystone makes names at most two ids besides its times (a user, a
project, a trust, a consumer, an audit id, or an audit chain with a
project or domain), so its id stays far below the change log's 255
characters (about 150 at most).

Pure data and Python, importable without Keystone (the type table is read
by the agent too).
"""

import datetime

# The time columns, then the id columns, in the order the id joins them.
TIMES = ('issued_before', 'revoked_at', 'expires_at')
IDS = ('user_id', 'project_id', 'domain_id', 'role_id', 'trust_id',
       'consumer_id', 'access_token_id', 'audit_id', 'audit_chain_id')
COLUMNS = TIMES + IDS
# Never null in Keystone's table.
REQUIRED = ('issued_before', 'revoked_at')

# ``YYYY-MM-DD HH:MM:SS``, the first 19 characters of a datetime as text on
# all three databases (SQLite keeps SQLAlchemy's text, MySQL and
# PostgreSQL's ISO output), less its separators.
_STAMP_SQL = ("REPLACE(REPLACE(REPLACE(SUBSTR(CAST({{r}}.{col} AS CHAR(26)), "
              "1, 19), '-', ''), ' ', ''), ':', '')")


def _part_sql(column: str) -> str:
    if column in TIMES:
        sql = _STAMP_SQL.format(col=column)
        return sql if column in REQUIRED else f"COALESCE({sql}, '')"
    return f"COALESCE({{r}}.{column}, '')"


ID_PARTS: tuple[str, ...] = tuple(_part_sql(c) for c in COLUMNS)
"""SQL of each part of the id, with ``{r}`` for the row (capture's
``Resource.id_parts``, joined with ':')."""

# The form of an id, for the sync API's check: three times (the last
# optional), then nine ids (each optional).
_STAMP = r'\d{14}'
_ID = r'[^/:%\s]{0,64}'
ID_PATTERN = (f'{_STAMP}:{_STAMP}:(?:{_STAMP})?' + f'(?::{_ID})' * len(IDS))
ID_FORM = ('ISSUED_BEFORE:REVOKED_AT:EXPIRES_AT followed by '
           + ':'.join(IDS) + ' (times as YYYYMMDDHHMMSS, an absent value '
           'empty)')

# A revocation time in the canonical representation.
CANONICAL_TIME = '%Y-%m-%dT%H:%M:%S.000000Z'


def stamp(value: str | datetime.datetime | None) -> str:
    """``YYYYMMDDHHMMSS`` of a canonical time (or a naive UTC datetime),
    '' for None."""
    if value is None:
        return ''
    if isinstance(value, str):
        value = datetime.datetime.strptime(value[:19], '%Y-%m-%dT%H:%M:%S')
    return value.strftime('%Y%m%d%H%M%S')


def canonical_time(value: datetime.datetime | None) -> str | None:
    """A naive UTC datetime as the representation writes it (whole
    seconds), or None."""
    return None if value is None else value.strftime(CANONICAL_TIME)


def identity(event: dict) -> str:
    """The id of the event whose columns (canonical times or datetimes,
    ids or None) ``event`` holds; a missing key is an absent value."""
    parts = [stamp(event.get(c)) for c in TIMES]
    parts += [event.get(c) or '' for c in IDS]
    return ':'.join(parts)
