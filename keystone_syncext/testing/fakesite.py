"""An in-memory site for the agent: the ``/v3/sync`` API, answered in
memory (:meth:`FakeSite.client`) or over real HTTP on loopback
(:meth:`FakeSite.serve`), with faults injected on request.

The agent's own :class:`keystone_syncext.agent.client.Site` talks to it:
in memory, its requests go straight to :meth:`FakeSite.answer` (no
socket; a ``drop`` is a refused connection, a ``hang`` the client's
timeout); served, through keystoneauth as it talks to a Keystone. Either
way what is under test is the whole agent: its retries, its waits, its
timeouts and its handling of every answer. Items and digest buckets hash
as the extension's (:mod:`keystone_syncext.common.protocol` for items,
:mod:`keystone_syncext.digests.hashing` for buckets).

The site keeps resources per type, a change feed (with a history that
can be lost: 410), names unique per type and domain (409 with
``existing_id``, as Keystone's bootstrap roles clash with the hub's),
conditional writes (412 to a stale ``if_match``), and tokens it can
refuse.

A fault (:class:`Fault`) makes the requests of one route answer something
else, a number of times: a status (401, 410, 500, ...), a 503 with a
``Retry-After``, a dropped connection (what a uWSGI ``--http-socket``
server does to a pooled one), or a hang no answer ends but the client's
own timeout.
"""

import contextlib
import dataclasses
import http.server
import json
import os.path
import re
import threading
import urllib.parse
import uuid

from keystoneauth1 import exceptions as ks_exc

from keystone_syncext.agent import client as client_mod
from keystone_syncext.common import protocol
from keystone_syncext.digests import hashing
from keystone_syncext.testing import fakesite_http

TYPES = ('role', 'project', 'user', 'application_credential')
LEAF = 64
ROUTES = ('capabilities', 'changes', 'listing', 'resource', 'digest',
          'digests', 'tombstones', 'batch', 'rekey')


@dataclasses.dataclass
class Fault:
    """What the next ``times`` requests of ``route`` get instead of their
    answer (``times`` None: every one): ``status`` (with ``retry_after``
    as a header), ``'drop'`` (the connection closed, no answer) or
    ``'hang'`` (no answer until the site stops)."""

    route: str
    status: int | str
    times: int | None = None
    retry_after: str | None = None


content_hash = protocol.content_hash


