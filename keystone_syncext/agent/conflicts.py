"""Three-way conflicts between the hub and a spoke, and their resolution.

The base of a resource at a spoke is what the agent last wrote there: the
content hash kept in ``agent_placed``. Every write of a resource that has a
base is conditional on it (the batch item's ``if_match``). When the spoke
answers 412, the resource changed at the spoke since the base:

- the spoke already holds what the hub holds: nothing to do (a pass
  re-applied after a crash, or both made the same change);
- the hub still holds the base: only the spoke changed it (drift);
- otherwise it changed on both sides: a *conflict*, recorded with both
  versions, the winner and why (``keystone-sync conflicts``).

Drift and conflicts are resolved by the same rules, in this order, so the
same inputs always give the same winner:

1. the spoke is *authoritative* for the resource (``[spoke:NAME]
   authoritative`` rules, judged on the spoke's version *and* on the
   hub's, so a spoke cannot pull a resource into its subset by renaming
   it): the spoke wins;
2. otherwise the hub wins, whatever the strategy: a spoke's version
   reaches the hub only inside what the operator declared the spoke
   authoritative for (doc/security.md). Strategy ``last_writer_wins``
   still compares the times (each site's own ``updated_at``; a tie, or a
   deletion whose time is not known, goes to the hub) and says in the
   reason when the spoke changed it last; ``hub_wins`` (the default)
   does not look.

When the hub wins, the hub's version is written to the spoke
unconditionally. When the spoke wins, the spoke's version is written to
the hub, conditional on the hub still holding what was judged, with the
spoke as its origin: the hub's feed then brings it to every other spoke
and never back to this one. If the hub changed again meanwhile, that write
is refused and the newer change, when it reaches this spoke, is judged
afresh against the same base.
"""

import dataclasses
import datetime
import json
import logging

from keystone_syncext.agent import secret_fields
from keystone_syncext.agent import selection as selection_mod
from keystone_syncext.agent import state as state_mod

LOG = logging.getLogger(__name__)

HUB_WINS = 'hub_wins'
LAST_WRITER_WINS = 'last_writer_wins'
STRATEGIES = (HUB_WINS, LAST_WRITER_WINS)
HUB = 'hub'

# Fields that carry hashes of secrets (the type table's ``secrets``) are
# kept as keyed fingerprints in the state database, shown as REDACTED by
# ``keystone-sync conflicts``.
REDACTED = '<redacted>'


@dataclasses.dataclass
class Side:
    """One site's version of a resource; ``resource`` None: deleted."""
    resource: dict | None
    hash: str | None
    changed_at: datetime.datetime | None


@dataclasses.dataclass
class Verdict:
    winner: str          # HUB or the spoke's name
    reason: str


class Resolver:
    """The configured rules: one strategy, and per spoke what it is
    authoritative for (selection rules)."""

    def __init__(self, strategy: str = HUB_WINS,
                 authoritative: dict[str, list[str]] | None = None):
        if strategy not in STRATEGIES:
            raise ValueError(f'unknown conflict strategy {strategy!r}; '
                             f'one of {", ".join(STRATEGIES)}')
        self.strategy = strategy
        self.rules = {name: rules for name, rules
                      in (authoritative or {}).items() if rules}
        # Include-only selections: "inside the subset".
        self.subsets = {name: selection_mod.Selection(include=rules)
                        for name, rules in self.rules.items()}

    def authoritative(self, spoke_name, type_name, id_, spoke: Side,
                      hub: Side, fetch) -> bool:
        """Whether ``spoke_name`` is authoritative for the resource, judged
        on its own version (the hub's when it deleted it). ``fetch(type,
        id)`` looks up what the resource is inside of, at that site."""
        subset = self.subsets.get(spoke_name)
        if subset is None:
            return False
        versions = [v for v in (spoke.resource, hub.resource)
                    if v is not None]
        if not versions:
            return False
        for version in versions:
            view = selection_mod.View(fetch)
            view.note(type_name, id_, version)
            if not subset.judge(view).included(type_name, id_):
                return False
        return True

    def decide(self, spoke_name: str, hub: Side, spoke: Side,
               authoritative: bool) -> Verdict:
        """The winner of one resource; the same inputs, the same winner."""
        if authoritative:
            return Verdict(spoke_name, 'spoke %s is authoritative for %s'
                           % (spoke_name, ', '.join(self.rules[spoke_name])))
        if self.strategy == LAST_WRITER_WINS:
            verdict = _later(spoke_name, hub, spoke)
            if verdict.winner != HUB:
                # Outside its subset a spoke's version never reaches the
                # hub: its admins could rewrite anything there.
                return Verdict(HUB, verdict.reason + '; but spoke %s is '
                               'not authoritative for it, so the hub wins'
                               % spoke_name)
            return verdict
        return Verdict(HUB, 'strategy hub_wins: the hub wins')


def _later(spoke_name: str, hub: Side, spoke: Side) -> Verdict:
    for side, name in ((hub, 'the hub'), (spoke, f'spoke {spoke_name}')):
        if side.changed_at is None:
            what = 'deletion' if side.resource is None else 'change'
            return Verdict(HUB, f'strategy last_writer_wins: the time of '
                           f'{name}\'s {what} is not known; the hub wins')
    if spoke.changed_at > hub.changed_at:
        return Verdict(spoke_name, 'strategy last_writer_wins: spoke %s '
                       'changed it last (%s, the hub at %s)'
                       % (spoke_name, _iso(spoke.changed_at),
                          _iso(hub.changed_at)))
    how = 'at the same time as' if spoke.changed_at == hub.changed_at \
        else 'before'
    return Verdict(HUB, 'strategy last_writer_wins: the hub changed it '
                   'last (%s; spoke %s %s, at %s)'
                   % (_iso(hub.changed_at), spoke_name, how,
                      _iso(spoke.changed_at)))


