"""What Keystone loads, frozen out of Python's garbage collection by our
entry point ([sync] freeze_loaded_objects): a full collection of a
loaded Keystone walks some 250,000 objects, a pause of about 125 ms in
whichever request it falls on (doc/benchmarks.md)."""

import re

import pytest

from keystone_syncext.testing import sites


def _frozen(site) -> list[int]:
    with open(f'{site.dir}/keystone.log') as f:
        return [int(n) for n in re.findall(
            r'(\d+) objects made at load frozen out of garbage collection',
            f.read())]


@pytest.mark.parametrize('server', ['processes', 'threads'])
def test_the_loaded_objects_are_frozen_and_the_site_serves(
        backend_name, make_site, server):
    site = make_site(f'frozen{server}', app=sites.SYNC_APP, server=server)
    admin = site.admin_session()
    # Keystone still serves (and cleans up) as before: a project made,
    # read and deleted.
    pid = admin.post(site.url + '/projects', json={'project': {
        'name': f'frozen-{server}', 'domain_id': 'default'}}).json()[
        'project']['id']
    assert admin.get(f'{site.url}/projects/{pid}').json()['project'][
        'name'] == f'frozen-{server}'
    admin.delete(f'{site.url}/projects/{pid}')
    counts = _frozen(site)
    assert counts and min(counts) > 100000, counts


def test_off_leaves_the_collector_alone(backend_name, make_site):
    if backend_name != 'sqlite':
        pytest.skip('the option does not depend on the database')
    site = make_site('unfrozen', app=sites.SYNC_APP,
                     extra_config='[sync]\nfreeze_loaded_objects = false\n')
    site.admin_session().get(site.url + '/projects')
    assert _frozen(site) == []
