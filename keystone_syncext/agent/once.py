"""``run --once``: what each part found, and the report at the end.

A ``--once`` run ends when every spoke has *settled*: converged with the
hub, or given up after ``once_attempts`` failures in a row (or at once on
an error that will not pass). :class:`Outcomes` is where the parts note
that: the hub's feed (read to its end, or given up), each spoke's
outcome, the upward flow's. :meth:`Outcomes.report` prints one line per
spoke (``spoke NAME: converged with hub HUB`` on standard output, ``spoke
NAME: not converged: WHY`` on standard error) and returns the exit code:
0 when every spoke converged, 1 otherwise.
"""

import sys
import threading

from keystone_syncext.agent import writer as writer_mod

HUB_UNREAD = 'the hub could not be read'


class Outcomes:
    """The ``--once`` bookkeeping of one run."""

    def __init__(self):
        self.caught_up = threading.Event()
        self.target = None          # the outbox seq to reach
        self.hub_failure = None     # why the hub was given up
        # Per spoke: None (converged) or why not.
        self.outcome: dict[str, str | None] = {}
        self.up_outcome: dict[str, str] = {}   # why up failed
        # Per spoke: what the upward recovery could not send up.
        self.up_held: dict[str, str] = {}
        self.upward_done = threading.Event()
        self.upward_done.set()
        # Set when the hub's feed is read for the last time; a spoke whose
        # own changes reach the hub after that (it settled on a failure,
        # then a retry went through) is named in the report of every other
        # spoke, which did not get them this run.
        self.last_read = threading.Event()
        self.late_up: list[str] = []

    def give_up_hub(self, why: str) -> None:
        """The hub's feed cannot be read: every spoke ends with that."""
        self.hub_failure = why
        self.caught_up.set()

    def hub_read(self, target: int) -> None:
        """The hub's feed was read to its end: spokes that reach outbox
        ``target`` have converged."""
        self.target = target
        self.caught_up.set()

    def reached(self, row) -> bool:
        """Whether a spoke whose state row is ``row`` is caught up with
        the end of the hub's feed."""
        return (self.caught_up.is_set() and self.target is not None and
                row.state == 'live' and row.applied_seq >= self.target)

    def report(self, hub_name: str, spoke_names) -> int:
        """Print one line per spoke (and one for a hub given up); the
        exit code."""
        bad = 0
        if self.hub_failure:
            print(f'hub {hub_name}: {self.hub_failure}', file=sys.stderr)
            bad += 1
        for name in spoke_names:
            why = self.outcome.get(name, 'stopped before converging')
            if not why:
                why = self.up_outcome.get(name) or self.up_held.get(name)
            late = [n for n in self.late_up if n != name]
            if not why and late:
                why = (f'changes made at {", ".join(late)} reached the hub '
                       'after this run last read its feed (a retry went '
                       'through late); the next run brings them here')
            if why:
                print(f'spoke {name}: not converged: {why}',
                      file=sys.stderr)
                bad += 1
            else:
                print(f'spoke {name}: converged with hub {hub_name}')
        return 1 if bad else 0


def refused(state, hub_name: str, name: str, npending: int) -> str:
    """Why spoke ``name`` did not converge: its refused items (the first
    few), and what to do when they are name clashes with resources the
    spoke made itself (it was never joined)."""
    reasons = state.pending_errors(name)
    first = '; '.join(reasons[:3])
    clashes = sum(1 for r in reasons if writer_mod.NAME_CLASH in r)
    why = f'{npending} items refused; first: {first}'
    if clashes:
        why += (f'; {clashes} of them are name clashes with resources '
                f'the spoke made itself: run keystone-sync join --hub '
                f'{hub_name} --spoke {name}, then run again')
    return why
