"""Selective sync: which resources the agent may write at a spoke.

Rules come from the configuration (``[selection]``, overridden per spoke
in ``[spoke:NAME]``); each is one of

- ``type:TYPE``: every resource of that type;
- ``domain:DOMAIN``: a domain (by id or name) and everything in it;
- ``project:PROJECT``: a project (by id or name) and its whole subtree;
- ``name:TYPE:GLOB``: resources of that type whose name matches the
  ``fnmatch`` pattern (a user's name is its local name; identity
  providers and mappings are named by their id).

A resource is synced when it is *included* and not *excluded*:

- excluded: an exclude rule matches it, or what contains it (its domain,
  the projects above it) or what it refers to (a grant's actor, target
  and role; a membership's user and group; an implied role's roles; an
  application credential's user and project; a protocol's identity
  provider and mapping; a federated user's identity providers) is
  excluded. Something the spoke will not get cannot be depended on there.
- included: there are no include rules, or one matches it, or a
  ``domain:``/``project:`` include covers what contains it, or it is a
  dependent (grant, membership, implied role, application credential,
  protocol) whose every reference is included.

Rules are judged on representations, not on ids resolved once: an
upsert by the hub's representation (and the hub's view of what it refers
to), a delete by the *spoke's* current representation of that id, so
that something the rules keep out is never deleted at a spoke, whatever
the hub did to it meanwhile. Looked-up representations are cached for
one pass of a spoke (``scope``) and kept current with the changes the
pass applies, so a project moved at the hub moves its subtree at once.
Only what rules need is kept (names, domains, parents, references), never
secrets.
"""

from collections.abc import Callable
from collections.abc import Iterable
import contextlib
import dataclasses
import fnmatch
import logging
import threading

from keystone_syncext.common import types

LOG = logging.getLogger(__name__)

# What contains what, what refers to what, which types have names and
# which exist only between others: the type table's.
TYPES = types.ORDER
NAMED = types.NAMED
DEPENDENTS = types.DEPENDENTS
KINDS = ('type', 'domain', 'project', 'name')
REACHES = {t: types.reaches(t) for t in TYPES}


class RuleError(ValueError):
    """A malformed selection rule."""


@dataclasses.dataclass(frozen=True)
class Rule:
    kind: str
    value: str            # a type, a domain or project id or name, a glob
    type: str | None      # for name rules: the type named
    text: str

    def matches(self, type_name: str, facts: 'Facts') -> bool:
        """Whether the rule names this resource itself (containment and
        references are the caller's business)."""
        if self.kind == 'type':
            return type_name == self.value
        if self.kind == 'name':
            return (type_name == self.type and facts.name is not None
                    and fnmatch.fnmatchcase(facts.name, self.value))
        return type_name == self.kind and self.value in (facts.id,
                                                         facts.name)

    def concerns(self, type_name: str) -> bool:
        """Whether the rule can decide anything about ``type_name``."""
        reach = REACHES.get(type_name) or types.reaches(type_name)
        if self.kind in ('type', 'name'):
            return (self.type or self.value) in reach
        return self.kind in reach


def parse(text: str) -> Rule:
    """One rule from its text; a :class:`RuleError` says what is wrong."""
    raw = text.strip()
    kind, sep, rest = raw.partition(':')
    if not sep or kind not in KINDS or not rest:
        raise RuleError(f'selection rule {text!r}: expected one of '
                        'type:TYPE, domain:DOMAIN, project:PROJECT, '
                        'name:TYPE:GLOB')
    if kind == 'type':
        if rest not in TYPES:
            raise RuleError(f'selection rule {text!r}: unknown type '
                            f'{rest!r} (types: {", ".join(TYPES)})')
        return Rule('type', rest, None, raw)
    if kind == 'name':
        type_name, sep, glob = rest.partition(':')
        if type_name not in NAMED or not sep or not glob:
            raise RuleError(f'selection rule {text!r}: expected '
                            'name:TYPE:GLOB with TYPE one of '
                            f'{", ".join(NAMED)}')
        return Rule('name', glob, type_name, raw)
    return Rule(kind, rest, None, raw)


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """What the rules need of one resource; no secrets."""
    id: str
    name: str | None
    contained_in: tuple      # ((type, id), ...)
    refers_to: tuple         # ((type, id), ...)

    @classmethod
    def of(cls, type_name: str, resource: dict) -> 'Facts':
        """The facts of ``resource``, by its row of the type table;
        :class:`types.UnknownType` for a type not in it."""
        info = types.lookup(type_name)
        return cls(resource['id'], info.name_of(resource),
                   info.containers(resource), info.references(resource))


