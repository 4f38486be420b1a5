"""How every fault trial ends: ``Judge.converged`` runs the final
``keystone-sync run --once`` and counts, for each spoke, hub resources
lost and divergent and deleted ones left (all must be 0), then reads a
sample through Keystone's ordinary API everywhere."""

import random
import time

from keystone_syncext.tests.functional.agent import harness
from keystone_syncext.tests.functional.faults.world import SPOT
from keystone_syncext.tests.functional.faults.world import TYPES

_PATHS = {'project': '/projects/{}', 'role': '/roles/{}',
          'user': '/users/{}', 'group': '/groups/{}'}


class Judge:
    """Runs the final ``keystone-sync run --once`` and counts, for each
    spoke, hub resources lost and divergent and deleted ones left."""

    def __init__(self, world):
        self.world = world

    def local_ids(self, spoke) -> set:
        """Resources only the spoke may hold: the agent's own account and
        its system grant (never synced)."""
        sess = self.world.session(spoke)
        users = sess.get(f'{spoke.url}/users', params={
            'name': 'keystone-sync'}).json()['users']
        out = set()
        for user in users:
            out.add(user['id'])
            out.update(a for a in self.world.sync_items(
                spoke, 'role_assignment') if f':{user["id"]}:' in a)
        return out

    def counts(self, deleted=()) -> dict:
        w = self.world
        hub = {t: w.sync_items(w.hub, t) for t in TYPES}
        report = {'hub': sum(len(v) for v in hub.values())}
        for spoke in w.spokes:
            local = self.local_ids(spoke)
            lost = divergent = extra = stale = compared = 0
            odd = []
            for type_ in TYPES:
                have = w.sync_items(spoke, type_)
                for id_, digest in hub[type_].items():
                    compared += 1
                    if id_ not in have:
                        lost += 1
                    elif have[id_] != digest:
                        divergent += 1
                more = set(have) - set(hub[type_]) - local
                left = {i for t, i in deleted if t == type_ and i in have}
                extra += len(more)
                stale += len(left)
                odd += [(type_, i) for i in sorted(more | left)]
            report[spoke.name] = {'compared': compared, 'lost': lost,
                                  'divergent': divergent, 'extra': extra,
                                  'deleted_left': stale, 'first': odd[:5]}
        return report

    def converged(self, label, changes=None, rng=None):
        """The final ``--once``, then the counts (asserted 0), then a spot
        check through the ordinary API; returns the counts."""
        started = time.monotonic()
        self.world.sync()
        took = time.monotonic() - started
        deleted = changes.deleted if changes else set()
        report = self.counts(deleted)
        print(f'{label}: final --once {took:.1f}s; counts {report}')
        assert report['hub'] > 0
        for spoke in self.world.spokes:
            got = report[spoke.name]
            assert got['compared'] == report['hub'], got
            assert (got['lost'], got['divergent'], got['extra'],
                    got['deleted_left']) == (0, 0, 0, 0), (spoke.name, got)
        self.spot_check(changes, rng or random.Random(0))
        return report

    def spot_check(self, changes, rng):
        """A sample of live resources (and grants) reads the same at every
        spoke through Keystone's ordinary API, with the same content hash;
        a sample of deleted ones is 404 everywhere."""
        w = self.world
        made = {}
        for type_, path in _PATHS.items():
            ids = sorted(w.sync_items(w.hub, type_))
            if changes:
                ids = sorted(set(ids) & set(changes.alive[type_])) or ids
            for id_ in rng.sample(ids, min(SPOT, len(ids))):
                made[f'{type_} {id_}'] = (path.format(id_), type_, id_)
        for grant, user in (rng.sample(changes.grants,
                                       min(SPOT, len(changes.grants)))
                            if changes else []):
            _, project, _, _, _, role = grant.strip('/').split('/')
            made[f'grant {grant}'] = (grant, 'role_assignment',
                                      f'UserProject:{user}:{project}:'
                                      f'{role}:0')
        assert made
        harness.assert_same_everywhere(w, made)
        if changes and changes.deleted:
            gone = rng.sample(sorted(changes.deleted),
                              min(SPOT * 2, len(changes.deleted)))
            for site in w.every():
                for type_, id_ in gone:
                    status, _ = harness.ordinary(
                        w, site, _PATHS[type_].format(id_))
                    assert status == 404, (site.name, type_, id_, status)

