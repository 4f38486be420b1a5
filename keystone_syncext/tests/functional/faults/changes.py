"""Changes at the hub while the fault suite breaks things: bulk ones
through the hub's batch route, others through Keystone's ordinary API
(``Changes``)."""

import time

from keystone_syncext.tests.functional.agent import harness
from keystone_syncext.tests.functional.faults.world import UNANSWERED
from keystone_syncext.tests.functional.faults.world import hex_id


def _project(id_, description=''):
    return {'id': id_, 'name': f'f-{id_}', 'description': description,
            'enabled': True, 'domain_id': 'default',
            'parent_id': 'default', 'tags': [], 'options': {}, 'extra': {}}


def _role(id_, description=None):
    return {'id': id_, 'name': f'f-{id_}', 'domain_id': None,
            'description': description, 'options': {}, 'extra': {}}


class Changes:
    """Changes at the hub: bulk ones through its batch route, others
    through Keystone's ordinary API; remembers what exists and what was
    deleted, so that the judge can look for both."""

    BUILDERS = {'project': _project, 'role': _role}

    def __init__(self, world, rng):
        self.world = world
        self.rng = rng
        self.sess = world.session(world.hub)
        self.alive = {'project': [], 'role': [], 'user': [], 'group': []}
        self.deleted = set()   # (type, id)
        self.grants = []       # ordinary paths of grants made
        self.counts = {'create': 0, 'update': 0, 'delete': 0}
        self.retried = 0       # batches the hub failed and got again
        self._base = None

    def call(self, method, path, **kw):
        resp = self.sess.request(self.world.hub.url + path, method,
                                 raise_exc=False, timeout=60, **kw)
        assert resp.status_code < 300, (method, path, resp.text[:500])
        return resp.json() if resp.content else None

    def batch(self, items):
        for n in range(0, len(items), 200):
            results = self._batch(items[n:n + 200])
            bad = [r for r in results if r['status'] >= 300]
            assert not bad, bad[:3]

    def _batch(self, items, attempts=3):
        """One batch at the hub, tried again (it is idempotent) when the
        hub fails it: an SQLite hub on a loaded machine may answer 503
        (database is locked, with Retry-After) to a write."""
        for attempt in range(attempts):
            try:
                return self.call('POST', '/sync/batch',
                                 json={'items': items})['results']
            except (AssertionError,) + UNANSWERED:
                if attempt == attempts - 1:
                    raise
                self.retried += 1
                time.sleep(1)

    def bulk(self, count: int) -> None:
        """``count`` new projects and roles (half each)."""
        items = []
        for i in range(count):
            type_ = ('project', 'role')[i % 2]
            id_ = hex_id()
            items.append({'op': 'upsert', 'type': type_, 'id': id_,
                          'resource': self.BUILDERS[type_](id_)})
            self.alive[type_].append(id_)
        self.batch(items)
        self.counts['create'] += count

    def base(self):
        """A project and a role for grants, never deleted."""
        if self._base is None:
            p = self.call('POST', '/projects', json={'project': {
                'name': f'fb-{hex_id()[:8]}', 'domain_id': 'default'}})
            r = self.call('POST', '/roles', json={'role': {
                'name': f'fb-{hex_id()[:8]}'}})
            self._base = (p['project']['id'], r['role']['id'])
        return self._base

    def step(self, size: int = 40, identity: bool = True) -> None:
        """A round of live changes: bulk creates, updates and deletes of
        earlier projects and roles (the seed's among them), a user made
        with a password, in a new or earlier group, with a grant; now and
        then an update of a user and a delete of an earlier user and
        group."""
        rng, items = self.rng, []
        for type_ in ('project', 'role'):
            pool = self.alive[type_]
            # Deletes first: an id deleted and upserted in one batch would
            # be deleted, then made again.
            for _ in range(min(len(pool) // 2, size // 8)):
                id_ = pool.pop(rng.randrange(len(pool)))
                items.append({'op': 'delete', 'type': type_, 'id': id_})
                self.deleted.add((type_, id_))
                self.counts['delete'] += 1
            for id_ in rng.sample(pool, min(len(pool), size // 4)):
                items.append({'op': 'upsert', 'type': type_, 'id': id_,
                              'resource': self.BUILDERS[type_](
                                  id_, f'changed {hex_id()[:6]}')})
                self.counts['update'] += 1
        self.batch(items)
        self.bulk(size // 2)
        if identity:
            self._identity_step()

    def _identity_step(self):
        rng = self.rng
        project, role = self.base()
        tag = hex_id()[:8]
        password = harness.remember_secret(f'pw-{tag}-{hex_id()[:8]}',
                                       'password of a user')
        user = self.call('POST', '/users', json={'user': {
            'name': f'fu-{tag}', 'domain_id': 'default',
            'password': password}})['user']['id']
        if not self.alive['group'] or rng.random() < 0.5:
            group = self.call('POST', '/groups', json={'group': {
                'name': f'fg-{tag}', 'domain_id': 'default'}})
            self.alive['group'].append(group['group']['id'])
            self.counts['create'] += 1
        group = rng.choice(self.alive['group'])
        self.call('PUT', f'/groups/{group}/users/{user}')
        grant = f'/projects/{project}/users/{user}/roles/{role}'
        self.call('PUT', grant)
        self.alive['user'].append(user)
        self.grants.append((grant, user))
        self.counts['create'] += 3
        if len(self.alive['user']) > 1 and rng.random() < 0.5:
            victim = rng.choice(self.alive['user'][:-1])
            self.call('PATCH', f'/users/{victim}', json={'user': {
                'email': f'{tag}@example.com'}})
            self.counts['update'] += 1
        if len(self.alive['user']) > 2 and rng.random() < 0.4:
            victim = self.alive['user'].pop(
                rng.randrange(len(self.alive['user']) - 1))
            self.call('DELETE', f'/users/{victim}')
            self.deleted.add(('user', victim))
            self.grants = [g for g in self.grants if g[1] != victim]
            self.counts['delete'] += 1
        if len(self.alive['group']) > 2 and rng.random() < 0.3:
            victim = self.alive['group'].pop(0)
            self.call('DELETE', f'/groups/{victim}')
            self.deleted.add(('group', victim))
            self.counts['delete'] += 1

    def probe(self) -> str:
        """One new role through the ordinary API; its path, to watch
        for at the spokes."""
        role = self.call('POST', '/roles', json={'role': {
            'name': f'probe-{hex_id()[:10]}'}})['role']['id']
        self.alive['role'].append(role)
        self.counts['create'] += 1
        return f'/roles/{role}'

