"""A concurrent load on a real Keystone site: Keystone's own writes through
its v3 API, and what a sync agent reads from ``/v3/sync`` beside them.

Used by ``bench/lock_contention.py`` and the lock-contention test
(``tests/functional/api/test_api_busy.py``): both count the answers, and a
5xx of Keystone's own routes is what the extension must not cause.
"""

import collections
import threading
import time
import uuid

import requests


class Tally:
    """Thread-safe counts of responses."""

    def __init__(self):
        self.lock = threading.Lock()
        self.status = collections.Counter()
        self.errors = collections.Counter()
        self.routes = collections.Counter()   # (route, status): count

    def send(self, http, method: str, route: str, url: str, **kw):
        """One request through ``http`` (a requests session), counted; a
        connection error counts as status 0 and returns None."""
        try:
            resp = http.request(method, url, timeout=60, **kw)
        except requests.RequestException as e:
            with self.lock:
                self.status[0] += 1
                self.errors[f'{route} 0: {type(e).__name__}'] += 1
            return None
        return self.add(route, resp)

    def add(self, route: str, resp: requests.Response) -> requests.Response:
        with self.lock:
            self.status[resp.status_code] += 1
            self.routes[(route, resp.status_code)] += 1
            if resp.status_code >= 500:
                try:
                    message = resp.json()['error']['message']
                except (ValueError, KeyError, TypeError):
                    message = resp.text
                self.errors[f'{route} {resp.status_code}: '
                            f'{message[:60]}'] += 1
        return resp

    def server_errors(self, sync: bool) -> int:
        """5xx answers of the /v3/sync routes (``sync``) or of
        Keystone's own."""
        return sum(n for (route, status), n in self.routes.items()
                   if status >= 500 and route.startswith('GET /sync') == sync)

    def summary(self) -> dict:
        return {'requests': sum(self.status.values()),
                'status': {str(k): v for k, v in sorted(self.status.items())},
                'errors_5xx': sum(n for k, n in self.status.items()
                                  if k >= 500),
                'errors': dict(self.errors.most_common())}


def _session(token: str | None = None) -> requests.Session:
    # A new connection per request: uWSGI's http-socket closes each one
    # after its answer without saying so, and a reused one would show up
    # here as a connection error that is the client's, not the site's.
    http = requests.Session()
    http.headers['Connection'] = 'close'
    if token:
        http.headers['X-Auth-Token'] = token
    return http


def _create(call, tag: str, password: str) -> dict[str, str]:
    """Create a project, a user and a group; the ids of those made."""
    bodies = {'project': {}, 'user': {'password': password}, 'group': {}}
    ids = {}
    for key, body in bodies.items():
        resp = call('POST', f'POST /{key}s', f'/{key}s', json={
            key: {'name': f'lc-{tag}', 'domain_id': 'default', **body}})
        if resp is not None and resp.status_code == 201:
            ids[key] = resp.json()[key]['id']
    return ids


def _use_user(call, login, ids: dict[str, str], password: str) -> None:
    """Log the new user in, add it to the group, change its password
    (as itself)."""
    login('POST /auth/tokens', '/auth/tokens', json={'auth': {
        'identity': {'methods': ['password'], 'password': {
            'user': {'id': ids['user'], 'password': password}}},
    }})
    if 'group' in ids:
        call('PUT', 'PUT /groups/users',
             f'/groups/{ids["group"]}/users/{ids["user"]}')
    login('POST /users/password', f'/users/{ids["user"]}/password',
          json={'user': {'password': uuid.uuid4().hex,
                         'original_password': password}})


def writer(site, token, tally, stop):
    """One thread of Keystone API writes until ``stop`` is set."""
    http = _session(token)
    anonymous = _session()
    url = site.url

    def call(method, route, path, **kw):
        return tally.send(http, method, route, url + path, **kw)

    def login(route, path, **kw):
        return tally.send(anonymous, 'POST', route, url + path, **kw)

    while not stop.is_set():
        tag = uuid.uuid4().hex[:10]
        password = uuid.uuid4().hex
        ids = _create(call, tag, password)
        for key in ('project', 'group'):
            if key in ids:
                call('PATCH', f'PATCH /{key}s', f'/{key}s/{ids[key]}',
                     json={key: {'description': tag}})
        if 'user' in ids:
            _use_user(call, login, ids, password)
        for key in ('user', 'group', 'project'):
            if key in ids:
                call('DELETE', f'DELETE /{key}s', f'/{key}s/{ids[key]}')


def reader(site, token, tally, stop):
    """What an eager agent or a monitor asks of a site, back to back:
    capabilities, status and the feed from the head."""
    http = _session(token)
    while not stop.is_set():
        resp = tally.send(http, 'GET', 'GET /sync', site.url + '/sync')
        if resp is None or resp.status_code != 200:
            time.sleep(0.1)
            continue
        head = resp.json()['sync']['head_cursor']
        tally.send(http, 'GET', 'GET /sync/status', site.url + '/sync/status')
        tally.send(http, 'GET', 'GET /sync/changes',
                   site.url + '/sync/changes',
                   params={'since': head, 'limit': '100'})


def run_load(site, seconds: float, writers: int, readers: int) -> Tally:
    """Run the load against a started site; returns the tally."""
    token = site.admin_session().get_token()
    tally, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=writer,
                                args=(site, token, tally, stop))
               for _ in range(writers)]
    threads += [threading.Thread(target=reader,
                                 args=(site, token, tally, stop))
                for _ in range(readers)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    return tally
