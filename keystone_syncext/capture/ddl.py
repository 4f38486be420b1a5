"""Turn the capture spec into triggers for SQLite, MySQL/MariaDB, PostgreSQL.

Every trigger writes into ``sync_change`` inside the statement that changed
the row, so capture commits or rolls back with Keystone's own transaction,
whoever made it. Tombstones are kept by one trigger on ``sync_change``
itself (a 'delete' row upserts the tombstone, a 'create' row removes it),
so that logic exists once rather than in every table's trigger.

The triggers are deliberately small. Keystone on SQLite opens a new
connection for nearly every query, and SQLite parses the whole schema,
trigger bodies included, on each new connection: every byte of trigger
text is paid for on every request, reads included. Hence the column
defaults (``changed_at``, ``created_at``, ``updated_at``) instead of
timestamps spelled out in each trigger.

Origin of a change (the site whose sync API write caused it):

- PostgreSQL: the trigger reads ``sync_write_context``. The sync API
  inserts one row there at the start of its transaction and deletes it
  before commit, so the row is only ever visible to that transaction, and a
  rollback takes it along (MVCC: reading it never blocks anyone).
- MySQL/MariaDB: the trigger reads the session variable
  ``@keystone_sync_origin``, which the sync API sets for its transaction
  and clears after. A table would not do: InnoDB takes shared locks on the
  rows an ``INSERT ... SELECT`` reads, so every local write would wait for
  an open sync transaction's uncommitted context row.
- SQLite: the sync API stamps ``origin`` on the change rows (and
  tombstones) its transaction wrote, after its writes and before commit.
  SQLite has one writer at a time, so those are exactly the rows with an id
  above the highest one the transaction saw after taking the write lock.
  This keeps the subquery out of every trigger (see the parse cost above).

No origin (NULL) means "made at this site".
"""

import dataclasses

from sqlalchemy.dialects import mysql as sa_mysql
from sqlalchemy.dialects import postgresql as sa_pg
from sqlalchemy.dialects import sqlite as sa_sqlite

from keystone_syncext.capture import spec

ORIGIN_SQL = '(SELECT origin FROM sync_write_context LIMIT 1)'
MYSQL_ORIGIN_VAR = '@keystone_sync_origin'
# The change rows the tombstone trigger acts on.
_TOMBSTONE_OPS = "NEW.op IN ('create', 'delete')"
# The change log's own trigger keeps the tombstones.
CHANGE_TABLE = 'sync_change'


def trigger_name(table: str, event: str) -> str:
    """Name of the trigger capturing ``event`` ('ins', 'upd', 'del')."""
    prefix = '' if table.startswith('sync_') else 'sync_'
    return f'{prefix}{table}_{event}_v{spec.VERSION}'


@dataclasses.dataclass(frozen=True)
class Trigger:
    name: str
    table: str
    create: tuple[str, ...]   # statements, run in order
    drop: tuple[str, ...]


def _both(*conditions):
    """AND together the conditions that are not None."""
    present = [c for c in conditions if c]
    if len(present) <= 1:
        return present[0] if present else None
    return ' AND '.join(f'({c})' for c in present)


