"""One Keystone site as the agent sees it: its ``/v3/sync`` API.

A site is a cloud in the user's ``clouds.yaml``, loaded by openstacksdk's
config loader (``OS_CLIENT_CONFIG_FILE``, TLS options, interfaces and
regions as every OpenStack client honours them). Requests go through a
keystoneauth1 session whose credentials must give a system-scoped admin
token; keystoneauth re-authenticates on a 401 by itself.

Request and response bodies carry password hashes, so keystoneauth's own
request logging is switched off for them (``log=False``): only the method,
path, status and time taken are logged here.
"""

import contextlib
import json
import logging
import threading
import time
import urllib.parse

from keystoneauth1 import adapter
from keystoneauth1 import exceptions as ks_exc

LOG = logging.getLogger(__name__)

ORIGIN_HEADER = 'OpenStack-Sync-Origin'
# The wire protocol versions this agent speaks. A site advertises its own
# in ``GET /v3/sync``; the agent uses the highest version both speak, so an
# extension one release ahead or behind keeps syncing as long as the two
# still share a version.
PROTOCOL_VERSIONS = (1,)


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


class Site:
    """The ``/v3/sync`` API of the cloud ``name``.

    :param connections: threads that may use the site at once (the hub:
        one per spoke and then some), the connections kept open to it.
    """

    def __init__(self, name: str, timeout: float = 120.0, cloud=None,
                 connections: int = DEFAULT_CONNECTIONS):
        self.name = name
        self.timeout = timeout
        cloud = cloud or load_cloud(name)
        session = cloud.get_session()
        if connections > DEFAULT_CONNECTIONS:
            keep_connections(session, connections)
        self.adapter = adapter.Adapter(
            session=session,
            service_type='identity',
            interface=cloud.get_interface('identity'),
            region_name=cloud.get_region_name('identity'),
            endpoint_override=cloud.get_endpoint('identity'),
            version=(3, 0))
        self.site_id = None
        self.protocol_version = None
        # Nodes one POST /sync/digests may carry; None at a site that
        # predates the route (or before its capabilities were read).
        self.max_digests = None
        # Body bytes sent and received, requests made: for the figures
        # of a reconcile or a benchmark.
        self.bytes_transferred = 0
        self.requests = 0
        self._count_lock = threading.Lock()

    def __repr__(self):
        return f'Site({self.name!r})'

    def user_id(self) -> str | None:
        """The id of the account the agent logs in with here."""
        return self.adapter.get_user_id()

    # -- plumbing -----------------------------------------------------

    def _request(self, method, path, json_body=None, params=None,
                 headers=None, timeout=None, ok=(200,)):
        start = time.monotonic()
        try:
            resp = self.adapter.request(
                path, method, json=json_body, params=params,
                headers=headers, raise_exc=False, log=False,
                timeout=timeout or self.timeout)
        except ks_exc.ConnectFailure as e:
            raise SiteError(self.name, f'unreachable ({type(e).__name__})') \
                from None
        except ks_exc.RetriableConnectionFailure as e:
            raise SiteError(self.name, f'connection failed '
                            f'({type(e).__name__})') from None
        except ks_exc.Unauthorized:
            raise SiteError(self.name, 'authentication failed: check the '
                            'credentials in clouds.yaml', status=401,
                            transient=False) from None
        except ks_exc.ClientException as e:
            raise SiteError(self.name, f'{type(e).__name__}: '
                            f'{str(e)[:200]}') from None
        LOG.debug('%s %s %s -> %s in %.0f ms', self.name, method, path,
                  resp.status_code, (time.monotonic() - start) * 1000)
        self._count(resp)
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
        transient = resp.status_code >= 500 or resp.status_code in (408,
                                                                    429)
        raise SiteError(self.name, f'{method} {path}: {resp.status_code} '
                        f'{message}', status=resp.status_code,
                        transient=transient, body=err)

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
        most = caps.get('max_digests_per_request')
        self.max_digests = (most if isinstance(most, int)
                            and not isinstance(most, bool) and most > 0
                            else None)
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

    def batch(self, items, origin=None) -> list[dict]:
        headers = {ORIGIN_HEADER: origin} if origin else None
        return self._request('POST', '/sync/batch',
                             json_body={'items': items},
                             headers=headers)['results']

    def rekey(self, type_name, old_id, new_id, origin=None) -> dict:
        headers = {ORIGIN_HEADER: origin} if origin else None
        return self._request('POST', '/sync/rekey',
                             json_body={'type': type_name, 'from': old_id,
                                        'to': new_id},
                             headers=headers)['rekey']


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


def chunks(things, max_items, max_bytes, as_item=lambda thing: thing):
    """Split ``things`` (in order) into lists whose batch bodies
    (``as_item`` of each) stay under both limits."""
    batch, size = [], 20
    for thing in things:
        n = len(json.dumps(as_item(thing), separators=(',', ':'))) + 1
        if batch and (len(batch) >= max_items or size + n > max_bytes):
            yield batch
            batch, size = [], 20
        batch.append(thing)
        size += n
    if batch:
        yield batch
