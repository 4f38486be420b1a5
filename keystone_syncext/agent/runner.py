"""The sync loop: the hub's feed, read once, fanned out to every spoke.

One thread reads the hub's change feed (long-polling when caught up) and
stores what it reads in the outbox, with the cursor, in one transaction.
Each spoke has its own thread that applies the outbox to that spoke through
``POST /v3/sync/batch``, in dependency order, and moves the spoke's
checkpoint only after the spoke answered; a spoke that is down or slow
backs off on its own and never holds the others back. A spoke seen for the
first time is seeded from the hub's listings first. When the hub no longer
holds the history after the cursor (410), the feed restarts at the hub's
head and every seeded spoke is reconciled by digest
(:mod:`keystone_syncext.agent.reconcile`) before it follows the outbox
again.

Two-way: for the types that flow up (``spoke_originated_types``), one more
thread per spoke reads that spoke's own feed and writes the changes made
there (origin unset: not the agent's writes) to the hub, carrying the
spoke as their origin; the hub's feed then brings them to every other
spoke, and never back to the one they came from.

Nothing is lost to a crash: the outbox and checkpoints are durable, and
anything re-applied after a crash is an upsert or delete by id.
"""

import concurrent.futures
import contextlib
import logging
import queue
import random
import sys
import threading
import time

from keystone_syncext.agent import client
from keystone_syncext.agent import conflicts as conflicts_mod
from keystone_syncext.agent import reconcile as reconcile_mod
from keystone_syncext.agent import selection as selection_mod
from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import upward_recovery
from keystone_syncext.common import types as type_table

LOG = logging.getLogger(__name__)

# Creates go in this order, deletes in reverse: the type table's.
TYPE_ORDER = type_table.ORDER
# Outbox rows a spoke takes in one pass.
PASS_ROWS = 5000
# How often a connected spoke's feed history is checked again (one
# capabilities read and a one-change feed read): a spoke restored from a
# backup while the agent was idle shows it at the next check.
HISTORY_CHECK_SECONDS = 60


def rank(type_name: str) -> int:
    """The type table's rank; :class:`type_table.UnknownType` for a type
    the agent does not know (never sorted last and written anyway)."""
    return type_table.rank(type_name)


def order(changes: list[state_mod.Change]) -> list[state_mod.Change]:
    """The newest change per resource, deletes first (dependents first),
    then upserts (dependencies first, parent projects before children)."""
    latest: dict = {}
    for c in changes:
        if c.key not in latest or c.seq >= latest[c.key].seq:
            latest[c.key] = c
    projects = {c.id: c.resource for c in latest.values()
                if c.type == 'project' and c.op != 'delete'}

    def depth(c):
        if c.type != 'project' or c.op == 'delete':
            return 0
        n, seen, parent = 0, set(), c.resource.get('parent_id')
        while parent in projects and parent not in seen:
            seen.add(parent)
            parent = projects[parent].get('parent_id')
            n += 1
        return n

    def key(c):
        if c.op == 'delete':
            return (0, -rank(c.type), c.seq)
        return (1, rank(c.type), depth(c), c.seq)

    return sorted(latest.values(), key=key)


class Stopped(Exception):
    pass