class _Dialect:
    """SQL spelling that differs between databases, and the shared logic."""

    sa_dialect = None
    now = ''
    dual = ''
    origin_sql = ORIGIN_SQL  # None: the origin is stamped afterwards

    def quote(self, name):
        return self.sa_dialect.identifier_preparer.quote(name)

    def concat(self, parts):
        return " || ':' || ".join(parts)

    def distinct(self, a, b):
        return f'{a} IS DISTINCT FROM {b}'

    def changed(self, cols, a='OLD', b='NEW'):
        q = self.quote
        return ' OR '.join(self.distinct(f'{a}.{q(c)}', f'{b}.{q(c)}')
                           for c in cols)

    def res_id(self, res, r):
        return self.concat([p.format(r=r) for p in res.id_parts])

    def res_type(self, res, r):
        return res.type_sql.format(r=r)

    def cond(self, res, r):
        return res.condition.format(r=r) if res.condition else None

    def log(self, type_sql, id_sql, op_sql, where=None, from_=None):
        """INSERT a change row for each (type, id) the SELECT yields."""
        cols, vals = 'resource_type, resource_id, op', [type_sql, id_sql,
                                                          op_sql]
        if self.origin_sql:
            cols += ', origin'
            vals.append(self.origin_sql)
        sql = f'INSERT INTO sync_change ({cols}) SELECT {", ".join(vals)}'
        if from_:
            sql += f' FROM {from_}'
        elif where:
            sql += self.dual
        return sql + (f' WHERE {where}' if where else '')

    def log_row(self, res, r, op_sql, guard=None):
        return self.log(self.res_type(res, r), self.res_id(res, r), op_sql,
                        _both(self.cond(res, r), guard))

    def log_update(self, res):
        """An update of a resource row; a changed key is a re-key: the old
        id is deleted and the new one created."""
        rekey = self.changed(res.key)
        if res.synced:
            op = f"CASE WHEN {rekey} THEN 'create' ELSE 'update' END"
        else:
            op = "'create'"  # only the key can change, and it did
        return [self.log_row(res, 'OLD', "'delete'", rekey),
                self.log_row(res, 'NEW', op)]

    def log_owner(self, child, rows):
        """An update of the resource(s) owning the child rows ``rows``."""
        parent = spec.RESOURCE_BY_TABLE[child.parent]
        match = ' OR '.join(f'({child.match.format(p="p", r=r)})'
                            for r in rows)
        return self.log(self.res_type(parent, 'p'), self.res_id(parent, 'p'),
                        "'update'", _both(match, self.cond(parent, 'p')),
                        from_=f'{self.quote(parent.table)} p')

    def touch_owner(self, child, rows):
        """Move the owner's updated_at. Its synced columns stay as they are,
        so its own update trigger logs nothing more."""
        parent = spec.RESOURCE_BY_TABLE[child.parent]
        table = self.quote(parent.table)
        match = ' OR '.join(f'({child.match.format(p=table, r=r)})'
                            for r in rows)
        return f'UPDATE {table} SET updated_at = {self.now} WHERE {match}'

    def child_body(self, child, event):
        rows = {'ins': ['NEW'], 'del': ['OLD'], 'upd': ['NEW', 'OLD']}[event]
        return [self.log_owner(child, rows), self.touch_owner(child, rows)]

    def cascade_body(self, cascade):
        """Log what a foreign key cascade is about to remove (MySQL only)."""
        match = cascade.match.format(c='c', r='OLD')
        if cascade.child in spec.RESOURCE_BY_TABLE:
            res = spec.RESOURCE_BY_TABLE[cascade.child]
            return [self.log(self.res_type(res, 'c'), self.res_id(res, 'c'),
                             "'delete'", match,
                             from_=f'{self.quote(res.table)} c')]
        child = spec.CHILD_BY_TABLE[cascade.child]
        parent = spec.RESOURCE_BY_TABLE[child.parent]
        owner = child.match.format(p='p', r='c')
        exists = (f'EXISTS (SELECT 1 FROM {self.quote(child.table)} c '
                  f'WHERE ({match}) AND {owner})')
        return [self.log(self.res_type(parent, 'p'),
                         self.res_id(parent, 'p'), "'update'", exists,
                         from_=f'{self.quote(parent.table)} p')]

    def tombstone_body(self, where=None):
        """The two statements of the trigger on sync_change that keeps
        tombstones: forget on 'create', upsert on 'delete'."""
        delete = ('DELETE FROM sync_tombstone WHERE resource_type = '
                  'NEW.resource_type AND resource_id = NEW.resource_id')
        select = ('SELECT NEW.resource_type, NEW.resource_id, '
                  'NEW.changed_at, NEW.origin, NEW.id')
        if where:
            select += self.dual + f' WHERE {where}'
        upsert = self.upsert_tombstone(
            'INSERT INTO sync_tombstone (resource_type, resource_id, '
            f'deleted_at, origin, change_id) {select}')
        return delete, upsert

    def upsert_tombstone(self, insert):
        raise NotImplementedError

    def child_triggers(self, child):
        """The triggers of a child table (MySQL and PostgreSQL; SQLite,
        which has no IF in a trigger, guards the update in its WHEN)."""
        changed = self.changed(child.link + child.synced)
        upd = f'IF {changed} THEN {_body(self.child_body(child, "upd"))}' \
              'END IF'
        return [
            self._trigger(child.table, 'ins', 'AFTER INSERT',
                          self.child_body(child, 'ins')),
            self._trigger(child.table, 'upd', 'AFTER UPDATE', [upd]),
            self._trigger(child.table, 'del', 'AFTER DELETE',
                          self.child_body(child, 'del')),
        ]

    def triggers(self):
        """Every trigger of the current spec, in install order."""
        out = [self.tombstone_trigger()]
        for res in spec.RESOURCES:
            out += self.resource_triggers(res)
        for child in spec.CHILDREN:
            out += self.child_triggers(child)
        return out