class FakeSite:
    """One site's data and API; ``serve()`` runs it on loopback."""

    def __init__(self, name: str, types=TYPES, leaf: int = LEAF,
                 common_prefix: bool = True, max_digests: int | None = 100,
                 rekey_types=('role', 'project', 'user')):
        self.name = name
        # Items a digest node lists itself once it holds no more.
        self.leaf = leaf
        # False: a server from before digests told their common prefix.
        self.common_prefix = common_prefix
        # None: a server from before POST /sync/digests.
        self.max_digests = max_digests
        self.rekey_types = list(rekey_types)
        # type -> ids deleted here (POST /sync/tombstones); None: a server
        # from before the route.
        self.tombstones: dict[str, set] | None = None
        self.tombstones_asked: list[tuple[str, list]] = []
        # The feed's history (a restore or a capture repair renews it),
        # cursors refused as from before a restore (410 ``rewound``),
        # and the cursors the feed was read from.
        self.history_id = uuid.uuid4().hex[:16]
        self.rewound: set[str] = set()
        self.since_read: list[str | None] = []
        # Capture incomplete (triggers missing): the feed answers 503.
        self.missing_triggers: list[str] = []
        # Digest nodes answered (a POST /sync/digests counts each).
        self.nodes = 0
        self.site_id = uuid.uuid4().hex
        self.types = list(types)
        self.data: dict[str, dict] = {t: {} for t in self.types}
        self.feed: list[dict] = []
        self.oldest = 0          # feed positions before this are lost
        self.faults: list[Fault] = []
        self.calls: dict[str, int] = {r: 0 for r in ROUTES}
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.tokens = 0
        # A batch holding one of these ids fails whole with a 500, as a
        # site that breaks on one item.
        self.breaks_on: set[str] = set()
        # The Keystone release it reports, and per type the fields that
        # release cannot store (refused as the extension refuses them);
        # every batch item's (type, id) as received.
        self.keystone_version = 'fake'
        self.unstorable: dict[str, set] = {}
        self.received: list[tuple[str, str]] = []
        # Set: batches are taken gzip-compressed, decompressing to at
        # most this many bytes; (bytes sent, bytes decompressed) of each.
        self.gzip_limit: int | None = None
        self.compressed: list[tuple[int, int]] = []
        self.port = None

    # -- data ------------------------------------------------------------

    def put(self, type_name, resource, origin=None) -> None:
        """Create or replace a resource, as a local change (feed entry)."""
        with self.lock:
            self._put(type_name, resource, origin)

    def _put(self, type_name, resource, origin):
        self.data[type_name][resource['id']] = resource
        self._log(type_name, resource['id'], 'upsert', origin)

    def _log(self, type_name, id_, op, origin):
        self.feed.append({'type': type_name, 'id': id_, 'op': op,
                          'origin': origin})

    def load(self, data: dict) -> None:
        """Hold ``data`` (type -> {id: resource}) as it is, with no feed
        entries (a site as its backup left it)."""
        with self.lock:
            for type_name, items in data.items():
                self.data.setdefault(type_name, {}).update(
                    json.loads(json.dumps(items)))

    def lose_history(self) -> None:
        """Prune the whole feed: a cursor before the head is gone."""
        with self.lock:
            self.oldest = len(self.feed)

    def head(self) -> str:
        return str(len(self.feed))

    def _clash(self, type_name, resource):
        name = resource.get('name')
        if name is None:
            return None
        for other in self.data[type_name].values():
            if other['id'] != resource['id'] and \
                    other.get('name') == name and \
                    other.get('domain_id') == resource.get('domain_id'):
                return other['id']
        return None

    def _env(self, type_name, id_):
        r = self.data[type_name][id_]
        return {'type': type_name, 'id': id_, 'hash': content_hash(r),
                'updated_at': None, 'resource': r}

    # -- faults ----------------------------------------------------------

    def fail(self, route, status, times=None, retry_after=None) -> Fault:
        """Inject a :class:`Fault`; returns it."""
        assert route in ROUTES, route
        fault = Fault(route, status, times, retry_after)
        with self.lock:
            self.faults.append(fault)
        return fault

    def _fault(self, route):
        with self.lock:
            self.calls[route] += 1
            for fault in self.faults:
                if fault.route == route and fault.times != 0:
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    # -- the API ---------------------------------------------------------

    def answer(self, method, path, query, body, headers):
        """(status, body dict, extra headers) for one request."""
        route, args = _route(method, path)
        if route is None:
            return 404, {'error': {'message': f'no route {path}'}}, {}
        if headers.get('X-Auth-Token') is None:
            return 401, {'error': {'message': 'no token'}}, {}
        fault = self._fault(route)
        if fault is not None:
            if fault.status in ('drop', 'hang'):
                return fault.status, None, {}
            extra = ({'Retry-After': fault.retry_after}
                     if fault.retry_after else {})
            return fault.status, {'error': {
                'message': f'injected {fault.status}',
                'head_cursor': self.head()}}, extra
        with self.lock:
            return getattr(self, '_' + route)(query, body, headers, *args)

    def _capabilities(self, query, body, headers):
        caps = {
            'protocol_versions': [1], 'protocol_version': 1,
            'site_id': self.site_id, 'keystone_version': self.keystone_version,
            'resource_types': self.types, 'head_cursor': self.head(),
            'oldest_valid_cursor': str(self.oldest), 'max_page_size': 1000,
            'rekey_types': self.rekey_types, 'history_id': self.history_id}
        if self.max_digests:
            caps['max_digests_per_request'] = self.max_digests
        if self.tombstones is not None:
            caps['tombstone_lookup'] = True
        if self.gzip_limit:
            caps['batch_content_encodings'] = ['gzip']
            caps['max_decompressed_batch_size'] = self.gzip_limit
        return 200, {'sync': caps}, {}

    def _changes(self, query, body, headers):
        self.since_read.append(query.get('since'))
        if self.missing_triggers:
            return 503, {'error': {
                'code': 503, 'capture_complete': False,
                'message': 'change capture at this site is incomplete',
                'missing_triggers': self.missing_triggers,
                'missing_columns': []}}, {}
        if query.get('since') in self.rewound:
            return 410, {'error': {'message': 'gone', 'rewound': True,
                                   'reconcile': True,
                                   'head_cursor': self.head()}}, {}
        since = int(query.get('since', 0))
        if since < self.oldest or since > len(self.feed):
            return 410, {'error': {'message': 'gone',
                                   'head_cursor': self.head()}}, {}
        types = query['types'].split(',') if query.get('types') else None
        limit = int(query.get('limit', 500))
        selected = [(pos, c) for pos, c in enumerate(self.feed[since:], since)
                    if not types or c['type'] in types]
        page, more = selected[:limit], len(selected) > limit
        out = []
        for pos, c in page:
            r = self.data[c['type']].get(c['id'])
            out.append(dict(c, cursor=str(pos + 1), changed_at=None,
                            hash=content_hash(r) if r else None,
                            resource=r if c['op'] == 'upsert' else None))
        nxt = page[-1][0] + 1 if more else len(self.feed)
        return 200, {'changes': out, 'next': str(nxt), 'head': self.head(),
                     'more': more}, {}

    def _listing(self, query, body, headers, type_name):
        prefix, marker = query.get('prefix', ''), query.get('marker')
        limit = int(query.get('limit', 1000))
        ids = sorted(i for i in self.data.get(type_name, {})
                     if i.startswith(prefix) and (not marker or i > marker))
        page = ids[:limit]
        return 200, {'items': [self._env(type_name, i) for i in page],
                     'next_marker': page[-1] if len(ids) > limit
                     else None}, {}

    def _resource(self, query, body, headers, type_name, id_):
        if id_ not in self.data.get(type_name, {}):
            return 404, {'error': {'message': 'not found'}}, {}
        return 200, self._env(type_name, id_), {}

    def _node(self, type_name, prefix):
        self.nodes += 1
        pairs = sorted((i, content_hash(r))
                       for i, r in self.data.get(type_name, {}).items()
                       if i.startswith(prefix))
        buckets: dict = {}
        for i, h in pairs:
            buckets.setdefault(i[:len(prefix) + 1], []).append((i, h))
        out = {'type': type_name, 'prefix': prefix, 'count': len(pairs),
               'hash': _bucket_hash(pairs),
               'buckets': [{'prefix': k, 'count': len(v),
                            'hash': _bucket_hash(v)}
                           for k, v in sorted(buckets.items())]}
        if pairs and self.common_prefix:
            out['common_prefix'] = os.path.commonprefix([pairs[0][0],
                                                         pairs[-1][0]])
        if len(pairs) <= self.leaf:
            out['items'] = [{'id': i, 'hash': h} for i, h in pairs]
        return out

    def _digest(self, query, body, headers, type_name):
        return 200, {'digest': self._node(type_name,
                                          query.get('prefix', ''))}, {}

    def _digests(self, query, body, headers):
        if not self.max_digests:
            return 404, {'error': {'message': 'The resource could not be '
                                   'found.'}}, {}
        return 200, {'digests': [self._node(d['type'], d['prefix'])
                                 for d in body['digests']]}, {}

    def _tombstones(self, query, body, headers):
        if self.tombstones is None:
            return 404, {'error': {'message': 'no route'}}, {}
        self.tombstones_asked.append((body['type'], sorted(body['ids'])))
        gone = self.tombstones.get(body['type'], set())
        return 200, {'tombstones': [{'id': i} for i in body['ids']
                                    if i in gone]}, {}

    def _batch(self, query, body, headers):
        origin = headers.get('OpenStack-Sync-Origin')
        if self.breaks_on & {i['id'] for i in body['items']}:
            return 500, {'error': {'message': 'internal error'}}, {}
        results = []
        for n, item in enumerate(body['items']):
            t, id_ = item['type'], item['id']
            self.received.append((t, id_))
            cannot = self.unstorable.get(t, set()) & set(
                item.get('resource') or {})
            if cannot:
                results.append({'index': n, 'status': 400, 'error': {
                    'code': 400, 'message': f'{t} {id_}: ' + (
                        protocol.UNSTORABLE.format(
                            release=self.keystone_version))
                    + ' ' + ', '.join(map(repr, sorted(cannot)))}})
                continue
            held = self.data[t].get(id_)
            current = content_hash(held) if held is not None else None
            want = (item.get('if_match') or '').strip('"') or None
            if want and want != current:
                results.append({'index': n, 'status': 412, 'error': {
                    'code': 412, 'current_hash': current,
                    'message': f'{t} {id_} is not the version given'}})
                continue
            if item['op'] == 'delete':
                if self.data[t].pop(id_, None) is None:
                    results.append({'index': n, 'status': 404})
                    continue
                self._log(t, id_, 'delete', origin)
                results.append({'index': n, 'status': 204})
                continue
            taken = self._clash(t, item['resource'])
            if taken:
                results.append({'index': n, 'status': 409, 'error': {
                    'code': 409, 'existing_id': taken,
                    'message': f'{t} name {item["resource"]["name"]!r} is '
                               f'already used by {t} {taken}'}})
                continue
            self._put(t, item['resource'], origin)
            results.append({'index': n, 'status': 200,
                            'hash': content_hash(item['resource'])})
        return 200, {'results': results}, {}

    def _rekey(self, query, body, headers):
        t, old, new = body['type'], body['from'], body['to']
        if old not in self.data[t]:
            return 404, {'error': {'message': f'{t} {old} not here'}}, {}
        if new in self.data[t]:
            return 409, {'error': {'message': 'taken',
                                   'existing_id': new}}, {}
        r = dict(self.data[t].pop(old), id=new)
        self._log(t, old, 'delete', headers.get('OpenStack-Sync-Origin'))
        self._put(t, r, headers.get('OpenStack-Sync-Origin'))
        return 200, {'rekey': {'type': t, 'from': old, 'to': new,
                               'references': {}}}, {}

    # -- serving ---------------------------------------------------------

    @contextlib.contextmanager
    def serve(self):
        """Run the site on a loopback port until the block ends."""
        httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                fakesite_http.handler(self))
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            yield self
        finally:
            self.released.set()      # hung requests end
            httpd.shutdown()
            httpd.server_close()

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}/v3'

    def cloud(self):
        """What :class:`keystone_syncext.agent.client.Site` takes as
        ``cloud``: a session with a token of this site's."""
        return fakesite_http.Cloud(self)

    @classmethod
    def holding(cls, items: dict, name: str = 'site', **kwargs):
        """A site holding ``items`` ((type, id) -> representation; no
        feed entries), of those types besides its own."""
        types = list(dict.fromkeys(list(kwargs.pop('types', TYPES)) +
                                   [t for t, _ in items]))
        site = cls(name, types=types, **kwargs)
        by_type: dict = {}
        for (type_name, id_), resource in items.items():
            by_type.setdefault(type_name, {})[id_] = resource
        site.load(by_type)
        return site

    def client(self, conf=None, **kwargs) -> client_mod.Site:
        """The agent's client of this site, answered in memory: its
        requests go to :meth:`answer` without a socket. With ``conf``,
        the agent's request bounds (:func:`client.from_conf`); else
        ``kwargs`` of :class:`client.Site`."""
        if conf is not None:
            site = client_mod.from_conf(conf, self.name, cloud=self.cloud())
        else:
            site = client_mod.Site(self.name, cloud=self.cloud(), **kwargs)
        site.adapter = _InMemory(self)
        return site


