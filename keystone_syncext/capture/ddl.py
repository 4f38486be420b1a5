"""Turn the capture spec into triggers for SQLite, MySQL/MariaDB, PostgreSQL.

Every trigger writes into ``sync_change`` (and ``sync_tombstone`` for
deletes) inside the statement that changed the row, so capture commits or
rolls back with Keystone's own transaction, whoever made it.

The origin of a change is read from ``sync_write_context``: the sync API
inserts one row there at the start of its transaction and deletes it before
commit, so the row is only ever visible to that transaction (a rolled back
transaction takes it along). With no such row the origin is NULL, meaning
"this site".
"""

import dataclasses

from keystone_syncext.capture import spec

ORIGIN_SQL = '(SELECT origin FROM sync_write_context LIMIT 1)'


def trigger_name(table: str, event: str) -> str:
    """Name of the trigger capturing ``event`` ('ins', 'upd', 'del')."""
    return f'sync_{table}_{event}_v{spec.VERSION}'


@dataclasses.dataclass(frozen=True)
class Trigger:
    name: str
    table: str
    create: tuple[str, ...]   # statements, run in order
    drop: tuple[str, ...]


class _Dialect:
    """SQL spelling that differs between databases."""

    now = ''
    dual = ''

    def quote(self, name):
        return f'"{name}"'

    def concat(self, parts):
        return " || ':' || ".join(parts)

    def distinct(self, a, b):
        return f'{a} IS DISTINCT FROM {b}'

    def select_where(self, exprs, where, from_=''):
        sql = 'SELECT ' + ', '.join(exprs)
        if from_:
            sql += ' FROM ' + from_
        elif where:
            sql += self.dual
        if where:
            sql += f' WHERE {where}'
        return sql

    def upsert_tombstone(self, select_sql):
        raise NotImplementedError

    # -- building blocks shared by all dialects ---------------------------

    def res_id(self, res, r):
        return self.concat([p.format(r=r) for p in res.id_parts])

    def res_type(self, res, r):
        return res.type_sql.format(r=r)

    def cond(self, res, r):
        return res.condition.format(r=r) if res.condition else None

    def record(self, type_sql, id_sql, op, where=None, from_=''):
        select = self.select_where(
            [type_sql, id_sql, f"'{op}'", self.now, ORIGIN_SQL], where, from_)
        return ('INSERT INTO sync_change '
                '(resource_type, resource_id, op, changed_at, origin) '
                + select)

    def tombstone(self, type_sql, id_sql, where=None, from_=''):
        change = ('(SELECT MAX(sc.id) FROM sync_change sc WHERE '
                  f'sc.resource_type = {type_sql} AND '
                  f'sc.resource_id = {id_sql})')
        select = self.select_where(
            [type_sql, id_sql, self.now, ORIGIN_SQL, change], where, from_)
        return self.upsert_tombstone(
            'INSERT INTO sync_tombstone '
            '(resource_type, resource_id, deleted_at, origin, change_id) '
            + select)

    def untombstone(self, res, r, guard=None):
        sql = (f'DELETE FROM sync_tombstone WHERE resource_type = '
               f'{self.res_type(res, r)} AND resource_id = '
               f'{self.res_id(res, r)}')
        return f'{sql} AND ({guard})' if guard else sql

    def created(self, res, r, guard=None):
        """Statements recording that row ``r`` of ``res`` came to be."""
        c = _both(self.cond(res, r), guard)
        return [self.record(self.res_type(res, r), self.res_id(res, r),
                            'create', c),
                self.untombstone(res, r, guard)]

    def deleted(self, res, r, guard=None):
        """Statements recording that row ``r`` of ``res`` is gone."""
        c = _both(self.cond(res, r), guard)
        t, i = self.res_type(res, r), self.res_id(res, r)
        return [self.record(t, i, 'delete', c), self.tombstone(t, i, c)]

    def updated(self, res, r, guard=None):
        return [self.record(self.res_type(res, r), self.res_id(res, r),
                            'update', _both(self.cond(res, r), guard))]

    def changed(self, cols, a='OLD', b='NEW'):
        return ' OR '.join(
            self.distinct(f'{a}.{self.quote(c)}', f'{b}.{self.quote(c)}')
            for c in cols)

    def owner_changed(self, child, r, guard=None):
        """Record an update of the resource owning child row ``r``."""
        parent = spec.RESOURCE_BY_TABLE[child.parent]
        alias = 'p'
        where = _both(child.match.format(p=alias, r=r),
                      self.cond(parent, alias), guard)
        return self.record(self.res_type(parent, alias),
                           self.res_id(parent, alias), 'update', where,
                           from_=f'{self.quote(parent.table)} {alias}')

    def touch_owner(self, child, r, guard=None):
        """Move the owner's updated_at (its synced columns stay as they are,
        so its own update trigger records nothing)."""
        parent = spec.RESOURCE_BY_TABLE[child.parent]
        table = self.quote(parent.table)
        where = _both(child.match.format(p=table, r=r), guard)
        return f'UPDATE {table} SET updated_at = {self.now} WHERE {where}'

    def child_body(self, child, event):
        r = 'OLD' if event == 'del' else 'NEW'
        stmts = [self.owner_changed(child, r), self.touch_owner(child, r)]
        if event == 'upd':
            # A row moved to another owner changes the old owner too.
            moved = self.changed(child.link)
            stmts += [self.owner_changed(child, 'OLD', moved),
                      self.touch_owner(child, 'OLD', moved)]
        return stmts

    def cascade_body(self, cascade, r='OLD'):
        """What MySQL's silent foreign key cascade is about to remove."""
        match = cascade.match.format(c='c', r=r)
        if cascade.child in spec.RESOURCE_BY_TABLE:
            res = spec.RESOURCE_BY_TABLE[cascade.child]
            from_ = f'{self.quote(res.table)} c'
            t, i = self.res_type(res, 'c'), self.res_id(res, 'c')
            return [self.record(t, i, 'delete', match, from_),
                    self.tombstone(t, i, match, from_)]
        child = spec.CHILD_BY_TABLE[cascade.child]
        parent = spec.RESOURCE_BY_TABLE[child.parent]
        owner = child.match.format(p='p', r='c')
        exists = (f'EXISTS (SELECT 1 FROM {self.quote(child.table)} c '
                  f'WHERE ({match}) AND {owner})')
        return [self.record(self.res_type(parent, 'p'),
                            self.res_id(parent, 'p'), 'update', exists,
                            from_=f'{self.quote(parent.table)} p')]

    def when(self, condition, stmts):
        raise NotImplementedError

    def triggers(self):
        """Every trigger of the current spec, in install order."""
        out = []
        for res in spec.RESOURCES:
            out += self.resource_triggers(res)
        for child in spec.CHILDREN:
            out += self.child_triggers(child)
        return out