class View:
    """Facts of one site's resources, fetched once each and cached."""

    def __init__(self, fetch: Callable[[str, str], dict | None]):
        self._fetch = fetch
        self._facts: dict = {}

    def note(self, type_name: str, id_: str, resource: dict | None) -> None:
        self._facts[(type_name, id_)] = (
            None if resource is None else Facts.of(type_name, resource))

    def get(self, type_name: str, id_: str) -> Facts | None:
        key = (type_name, id_)
        if key not in self._facts:
            self.note(type_name, id_, self._fetch(type_name, id_))
        return self._facts[key]


class Selection:
    """One rule set: include and exclude rules."""

    def __init__(self, include: Iterable[str] = (),
                 exclude: Iterable[str] = ()):
        self.include = [parse(t) for t in include or ()]
        self.exclude = [parse(t) for t in exclude or ()]
        self._local = threading.local()
        self.skipped: dict[str, int] = {}

    def __bool__(self):
        return bool(self.include or self.exclude)

    def __repr__(self):
        return (f'Selection(include={[r.text for r in self.include]}, '
                f'exclude={[r.text for r in self.exclude]})')

    def concerns(self, type_name: str) -> bool:
        """Whether any rule can keep a ``type_name`` out."""
        return bool(self.include) or any(r.concerns(type_name)
                                         for r in self.exclude)

    def judge(self, view: View) -> 'Judge':
        return Judge(self, view)

    @contextlib.contextmanager
    def scope(self, hub_fetch: Callable[[str, str], dict | None]):
        """One pass of one spoke (a thread): the hub's facts are looked up
        once for the whole pass."""
        self._local.hub = View(hub_fetch)
        try:
            yield
        finally:
            self._local.hub = None

    def filter(self, spoke_name: str, changes: list,
               hub_fetch: Callable[[str, str], dict | None],
               spoke_fetch: Callable[[str, str], dict | None]):
        """Split outbox changes into (to write, left alone with reason).

        An upsert is judged on the hub's representation; a delete on the
        spoke's current representation of that id (absent there: nothing
        to protect, the delete goes on and finds nothing)."""
        if not self:
            return list(changes), []
        for c in changes:
            # A type the rules cannot judge is an error, not a pass.
            types.lookup(c.type)
        hub = getattr(self._local, 'hub', None) or View(hub_fetch)
        for c in sorted(changes, key=lambda c: c.seq):
            # Newest last: the view follows the hub within the pass.
            if c.op == 'delete' or c.resource is not None:
                hub.note(c.type, c.id, c.resource)
        spoke = View(spoke_fetch)
        on_hub, on_spoke = Judge(self, hub), Judge(self, spoke)
        keep, skipped = [], []
        for c in changes:
            why = self._why_not(c, on_hub, on_spoke)
            if why:
                skipped.append((c, why))
                LOG.debug('spoke %(spoke)s: leaving %(type)s %(id)s alone '
                          '(%(op)s): %(why)s',
                          {'spoke': spoke_name, 'type': c.type, 'id': c.id,
                           'op': c.op, 'why': why})
            else:
                keep.append(c)
        if skipped:
            self.skipped[spoke_name] = (self.skipped.get(spoke_name, 0)
                                        + len(skipped))
            LOG.info('spoke %(spoke)s: %(n)d changes left alone by the '
                     'selection rules (%(total)d so far)',
                     {'spoke': spoke_name, 'n': len(skipped),
                      'total': self.skipped[spoke_name]})
        return keep, skipped

    def _why_not(self, c, on_hub: 'Judge', on_spoke: 'Judge'):
        """Why change ``c`` is left alone (None: it is written)."""
        if not self.concerns(c.type):
            return None
        if c.op == 'delete':
            if on_spoke.view.get(c.type, c.id) is not None:
                return on_spoke.why_not(c.type, c.id)
            return None
        if c.resource is not None:
            return on_hub.why_not(c.type, c.id)
        return None