_bucket_hash = hashing.bucket_hash


_PATTERNS = [
    ('GET', r'/v3/sync', 'capabilities'),
    ('GET', r'/v3/sync/changes', 'changes'),
    ('GET', r'/v3/sync/resources/([^/]+)', 'listing'),
    ('GET', r'/v3/sync/resources/([^/]+)/(.+)', 'resource'),
    ('GET', r'/v3/sync/digest/([^/]+)', 'digest'),
    ('POST', r'/v3/sync/digests', 'digests'),
    ('POST', r'/v3/sync/tombstones', 'tombstones'),
    ('POST', r'/v3/sync/batch', 'batch'),
    ('POST', r'/v3/sync/rekey', 'rekey'),
]


def _route(method, path):
    for m, pattern, route in _PATTERNS:
        found = re.fullmatch(pattern, path)
        if m == method and found:
            return route, [urllib.parse.unquote(g) for g in found.groups()]
    return None, []


class _Response:
    """What the client reads of an answer."""

    def __init__(self, status, body, headers, sent):
        self.status_code = status
        self.content = json.dumps(body).encode() if body is not None \
            else b''
        self.headers = headers
        self.reason = ''
        self.request = type('Sent', (), {'body': sent})()

    def json(self):
        return json.loads(self.content)


class _InMemory:
    """In place of the keystoneauth adapter of a :class:`client.Site`:
    the request, serialised as over HTTP (nothing is shared between the
    agent and the site), answered by :meth:`FakeSite.answer`."""

    def __init__(self, site: FakeSite):
        self.site = site
        self.token = fakesite_http.Token(site)

    def request(self, path, method, json=None, params=None, headers=None,
                timeout=None, data=None, **kwargs):
        sent = _json_mod.dumps(json).encode() if json is not None else data
        body = None
        if sent is not None:
            body, refused = fakesite_http.decoded(
                self.site, sent, (headers or {}).get('Content-Encoding'))
            if refused:
                return _Response(*refused, {}, sent)
        url = urllib.parse.urlsplit('/v3' + path)
        query = {k: str(v) for k, v in (params or {}).items()}
        query.update(urllib.parse.parse_qsl(url.query))
        given = dict(headers or {})
        given['X-Auth-Token'] = self.token.get_token(None)
        status, out, extra = self.site.answer(method, url.path, query, body,
                                              given)
        if status == 'hang':
            if not self.site.released.wait(timeout):
                raise ks_exc.ConnectTimeout('no answer in time')
            status = 'drop'
        if status == 'drop':
            raise ks_exc.ConnectFailure('connection closed')
        return _Response(status, out, extra, sent)

    def invalidate(self):
        return self.token.invalidate()

    def get_user_id(self):
        return f'agent-at-{self.site.name}'


_json_mod = json
