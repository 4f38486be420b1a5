"""The resource suites' sites and clients: site a runs the current
Keystone, site b (where most writes land) ``keystone_release``, both
shared with the other modules of the test process; ``a`` and ``b`` are
their system admins (``client.Client``), whose ``/v3/sync`` writes carry
the headers of the ``write_headers`` fixture (none: a module that writes
as a peer site overrides it)."""

from concurrent import futures

import pytest

from keystone_syncext.tests import conftest
from keystone_syncext.tests.functional.resources.client import Client


@pytest.fixture(scope='module')
def two_sites(shared_site, keystone_release):
    """Site a runs the current Keystone; site b, where most writes land,
    runs ``keystone_release``: with 29.1 the copies go from N+1 to N."""
    # Set up side by side (when not made yet): most of a site's start is
    # waiting on Keystone processes.
    with futures.ThreadPoolExecutor(2) as pool:
        started = [
            pool.submit(shared_site, conftest.CURRENT,
                        second=keystone_release == conftest.CURRENT),
            pool.submit(shared_site, keystone_release)]
        return [f.result() for f in started]


@pytest.fixture(scope='module')
def site_a(two_sites):
    return two_sites[0]


@pytest.fixture(scope='module')
def site_b(two_sites):
    return two_sites[1]


@pytest.fixture(scope='module')
def write_headers():
    """Headers of the clients' ``/v3/sync`` writes: none, a local admin's
    write."""
    return {}


@pytest.fixture(scope='module')
def a(site_a, write_headers):
    return Client(site_a, write_headers)


@pytest.fixture(scope='module')
def b(site_b, write_headers):
    return Client(site_b, write_headers)
