"""WSGI entry point for tests: our application, able to advertise other
sync protocol versions, as an older or newer extension would.

While the file named by ``KSSYNC_ADVERTISE_PROTOCOL_VERSIONS_FILE`` exists,
``GET /v3/sync`` offers the versions it lists (comma separated, e.g.
``1,2`` or ``2``) instead of ours; without it the site is exactly
``keystone_syncext.wsgi.api:application``. The routes always speak
version 1. A file read per request lets one test try several versions
without restarting the site (a Keystone start costs seconds), and keeps
out of the product an option that would let an operator make a site lie
about what it speaks. Never for production.
"""

import os

from keystone_syncext.api import sync
from keystone_syncext.wsgi import api

ENV = 'KSSYNC_ADVERTISE_PROTOCOL_VERSIONS_FILE'
REAL = (sync.PROTOCOL_VERSIONS, sync.PROTOCOL_VERSION)


def _advertised() -> tuple[tuple[int, ...], int]:
    try:
        with open(os.environ[ENV]) as f:
            versions = tuple(int(v) for v in f.read().split(',')
                             if v.strip())
    except FileNotFoundError:
        return REAL
    return versions, min(versions)


def application(environ, start_response):
    # uWSGI runs this site with one thread per process: setting the
    # module's values for the request at hand races with nothing.
    sync.PROTOCOL_VERSIONS, sync.PROTOCOL_VERSION = _advertised()
    return api.application(environ, start_response)