class SQLite(_Dialect):
    # Microseconds, as SQLAlchemy writes them, so values sort as text.
    now = "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"

    def distinct(self, a, b):
        return f'{a} IS NOT {b}'

    def upsert_tombstone(self, insert):
        return insert.replace('INSERT INTO', 'INSERT OR REPLACE INTO', 1)

    def _trigger(self, table, event, timing_event, when, body):
        name = trigger_name(table, event)
        when_sql = f' WHEN {when}' if when else ''
        sql = (f'CREATE TRIGGER IF NOT EXISTS {name} {timing_event} ON '
               f'{self.quote(table)} FOR EACH ROW{when_sql} BEGIN '
               + ''.join(s + '; ' for s in body) + 'END')
        return Trigger(name, table, (sql,), (f'DROP TRIGGER IF EXISTS {name}',))

    def resource_triggers(self, res):
        t = self.quote(res.table)
        stamp = (f'UPDATE {t} SET created_at = COALESCE(created_at, '
                 f'{self.now}), updated_at = COALESCE(updated_at, created_at, '
                 f'{self.now}) WHERE rowid = NEW.rowid')
        # SQLite triggers have no IF: each statement carries its condition.
        rekey = self.changed(res.key)
        upd = self.deleted(res, 'OLD', rekey) + self.created(res, 'NEW', rekey)
        if res.synced:
            upd += self.updated(res, 'NEW', f'NOT ({rekey})')
        upd.append(f'UPDATE {t} SET updated_at = {self.now} '
                   'WHERE rowid = NEW.rowid')
        return [
            self._trigger(res.table, 'ins', 'AFTER INSERT', None,
                          [stamp, *self.created(res, 'NEW')]),
            self._trigger(res.table, 'upd', 'AFTER UPDATE',
                          self.changed(res.key + res.synced), upd),
            self._trigger(res.table, 'del', 'AFTER DELETE', None,
                          self.deleted(res, 'OLD')),
        ]

    def child_triggers(self, child):
        return [
            self._trigger(child.table, 'ins', 'AFTER INSERT', None,
                          self.child_body(child, 'ins')),
            self._trigger(child.table, 'upd', 'AFTER UPDATE',
                          self.changed(child.link + child.synced),
                          self.child_body(child, 'upd')),
            self._trigger(child.table, 'del', 'AFTER DELETE', None,
                          self.child_body(child, 'del')),
        ]

    def existing_triggers_sql(self):
        return "SELECT name FROM sqlite_master WHERE type = 'trigger'"