class Progress:
    """A one-line progress bar on a terminal (standard error)."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total, self.done = label, max(total, 1), 0
        self.stream = stream or sys.stderr
        self.last = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.2 or self.done >= self.total:
            self.last = now
            width = 30
            filled = min(width, width * self.done // self.total)
            self.stream.write(
                f'\r{self.label} [{"#" * filled}{"." * (width - filled)}] '
                f'{self.done}/{self.total}')
            self.stream.flush()

    def close(self) -> None:
        self.stream.write('\n')
        self.stream.flush()


class Agent:
    """``keystone-sync run``: one hub, its spokes, one state database."""

    def __init__(self, conf, hub: client.Site, spokes: list[client.Site],
                 state: state_mod.State, once: bool = False,
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
        self.caught_up = threading.Event()
        self.target = None          # --once: the outbox seq to reach
        self.hub_failure = None     # --once: why the hub was given up
        self.outcome: dict[str, str | None] = {}
        self.up_outcome: dict[str, str] = {}   # --once: why up failed
        # Per spoke: the head its own feed was restarted at after a 410,
        # and (--once) what the recovery could not send up.
        self.up_restarted: dict[str, str] = {}
        self.up_held: dict[str, str] = {}
        self.upward_done = threading.Event()
        self.upward_done.set()
        # --once: set when the hub's feed is read for the last time; a
        # spoke whose own changes reach the hub after that (it settled
        # on a failure, then a retry went through) is named in the
        # report of every other spoke, which did not get them this run.
        self.last_read = threading.Event()
        self.late_up: list[str] = []
        self.hub_types: list[str] = []
        self.hub_versions: list[int] = list(client.PROTOCOL_VERSIONS)
        self.spoke_types: dict[str, list[str]] = {}
        self.spoke_max_items: dict[str, int] = {}
        self._history_checked: dict[str, float] = {}  # spoke -> when
        # One history check of a spoke at a time: its spoke and upward
        # threads both connect, and two checks presenting the same old
        # marker would each make a rewound spoke renew its history, and
        # the second renewal look like another restore.
        self._history_locks = {s.name: threading.Lock() for s in spokes}
        # Spokes whose last history check refused the marker: a second
        # refusal in a row (of the marker taken after the reconcile the
        # first one caused) is a feed that refuses its own head, not
        # another restore; reconciling again would never end.
        self._refused_marker: set[str] = set()

    # -- helpers ------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped()

    def _backoff(self, failures: int) -> float:
        delay = min(self.conf.retry_max,
                    self.conf.retry_initial * 2 ** max(0, failures - 1))
        return delay * random.uniform(0.8, 1.2)

    # -- start --------------------------------------------------------

    def run(self) -> int:
        self.state.migrate()
        failures = 0
        while True:
            try:
                caps = self.hub.capabilities()
                break
            except client.SiteError as e:
                failures += 1
                self.state_hub_error(str(e))
                if self.once and (not e.transient or
                                  failures >= self.conf.once_attempts):
                    self.hub_failure = str(e)
                    for s in self.spokes:
                        self.outcome[s.name] = 'the hub could not be read'
                    return self._report()
                try:
                    self._sleep(self._backoff(failures))
                except Stopped:
                    return 0
        self.adopt_hub(caps)
        if self.state.hub().cursor is None:
            # First run: every spoke is seeded from the hub's listings, so
            # the feed is followed from the head on.
            self.state.restart_feed(caps['head_cursor'])
        LOG.info('following hub %(hub)s (site %(site)s, Keystone '
                 '%(version)s, sync protocol %(protocol)d) for %(n)d spokes',
                 {'hub': self.hub.name, 'site': caps['site_id'],
                  'version': caps['keystone_version'],
                  'protocol': self.hub.protocol_version,
                  'n': len(self.spokes)})
        for s in self.spokes:
            self.state.spoke(s.name)
        self.writers = threading.BoundedSemaphore(
            self.conf.max_parallel_spokes)
        threads = [threading.Thread(target=self._feed_loop, name='feed',
                                    daemon=True)]
        if self.once and self.conf.spoke_originated_types:
            # Spokes' own changes go to the hub side by side with the
            # rest; the feed is not done until they are in (so this run
            # carries them on to the other spokes).
            self.upward_done.clear()
            threads.append(threading.Thread(target=self._upward_once,
                                            name='up', daemon=True))
        threads += [threading.Thread(target=self._spoke_loop, args=(s,),
                                     name=f'spoke-{s.name}', daemon=True)
                    for s in self.spokes]
        if not self.once and self.conf.spoke_originated_types:
            threads += [threading.Thread(target=self._upward_loop,
                                         args=(s,), name=f'up-{s.name}',
                                         daemon=True)
                        for s in self.spokes]
        for t in threads:
            t.start()
        try:
            if self.once:
                for t in threads[1:]:
                    t.join()
                self.stop.set()
                threads[0].join(timeout=5)
            else:
                while any(t.is_alive() for t in threads[1:]
                          if t.name.startswith('spoke-')):
                    self.stop.wait(1)
                    if self.stop.is_set():
                        break
        finally:
            self.stop.set()
            self._announce()
            for t in threads:
                t.join(timeout=self.conf.poll_wait + 10)
        return self._report()

    def adopt_hub(self, caps: dict) -> None:
        """Take the hub's capabilities (``GET /v3/sync``) as this run's:
        its types, page size and protocol versions; point the state at
        it."""
        self.hub_types = caps['resource_types']
        self.spoke_max_items[self.hub.name] = caps.get('max_page_size')
        # A spoke receives the hub's representations as they are: it must
        # share a version with the agent and the hub both.
        self.hub_versions = sorted(
            set(client.advertised_versions(caps)) &
            set(client.PROTOCOL_VERSIONS))
        self.state.set_hub(self.hub.name, caps['site_id'], None)

    def _announce(self) -> None:
        with self.new_changes:
            self.generation += 1
            self.new_changes.notify_all()

    def state_hub_error(self, message):
        try:
            self.state.hub_error(message)
        except Exception:  # before set_hub there is no row: nothing to do
            pass

    def _report(self) -> int:
        if not self.once:
            return 0
        bad = 0
        if self.hub_failure:
            print(f'hub {self.hub.name}: {self.hub_failure}', file=sys.stderr)
            bad += 1
        for s in self.spokes:
            why = self.outcome.get(s.name, 'stopped before converging')
            if not why:
                why = self.up_outcome.get(s.name) or self.up_held.get(s.name)
            late = [n for n in self.late_up if n != s.name]
            if not why and late:
                why = (f'changes made at {", ".join(late)} reached the hub '
                       'after this run last read its feed (a retry went '
                       'through late); the next run brings them here')
            if why:
                print(f'spoke {s.name}: not converged: {why}',
                      file=sys.stderr)
                bad += 1
            else:
                print(f'spoke {s.name}: converged with hub '
                      f'{self.hub.name}')
        return 1 if bad else 0

    # -- the hub's feed -----------------------------------------------

    def _feed_loop(self) -> None:
        try:
            self._follow_feed()
        except Exception as e:
            # A bug, not the hub: say where, and let --once end (the
            # spokes wait for the feed otherwise).
            LOG.exception('reading the feed of hub %(hub)s: unexpected '
                          'error', {'hub': self.hub.name})
            self.hub_failure = f'agent error: {type(e).__name__}'
            self.caught_up.set()
            self._announce()

    def _follow_feed(self) -> None:
        failures = 0
        gone = False    # the last read answered 410
        try:
            while not self.stop.is_set():
                try:
                    more = self._read_feed()
                    failures, gone = 0, False
                except client.Gone as e:
                    if not gone:
                        gone = True
                        self._restart_feed(e.body.get('head_cursor'))
                        continue
                    # Again, at the head it gave: the hub is not well.
                    failures += 1
                    if self._feed_failed(client.SiteError(
                            self.hub.name, 'its feed answered 410 (Gone) '
                            'again at the head it gave'), failures):
                        return
                    continue
                except client.SiteError as e:
                    failures += 1
                    if self._feed_failed(e, failures):
                        return
                    continue
                if not more and self.once and not self.upward_done.is_set():
                    # Read again once the spokes' own changes are in.
                    while not self.upward_done.wait(0.2):
                        self._check_stop()
                    self.last_read.set()
                    continue
                if not more and self.once:
                    self.target = self.state.top()
                    self.caught_up.set()
                    self._announce()
                    return
        except Stopped:
            return

    def _restart_feed(self, head) -> None:
        LOG.error('hub %(hub)s no longer holds the history after our '
                  'cursor; following its feed from the head and '
                  'reconciling every spoke by digest', {'hub': self.hub.name})
        self.state.restart_feed(head)
        self._announce()

    def _feed_failed(self, e: client.SiteError, failures: int) -> bool:
        """Note a failed read of the hub's feed; True when --once gives
        the hub up, else after the backoff."""
        self.state.hub_error(str(e))
        # Lost capture is the hub broken, not busy: loud.
        log = (LOG.error if isinstance(e, client.CaptureIncomplete)
               else LOG.warning)
        log('reading the feed of hub %(hub)s failed (%(n)d in a row): '
            '%(err)s', {'hub': self.hub.name, 'n': failures, 'err': e})
        if self.once and (not e.transient or
                          failures >= self.conf.once_attempts):
            self.hub_failure = str(e)
            self.caught_up.set()
            self._announce()
            return True
        self._sleep(self._backoff(failures))
        return False

    def _read_feed(self) -> bool:
        """One read; returns whether the hub has more right away."""
        cursor = self.state.hub().cursor
        wait = 0 if self.once else self.conf.poll_wait
        page = self.hub.changes(since=cursor, limit=self.conf.feed_page_size,
                                wait=wait)
        top = self.state.append(page['changes'], page['next'], page['head'])
        if page['changes']:
            LOG.info('read %(n)d changes from hub %(hub)s',
                     {'n': len(page['changes']), 'hub': self.hub.name})
            self._announce()
        pruned = self.state.prune([s.name for s in self.spokes])
        if pruned:
            LOG.debug('pruned %d outbox rows every spoke applied', pruned)
        del top
        return bool(page['more'])

    # -- one spoke ----------------------------------------------------

    def _spoke_loop(self, site: client.Site) -> None:
        name = site.name
        failures = 0
        # --once: passes in a row that ended caught up but with refused
        # items; unlike failures, not reset by a pass that went through.
        refused_passes = 0
        try:
            while not self.stop.is_set():
                with self.new_changes:
                    seen = self.generation
                try:
                    with self.writers, self._selection_scope(site):
                        progressed = self._sync_spoke(site)
                    if failures:
                        LOG.info('spoke %(spoke)s is back', {'spoke': name})
                    failures = 0
                    self.state.spoke_error(name, None)
                except Stopped:
                    raise
                except Exception as e:
                    if not isinstance(e, client.SiteError):
                        # A bug, not the spoke: say where, keep going.
                        LOG.exception('spoke %(spoke)s: unexpected error',
                                      {'spoke': name})
                        e = client.SiteError(name, f'agent error: '
                                             f'{type(e).__name__}')
                    failures += 1
                    self.state.spoke_error(name, str(e))
                    LOG.warning('spoke %(spoke)s: %(err)s (%(n)d failures in '
                                'a row)', {'spoke': name, 'err': e,
                                           'n': failures})
                    if self.once and (not e.transient or
                                      failures >= self.conf.once_attempts):
                        self.outcome[name] = str(e)
                        return
                    site.site_id = None  # ask for capabilities again
                    self._sleep(self._backoff(failures))
                    continue
                row = self.state.spoke(name)
                npending = len(self.state.pending_for(name))
                if self.once:
                    if self.hub_failure and not progressed:
                        self.outcome[name] = 'the hub could not be read'
                        return
                    if self.caught_up.is_set() and self.target is not None \
                            and row.state == 'live' \
                            and row.applied_seq >= self.target:
                        if not npending:
                            self.outcome[name] = None
                            return
                        refused_passes += 1
                        if refused_passes >= self.conf.once_attempts:
                            self.outcome[name] = self._refused(name,
                                                               npending)
                            return
                        self._sleep(self._backoff(refused_passes))
                        continue
                if not progressed:
                    delay = (self._backoff(3) if npending
                             else self.conf.poll_wait + 5)
                    with self.new_changes:
                        self.new_changes.wait_for(
                            lambda seen=seen: self.stop.is_set()
                            or self.generation != seen, timeout=delay)
        except Stopped:
            return

    def _refused(self, name: str, npending: int) -> str:
        """--once: why spoke ``name`` did not converge, its refused items
        (the first few), and what to do when they are name clashes with
        resources the spoke made itself (it was never joined)."""
        reasons = self.state.pending_errors(name)
        first = '; '.join(reasons[:3])
        clashes = sum(1 for r in reasons if NAME_CLASH in r)
        why = f'{npending} items refused; first: {first}'
        if clashes:
            why += (f'; {clashes} of them are name clashes with resources '
                    f'the spoke made itself: run keystone-sync join --hub '
                    f'{self.hub.name} --spoke {name}, then run again')
        return why

    def _selection_scope(self, site):
        selection = self.selections.get(site.name)
        if not selection:
            return contextlib.nullcontext()
        return selection.scope(self.hub.resource)

    def _connect(self, site: client.Site) -> None:
        if site.site_id is not None and time.monotonic() - \
                self._history_checked.get(
                site.name, 0) > HISTORY_CHECK_SECONDS:
            self._check_history(site)
        if site.site_id is None:
            caps = self._check_history(site)
            LOG.info('spoke %(spoke)s (Keystone %(version)s): sync protocol '
                     '%(protocol)d', {'spoke': site.name,
                                      'version': caps['keystone_version'],
                                      'protocol': site.protocol_version})
            self.spoke_types[site.name] = caps['resource_types']
            self.spoke_max_items[site.name] = caps.get('max_page_size')
            self.state.set_site_id(site.name, caps['site_id'])
            if caps['site_id'] == self.state.hub().site_id:
                raise client.SiteError(site.name, 'is the hub itself '
                                       f'(site {caps["site_id"]})',
                                       transient=False)

    def _check_history(self, site: client.Site) -> dict:
        """Read spoke ``site``'s capabilities and check its feed history:
        a spoke whose history id changed, or that refuses the cursor
        recorded at the last check (its database went back in time), may
        have lost what the agent wrote there, and is marked for a
        reconcile. Returns the capabilities."""
        with self._history_locks.setdefault(site.name, threading.Lock()):
            return self._check_history_locked(site)

    def _check_history_locked(self, site: client.Site) -> dict:
        row = self.state.spoke(site.name)
        rewound = False
        if row.history_marker:
            try:
                site.changes(since=row.history_marker, limit=1)
            except client.Gone as e:
                # Its database went back in time (restored). A marker
                # merely purged (an idle spoke past its change retention)
                # or of another history (told by the history id below) is
                # no restore.
                rewound = bool(e.body.get('rewound'))
            except client.CaptureIncomplete as e:
                # Its own changes go unrecorded; what the agent writes
                # there still lands. db_sync renews its history later.
                LOG.error('spoke %(spoke)s: %(err)s', {'spoke': site.name,
                                                       'err': e})
        if not rewound:
            self._refused_marker.discard(site.name)
        elif site.name in self._refused_marker:
            raise client.SiteError(
                site.name, 'its feed refused the cursor of its own head '
                'twice in a row (410 Gone again at the head it gave): it '
                'cannot be followed; run "keystone-syncext-manage check" '
                'there', transient=False)
        else:
            self._refused_marker.add(site.name)
        caps = site.capabilities(speaks=self.hub_versions,
                                 speaker=f'this agent and hub {self.hub.name}')
        if self.state.note_history(site.name, caps.get('history_id'),
                                   caps.get('head_cursor'), rewound):
            LOG.error('spoke %(spoke)s lost history (restored from a '
                      'backup, or its change capture had a gap): '
                      'reconciling it by digest', {'spoke': site.name})
        self._history_checked[site.name] = time.monotonic()
        return caps

    def _sync_spoke(self, site: client.Site) -> bool:
        """Seed if needed, then apply the outbox; returns whether anything
        was applied."""
        self._connect(site)
        row = self.state.spoke(site.name)
        progressed = False
        if row.state in ('reconcile', 'reconciling'):
            self._reconcile(site)
            progressed = True
        elif row.state != 'live':
            self._seed(site)
            progressed = True
        first, wrote = True, progressed
        while not self.stop.is_set():
            row = self.state.spoke(site.name)
            rows = self.state.outbox_after(row.applied_seq, PASS_ROWS)
            retry = self.state.pending_for(site.name) if first else []
            first = False
            if not rows and not retry:
                break
            work = [c for c in retry + rows
                    if c.origin is None or c.origin != site.site_id]
            done, failed, written = self._apply(site, work)
            # Echoes and replaced pending items count as done.
            by_key = {c.key for c in work}
            done += [c for c in retry + rows if c.key not in by_key]
            self.state.record(site.name, rows[-1].seq if rows else None,
                              done, failed, written)
            progressed = progressed or bool(rows) or bool(done)
            wrote = wrote or bool(written)
            if rows:
                LOG.info('spoke %(spoke)s: applied up to outbox %(seq)d '
                         '(%(ok)d written, %(bad)d refused)',
                         {'spoke': site.name, 'seq': rows[-1].seq,
                          'ok': len(done), 'bad': len(failed)})
            if not rows:
                break
        if wrote:
            # A marker past what the agent just wrote: a restore of the
            # spoke to a backup from before these writes is then caught by
            # the next check (the marker is above the restored head, or
            # names another change), whenever the restore happens.
            self._check_history(site)
        return progressed

    def _seed(self, site: client.Site) -> None:
        seq = self.state.start_seed(site.name)
        types = [t for t in sorted(self.hub_types, key=rank)
                 if t in self.spoke_types.get(site.name, ())]
        bar = None
        if self.conf.progress and sys.stderr.isatty():
            total = sum(self.hub.digest(t)['count'] for t in types)
            bar = Progress(f'seeding {site.name}', total)
        LOG.info('seeding spoke %(spoke)s from hub %(hub)s',
                 {'spoke': site.name, 'hub': self.hub.name})
        count = refused = 0
        held = []
        # The hub's next page is read while the spoke writes this one.
        for type_name, page in self._prefetched(types):
            changes = [state_mod.Change(seq, type_name, i['id'], 'upsert',
                                        None, i['resource'],
                                        hash_=i.get('hash'))
                       for i in page or ()]
            if type_name == 'project' and page is not None:
                held += changes   # parents first: order them whole
                continue
            if type_name == 'project':
                changes, held = held, []   # the last project page
            count += len(changes)
            refused += self._seed_apply(site, changes) if changes else 0
            if bar:
                bar.add(len(changes))
        if bar:
            bar.close()
        self.state.finish_seed(site.name)
        LOG.info('seeded spoke %(spoke)s: %(n)d resources, %(bad)d refused '
                 '(pending)', {'spoke': site.name, 'n': count,
                               'bad': refused})

    def _prefetched(self, types):
        """(type, page) for every page of the hub's listings of ``types``,
        read one page ahead by a thread of its own; after a type's pages,
        (type, None) ends it."""
        pages: queue.Queue = queue.Queue(maxsize=2)
        done = threading.Event()

        def put(item) -> bool:
            """False once the seed stopped taking pages."""
            while not done.is_set():
                try:
                    pages.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False

        def read():
            try:
                for type_name in types:
                    for page in self._pages(type_name):
                        if not put((type_name, page)):
                            return
                    if not put((type_name, None)):
                        return
                put(None)
            except BaseException as e:   # raised again by the consumer
                put(e)

        reader = threading.Thread(target=read, daemon=True,
                                  name='seed-read')
        reader.start()
        try:
            while True:
                item = pages.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            done.set()
            reader.join(timeout=self.conf.request_timeout + 5)

    def _pages(self, type_name):
        marker = None
        while True:
            self._check_stop()
            page = self.hub.listing(type_name, marker=marker)
            if page['items']:
                yield page['items']
            marker = page.get('next_marker')
            if not marker:
                return

    def _check_stop(self):
        if self.stop.is_set():
            raise Stopped()

    def _seed_apply(self, site, changes) -> int:
        # A seed copies the hub's version whatever the spoke holds.
        done, failed, written = self._apply(site, changes, guard=False)
        self.state.record(site.name, None, done, failed, written)
        return len(failed)

    def _reconcile(self, site: client.Site) -> None:
        """Reconcile a spoke by digest after the feed was restarted at
        the hub's head (it lost the history after our cursor)."""
        self.state.start_reconcile(site.name)
        LOG.info('reconciling spoke %(spoke)s with hub %(hub)s by digest',
                 {'spoke': site.name, 'hub': self.hub.name})
        reports = reconcile_mod.reconcile_spoke(self, site)
        self.state.finish_reconcile(site.name)
        total = reconcile_mod.TypeReport('all')
        for r in reports:
            if r.missing or r.differ or r.deletes or r.refused:
                LOG.info('reconciled %(type)s at spoke %(spoke)s: %(cmp)d '
                         'digest buckets compared, %(miss)d missing, '
                         '%(diff)d different, %(up)d upserted, %(del)d '
                         'deleted, %(local)d site-local kept, %(bytes)d '
                         'bytes', {'type': r.type, 'spoke': site.name,
                                   'cmp': r.compared, 'miss': r.missing,
                                   'diff': r.differ, 'up': r.upserts,
                                   'del': r.deletes, 'local': r.kept_local,
                                   'bytes': r.bytes})
            for f in ('compared', 'upserts', 'deletes', 'kept_local',
                      'refused', 'bytes'):
                setattr(total, f, getattr(total, f) + getattr(r, f))
        LOG.info('reconciled spoke %(spoke)s: %(cmp)d digest buckets '
                 'compared, %(up)d upserted, %(del)d deleted, %(local)d '
                 'site-local kept, %(bad)d refused (pending), %(bytes)d '
                 'bytes', {'spoke': site.name, 'cmp': total.compared,
                           'up': total.upserts, 'del': total.deletes,
                           'local': total.kept_local, 'bad': total.refused,
                           'bytes': total.bytes})

    # -- two-way: spokes' own changes up to the hub -------------------

    def _up_types(self, site: client.Site) -> list[str]:
        return [t for t in self.conf.spoke_originated_types
                if t in self.hub_types
                and t in self.spoke_types.get(site.name, ())]

    def _upward_once(self) -> None:
        """--once: bring every spoke's own changes to the hub, all spokes
        side by side; a spoke that fails is reported, the others go on.

        The hub's feed is read to the end once every spoke has *settled*:
        sent what it had, or failed once. A spoke that is down is still
        retried (and reported), but never holds the others back; what it
        sends after settling reaches the other spokes on the next run."""
        unsettled = {s.name for s in self.spokes}
        lock = threading.Lock()

        def settle(site):
            with lock:
                unsettled.discard(site.name)
                if not unsettled:
                    self.upward_done.set()

        def one(site):
            failures = 0
            while True:
                try:
                    cursor = self.state.upward_cursor(site.name)
                    while self._push_up(site):
                        pass
                    if failures and self.last_read.is_set() and \
                            self.state.upward_cursor(site.name) != cursor:
                        # Read and sent after the hub's feed was read for
                        # the last time: the other spokes lack it.
                        self.late_up.append(site.name)
                    if self.state.pending_for(state_mod.up_key(site.name)):
                        self.up_outcome[site.name] = (
                            'its own changes were refused by the hub: ' +
                            self.state.report_pending(
                                state_mod.up_key(site.name)))
                    return
                except client.SiteError as e:
                    failures += 1
                    if not e.transient or \
                            failures >= self.conf.once_attempts:
                        self.up_outcome[site.name] = (
                            f'its own changes could not be read or sent to '
                            f'the hub: {e}')
                        return
                    site.site_id = None
                    try:
                        self._sleep(self._backoff(failures))
                    except Stopped:
                        return
                except Stopped:
                    return
                except Exception as e:
                    # A bug, not the spoke: say where, report the spoke.
                    LOG.exception('spoke %(spoke)s: unexpected error while '
                                  'sending its own changes to the hub',
                                  {'spoke': site.name})
                    self.up_outcome[site.name] = (
                        f'its own changes: agent error: {type(e).__name__}')
                    return
                finally:
                    settle(site)

        workers = min(len(self.spokes), self.conf.max_parallel_spokes) or 1
        try:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, self.spokes))
        finally:
            self.upward_done.set()

    def _upward_loop(self, site: client.Site) -> None:
        failures = 0
        try:
            while not self.stop.is_set():
                try:
                    self._push_up(site, wait=self.conf.poll_wait)
                    failures = 0
                except client.SiteError as e:
                    failures += 1
                    LOG.warning('spoke %(spoke)s: reading its own changes '
                                'for the hub failed (%(n)d in a row): '
                                '%(err)s', {'spoke': site.name,
                                            'n': failures, 'err': e})
                    site.site_id = None
                    self._sleep(self._backoff(failures))
                except Exception:
                    failures += 1
                    LOG.exception('spoke %(spoke)s: unexpected error while '
                                  'sending its own changes to the hub',
                                  {'spoke': site.name})
                    self._sleep(self._backoff(failures))
        except Stopped:
            return

    def _push_up(self, site: client.Site, wait: float = 0) -> bool:
        """One read of spoke ``site``'s feed, for the types that flow up;
        what was made at the spoke itself goes to the hub with the spoke as
        its origin, and what the hub refuses waits in pending (retried
        each time). The cursor moves only after the hub answered. Returns
        whether the spoke's feed has more right away."""
        self._connect(site)
        types = self._up_types(site)
        if not types:
            if wait:
                self._sleep(wait)   # nothing flows up from this spoke
            return False
        cursor = self.state.upward_cursor(site.name)
        if cursor is None:
            # First sight of this spoke: what it made before is its own.
            self.state.set_upward_cursor(
                site.name, site.capabilities()['head_cursor'])
            return True
        try:
            page = site.changes(since=cursor,
                                limit=self.conf.feed_page_size, wait=wait,
                                types=types)
        except client.Gone as e:
            self._recover_up(site, types, cursor, e)
            return True
        key = state_mod.up_key(site.name)
        retry = self.state.pending_for(key)
        base = max((c.seq for c in retry), default=0) + 1
        # Origin set: written there by the agent (from the hub); only what
        # the spoke made itself goes up.
        mine = [state_mod.Change(base + n, c['type'], c['id'], c['op'],
                                 None, c.get('resource'))
                for n, c in enumerate(page['changes'])
                if c.get('origin') is None]
        if retry or mine:
            done, failed = self._apply_up(site, retry + mine)
            self.state.record(key, None, done, failed)
            if mine:
                LOG.info('spoke %(spoke)s: sent %(ok)d of its own changes '
                         'to hub %(hub)s (%(bad)d refused)',
                         {'spoke': site.name, 'hub': self.hub.name,
                          'ok': len(done), 'bad': len(failed)})
        self.state.set_upward_cursor(site.name, page['next'])
        return bool(page['more'])

    def _recover_up(self, site, types, cursor, gone) -> None:
        """The spoke's own feed lost the history after ``cursor``: follow
        it from its head and send up by digest what the gap held
        (:mod:`keystone_syncext.agent.upward_recovery`)."""
        if self.up_restarted.get(site.name) == cursor:
            raise client.SiteError(site.name, 'its own feed answered 410 '
                                   '(Gone) again at the head it gave')
        head = (gone.body.get('head_cursor') or
                site.capabilities(speaks=self.hub_versions)['head_cursor'])
        self.up_restarted[site.name] = head
        report = upward_recovery.recover(self, site, types, head)
        if report.held and self.once:
            self.up_held[site.name] = (
                f'its own feed lost its history; {report.held} of its own '
                'resources are held differently at the hub (the hub\'s '
                'kept: see keystone-sync conflicts)')

    def _apply_up(self, site: client.Site, changes):
        """Write a spoke's own changes to the hub; (done, failed)."""
        done = []
        selection = self.selections.get(site.name)
        if selection:
            # Judged as the other way round: upserts on the spoke's
            # representation, deletes on the hub's copy.
            changes, skipped = selection.filter(
                site.name, changes, site.resource, self.hub.resource)
            done += [c for c, _ in skipped]
        todo = []
        for c in changes:
            if c.op != 'delete' and c.resource is None:
                done.append(c)   # deleted since: its delete follows
            else:
                todo.append(c)
        ok, bad, _ = self._write(self.hub, order(todo), origin=site.site_id)
        if bad:
            # The hub's reason (it never names a secret): what an operator
            # must see to tell a refused attack from a missing dependency.
            # Once per item; its retries are in status.
            known = {c.key for c in self.state.pending_for(
                state_mod.up_key(site.name))}
            for c, why in bad:
                LOG.log(logging.DEBUG if c.key in known else logging.WARNING,
                        'hub %(hub)s refused a change made at spoke '
                        '%(spoke)s: %(why)s', {'hub': self.hub.name,
                                               'spoke': site.name,
                                               'why': why})
        return done + ok, bad

    # -- writing ------------------------------------------------------

    def _apply(self, site: client.Site, changes, guard: bool = True):
        """Write ``changes`` to ``site`` in batches; returns (done, failed
        with reasons, written: what the spoke accepted, a subset of done).
        A pass that leaves some refused while others went in retries the
        refused once more: what they needed may have been written later
        in the same pass. With ``guard``, a resource the agent placed
        there before is written only if the spoke still holds what was
        placed; what changed there since is settled by the conflict rules
        (:mod:`keystone_syncext.agent.conflicts`)."""
        known = set(self.spoke_types.get(site.name, ()))
        done, failed, written = [], [], []
        selection = self.selections.get(site.name)
        if selection:
            # Left alone by the rules: never written, never retried.
            changes, skipped = selection.filter(
                site.name, changes, self.hub.resource, site.resource)
            done += [c for c, _ in skipped]
        todo = []
        for c in changes:
            if c.type not in known:
                failed.append((c, f'spoke does not sync type {c.type}'))
            elif c.op != 'delete' and c.resource is None:
                # Deleted at the hub since (its delete follows in the
                # feed), or a resource the hub does not represent.
                done.append(c)
            else:
                todo.append(c)
        if guard:
            self._guard(site, todo)
        stale = []
        for attempt in range(3):
            ok, bad, changed = self._write(site, order(todo))
            done += ok
            written += ok
            stale += changed
            if not bad or not ok or attempt == 2:
                failed += bad
                break
            todo = [c for c, _ in bad]
        if stale:
            s_done, s_failed, s_written = conflicts_mod.settle(
                self, site, stale)
            done += s_done
            failed += s_failed
            written += s_written
        return done, failed, written

    def _guard(self, site, changes) -> None:
        """Make each write of a resource placed at ``site`` before
        conditional on what was placed (its base)."""
        by_type: dict = {}
        for c in changes:
            by_type.setdefault(c.type, []).append(c)
        for type_name, group in by_type.items():
            base = self.state.placed_at(site.name, type_name,
                                        {c.id for c in group})
            for c in group:
                c.if_match = base.get(c.id)

    def _write(self, site, ordered, origin=None):
        """(written, refused with reasons, stale: conditional writes the
        site refused because it holds another version, with its hash)."""
        ok, bad, stale = [], [], []
        origin = origin or self.state.hub().site_id
        for chunk in client.chunks(ordered, self._max_items(site),
                                   self.conf.batch_bytes,
                                   as_item=state_mod.Change.item):
            self._check_stop()
            self._write_chunk(site, chunk, origin, ok, bad, stale)
        return ok, bad, stale

    def _max_items(self, site):
        return min(self.conf.batch_items,
                   self.spoke_max_items.get(site.name) or
                   self.conf.batch_items)

    def _write_chunk(self, site, chunk, origin, ok, bad, stale):
        try:
            results = site.batch([c.item() for c in chunk], origin=origin)
        except client.SiteError as e:
            if not item_may_be_at_fault(e):
                raise
            # The spoke refused the whole batch (one item failed its
            # schema there, the body was too large, or one item made it
            # fail with a 5xx): find the item, park it, go on.
            if len(chunk) == 1:
                bad.append((chunk[0], f'{chunk[0].type} {chunk[0].id}: '
                                      f'{e}'[:500]))
                return
            half = len(chunk) // 2
            self._write_chunk(site, chunk[:half], origin, ok, bad, stale)
            self._write_chunk(site, chunk[half:], origin, ok, bad, stale)
            return
        by_index = {r.get('index'): r for r in results}
        if sorted(by_index) != list(range(len(chunk))):
            raise client.SiteError(site.name, 'batch answered '
                                   f'{len(results)} results for '
                                   f'{len(chunk)} items')
        for n, c in enumerate(chunk):
            r = by_index[n]
            status = r.get('status', 500)
            if 200 <= status < 300 or (c.op == 'delete' and status == 404
                                        and not c.if_match):
                ok.append(c)
            elif status == 412 and c.if_match:
                stale.append((c, (r.get('error') or {}).get('current_hash')))
            else:
                bad.append((c, refusal(c, status, r.get('error') or {})))


# How a refused item's reason starts when the site holds another resource
# of the same name: what ``keystone-sync join`` resolves.
NAME_CLASH = 'name taken at the site by'


def refusal(c: state_mod.Change, status: int, err: dict) -> str:
    """The reason kept with a refused item: the site's status and
    message, and the id of the resource holding the name (409 with
    ``existing_id``) so that a name clash can be told apart."""
    clash = (f'{NAME_CLASH} {err["existing_id"]}: '
             if status == 409 and err.get('existing_id') else '')
    return f'{c.type} {c.id}: {status} {clash}{err.get("message", "")}'[:500]


def item_may_be_at_fault(e: client.SiteError) -> bool:
    """Whether a batch that failed as a whole is worth splitting to find
    the item at fault: a 4xx other than 401 and 408/429 (the site refused
    the request), or a 5xx other than 503 (the site broke on it, after the
    client's retries). Not an unreachable site, a timeout, a 401 or a busy
    database (503): those are the site's state, not an item's."""
    if e.status is None or e.status in (401, 408, 429, 503):
        return False
    return not e.transient or e.status >= 500
