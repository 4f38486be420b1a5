"""The agent's state database: its tables, and the record of one change.

The tables (their meaning: :mod:`keystone_syncext.agent.state`), as the
migrations under ``keystone_syncext/agent/migrations`` make them;
:class:`Change`, one thing to do at a site; and the engine for a URL
(SQLite made owner-only, in WAL mode).
"""

import contextlib
import datetime
import os

from alembic import config as alembic_config
import sqlalchemy as sa

VERSION_TABLE = 'keystone_sync_alembic_version'

metadata = sa.MetaData()


def _spoke_item_key() -> tuple[sa.Column, ...]:
    """The primary key of a row about one resource at one spoke (new
    columns for each table: a Column belongs to one table)."""
    return (sa.Column('spoke', sa.String(255), primary_key=True),
            sa.Column('type', sa.String(64), primary_key=True),
            sa.Column('resource_id', sa.String(255), primary_key=True))


hub = sa.Table(
    'agent_hub', metadata,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=False),
    sa.Column('name', sa.String(255), nullable=False),
    sa.Column('site_id', sa.String(64)),
    sa.Column('cursor', sa.String(64)),
    sa.Column('head', sa.String(64)),
    sa.Column('last_read_at', sa.DateTime),
    sa.Column('last_error', sa.Text),
    sa.Column('last_error_at', sa.DateTime),
)

outbox = sa.Table(
    'agent_outbox', metadata,
    sa.Column('seq', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('cursor', sa.String(64), nullable=False),
    sa.Column('type', sa.String(64), nullable=False),
    sa.Column('resource_id', sa.String(255), nullable=False),
    sa.Column('op', sa.String(16), nullable=False),
    sa.Column('origin', sa.String(64)),
    sa.Column('changed_at', sa.DateTime),
    sa.Column('hash', sa.String(64)),
    sa.Column('resource', sa.Text),
    sqlite_autoincrement=True,
)

spoke = sa.Table(
    'agent_spoke', metadata,
    sa.Column('name', sa.String(255), primary_key=True),
    sa.Column('site_id', sa.String(64)),
    # new: never seeded; seeding: a seed started (and is redone whole
    # after a crash); live: follows the outbox.
    sa.Column('state', sa.String(16), nullable=False),
    sa.Column('applied_seq', sa.Integer, nullable=False),
    sa.Column('last_success_at', sa.DateTime),
    sa.Column('last_error', sa.Text),
    sa.Column('last_error_at', sa.DateTime),
    sa.Column('failures', sa.Integer, nullable=False),
    sa.Column('last_reconcile_at', sa.DateTime),
    # The spoke's feed history when last checked, and a cursor of it
    # (see State.note_history).
    sa.Column('history_id', sa.String(64)),
    sa.Column('history_marker', sa.String(64)),
    # The last periodic audit: when, differences found, writes made.
    sa.Column('last_audit_at', sa.DateTime),
    sa.Column('audit_found', sa.Integer),
    sa.Column('audit_repaired', sa.Integer),
)

pending = sa.Table(
    'agent_pending', metadata,
    *_spoke_item_key(),
    sa.Column('seq', sa.Integer, nullable=False),
    sa.Column('op', sa.String(16), nullable=False),
    sa.Column('resource', sa.Text),
    sa.Column('attempts', sa.Integer, nullable=False),
    sa.Column('last_error', sa.Text),
    sa.Column('since', sa.DateTime, nullable=False),
    sa.Column('hash', sa.String(64)),
)

placed = sa.Table(
    'agent_placed', metadata,
    *_spoke_item_key(),
    # The hub's content hash of what was written (the three-way base).
    sa.Column('hash', sa.String(64)),
)

conflict = sa.Table(
    'agent_conflict', metadata,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('detected_at', sa.DateTime, nullable=False),
    sa.Column('spoke', sa.String(255), nullable=False),
    sa.Column('type', sa.String(64), nullable=False),
    sa.Column('resource_id', sa.String(255), nullable=False),
    sa.Column('strategy', sa.String(32), nullable=False),
    sa.Column('winner', sa.String(255), nullable=False),
    sa.Column('reason', sa.Text, nullable=False),
    sa.Column('base_hash', sa.String(64)),
    sa.Column('hub_hash', sa.String(64)),
    sa.Column('spoke_hash', sa.String(64)),
    sa.Column('hub_changed_at', sa.DateTime),
    sa.Column('spoke_changed_at', sa.DateTime),
    # JSON; null: that side had deleted the resource.
    sa.Column('hub_version', sa.Text),
    sa.Column('spoke_version', sa.Text),
    sqlite_autoincrement=True,
)

key = sa.Table(
    'agent_key', metadata,
    sa.Column('name', sa.String(64), primary_key=True),
    sa.Column('value', sa.String(128), nullable=False),
)
FINGERPRINT_KEY = 'conflict_fingerprint'

upward = sa.Table(
    'agent_upward', metadata,
    sa.Column('spoke', sa.String(255), primary_key=True),
    sa.Column('cursor', sa.String(64)),
    sa.Column('last_read_at', sa.DateTime),
)

# Who holds what, under which fencing generation (agent/claims.py).
claim = sa.Table(
    'agent_claim', metadata,
    sa.Column('name', sa.String(255), primary_key=True),
    sa.Column('member', sa.String(255)),
    sa.Column('generation', sa.Integer, nullable=False),
    sa.Column('expires_at', sa.DateTime),
    sa.Column('host', sa.String(255)),
    sa.Column('pid', sa.Integer),
    sa.Column('since', sa.DateTime),
)


def up_key(name: str) -> str:
    """The ``agent_pending.spoke`` key of what the hub refused from
    spoke ``name``."""
    return f'{name} -> hub'


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    parsed = datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.UTC).replace(tzinfo=None)
    return parsed


