"""The hub's listing pages, read once for the spokes that seed at once.

Spokes seen for the first time in the same run (a new deployment, or
several spokes added together) all read every page of the hub's listings:
each page read once per spoke, the hub paying for each read and the agent
decoding each answer. Here a page one seed read is handed to the other
seeds that ask for the same page (type and marker), on one condition:
the read began after the other seed had taken its starting position.

Why that condition is enough: a seed covers the outbox up to its top when
it starts (:meth:`State.start_seed`); the changes after that are applied
after the seed. Every change in the outbox by then was read from the
hub's feed, so it was committed at the hub before the seed started, and a
listing read that begins after that sees it (or what replaced it). A
page read before a seed started could miss a change the seed counts as
covered, so it is never served to that seed: the seed reads it again.
Pages are kept only while a seed that may still ask for them is under
way, and at most :data:`KEEP` of them.
"""

import collections
from concurrent import futures
import itertools
import threading

# Most pages kept at once (each up to a listing's limit of resources).
KEEP = 8


def _own_copy(error: Exception) -> Exception:
    """``error`` as an object of its own: the same class, arguments and
    attributes (its ``__init__``, which may take other arguments than it
    keeps, is not run again)."""
    own = type(error).__new__(type(error), *error.args)
    own.__dict__.update(vars(error))
    return own


class _Page:
    """One read of a listing page: when it began (the clock), who may
    still take it, and its answer."""

    __slots__ = ('began', 'waiting', 'answer')

    def __init__(self, began, waiting):
        self.began, self.waiting = began, waiting
        self.answer = futures.Future()


class SharedPages:
    """The listing pages of the seeds under way (see the module)."""

    def __init__(self, read):
        self._read = read   # (type_name, marker) -> the hub's page
        self._lock = threading.Lock()
        self._clock = itertools.count(1)
        self._now = 0
        self._seeds: dict[int, int] = {}   # a seed's token -> its start
        self._pages: collections.OrderedDict = collections.OrderedDict()

    def begin(self) -> int:
        """A seed's start, once its position is taken: a token for
        :meth:`page` and :meth:`end`."""
        with self._lock:
            self._now = next(self._clock)
            self._seeds[self._now] = self._now
            return self._now

    def end(self, token: int) -> None:
        """The seed ``token`` is over: it takes no page any more."""
        with self._lock:
            self._seeds.pop(token, None)
            for key, page in list(self._pages.items()):
                page.waiting.discard(token)
                if not page.waiting and page.answer.done():
                    del self._pages[key]

    def page(self, token: int, type_name: str, marker) -> dict:
        """The hub's page of ``type_name`` after ``marker``, for the seed
        ``token``: one that a read begun after that seed's start got, or a
        read of its own, which the seeds under way may take after it."""
        key = (type_name, marker)
        with self._lock:
            page = self._pages.get(key)
            if page is not None and page.began >= self._seeds[token]:
                page.waiting.discard(token)
                if not page.waiting and page.answer.done():
                    del self._pages[key]
                mine = False
            else:
                page = _Page(self._now, set(self._seeds) - {token})
                self._pages[key] = page
                self._pages.move_to_end(key)
                while len(self._pages) > KEEP:
                    self._pages.popitem(last=False)
                mine = True
        if mine:
            self._fill(key, page)
            return page.answer.result()
        try:
            return page.answer.result()
        except Exception as e:
            # The reader's error, as a copy of its own for each seed that
            # waited: one exception object raised in several threads
            # would carry all their tracebacks.
            raise _own_copy(e) from None

    def _fill(self, key, page) -> None:
        try:
            page.answer.set_result(self._read(*key))
        except BaseException as e:
            # Whoever waits for it gets the error; nobody later does.
            page.answer.set_exception(e)
            with self._lock:
                if self._pages.get(key) is page:
                    del self._pages[key]
            raise
        if not page.waiting:
            with self._lock:
                if self._pages.get(key) is page:
                    del self._pages[key]