class MySQL(_Dialect):
    now = 'UTC_TIMESTAMP(6)'
    dual = ' FROM DUAL'

    def quote(self, name):
        return f'`{name}`'

    def concat(self, parts):
        return 'CONCAT(' + ", ':', ".join(parts) + ')' if len(parts) > 1 \
            else parts[0]

    def distinct(self, a, b):
        return f'NOT ({a} <=> {b})'

    def upsert_tombstone(self, insert):
        return (insert + ' ON DUPLICATE KEY UPDATE deleted_at = '
                'VALUES(deleted_at), origin = VALUES(origin), '
                'change_id = VALUES(change_id)')

    def when(self, condition, stmts):
        return [f'IF {condition} THEN ' + ''.join(s + '; ' for s in stmts)
                + 'END IF']

    def _trigger(self, table, event, timing_event, body):
        name = trigger_name(table, event)
        sql = (f'CREATE TRIGGER {name} {timing_event} ON {self.quote(table)} '
               'FOR EACH ROW BEGIN ' + ''.join(s + '; ' for s in body)
               + 'END')
        return Trigger(name, table, (sql,), (f'DROP TRIGGER IF EXISTS {name}',))

    def resource_triggers(self, res):
        rekey = self.changed(res.key)
        ins = ['SET NEW.created_at = COALESCE(NEW.created_at, '
               f'{self.now})',
               'SET NEW.updated_at = COALESCE(NEW.updated_at, '
               'NEW.created_at)',
               *self.created(res, 'NEW')]
        upd = (f'IF {rekey} THEN '
               + ''.join(s + '; ' for s in self.deleted(res, 'OLD')
                         + self.created(res, 'NEW'))
               + f'SET NEW.updated_at = {self.now}; ')
        if res.synced:
            upd += (f'ELSEIF {self.changed(res.synced)} THEN '
                    + ''.join(s + '; ' for s in self.updated(res, 'NEW'))
                    + f'SET NEW.updated_at = {self.now}; ')
        upd += 'END IF'
        dele = self.deleted(res, 'OLD')
        for cascade in spec.CASCADES:
            if cascade.parent == res.table:
                dele += self.cascade_body(cascade)
        return [
            self._trigger(res.table, 'ins', 'BEFORE INSERT', ins),
            self._trigger(res.table, 'upd', 'BEFORE UPDATE', [upd]),
            self._trigger(res.table, 'del', 'BEFORE DELETE', dele),
        ]

    def child_triggers(self, child):
        upd = self.when(self.changed(child.link + child.synced),
                        self.child_body(child, 'upd'))
        triggers = [
            self._trigger(child.table, 'ins', 'AFTER INSERT',
                          self.child_body(child, 'ins')),
            self._trigger(child.table, 'upd', 'AFTER UPDATE', upd),
        ]
        dele = self.child_body(child, 'del')
        for cascade in spec.CASCADES:
            if cascade.parent == child.table:
                dele += self.cascade_body(cascade)
        triggers.append(self._trigger(child.table, 'del', 'AFTER DELETE',
                                      dele))
        return triggers

    def existing_triggers_sql(self):
        return ('SELECT trigger_name FROM information_schema.triggers '
                'WHERE trigger_schema = DATABASE()')