class Change:
    """One thing to do at a spoke: upsert or delete a resource by id."""

    __slots__ = ('seq', 'type', 'id', 'op', 'origin', 'resource',
                 'changed_at', 'hash', 'if_match', 'last_error')

    def __init__(self, seq, type_, id_, op, origin=None, resource=None,
                 changed_at=None, hash_=None, if_match=None):
        self.seq, self.type, self.id, self.op = seq, type_, id_, op
        self.origin, self.resource = origin, resource
        self.changed_at = changed_at
        # The hub's content hash of ``resource``, recorded as what the
        # agent placed at a spoke once written.
        self.hash = hash_
        # Write only if the site still holds this hash (the base of the
        # three-way conflict check); None: unconditionally.
        self.if_match = if_match
        # A pending item's: why the spoke refused it last time.
        self.last_error = None

    @property
    def key(self):
        return (self.type, self.id)

    def item(self) -> dict:
        """The ``/v3/sync/batch`` item; conditional on ``if_match`` (the
        hash the site must still hold) when set."""
        if self.op == 'delete':
            out = {'op': 'delete', 'type': self.type, 'id': self.id}
        else:
            out = {'op': 'upsert', 'type': self.type, 'id': self.id,
                   'resource': self.resource}
        if self.if_match:
            out['if_match'] = f'"{self.if_match}"'
        return out


def config(conn) -> alembic_config.Config:
    cfg = alembic_config.Config()
    cfg.set_main_option('script_location', os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'migrations'))
    cfg.attributes['connection'] = conn
    return cfg


@contextlib.contextmanager
def migration_lock(conn):
    """Serialise migrations of one shared state database (MariaDB: a
    named lock, released after; PostgreSQL: an advisory lock held until
    the transaction ends; SQLite: one writer at a time anyway)."""
    name = conn.dialect.name
    if name in ('mysql', 'mariadb'):
        conn.execute(sa.text("SELECT GET_LOCK('keystone_sync_migrate', 300)"))
        try:
            yield
        finally:
            conn.execute(sa.text(
                "SELECT RELEASE_LOCK('keystone_sync_migrate')"))
        return
    if name == 'postgresql':
        conn.execute(sa.text(
            "SELECT pg_advisory_xact_lock(hashtext('keystone_sync_migrate'))"))
    yield


def engine(url: str) -> sa.engine.Engine:
    """The state database's engine. Its errors never carry the
    statement's parameters (``hide_parameters``): the outbox and the
    pending items hold password hashes and secrets, and an error is
    logged with its traceback and noted in the state."""
    if url.startswith('sqlite'):
        path = sa.engine.make_url(url).database
        if path and path != ':memory:':
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, mode=0o700, exist_ok=True)
            if not os.path.exists(path):
                # Password hashes pass through: owner-only from the start.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = sa.create_engine(
            url, connect_args={'timeout': 60, 'check_same_thread': False},
            hide_parameters=True)

        @sa.event.listens_for(engine, 'connect')
        def _wal(dbapi_conn, _record):
            # Readers (``keystone-sync status``) never block the agent.
            dbapi_conn.execute('PRAGMA journal_mode=WAL')
            dbapi_conn.execute('PRAGMA synchronous=NORMAL')
        return engine
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
