"""The agents' fencing token, checked where a batch is written.

An agent sends ``OpenStack-Sync-Fence: <group>:<generation>`` with each
batch: ``group`` names its state database (every member of an HA agent
shares it), ``generation`` the sending member's claim on this spoke, which
grows by one whenever a member takes the spoke over. :func:`check` runs
in the batch's own transaction, before any item: it moves the group's
recorded generation up to the batch's, or refuses the whole batch (409)
when the group already wrote here under a higher one. The record's row
stays locked until the batch commits, so two members' batches never
interleave, and a member that lost the spoke and wakes up mid-pass finds
its next batch refused, with nothing of it applied.
"""

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from keystone_syncext import exception
from keystone_syncext.db import tables

fence = tables.fence


class StaleFence(exception.Conflict):
    """409: the agent's claim on this site was superseded."""


def parse(value: str | None) -> tuple[str, int] | None:
    """``(group, generation)`` of a header the route's schema checked;
    None without one."""
    if not value:
        return None
    group, _, generation = value.rpartition(':')
    return group, int(generation)


def check(conn, token: tuple[str, int] | None) -> None:
    """Record ``token``'s generation for its group, in the caller's
    transaction; :class:`StaleFence` when a higher one is recorded."""
    if token is None:
        return
    group, generation = token
    # The UPDATE locks the row (or, absent, finds nothing to lock) first:
    # a concurrent batch of the same group waits for this one to end.
    moved = conn.execute(fence.update().where(
        fence.c.name == group, fence.c.generation <= generation).values(
        generation=generation, updated_at=tables.UtcNow())).rowcount
    if moved:
        return
    held = conn.execute(sa.select(fence.c.generation).where(
        fence.c.name == group)).scalar()
    if held is None:
        try:
            with conn.begin_nested():
                conn.execute(fence.insert().values(name=group,
                                                   generation=generation))
            return
        except sa_exc.IntegrityError:
            # Another batch of the group recorded one meanwhile.
            held = conn.execute(sa.select(fence.c.generation).where(
                fence.c.name == group)).scalar()
            if held <= generation:
                return check(conn, token)
    raise StaleFence(
        f'agent group {group!r}: claim generation {generation} was '
        f'superseded here by generation {held}; this agent no longer owns '
        f'this spoke, nothing of the batch was applied')
