"""Where Keystone keeps a resource's id: what a re-key must move.

Keystone declares only some of its references as foreign keys: role
assignments, trusts, limits, OAuth1 tokens and application credentials
name projects, users and roles in plain columns. So the columns a re-key
repoints come from two places:

1. the foreign keys of the live schema that point at the id of the type's
   table, read when the re-key runs, so a Keystone release that adds one
   is covered without a change here;
2. the type's reviewed ``rekey_refs`` (``keystone_syncext.resources``),
   the columns Keystone keeps without a foreign key.

:data:`NOT_REFERENCES` lists the columns whose names look like such a
reference but which a re-key leaves alone, each with its reason. The test
suite reads every id-like column of the full Keystone 29.1 and 30.0
schemas and fails on any that is in neither list, so a new release's
reference is noticed before it is missed.
"""

import json

import sqlalchemy as sa

_REVOCATION = ('revocation events record the ids tokens were issued for '
               'and are only matched against tokens; tokens for the old '
               'id stop validating once it is gone, and the events expire '
               'with them')

NOT_REFERENCES: dict[str, dict[tuple[str, str], str]] = {
    'project': {
        ('revocation_event', 'project_id'): _REVOCATION,
        ('system_assignment', 'target_id'): 'always "system": a system '
                                            'role assignment has no project',
    },
    'user': {
        ('revocation_event', 'user_id'): _REVOCATION,
        ('password', 'local_user_id'): 'the integer id of the local_user '
                                       'row, which re-key keeps',
        ('token', 'user_id'): 'the SQL token table has been unused since '
                              'Keystone dropped its SQL token provider '
                              '(Rocky); db_sync keeps it empty',
    },
    'role': {
        ('revocation_event', 'role_id'): _REVOCATION,
    },
    'group': {
        ('project_endpoint_group', 'endpoint_group_id'):
            'an endpoint group (catalog filter), not an identity group',
    },
}


# Columns holding a JSON list of ids of the type (OAuth1 keeps the roles a
# request or access token delegates that way).
JSON_LIST_REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    'role': (('request_token', 'role_ids'), ('access_token', 'role_ids')),
}


def foreign_keys(conn, table_name: str) -> list[tuple[str, str]]:
    """``(table, column)`` of every foreign key in the live schema that
    points at ``table_name.id`` (one column of a composite key, such as
    ``local_user (user_id, domain_id) -> user (id, domain_id)``)."""
    inspector = sa.inspect(conn)
    found = []
    for other in sorted(inspector.get_table_names()):
        for fk in inspector.get_foreign_keys(other):
            if fk['referred_table'] != table_name:
                continue
            for mine, theirs in zip(fk['constrained_columns'],
                                    fk['referred_columns'], strict=True):
                if theirs == 'id':
                    found.append((other, mine))
    return found


def columns(conn, rtype) -> list[tuple[str, str]]:
    """Every ``(table, column)`` holding an id of ``rtype`` at this site:
    the reviewed ``rekey_refs`` first, then the foreign keys found in the
    schema that the review did not name, each once."""
    out = list(dict.fromkeys(rtype.rekey_refs))
    seen = set(out)
    for ref in foreign_keys(conn, rtype.table_name):
        if ref not in seen:
            seen.add(ref)
            out.append(ref)
    return out


def move_in_json_lists(conn, table, column: str, old_id: str,
                       new_id: str) -> int:
    """Replace ``old_id`` by ``new_id`` in the JSON list of ids that
    ``column`` of ``table`` holds; returns the rows changed. Rows are
    narrowed with LIKE and then parsed, so an id that is only a substring
    of another is never touched."""
    col = table.c[column]
    pk = list(table.primary_key.columns)
    rows = conn.execute(sa.select(*pk, col).where(
        col.like(f'%{old_id}%'))).all()
    changed = 0
    for row in rows:
        try:
            ids = json.loads(row[-1])
        except (TypeError, ValueError):
            continue    # not ours to repair
        if not isinstance(ids, list) or old_id not in ids:
            continue
        moved = [new_id if i == old_id else i for i in ids]
        key = sa.and_(*(c == row[n] for n, c in enumerate(pk)))
        conn.execute(table.update().where(key).values(
            {column: json.dumps(moved)}))
        changed += 1
    return changed
