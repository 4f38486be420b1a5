"""Claims and fencing in the state database.

A claim (a row of ``agent_claim``) says which member (one ``keystone-sync
run`` process) drives a thing: ``agent`` (the single-agent lock),
``feed`` (reading the hub's feed into the outbox) or ``spoke:<name>``
(one spoke). Taking a claim over bumps its ``generation``, which never
goes down (a release keeps it). A member keeps the generation it got,
and every write of the state database that moves a checkpoint, a cursor
or a state checks it in the same transaction (:meth:`Claims.check`, the
claim's row locked ``FOR UPDATE``): a member whose claim was released,
taken over or superseded gets :class:`ClaimLost` and stops work on that
thing, and since the check and the write commit together, nothing it
writes after the takeover lands. The same generation is the fencing token
sent with every batch to the spoke (``OpenStack-Sync-Fence``), which
refuses one lower than it has seen (:mod:`keystone_syncext.writes.fence`).

A holder renews its lease (``expires_at``) every heartbeat; a claim whose
lease ran out may be taken over by anyone (a crashed or paused member).
The holder counts the lease itself too, from the start of its last
renewal, and gives up earlier than the others may take over: it begins
no pass and no batch once ``lease - margin`` passed without a renewal
(:meth:`Claims.holds`; ``margin``: :data:`MARGIN_SHARE` of the lease),
so that a batch begun just before has the margin to land before anyone
else may write that spoke. A claim lapsed so is not forgotten: it is
held again as soon as a renewal goes through.
"""

import datetime
import logging
import os
import socket
import threading
import time
import uuid

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from keystone_syncext.agent import client
from keystone_syncext.agent import state_tables
from keystone_syncext.common import protocol

LOG = logging.getLogger(__name__)

claim, key = state_tables.claim, state_tables.key
AGENT, FEED = 'agent', 'feed'
GROUP_KEY = 'agent_group'
# The share of a lease, at its end, in which its holder begins no batch:
# the margin a batch begun just before has to land. A quarter: 7.5 s of
# the default 30 s lease, 1.25 s of the HA drill's 5 s, where a full
# batch (500 items) takes about 0.3 s (doc/benchmarks.md: 1,580
# resources/s); and the holder still holds it for three quarters of a
# lease after each renewal, many heartbeats.
MARGIN_SHARE = 0.25


def spoke_claim(name: str) -> str:
    return f'spoke:{name}'


def new_member_id() -> str:
    """This process's member id: host, pid and a random part (a pid is
    reused after a restart)."""
    return f'{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}'


class ClaimLost(Exception):
    """This member no longer holds ``name`` under its generation."""

    def __init__(self, name: str, member: str, generation, row):
        self.name = name
        if row is None or row.member is None:
            now = 'it was released'
        else:
            now = (f'it is held by {row.member} under generation '
                   f'{row.generation}')
        super().__init__(
            f'claim {name!r} lost by {member} (generation {generation}): '
            f'{now}; stopping work on it')


class Fenced(client.SiteError):
    """The spoke refused a batch under a superseded claim generation (409
    to the fencing header): another member took the spoke over."""


def fence_headers(site) -> dict:
    """The fencing header for a batch to ``site`` (none before a claim).
    ``site.fence`` is never unset once set: a member that lost the spoke
    still sends its old generation, and is refused."""
    fence = getattr(site, 'fence', None)
    return {protocol.FENCE_HEADER: '%s:%d' % fence} if fence else {}


def fenced_batch(site, items, origin=None, max_bytes=None) -> list[dict]:
    """``site.batch`` with the fencing header; :class:`Fenced` when the
    spoke refuses its generation."""
    headers = fence_headers(site)
    try:
        return site.batch(items, origin=origin, headers=headers,
                          max_bytes=max_bytes)
    except client.SiteError as e:
        if headers and e.status == 409:
            raise Fenced(e.site, str(e)[len(e.site) + 2:], status=409,
                         transient=False, body=e.body) from None
        raise