class PostgreSQL(_Dialect):
    now = "(clock_timestamp() AT TIME ZONE 'UTC')"

    def upsert_tombstone(self, insert):
        return (insert + ' ON CONFLICT (resource_type, resource_id) DO UPDATE '
                'SET deleted_at = EXCLUDED.deleted_at, origin = '
                'EXCLUDED.origin, change_id = EXCLUDED.change_id')

    def when(self, condition, stmts):
        return [f'IF {condition} THEN ' + ''.join(s + '; ' for s in stmts)
                + 'END IF']

    def _trigger(self, table, event, timing_event, body, returns):
        name = trigger_name(table, event)
        func = f'{name}_fn'
        create_func = (
            f'CREATE OR REPLACE FUNCTION {func}() RETURNS trigger '
            'LANGUAGE plpgsql AS $sync$ BEGIN '
            + ''.join(s + '; ' for s in body)
            + f'RETURN {returns}; END $sync$')
        create_trig = (
            f'DO $sync$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE '
            f"tgname = '{name}' AND tgrelid = '{self.quote(table)}'::regclass)"
            f' THEN CREATE TRIGGER {name} {timing_event} ON '
            f'{self.quote(table)} FOR EACH ROW EXECUTE FUNCTION {func}(); '
            'END IF; END $sync$')
        drop = (f'DROP TRIGGER IF EXISTS {name} ON {self.quote(table)}',
                f'DROP FUNCTION IF EXISTS {func}()')
        return Trigger(name, table, (create_func, create_trig), drop)

    def resource_triggers(self, res):
        rekey = self.changed(res.key)
        ins = [f'NEW.created_at := COALESCE(NEW.created_at, {self.now})',
               'NEW.updated_at := COALESCE(NEW.updated_at, NEW.created_at)',
               *self.created(res, 'NEW')]
        upd = (f'IF {rekey} THEN '
               + ''.join(s + '; ' for s in self.deleted(res, 'OLD')
                         + self.created(res, 'NEW'))
               + f'NEW.updated_at := {self.now}; ')
        if res.synced:
            upd += (f'ELSIF {self.changed(res.synced)} THEN '
                    + ''.join(s + '; ' for s in self.updated(res, 'NEW'))
                    + f'NEW.updated_at := {self.now}; ')
        upd += 'END IF'
        return [
            self._trigger(res.table, 'ins', 'BEFORE INSERT', ins, 'NEW'),
            self._trigger(res.table, 'upd', 'BEFORE UPDATE', [upd], 'NEW'),
            self._trigger(res.table, 'del', 'AFTER DELETE',
                          self.deleted(res, 'OLD'), 'OLD'),
        ]

    def child_triggers(self, child):
        upd = self.when(self.changed(child.link + child.synced),
                        self.child_body(child, 'upd'))
        return [
            self._trigger(child.table, 'ins', 'AFTER INSERT',
                          self.child_body(child, 'ins'), 'NEW'),
            self._trigger(child.table, 'upd', 'AFTER UPDATE', upd, 'NEW'),
            self._trigger(child.table, 'del', 'AFTER DELETE',
                          self.child_body(child, 'del'), 'OLD'),
        ]

    def existing_triggers_sql(self):
        return 'SELECT tgname FROM pg_trigger WHERE NOT tgisinternal'


def _both(*conditions):
    """AND together the conditions that are not None."""
    present = [c for c in conditions if c]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return ' AND '.join(f'({c})' for c in present)


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
