"""Every request of one agent pass carries one X-OpenStack-Request-ID
(keystoneauth's global request id, doc/agent.md "Request ids"), also from
the pass's helper threads; a new pass, a new id; outside a pass, none.
Every request names keystone-sync and its version in its User-Agent."""

import importlib.metadata
import threading

from openstack import config as os_config
from oslo_context import context as oslo_context
import pytest

from keystone_syncext.agent import cli
from keystone_syncext.agent import cli_sites
from keystone_syncext.agent import client
from keystone_syncext.agent import passes
from keystone_syncext.tests.unit.agent import stubhttp


@pytest.fixture
def site():
    """A client.Site on a stub that answers every GET with ``{}`` and
    keeps each request's headers in ``site.seen``."""
    seen = []

    class Handler(stubhttp.JsonHandler):
        def do_GET(self):
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.reply(200, {})

    with stubhttp.serving(Handler) as url:
        cloud = os_config.OpenStackConfig(load_yaml_config=False).get_one(
            auth_type='none', auth={'endpoint': url},
            identity_endpoint_override=url)
        s = client.Site('stub', cloud=cloud, timeout=5)
        s.seen = seen
        yield s


def _ids(site):
    return [h.get('x-openstack-request-id') for h in site.seen]


def test_one_id_per_pass_also_from_its_helper_threads(site):
    with passes.one_pass() as first:
        site._request('GET', '/sync')
        helper = threading.Thread(target=passes.carry_pass(
            lambda: site._request('GET', '/sync/status')))
        helper.start()
        helper.join()
        assert passes.pass_id() == first
    with passes.one_pass() as second:
        site._request('GET', '/sync')
    assert first.startswith('req-') and second != first
    assert _ids(site) == [first, first, second]


def test_no_id_outside_a_pass_and_the_outer_context_comes_back(site):
    outer = oslo_context.RequestContext(overwrite=True)
    try:
        with passes.one_pass() as inner:
            assert oslo_context.get_current().global_request_id == inner
        assert oslo_context.get_current() is outer
    finally:
        vars(oslo_context._request_store).pop('context', None)
    assert passes.pass_id() is None
    site._request('GET', '/sync')
    assert _ids(site) == [None]


def test_the_user_agent_names_keystone_sync_and_its_version(site):
    site._request('GET', '/sync')
    version = importlib.metadata.version('keystone-syncext')
    assert site.seen[0]['user-agent'].startswith(
        f'keystone-sync/{version} ')


def test_join_and_reconcile_are_one_pass_each(monkeypatch, tmp_path):
    """Each command's requests carry one id, a new one per command."""
    ids = []

    def take_action(self, parsed_args):
        ids.append(passes.pass_id())
        return ('spoke',), []
    for command in (cli_sites.Join, cli_sites.Reconcile):
        monkeypatch.setattr(command, 'take_action', take_action)
    for name in ('join', 'reconcile'):
        assert cli.main(['--log-file', str(tmp_path / 'agent.log'), name,
                         '--state', f'sqlite:///{tmp_path}/state.db']) == 0
    assert len(ids) == 2 and all(ids) and ids[0] != ids[1], ids
    assert passes.pass_id() is None