class Claims:
    """One member's claims in the state database at ``engine``, leases
    of ``lease`` seconds."""

    def __init__(self, engine, member_id: str, lease: float):
        self.engine = engine
        self.member_id = member_id
        self.lease = lease
        self.margin = lease * MARGIN_SHARE
        self.held: dict[str, int] = {}
        # When each claim held was last claimed or renewed (monotonic,
        # taken before the transaction that did it): a claim is this
        # member's only until its lease, counted from then, runs out,
        # whether or not the renewal that should follow could be made.
        self.renewed: dict[str, float] = {}
        self._lock = threading.Lock()

    def group(self) -> str:
        """The agent group's id (one per state database; made on first
        use): the fencing record's name at the spokes."""
        with self.engine.begin() as conn:
            value = conn.execute(sa.select(key.c.value).where(
                key.c.name == GROUP_KEY)).scalar()
            if value is None:
                value = uuid.uuid4().hex
                try:
                    with conn.begin_nested():
                        conn.execute(key.insert().values(name=GROUP_KEY,
                                                         value=value))
                except sa_exc.IntegrityError:
                    value = conn.execute(sa.select(key.c.value).where(
                        key.c.name == GROUP_KEY)).scalar()
            return value

    def holder(self, name: str):
        """``name``'s row (member, generation, lease, host, pid, since),
        or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(claim).where(
                claim.c.name == name)).one_or_none()

    def generation(self, name: str) -> int | None:
        with self._lock:
            return self.held.get(name)

    def holds(self, name: str) -> bool:
        """Whether ``name`` is this member's now: claimed, and renewed
        less than ``lease - margin`` ago. A member whose heartbeat hangs
        (its coordination backend cut off, the process starved) stops
        driving what it held ``margin`` seconds before its lease runs
        out as the other members, who may then take it over, count it;
        it does not wait for the heartbeat that would tell it so. Asked
        before every pass and every batch to a spoke."""
        with self._lock:
            return name in self.held and \
                time.monotonic() - self.renewed.get(name, float('-inf')) \
                < self.lease - self.margin

    def acquire(self, name: str, take_over: bool = False) -> bool:
        """Claim ``name`` under a new generation: when it is free
        (released, never held, its lease ran out), already this member's,
        or ``take_over``. False when another member holds a live lease."""
        when, started = state_tables.now(), time.monotonic()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(claim).where(
                claim.c.name == name).with_for_update()).one_or_none()
            if row is not None and row.member == self.member_id and \
                    self.held.get(name) == row.generation:
                self._renew(conn, name, row.generation, when)
                with self._lock:
                    self.renewed[name] = started
                return True
            if row is not None and row.member is not None and \
                    row.expires_at is not None and row.expires_at > when \
                    and row.member != self.member_id and not take_over:
                return False
            generation = (row.generation if row is not None else 0) + 1
            values = {'member': self.member_id, 'generation': generation,
                      'expires_at': self._expiry(when),
                      'host': socket.gethostname(), 'pid': os.getpid(),
                      'since': when}
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(claim.insert().values(name=name,
                                                           **values))
                except sa_exc.IntegrityError:
                    return False  # another member claimed it meanwhile
            else:
                conn.execute(claim.update().where(
                    claim.c.name == name,
                    claim.c.generation == row.generation).values(**values))
        if row is not None and row.member not in (None, self.member_id):
            LOG.info('took claim %(name)s over from %(old)s (generation '
                     '%(gen)d)', {'name': name, 'old': row.member,
                                  'gen': generation})
        with self._lock:
            self.held[name] = generation
            self.renewed[name] = started
        return True

    def forget(self, name: str) -> None:
        """Drop ``name`` here only: found taken over elsewhere."""
        with self._lock:
            self.held.pop(name, None)

    def live(self) -> list:
        """Every claim held under a live lease."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(claim).where(
                claim.c.member.is_not(None),
                claim.c.expires_at > state_tables.now())).all()

    def release(self, name: str) -> None:
        """Give ``name`` up (its generation stays)."""
        with self._lock:
            generation = self.held.pop(name, None)
        if generation is None:
            return
        with self.engine.begin() as conn:
            conn.execute(claim.update().where(
                claim.c.name == name, claim.c.member == self.member_id,
                claim.c.generation == generation).values(
                member=None, expires_at=None))

    def release_all(self) -> None:
        for name in list(self.held):
            try:
                self.release(name)
            except sa_exc.SQLAlchemyError as e:
                LOG.warning('could not release claim %(name)s: %(err)s',
                            {'name': name, 'err': e})

    def renew(self) -> list[str]:
        """Renew every lease held; the names found lost meanwhile (no
        longer held)."""
        when, started = state_tables.now(), time.monotonic()
        lost, kept = [], []
        with self.engine.begin() as conn:
            for name, generation in list(self.held.items()):
                (kept if self._renew(conn, name, generation, when)
                 else lost).append(name)
        with self._lock:
            for name in lost:
                self.held.pop(name, None)
            for name in kept:
                if name in self.held:
                    self.renewed[name] = started
        return lost

    def _renew(self, conn, name, generation, when) -> bool:
        return conn.execute(claim.update().where(
            claim.c.name == name, claim.c.member == self.member_id,
            claim.c.generation == generation).values(
            expires_at=self._expiry(when))).rowcount == 1

    def _expiry(self, when):
        return when + datetime.timedelta(seconds=self.lease)

    def check(self, conn, name: str) -> None:
        """In the caller's transaction: :class:`ClaimLost` unless this
        member still holds ``name`` under the generation it claimed. The
        row stays locked until the caller commits, so a takeover waits
        for the write, or the write sees the takeover."""
        generation = self.generation(name)
        row = conn.execute(sa.select(claim).where(
            claim.c.name == name).with_for_update()).one_or_none()
        if generation is None or row is None or \
                row.member != self.member_id or \
                row.generation != generation:
            with self._lock:
                self.held.pop(name, None)
            raise ClaimLost(name, self.member_id, generation, row)