def _body(stmts):
    return ''.join(s + '; ' for s in stmts)


class SQLite(_Dialect):
    sa_dialect = sa_sqlite.dialect()
    # Microseconds, as SQLAlchemy writes them, so values sort as text.
    now = "(strftime('%Y-%m-%d %H:%M:%f','now')||'000')"
    origin_sql = None

    def distinct(self, a, b):
        return f'{a} IS NOT {b}'

    def upsert_tombstone(self, insert):
        return insert.replace('INSERT INTO', 'INSERT OR REPLACE INTO', 1)

    def _trigger(self, table, event, timing, stmts, when=None):
        name = trigger_name(table, event)
        when_sql = f' WHEN {when}' if when else ''
        sql = (f'CREATE TRIGGER IF NOT EXISTS {name} {timing} ON '
               f'{self.quote(table)}{when_sql} BEGIN {_body(stmts)}END')
        return Trigger(name, table, (sql,),
                       (f'DROP TRIGGER IF EXISTS {name}',))

    def tombstone_trigger(self):
        # SQLite has no IF: each statement carries its condition.
        delete, upsert = self.tombstone_body("NEW.op = 'delete'")
        return self._trigger(CHANGE_TABLE, 'ins', 'AFTER INSERT', [
            f"{delete} AND NEW.op = 'create'", upsert], when=_TOMBSTONE_OPS)

    def resource_triggers(self, res):
        t = self.quote(res.table)
        stamp = (f'UPDATE {t} SET created_at = coalesce(created_at, '
                 f'{self.now}), updated_at = coalesce(updated_at, '
                 f'created_at, {self.now}) WHERE rowid = NEW.rowid')
        touch = f'UPDATE {t} SET updated_at = {self.now} WHERE rowid = ' \
                'NEW.rowid'
        return [
            self._trigger(res.table, 'ins', 'AFTER INSERT',
                          [self.log_row(res, 'NEW', "'create'"), stamp]),
            self._trigger(res.table, 'upd', 'AFTER UPDATE',
                          [*self.log_update(res), touch],
                          when=self.changed(res.key + res.synced)),
            self._trigger(res.table, 'del', 'AFTER DELETE',
                          [self.log_row(res, 'OLD', "'delete'")]),
        ]

    def child_triggers(self, child):
        return [
            self._trigger(child.table, 'ins', 'AFTER INSERT',
                          self.child_body(child, 'ins')),
            self._trigger(child.table, 'upd', 'AFTER UPDATE',
                          self.child_body(child, 'upd'),
                          when=self.changed(child.link + child.synced)),
            self._trigger(child.table, 'del', 'AFTER DELETE',
                          self.child_body(child, 'del')),
        ]

    def existing_triggers_sql(self):
        return "SELECT name FROM sqlite_master WHERE type = 'trigger'"


class MySQL(_Dialect):
    sa_dialect = sa_mysql.dialect()
    now = 'UTC_TIMESTAMP(6)'
    dual = ' FROM DUAL'
    origin_sql = MYSQL_ORIGIN_VAR

    def concat(self, parts):
        if len(parts) == 1:
            return parts[0]
        return 'CONCAT(' + ", ':', ".join(parts) + ')'

    def distinct(self, a, b):
        return f'NOT ({a} <=> {b})'

    def upsert_tombstone(self, insert):
        return (insert + ' ON DUPLICATE KEY UPDATE deleted_at = '
                'VALUES(deleted_at), origin = VALUES(origin), '
                'change_id = VALUES(change_id)')

    def _trigger(self, table, event, timing, stmts):
        name = trigger_name(table, event)
        sql = (f'CREATE TRIGGER {name} {timing} ON {self.quote(table)} '
               f'FOR EACH ROW BEGIN {_body(stmts)}END')
        return Trigger(name, table, (sql,),
                       (f'DROP TRIGGER IF EXISTS {name}',))

    def tombstone_trigger(self):
        delete, upsert = self.tombstone_body()
        return self._trigger(CHANGE_TABLE, 'ins', 'AFTER INSERT', [
            f"IF NEW.op = 'create' THEN {delete}; "
            f"ELSEIF NEW.op = 'delete' THEN {upsert}; END IF"])

    def resource_triggers(self, res):
        changed = self.changed(res.key + res.synced)
        upd = (f'IF {changed} THEN {_body(self.log_update(res))}'
               f'SET NEW.updated_at = {self.now}; END IF')
        dele = [self.log_row(res, 'OLD', "'delete'")]
        for cascade in spec.CASCADES:
            if cascade.parent == res.table:
                # MySQL runs foreign key cascades without firing triggers.
                dele += self.cascade_body(cascade)
        return [
            self._trigger(res.table, 'ins', 'AFTER INSERT',
                          [self.log_row(res, 'NEW', "'create'")]),
            self._trigger(res.table, 'upd', 'BEFORE UPDATE', [upd]),
            self._trigger(res.table, 'del', 'BEFORE DELETE', dele),
        ]

    def existing_triggers_sql(self):
        return ('SELECT trigger_name FROM information_schema.triggers '
                'WHERE trigger_schema = DATABASE()')


