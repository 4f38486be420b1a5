"""One Keystone site as the agent sees it: its ``/v3/sync`` API.

A site is a cloud in the user's ``clouds.yaml`` (openstacksdk's loader:
``OS_CLIENT_CONFIG_FILE``, TLS, interfaces, regions). Requests go through
a keystoneauth1 session: system-scoped admin token, re-authenticated on a
401, with the pass's request id and our User-Agent (passes.py).

Every request is bounded, and outlives what a real site does to it:

- a request that went out on a kept connection the server had closed
  meanwhile (uWSGI's ``--http-socket`` closes each one after its response
  without saying so; the reset or the empty answer comes at once) is sent
  again at once on a new connection, once per send
  (:class:`retries.ClosedConnectionRetry`);
- a refused connection, a timeout, or a closed connection again, is
  retried on a fresh connection after keystoneauth's delays
  (``connect_retries``: 0.5 s, doubling), for every request; a re-key
  that applied before its answer was lost answers 404 the second time,
  and ``join`` recognises it as done;
- a 503 (the site's database is busy; nothing was applied) is waited out
  as its ``Retry-After`` says, each wait capped at ``busy_wait_max``, at
  most ``busy_retries`` times (tenacity: :mod:`retries`);
- a 401 is retried once more, a second later, with a fresh token: a token
  the site revoked (writing the agent's own user there does) is refused,
  and so is one issued in the same second (Keystone's revocation has
  one-second resolution), which is what keystoneauth's own immediate
  re-authentication gets.

Request and response bodies carry password hashes, so keystoneauth's own
request logging is switched off for them (``log=False``): only the method,
path, status and time taken are logged here.
"""

import contextlib
import logging
import threading
import time
import urllib.parse

from keystoneauth1 import adapter
from keystoneauth1 import exceptions as ks_exc

from keystone_syncext.agent import batch_body
from keystone_syncext.agent import passes
from keystone_syncext.agent import retries
from keystone_syncext.common import protocol

LOG = logging.getLogger(__name__)

ORIGIN_HEADER = protocol.ORIGIN_HEADER
# The wire protocol versions this agent speaks (common.protocol says how
# they are negotiated).
PROTOCOL_VERSIONS = protocol.PROTOCOL_VERSIONS


class SiteError(Exception):
    """A site did not answer as the protocol says; ``transient`` errors
    (unreachable, 5xx, timeouts) are worth retrying as they are."""

    def __init__(self, site, message, status=None, transient=True,
                 body=None):
        super().__init__(f'{site}: {message}')
        self.site = site
        self.status = status
        self.transient = transient
        self.body = body or {}


class Gone(SiteError):
    """The feed no longer holds the history after our cursor."""


class CaptureIncomplete(SiteError):
    """The site's change capture is missing pieces (503 with
    ``capture_complete: false``): its feed and digests are refused until
    an operator runs ``keystone-syncext-manage db_sync`` there. Not
    transient: waiting does not fix it."""

    def __init__(self, site, body):
        missing = (body.get('missing_triggers') or []) + (
            body.get('missing_columns') or [])
        super().__init__(
            site, 'change capture is incomplete there, so its changes are '
            'going unrecorded (missing: %s): run "keystone-syncext-manage '
            'db_sync" at that site' % (', '.join(missing) or 'unknown'),
            status=503, transient=False, body=body)


class Meter:
    """Bytes of request and response bodies of the requests one thread
    makes while the meter is on (see :func:`metered`)."""

    def __init__(self):
        self.bytes = 0
        self.requests = 0


_meters = threading.local()


@contextlib.contextmanager
def metered():
    """Count the body bytes of every request this thread makes, at any
    site, until the block ends: a reconcile reports its own transfer even
    while other threads use the same sites."""
    meter = Meter()
    outer = getattr(_meters, 'stack', None)
    _meters.stack = (outer or []) + [meter]
    try:
        yield meter
    finally:
        _meters.stack = outer


def load_cloud(name: str):
    """The ``clouds.yaml`` entry ``name`` (an openstacksdk CloudRegion)."""
    from openstack import config as os_config
    from openstack import exceptions as os_exc
    try:
        return os_config.OpenStackConfig().get_one(cloud=name)
    except os_exc.ConfigException as e:
        raise SystemExit(f'keystone-sync: cloud {name!r}: {e}') from None


# Seconds before a 401 is retried with a fresh token (retries.py).
REAUTH_DELAY = retries.REAUTH_DELAY
# Connection retries and the delay keystoneauth starts them with (it then
# doubles): the figures the bound of a request in doc/agent.md uses.
CONNECT_RETRY_DELAY = 0.5


