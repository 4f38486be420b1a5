"""The feed suites' site and caller: ``feed_site`` is a site of the
module's own (its tests purge, tamper with and count the change log, which
a shared site's other users must not see), of ``keystone_release``,
serving our API; ``call`` is its system admin (``personas.json_caller``).
A module that needs another site overrides ``feed_site``."""

import pytest

from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests import personas


@pytest.fixture(scope='module')
def feed_site(request, make_site, keystone_release):
    # Named after the module: test_digest.py's site is 'digest'.
    name = request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')
    return make_site(name, app=sites.SYNC_APP,
                     venv=conftest.release_venv(keystone_release))


@pytest.fixture(scope='module')
def call(feed_site):
    return personas.json_caller(feed_site)
