"""Token revocation events: Keystone's ``revocation_event`` rows.

An event's id is made of its columns
(:mod:`keystone_syncext.common.revocation`), as the capture triggers make
it, so the same event has the same id at every site and is never changed
in place: a representation whose fields differ is another event.

Writes go to the table with SQLAlchemy Core, with the event's original
times: Keystone's ``revoke_api.revoke`` would stamp its own, and its
``RevokeEvent`` moves a ``domain_id`` that comes with an ``expires_at``
to a field its table does not have. What Keystone's ``revoke`` does
besides is done here too: the revocation cache region is dropped, and
the token validation cache (which holds "not revoked" answers) with it
(``stale_cache``).

Expired events are not purged here: Keystone purges them at each site
on its own next revocation (``_prune_expired_events``), the capture
triggers record that delete, and it is synced like any other. An event
that arrives already expired is written as it came, and the site's next
purge removes it again; it can only revoke tokens that have expired.
"""

import datetime

import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.common import revocation
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.writes import caching

TABLE = 'revocation_event'

# A revocation time: whole seconds, as Keystone makes them.
TIME = {'type': 'string', 'format': 'date-time',
        'pattern': r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000000Z$'}


def _id_column(max_length):
    return base.nullable(dict(base.ID, maxLength=max_length))


class RevocationEvent(base.ResourceType):
    name = 'revocation_event'
    synthetic = True
    _props = {
        'id': {'type': 'string'},
        'issued_before': TIME,
        'revoked_at': TIME,
        'expires_at': base.nullable(TIME),
        # Keystone's columns: String(64), the audit ids String(32).
        **{c: _id_column(32 if c.startswith('audit') else 64)
           for c in revocation.IDS},
    }
    schema = base.closed_object(_props)

    def id_of(self, resource):
        return revocation.identity(resource)

    def id_rule(self):
        return revocation.ID_PATTERN, revocation.ID_FORM

    @staticmethod
    def _load(row) -> dict:
        m = row._mapping
        item = {c: revocation.canonical_time(m[c]) for c in revocation.TIMES}
        item.update({c: m[c] for c in revocation.IDS})
        item['id'] = revocation.identity(item)
        item['_meta'] = common.meta(row)
        return item

    def fetch(self, conn, *, ids=None, marker=None, limit=None,
              prefix=None):
        # Ids are computed: read the table (Keystone keeps it short by
        # purging expired events) and filter in Python.
        t = base.table(conn, TABLE)
        query = sa.select(t)
        if ids is not None:
            wanted = [i for i in ids if isinstance(i, str)]
            if not wanted:
                return []
            # Every id starts with its issued_before: narrow in SQL.
            times = {_time_of(i) for i in wanted} - {None}
            if not times:
                return []
            query = query.where(sa.or_(*(
                sa.and_(t.c.issued_before >= s,
                        t.c.issued_before < s + _SECOND) for s in times)))
        items = [self._load(r) for r in conn.execute(query)]
        return common.filter_ids(items, ids=ids, marker=marker, limit=limit,
                                 prefix=prefix)

    @staticmethod
    def _row(resource) -> dict:
        row = {c: base.parse_iso(resource[c]) for c in revocation.TIMES}
        row.update({c: resource[c] for c in revocation.IDS})
        return row

    def create(self, session, conn, id_, resource):
        conn.execute(base.table(conn, TABLE).insert().values(
            self._row(resource)))

    def update(self, session, conn, id_, old, resource):
        # Every field is in the id, so the same id is the same
        # representation, which the write answers before coming here.
        raise exception.BadRequest(
            f'revocation event {id_} exists here with other fields; an '
            'event is never changed in place')

    def delete(self, session, conn, id_, old):
        t = base.table(conn, TABLE)
        row = self._row(old)
        conn.execute(t.delete().where(*(
            t.c[c].is_(None) if row[c] is None else t.c[c] == row[c]
            for c in revocation.COLUMNS)))

    def stale_cache(self, id_, old, new):
        """What Keystone's ``revoke_api.revoke`` drops (the revocation
        events region) and the token validation cache: a token validated
        before the event came would otherwise stay valid for the cache's
        lifetime."""
        return [caching.revocation_events(), caching.validated_tokens()]


_SECOND = datetime.timedelta(seconds=1)


def _time_of(id_) -> datetime.datetime | None:
    """The issued_before an id starts with, or None when it starts with
    no time."""
    try:
        return datetime.datetime.strptime(id_.split(':', 1)[0],
                                          '%Y%m%d%H%M%S')
    except ValueError:
        return None