# Open connections kept per address: requests' default, enough for a spoke
# (its writer, its upward long-poll, a reconcile).
DEFAULT_CONNECTIONS = 10


def keep_connections(session, connections: int) -> None:
    """Let ``session`` (keystoneauth) keep ``connections`` open to one
    address, so that as many threads can use the site at once without
    opening and dropping a connection each time (urllib3's "Connection
    pool is full, discarding connection"). The mounted adapters are kept,
    with their TCP keepalive and TLS settings; only their pools grow."""
    for mounted in session.session.adapters.values():
        mounted.init_poolmanager(connections, connections)


def retry_authentication(session, connect_retries: int) -> None:
    """Let the requests ``session``'s auth plugin makes itself (a token
    at start and after a 401) be retried on a fresh connection too.

    Those go through the session with its own default, which
    openstacksdk's loader leaves at 0, not through our adapter: a token
    request sent on a pooled connection that the site had closed failed
    the first time, so a re-key that revoked the agent's token, followed
    by the re-authentication, could end ``join``. keystoneauth has no
    public setter for that default."""
    if getattr(session, '_connect_retries', None) is not None:
        session._connect_retries = max(session._connect_retries,
                                       connect_retries)


class Site:
    """The ``/v3/sync`` API of the cloud ``name``.

    :param connections: threads that may use the site at once (the hub:
        one per spoke and then some), the connections kept open to it.
    """

    def __init__(self, name: str, timeout: float = 120.0, cloud=None,
                 connections: int = DEFAULT_CONNECTIONS,
                 connect_retries: int = 0, busy_retries: int = 0,
                 busy_wait_max: float = 60.0, compress_batches: bool = True):
        self.name = name
        self.timeout = timeout
        self.busy_retries = busy_retries
        self.busy_wait_max = busy_wait_max
        cloud = cloud or load_cloud(name)
        session = passes.named(cloud.get_session())
        if connections > DEFAULT_CONNECTIONS:
            keep_connections(session, connections)
        retry_authentication(session, connect_retries)
        retries.resend_on_closed(session, connect_retries)
        self.adapter = adapter.Adapter(
            session=session,
            service_type='identity',
            interface=cloud.get_interface('identity'),
            region_name=cloud.get_region_name('identity'),
            endpoint_override=cloud.get_endpoint('identity'),
            version=(3, 0), connect_retries=connect_retries)
        self.site_id = self.protocol_version = self.keystone_version = None
        # Nodes one POST /sync/digests may carry; None at a site that
        # predates the route (or before its capabilities were read).
        self.max_digests = None
        # Whether POST /sync/tombstones is served (from the capabilities).
        self.tombstone_lookup = False
        # Ids one request may carry (the site's max_page_size).
        self.max_page_size = 1000
        # How batches go to it (gzip where it takes them).
        self.compression = batch_body.Compression(compress_batches)
        # Body bytes sent and received, requests made: for the figures
        # of a reconcile or a benchmark.
        self.bytes_transferred = 0
        self.requests = 0
        self._count_lock = threading.Lock()

    def __repr__(self):
        return f'Site({self.name!r})'

    def user_id(self) -> str | None:
        """The id of the account the agent logs in with here."""
        try:
            return self.adapter.get_user_id()
        except ks_exc.Unauthorized:
            raise self._refused_login() from None
        except ks_exc.ClientException as e:
            raise SiteError(self.name, f'could not log in '
                            f'({type(e).__name__})') from None

    def _refused_login(self) -> SiteError:
        return SiteError(self.name, 'authentication failed: check the '
                         'credentials in clouds.yaml', status=401,
                         transient=False)

    # -- plumbing -----------------------------------------------------

    def _request(self, method, path, json_body=None, params=None,
                 headers=None, timeout=None, ok=(200,), data=None):
        resp = self._answer(method, path, json_body, params, headers,
                            timeout or self.timeout, data)
        if resp.status_code in ok:
            return resp.json() if resp.content else None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        err = body.get('error', {}) if isinstance(body, dict) else {}
        message = (err.get('message') or resp.reason or '')[:300]
        if resp.status_code == 410:
            raise Gone(self.name, message, status=410, transient=False,
                       body=err)
        if resp.status_code == 503 and err.get('capture_complete') is False:
            raise CaptureIncomplete(self.name, err)
        transient = resp.status_code >= 500 or resp.status_code in (408,
                                                                    429)
        raise SiteError(self.name, f'{method} {path}: {resp.status_code} '
                        f'{message}', status=resp.status_code,
                        transient=transient, body=err)

    def _answer(self, method, path, json_body, params, headers, timeout,
                data=None):
        """The site's answer once the 503s are waited out (bounded) and a
        401 retried once with a fresh token (:mod:`retries`). ``data``:
        a body already encoded, in place of ``json_body``."""
        return retries.answer(
            self, method, path, LOG,
            lambda: self._send(method, path, json_body, params, headers,
                               timeout, data))

    def _send(self, method, path, json_body, params, headers, timeout,
              data=None):
        start = time.monotonic()
        extra = {} if data is None else {'data': data}
        try:
            resp = self.adapter.request(
                path, method, json=json_body, params=params, **extra,
                headers=headers, raise_exc=False, log=False,
                timeout=timeout, global_request_id=passes.pass_id())
        except ks_exc.ConnectTimeout:
            raise SiteError(self.name, f'{method} {path}: no answer within '
                            f'{timeout:.0f} s') from None
        except ks_exc.ConnectFailure as e:
            raise SiteError(self.name, f'unreachable ({type(e).__name__})') \
                from None
        except ks_exc.RetriableConnectionFailure as e:
            raise SiteError(self.name, f'connection failed '
                            f'({type(e).__name__})') from None
        except ks_exc.Unauthorized:
            raise self._refused_login() from None
        except ks_exc.ClientException as e:
            raise SiteError(self.name, f'{type(e).__name__}: '
                            f'{str(e)[:200]}') from None
        LOG.debug('%s %s %s -> %s in %.0f ms', self.name, method, path,
                  resp.status_code, (time.monotonic() - start) * 1000)
        self._count(resp)
        return resp

    def _count(self, resp) -> None:
        sent = getattr(getattr(resp, 'request', None), 'body', None)
        n = len(resp.content or b'') + (len(sent) if sent else 0)
        with self._count_lock:
            self.bytes_transferred += n
            self.requests += 1
        for meter in getattr(_meters, 'stack', None) or ():
            meter.bytes += n
            meter.requests += 1

    # -- the protocol -------------------------------------------------

    def capabilities(self, speaks=PROTOCOL_VERSIONS,
                     speaker='this agent') -> dict:
        """``GET /v3/sync``, choosing the protocol version: the highest
        of the site's that ``speaker`` also ``speaks`` (this agent, or this
        agent and the hub, whose representations a spoke receives).
        Non-transient when there is none: asking again will not help,
        upgrading one side will."""
        caps = self._request('GET', '/sync')['sync']
        self.protocol_version = negotiate(self.name, caps, speaks, speaker)
        self.site_id = caps['site_id']
        self.keystone_version = caps.get('keystone_version')
        most = caps.get('max_digests_per_request')
        self.max_digests = (most if isinstance(most, int)
                            and not isinstance(most, bool) and most > 0
                            else None)
        self.tombstone_lookup = caps.get('tombstone_lookup') is True
        size = caps.get('max_page_size')
        self.max_page_size = (size if isinstance(size, int)
                              and not isinstance(size, bool) and size > 0
                              else 1000)
        self.compression.read(caps)
        return caps

    def changes(self, since=None, limit=500, wait=0, types=None) -> dict:
        params = {'limit': limit}
        if since:
            params['since'] = since
        if types:
            params['types'] = ','.join(types)
        if wait:
            params['wait'] = wait
        return self._request('GET', '/sync/changes', params=params,
                             timeout=self.timeout + wait)

    def listing(self, type_name, marker=None, limit=1000) -> dict:
        params = {'limit': limit}
        if marker:
            params['marker'] = marker
        return self._request('GET', f'/sync/resources/{type_name}',
                             params=params)

    def resource(self, type_name, id_) -> dict | None:
        """The representation of one resource, or None when absent."""
        item = self.envelope(type_name, id_)
        return item['resource'] if item is not None else None

    def envelope(self, type_name, id_) -> dict | None:
        """One resource with its content hash (``resource``, ``hash``),
        or None when absent."""
        try:
            return self._request(
                'GET', f'/sync/resources/{type_name}/'
                f'{urllib.parse.quote(id_, safe=":")}')
        except SiteError as e:
            if e.status == 404:
                return None
            raise

    def listing_prefix(self, type_name, prefix, marker=None,
                       limit=1000) -> dict:
        params = {'limit': limit, 'prefix': prefix}
        if marker:
            params['marker'] = marker
        return self._request('GET', f'/sync/resources/{type_name}',
                             params=params)

    def digest(self, type_name, prefix='') -> dict:
        return self._request('GET', f'/sync/digest/{type_name}',
                             params={'prefix': prefix})['digest']

    def digest_many(self, nodes) -> list[dict]:
        """The digests of many ``(type, prefix)`` nodes in one request
        (``POST /sync/digests``, at sites whose capabilities give
        ``max_digests_per_request``), in the order given."""
        nodes = list(nodes)
        got = self._request('POST', '/sync/digests', json_body={
            'digests': [{'type': t, 'prefix': p} for t, p in nodes]},
        )['digests']
        if len(got) != len(nodes):
            raise SiteError(self.name, f'POST /sync/digests: asked for '
                            f'{len(nodes)} digests, got {len(got)}',
                            transient=False)
        return got

    def deleted(self, type_name, ids) -> set[str]:
        """Which of ``ids`` the site deleted and still keeps a tombstone
        of (``POST /sync/tombstones``, asked in pages of the site's
        ``max_page_size``)."""
        ids, found = sorted(set(ids)), set()
        step = self.max_page_size
        for start in range(0, len(ids), step):
            got = self._request('POST', '/sync/tombstones', json_body={
                'type': type_name, 'ids': ids[start:start + step]})
            found |= {t['id'] for t in got['tombstones']}
        return found

    def batch(self, items, origin=None, headers=(),
              max_bytes=None) -> list[dict]:
        """``POST /sync/batch`` of ``items``: the results. To a site that
        takes compressed batches the body goes gzip-compressed, and a
        batch of several items whose compressed body is over
        ``max_bytes`` is refused here, unsent, as the site would refuse
        it (413): the writer sends it in halves."""
        headers = dict(headers, **({ORIGIN_HEADER: origin} if origin else {}))
        if not self.compression.used:
            return self._request('POST', '/sync/batch',
                                 json_body={'items': items},
                                 headers=headers or None)['results']
        packed, encoding = self.compression.pack(items)
        if max_bytes and len(items) > 1 and len(packed) > max_bytes:
            raise SiteError(self.name, f'POST /sync/batch: {len(items)} '
                            f'items compress to {len(packed)} bytes, over '
                            f'batch_bytes ({max_bytes}); not sent',
                            status=413, transient=False)
        headers['Content-Type'] = 'application/json'
        if encoding:
            headers['Content-Encoding'] = encoding
        return self._request('POST', '/sync/batch', data=packed,
                             headers=headers)['results']

    def rekey(self, type_name, old_id, new_id, origin=None) -> dict:
        headers = {ORIGIN_HEADER: origin} if origin else None
        # Sent again on a fresh connection when one fails, like every
        # request: a site whose uWSGI closes each connection after its
        # answer resets a reused one before reading the request, and
        # join then stopped after every few re-keys. A re-key that did
        # apply, its answer lost, answers 404 the second time, and join
        # recognises it as done (join._applied_before).
        return self._request('POST', '/sync/rekey',
                             json_body={'type': type_name, 'from': old_id,
                                        'to': new_id},
                             headers=headers)['rekey']