class PostgreSQL(_Dialect):
    sa_dialect = sa_pg.dialect()
    now = "(clock_timestamp() AT TIME ZONE 'UTC')"

    def upsert_tombstone(self, insert):
        return (insert + ' ON CONFLICT (resource_type, resource_id) DO UPDATE '
                'SET deleted_at = EXCLUDED.deleted_at, origin = '
                'EXCLUDED.origin, change_id = EXCLUDED.change_id')

    def _trigger(self, table, event, timing, stmts, returns='NULL',
                 when=None):
        # returns: NULL for an AFTER trigger (ignored), NEW for a BEFORE
        # trigger that lets the row through.
        name = trigger_name(table, event)
        func = f'{name}_fn'
        qtable = self.quote(table)
        when_sql = f' WHEN ({when})' if when else ''
        create_func = (
            f'CREATE OR REPLACE FUNCTION {func}() RETURNS trigger '
            f'LANGUAGE plpgsql AS $sync$ BEGIN {_body(stmts)}'
            f'RETURN {returns}; END $sync$')
        create_trig = (
            'DO $sync$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE '
            f"tgname = '{name}' AND tgrelid = '{qtable}'::regclass) THEN "
            f'CREATE TRIGGER {name} {timing} ON {qtable} FOR EACH ROW'
            f'{when_sql} EXECUTE FUNCTION {func}(); END IF; END $sync$')
        drop = (f'DROP TRIGGER IF EXISTS {name} ON {qtable}',
                f'DROP FUNCTION IF EXISTS {func}()')
        return Trigger(name, table, (create_func, create_trig), drop)

    def tombstone_trigger(self):
        delete, upsert = self.tombstone_body()
        return self._trigger(CHANGE_TABLE, 'ins', 'AFTER INSERT', [
            f"IF NEW.op = 'create' THEN {delete}; "
            f"ELSIF NEW.op = 'delete' THEN {upsert}; END IF"], 'NULL',
            # Most rows are updates: don't even call the function for them.
            when=_TOMBSTONE_OPS)

    def resource_triggers(self, res):
        changed = self.changed(res.key + res.synced)
        upd = (f'IF {changed} THEN {_body(self.log_update(res))}'
               f'NEW.updated_at := {self.now}; END IF')
        return [
            self._trigger(res.table, 'ins', 'AFTER INSERT',
                          [self.log_row(res, 'NEW', "'create'")], 'NULL'),
            self._trigger(res.table, 'upd', 'BEFORE UPDATE', [upd], 'NEW'),
            self._trigger(res.table, 'del', 'AFTER DELETE',
                          [self.log_row(res, 'OLD', "'delete'")], 'NULL'),
        ]

    def existing_triggers_sql(self):
        return 'SELECT tgname FROM pg_trigger WHERE NOT tgisinternal'


DIALECTS = {
    'sqlite': SQLite,
    'mysql': MySQL,
    'postgresql': PostgreSQL,
}


def for_dialect(name: str) -> _Dialect:
    """The trigger generator for a SQLAlchemy dialect name."""
    try:
        return DIALECTS[name]()
    except KeyError:
        raise ValueError(
            f'change capture supports {", ".join(sorted(DIALECTS))}, '
            f'not {name}') from None
