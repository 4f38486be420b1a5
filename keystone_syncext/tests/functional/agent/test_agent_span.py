"""The release span: a hub and spokes on different Keystone releases
(doc/install.md, "Releases"), synced by the real ``keystone-sync``.

The default run has one world: a hub on 30.0 with spokes on 29.1 and
27.1, the newest, the previous and the oldest supported release. With
``KSSYNC_SPAN=1`` (``tox -e span``) the whole matrix instead: a 30.0 hub
with spokes on 27.1, 28.1, 29.1 and 30.0, and a 29.1 hub with a spoke on
30.0 (a spoke ahead of its hub). Each world is judged by the same flows as
test_agent.py (flows.py): create, update and delete of every v1 type at
the hub reach every spoke; a user made at the hub logs in at every spoke;
an application credential made at the first spoke reaches the others.
"""

import os

import pytest

from keystone_syncext.testing import backends
from keystone_syncext.tests.functional.agent import flows
from keystone_syncext.tests.functional.agent import harness

# (hub release, spoke releases): the default run's world, and the matrix.
DEFAULT = [('30.0', ('29.1', '27.1'))]
MATRIX = [('30.0', ('27.1', '28.1', '29.1', '30.0')), ('29.1', ('30.0',))]
WORLDS = MATRIX if os.environ.get('KSSYNC_SPAN') == '1' else DEFAULT


def _name(release: str) -> str:
    return 'spoke' + release.replace('.', '')


@pytest.fixture(scope='module', params=WORLDS,
                ids=[f'hub{h}-spokes{"+".join(s)}' for h, s in WORLDS])
def world(request, secret_scan, tmp_path_factory, sqlite_dir,
          schema_template, server_kind):
    hub, spokes = request.param
    specs = [('hub', hub), *[(_name(r), r) for r in spokes]]
    with harness.build_world(
            secret_scan, str(tmp_path_factory.mktemp('span')),
            backends.get('sqlite', sqlite_dir), schema_template, specs,
            server_kind) as w:
        w.releases = dict(specs)
        yield w


def test_each_site_runs_its_release(world):
    """The world is the matrix it claims: each site's extension reports
    the Keystone release of its virtualenv."""
    for site in world.every():
        caps = world.session(site).get(f'{site.url}/sync').json()['sync']
        assert caps['keystone_version'].startswith(
            world.releases[site.name] + '.'), (site.name, caps)


def test_every_type_created_updated_deleted_reaches_each_spoke(world):
    flows.every_type_round_trip(world)


def test_hub_user_logs_in_at_each_spoke(world):
    flows.hub_user_logs_in_at_spokes(world)


def test_spoke_application_credential_reaches_the_others(world):
    """The first spoke (the oldest release of the default world) makes
    it; the hub and every other spoke get it."""
    flows.spoke_app_cred_reaches_everywhere(world)