def from_conf(conf, name: str, connections: int = DEFAULT_CONNECTIONS,
              cloud=None) -> Site:
    """Cloud ``name`` with the request bounds of the agent's options
    (``request_timeout``, ``connect_retries``, ``busy_retries``,
    ``busy_wait_max``)."""
    return Site(name, conf.request_timeout, cloud=cloud,
                connections=connections,
                connect_retries=conf.connect_retries,
                busy_retries=conf.busy_retries,
                busy_wait_max=conf.busy_wait_max,
                compress_batches=conf.compress_batches)


def every_resource(site, type_name: str) -> list[dict]:
    """Every representation of ``type_name`` at ``site``, all pages of
    its listing (for join's plan and its privilege check)."""
    out, marker = [], None
    while True:
        page = site.listing(type_name, marker=marker)
        out += [i['resource'] for i in page['items']]
        marker = page.get('next_marker')
        if not marker:
            return out


def advertised_versions(caps: dict) -> list[int]:
    """The protocol versions a capabilities document offers: its
    ``protocol_versions`` list, or the single ``protocol_version`` of an
    extension that predates the list."""
    versions = caps.get('protocol_versions')
    if versions is None and caps.get('protocol_version') is not None:
        versions = [caps['protocol_version']]
    return sorted({v for v in versions or () if isinstance(v, int)})


def negotiate(site: str, caps: dict, speaks=PROTOCOL_VERSIONS,
              speaker: str = 'this agent') -> int:
    """The highest protocol version both ``caps`` and ``speaks`` hold;
    a non-transient :class:`SiteError` naming both lists when there is
    none."""
    theirs = advertised_versions(caps)
    common = set(theirs) & set(speaks)
    if not common:
        raise SiteError(site, 'no sync protocol version in common: the site '
                        f'speaks {_versions(theirs)}, {speaker} '
                        f'{_versions(speaks)}; upgrade the side that is '
                        'behind (extension or agent)', transient=False)
    return max(common)


def _versions(versions) -> str:
    return ', '.join(str(v) for v in sorted(versions)) or 'none'
