"""The API suites' shared sites, callers and tokens.

``api_site`` is the site of ``keystone_release`` shared with the other
modules of the test process (a module using it runs once per release and
backend), and ``call`` its system admin (``personas.checked_caller``).
``current_site`` is the current release's shared site, for the suites that
judge policy, which one release answers for both, and ``tokens`` a token
per persona there. A module with a site of its own (a configuration the
others must not see) defines its own ``call`` next to it.
"""

import pytest

from keystone_syncext.tests import personas


@pytest.fixture(scope='module')
def api_site(shared_site, keystone_release):
    return shared_site(keystone_release)


@pytest.fixture(scope='module')
def call(api_site):
    return personas.checked_caller(api_site)


@pytest.fixture(scope='module')
def current_site(shared_site):
    return shared_site()


@pytest.fixture(scope='module')
def tokens(current_site):
    return personas.make_tokens(current_site)