class Judge:
    """Verdicts on the resources of one view, memoized for one batch."""

    MAX_DEPTH = 64   # deeper than any Keystone hierarchy (max_depth)

    def __init__(self, selection: Selection, view: View):
        self.selection = selection
        self.view = view
        self._excluded: dict = {}
        self._included: dict = {}
        self._covered: dict = {}

    def why_not(self, type_name: str, id_: str) -> str | None:
        """Why the resource must be left alone, or None to sync it."""
        why = self.excluded(type_name, id_)
        if why:
            return why
        if not self.included(type_name, id_):
            return 'matches no include rule'
        return None

    def selected(self, type_name: str, id_: str) -> bool:
        return self.why_not(type_name, id_) is None

    def excluded(self, type_name, id_, depth=0) -> str | None:
        key = (type_name, id_)
        if key in self._excluded:
            return self._excluded[key]
        rules = [r for r in self.selection.exclude
                 if r.concerns(type_name)]
        why = None
        if rules and depth < self.MAX_DEPTH:
            self._excluded[key] = None     # a loop judges as not excluded
            facts = self.view.get(type_name, id_)
            if facts is None and depth:
                # Something it needs is gone (deleted at the hub since):
                # the rules cannot clear it, and a write of it would be
                # refused or undone by the delete that follows.
                why = 'not at the site'
            elif facts is not None:
                why = next((f'exclude rule {r.text!r}' for r in rules
                            if r.matches(type_name, facts)), None)
                for t, i in facts.contained_in + facts.refers_to:
                    if why:
                        break
                    inner = self.excluded(t, i, depth + 1)
                    if inner:
                        why = f'{t} {i}: {inner}' if depth == 0 else inner
        self._excluded[key] = why
        return why

    def included(self, type_name, id_, depth=0) -> bool:
        if not self.selection.include:
            return True
        return self._memoized(self._included, self._included_by, type_name,
                              id_, depth)

    def _included_by(self, type_name, facts, depth) -> bool:
        return (any(r.matches(type_name, facts)
                    for r in self.selection.include)
                or any(self._covered_by_scope(t, i, depth + 1)
                       for t, i in facts.contained_in)
                or (type_name in DEPENDENTS and bool(facts.refers_to)
                    and all(self.included(t, i, depth + 1)
                            for t, i in facts.refers_to)))

    def _covered_by_scope(self, type_name, id_, depth) -> bool:
        """Whether a ``domain:``/``project:`` include covers this
        container (or one of its own containers)."""
        return self._memoized(self._covered, self._covered_by, type_name,
                              id_, depth)

    def _covered_by(self, type_name, facts, depth) -> bool:
        return (any(r.kind in ('domain', 'project')
                    and r.matches(type_name, facts)
                    for r in self.selection.include)
                or any(self._covered_by_scope(t, i, depth + 1)
                       for t, i in facts.contained_in))

    def _memoized(self, memo, judge, type_name, id_, depth) -> bool:
        """``judge(type_name, facts, depth)`` of a resource, memoized in
        ``memo``: False for one the view lacks or deeper than MAX_DEPTH,
        and while it is being judged (a loop judges as not)."""
        key = (type_name, id_)
        if key not in memo:
            memo[key] = False
            facts = self.view.get(type_name, id_)
            if facts is not None and depth < self.MAX_DEPTH:
                memo[key] = judge(type_name, facts, depth)
        return memo[key]