def _iso(when: datetime.datetime) -> str:
    return when.isoformat(timespec='microseconds') + 'Z'


def redact(type_name: str, resource: dict | None) -> dict | None:
    """A copy of ``resource`` with the hashes of secrets replaced."""
    return secret_fields.replace(type_name, resource, lambda _: REDACTED)


def differing_fields(a: dict | None, b: dict | None) -> list[str]:
    """The top-level fields whose values differ (all of them when one
    side is deleted)."""
    if a is None or b is None:
        return sorted((a or b or {}).keys())
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def record(state: state_mod.State, strategy: str, spoke_name: str,
           change: state_mod.Change, hub: Side, spoke: Side,
           verdict: Verdict) -> None:
    """Keep a conflict (both sides changed since the base) and say so."""
    new = state.add_conflict({
        'spoke': spoke_name, 'type': change.type,
        'resource_id': change.id, 'strategy': strategy,
        'winner': verdict.winner, 'reason': verdict.reason,
        'base_hash': change.if_match, 'hub_hash': hub.hash,
        'spoke_hash': spoke.hash, 'hub_changed_at': hub.changed_at,
        'spoke_changed_at': spoke.changed_at,
        'hub_version': (json.dumps(hub.resource, sort_keys=True)
                        if hub.resource is not None else None),
        'spoke_version': (json.dumps(spoke.resource, sort_keys=True)
                          if spoke.resource is not None else None)})
    if new:
        LOG.warning('conflict: %(type)s %(id)s changed at the hub and at '
                    'spoke %(spoke)s since the agent last synced it '
                    '(fields %(fields)s); %(winner)s wins: %(why)s',
                    {'type': change.type, 'id': change.id,
                     'spoke': spoke_name,
                     'fields': ', '.join(differing_fields(
                         hub.resource, spoke.resource)) or '-',
                     'winner': ('the hub' if verdict.winner == HUB
                                else 'the spoke'),
                     'why': verdict.reason})


def _hub_time(agent, change: state_mod.Change, hub_hash):
    """When the hub made the version judged: the feed's time of the
    change, or the hub's ``updated_at`` while it still holds it."""
    if change.changed_at is not None or hub_hash is None:
        return change.changed_at
    env = agent.hub.envelope(change.type, change.id)
    if env is not None and env['hash'] == hub_hash:
        return state_mod.parse_time(env.get('updated_at'))
    return None


def settle(agent, site, stale):
    """Resolve the writes spoke ``site`` refused because the resource
    changed there since its base (412 to ``if_match``): ``stale`` is
    ``[(change, the spoke's current hash)]``. ``agent``: what writes
    (:class:`keystone_syncext.agent.writer.Writer`: its ``hub``,
    ``state``, ``resolver`` and ``write``). Returns (done, failed with
    reasons, written at the spoke: what its base becomes)."""
    done, failed, written = [], [], []
    to_spoke, to_hub = [], []
    for c, current in stale:
        hub_hash = c.hash if c.op != 'delete' else None
        if current is not None and current == hub_hash:
            # Already as the hub has it (a pass re-applied after a crash,
            # or the same change made on both sides).
            done.append(c)
            written.append(c)
            continue
        env = site.envelope(c.type, c.id)
        spoke = Side(env['resource'] if env else None,
                     env['hash'] if env else None,
                     state_mod.parse_time(env.get('updated_at'))
                     if env else None)
        if spoke.hash == hub_hash:   # the same, or deleted on both sides
            done.append(c)
            written.append(c)
            continue
        hub = Side(c.resource if c.op != 'delete' else None, hub_hash,
                   _hub_time(agent, c, hub_hash))
        resolver = agent.resolver
        verdict = resolver.decide(site.name, hub, spoke,
                                  resolver.authoritative(
                                      site.name, c.type, c.id, spoke, hub,
                                      site.resource))
        if hub_hash != c.if_match:
            record(agent.state, resolver.strategy, site.name, c, hub, spoke,
                   verdict)
        else:
            LOG.info('%(type)s %(id)s changed at spoke %(spoke)s only '
                     '(drift); %(winner)s: %(why)s',
                     {'type': c.type, 'id': c.id, 'spoke': site.name,
                      'winner': ('the hub\'s version is restored'
                                 if verdict.winner == HUB else
                                 'the spoke\'s version goes to the hub'),
                      'why': verdict.reason})
        if verdict.winner == HUB:
            to_spoke.append(state_mod.Change(
                c.seq, c.type, c.id, c.op, c.origin, c.resource,
                c.changed_at, c.hash))
        else:
            to_hub.append((state_mod.Change(
                c.seq, c.type, c.id,
                'upsert' if spoke.resource is not None else 'delete',
                None, spoke.resource, hash_=spoke.hash, if_match=hub_hash),
                c))
    if to_spoke:
        ok, bad, _ = agent.write(site, to_spoke)
        done += ok
        written += ok
        failed += bad
    if to_hub:
        by_key = {up.key: c for up, c in to_hub}
        ok, bad, moved = agent.write(
            agent.hub, [up for up, _ in to_hub],
            origin=site.site_id)
        for up in ok:
            done.append(by_key[up.key])
            written.append(up)     # the spoke's version is the new base
        # The hub changed it again meanwhile: its newer change reaches
        # this spoke through the feed and is judged then.
        done += [by_key[up.key] for up, _ in moved]
        failed += [(by_key[up.key], f'{up.type} {up.id}: the spoke\'s '
                    f'version won a conflict but the hub refused it: '
                    f'{why}') for up, why in bad]
    return done, failed, written
