"""What the agent's parts share during one run.

A :class:`Context` holds the sites (the hub and its spokes), the state
database, the options, the rules (selections, conflict resolver), what
the sites said of themselves (types, page sizes, protocol versions), the
stop every wait ends on, the news the spokes wait for, and the
``--once`` bookkeeping (:class:`keystone_syncext.agent.once.Outcomes`).
The parts (:mod:`~keystone_syncext.agent.writer`,
:mod:`~keystone_syncext.agent.hubfeed`,
:mod:`~keystone_syncext.agent.seeding`,
:mod:`~keystone_syncext.agent.spokes`,
:mod:`~keystone_syncext.agent.upward`) each take it;
:class:`keystone_syncext.agent.runner.Agent` is one, with its parts wired.
"""

from collections.abc import Iterable
import logging
import random
import threading

from keystone_syncext.agent import claims as claims_mod
from keystone_syncext.agent import client
from keystone_syncext.agent import conflicts as conflicts_mod
from keystone_syncext.agent import metrics as metrics_mod
from keystone_syncext.agent import once as once_mod
from keystone_syncext.agent import selection as selection_mod
from keystone_syncext.common import types as type_table

LOG = logging.getLogger(__name__)


class Stopped(Exception):
    """The run was asked to stop (raised out of a wait)."""


class Lapsed(Exception):
    """Before a batch to a spoke: this member's claim on it is not its
    own now by its count of the lease (:meth:`claims.Claims.holds`). The
    pass ends there; the claim is kept, and the next pass starts once a
    renewal went through."""

    def __init__(self, name: str):
        super().__init__(f'spoke {name}: claim not renewed within its '
                         f'lease less the margin: pass ended before its '
                         f'next batch')


class Context:
    """``keystone-sync run``'s shared facts: one hub, its spokes, one
    state database."""

    def __init__(self, conf, hub: client.Site, spokes: list[client.Site],
                 state, once: bool = False,
                 selections: dict[str, selection_mod.Selection] | None =
                 None, resolver: conflicts_mod.Resolver | None = None):
        self.conf = conf
        # What wins a conflict (three-way, see conflicts.py).
        self.resolver = resolver or conflicts_mod.Resolver()
        # Per spoke: what the agent may write there (selective sync).
        self.selections = selections or {}
        self.hub = hub
        self.spokes = spokes
        self.state = state
        self.once = once
        self.stop = threading.Event()
        # Bumped (under the condition) whenever there is news for the
        # spokes; a spoke waits only while the generation is the one it
        # saw before its last pass, so news arriving during a pass is
        # never missed.
        self.new_changes = threading.Condition()
        self.generation = 0
        self.outcomes = once_mod.Outcomes()
        self.hub_types: list[str] = []
        self.hub_versions: list[int] = list(client.PROTOCOL_VERSIONS)
        self.spoke_types: dict[str, list[str]] = {}
        self.spoke_max_items: dict[str, int] = {}
        # Types of a newer hub that the agent does not know, met this run
        # (skipped; each warned of once).
        self.unknown_types: set[str] = set()
        self._unknown_lock = threading.Lock()
        # This process among the agents sharing the state database, and
        # what it holds (keystone_syncext.agent.coordination; None before
        # the run starts: everything).
        self.member_id = claims_mod.new_member_id()
        self.membership = None
        # Counters of this run, and the registry [metrics] listen serves.
        self.metrics = metrics_mod.Metrics()

    # -- who drives what ----------------------------------------------

    def owned_spokes(self) -> list[str]:
        """The spokes this member drives now (one agent: all)."""
        return [s.name for s in self.spokes if self.owns(s.name)]

    def owns(self, name: str) -> bool:
        """Whether this member holds spoke ``name``'s claim now."""
        return self.membership is None or self.membership.owns(name)

    def check_lease(self, site: client.Site) -> None:
        """Before a batch to ``site``: :class:`Lapsed` when it is a
        spoke this member does not hold now (the hub's writes, the
        upward flow's, are not a spoke's claim's)."""
        if site is not self.hub and not self.owns(site.name):
            raise Lapsed(site.name)

    def is_leader(self) -> bool:
        """Whether this member reads the hub's feed (one agent: True)."""
        return self.membership is None or self.membership.is_leader()

    def idle_wait(self) -> float:
        """The longest a caught-up spoke waits before looking at the
        outbox again: news from a feed read in another process does not
        wake it."""
        if self.membership is None:
            return self.conf.poll_wait + 5
        return self.membership.idle_wait()

    # -- waiting ------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; :class:`Stopped` if the run stops meanwhile."""
        if self.stop.wait(seconds):
            raise Stopped()

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped()

    def backoff(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row (with jitter)."""
        delay = min(self.conf.retry_max,
                    self.conf.retry_initial * 2 ** max(0, failures - 1))
        return delay * random.uniform(0.8, 1.2)

    # -- news for the spokes ------------------------------------------

    def announce(self) -> None:
        """Wake every spoke waiting for news."""
        with self.new_changes:
            self.generation += 1
            self.new_changes.notify_all()

    def news(self) -> int:
        """The generation now: pass it to :meth:`wait_for_news` after a
        pass to wait only if nothing came meanwhile."""
        with self.new_changes:
            return self.generation

    def wait_for_news(self, seen: int, timeout: float) -> None:
        with self.new_changes:
            self.new_changes.wait_for(
                lambda: self.stop.is_set() or self.generation != seen,
                timeout=timeout)

    # -- the hub ------------------------------------------------------

    def adopt_hub(self, caps: dict) -> None:
        """Take the hub's capabilities (``GET /v3/sync``) as this run's:
        its types, page size and protocol versions; point the state at
        it."""
        self.hub_types, unknown = self.known_types(caps['resource_types'])
        if unknown:
            LOG.warning('hub offers types this agent does not know: '
                        '%(types)s; upgrade the agent to sync them',
                        {'types': ', '.join(unknown)})
        self.spoke_max_items[self.hub.name] = caps.get('max_page_size')
        # A spoke receives the hub's representations as they are: it must
        # share a version with the agent and the hub both.
        self.hub_versions = sorted(
            set(client.advertised_versions(caps)) &
            set(client.PROTOCOL_VERSIONS))
        self.state.set_hub(self.hub.name, caps['site_id'], None)

    def known_types(self, names: Iterable[str]) -> tuple[list, list]:
        """(``names`` that the agent knows, the others not met before in
        this run): types of a hub newer than the agent are skipped, and
        warned of once a run."""
        names = list(names)
        unknown = [n for n in dict.fromkeys(names)
                   if n not in type_table.BY_NAME]
        with self._unknown_lock:
            new = [n for n in unknown if n not in self.unknown_types]
            self.unknown_types.update(new)
        return [n for n in names if n in type_table.BY_NAME], new

    def hub_error(self, message) -> None:
        """Note a failed read of the hub in the state (if there is a hub
        row yet)."""
        try:
            self.state.hub_error(message)
        except Exception:  # before set_hub there is no row: nothing to do
            pass
