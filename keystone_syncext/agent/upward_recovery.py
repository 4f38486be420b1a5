"""Recovery of the upward feed: a spoke's own feed lost its history.

For the types that flow up (``spoke_originated_types``) the agent follows
each spoke's own feed. When the spoke no longer holds the history after
the agent's upward cursor (``410 Gone``: the spoke's retention pruned it
while the agent was away), the changes made at the spoke in that gap can
no longer be read. The agent then does what it does for the hub's feed:
it follows the spoke's feed from its head on, and compares the spoke's and
the hub's digests of those types (:func:`reconcile.compare`, the spoke as
the source) to find what the gap held:

- at the spoke, not at the hub, and not put there by the agent: made at
  the spoke; sent up to the hub with the spoke as its origin, as the feed
  would have (what the hub refuses waits in pending, retried each pass);
- at the spoke, not at the hub, put there by the agent: the hub deleted
  it, and the hub's feed deletes it at the spoke; not sent up;
- at both with another content: the hub's version is kept, never
  overwritten from here; each is recorded as a conflict (``keystone-sync
  conflicts``, counted by ``keystone-sync status``) and a ``--once`` run
  reports the spoke as not converged;
- at the hub only: the hub's (and other spokes'); never deleted.

The cursor moves to the head before the compare, so what changes at the
spoke meanwhile comes through its feed as well (an upsert by id twice is
harmless).
"""

import dataclasses
import json
import logging

from keystone_syncext.agent import conflicts as conflicts_mod
from keystone_syncext.agent import reconcile as reconcile_mod
from keystone_syncext.agent import state as state_mod

LOG = logging.getLogger(__name__)

STRATEGY = 'upward_recovery'
HELD_REASON = ('the spoke\'s own feed lost its history (410 Gone) and the '
               'hub holds another version: the hub\'s is kept, not '
               'overwritten from the spoke')


@dataclasses.dataclass
class Report:
    """What a recovery found and did at one spoke."""

    compared: int = 0      # digest nodes compared
    sent: int = 0          # made at the spoke, written to the hub
    refused: int = 0       # the hub refused (kept as pending)
    held: int = 0          # the hub holds another version (kept)
    deleted_at_hub: int = 0  # placed by the agent, gone from the hub


def recover(agent, send, site, types: list[str], head: str) -> Report:
    """Restart the upward feed of ``site`` at ``head`` and send up what
    the lost history held (see the module's docstring). ``agent``: the
    run's :class:`keystone_syncext.agent.context.Context`; ``send(site,
    changes)``: how changes made at the spoke go to the hub, (done,
    failed) (:meth:`keystone_syncext.agent.upward.Upward.send`)."""
    agent.state.set_upward_cursor(site.name, head)
    LOG.error('spoke %(spoke)s no longer holds the history of its own feed '
              'after the agent\'s upward cursor; following it from its '
              'head and comparing %(types)s with hub %(hub)s by digest',
              {'spoke': site.name, 'types': ', '.join(types),
               'hub': agent.hub.name})
    report = Report()
    diffs = reconcile_mod.compare(site, agent.hub, types)
    ups = []
    for t in types:
        diff = diffs[t]
        report.compared += diff.compared
        envs, _ = reconcile_mod.fetch(site, diff)
        placed = agent.state.placed_at(site.name, t,
                                       [e['id'] for e in envs])
        for env in envs:
            if env['id'] in diff.differ:
                report.held += _keep_hubs(agent, site, t, env,
                                          placed.get(env['id']))
            elif env['id'] in placed:
                report.deleted_at_hub += 1
            else:
                ups.append(state_mod.Change(
                    0, t, env['id'], 'upsert', None, env['resource'],
                    state_mod.parse_time(env.get('updated_at')),
                    hash_=env.get('hash')))
    if ups:
        done, failed = send(site, ups)
        agent.state.record(state_mod.up_key(site.name), None, done, failed)
        report.sent, report.refused = len(done), len(failed)
    LOG.warning('spoke %(spoke)s: its own feed restarted at its head; '
                '%(cmp)d digest buckets compared, %(sent)d of its own '
                'resources sent to hub %(hub)s, %(bad)d refused (pending), '
                '%(held)d held differently at the hub (kept, see '
                'keystone-sync conflicts), %(gone)d deleted at the hub '
                '(left to the hub\'s feed)',
                {'spoke': site.name, 'cmp': report.compared,
                 'sent': report.sent, 'hub': agent.hub.name,
                 'bad': report.refused, 'held': report.held,
                 'gone': report.deleted_at_hub})
    return report


def _keep_hubs(agent, site, type_name, env, base) -> int:
    """Record that the hub's version of ``env`` is kept over the
    spoke's; 0 if the hub no longer has it (deleted meanwhile)."""
    hub = agent.hub.envelope(type_name, env['id'])
    if hub is None:
        return 0
    agent.state.add_conflict({
        'spoke': site.name, 'type': type_name, 'resource_id': env['id'],
        'strategy': STRATEGY, 'winner': conflicts_mod.HUB,
        'reason': HELD_REASON, 'base_hash': base,
        'hub_hash': hub.get('hash'), 'spoke_hash': env.get('hash'),
        'hub_changed_at': state_mod.parse_time(hub.get('updated_at')),
        'spoke_changed_at': state_mod.parse_time(env.get('updated_at')),
        'hub_version': json.dumps(hub['resource'], sort_keys=True),
        'spoke_version': json.dumps(env['resource'], sort_keys=True)})
    return 1
