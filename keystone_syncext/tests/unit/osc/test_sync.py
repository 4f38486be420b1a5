"""The openstack sync commands' output over a stub client: every format
of a record with lists of names and of numbers, and a site error turned
into OSC's CommandError (the real site: tests/functional/osc)."""

import io
import json
import types

from osc_lib import exceptions
import pytest
import yaml

from keystone_syncext.agent import client
from keystone_syncext.osc.v1 import sync

CAPS = {'protocol_versions': [1], 'site_id': 'hub',
        'resource_types': ['domain', 'project'], 'max_page_size': 1000}


class _Stub:
    def about(self):
        return CAPS

    def changes(self, since=None, limit=100, types=None):
        raise client.SiteError('reader', 'GET /sync/changes: 403 refused',
                               status=403, transient=False)


def _run(command, *argv):
    out = io.StringIO()
    app = types.SimpleNamespace(stdout=out, stderr=io.StringIO(),
                                client_manager=types.SimpleNamespace(
                                    sync=_Stub()))
    cmd = command(app, None)
    cmd.run(cmd.get_parser('openstack sync').parse_args(list(argv)))
    return out.getvalue()


@pytest.mark.parametrize('fmt', ['table', 'json', 'yaml', 'value', 'shell'])
def test_capabilities_in_every_format(fmt):
    out = _run(sync.ShowCapabilities, '-f', fmt)
    if fmt == 'json':
        assert json.loads(out) == CAPS
    elif fmt == 'yaml':
        assert yaml.safe_load(out) == CAPS
    elif fmt == 'table':
        assert '| protocol_versions | 1 ' in out
        assert '| resource_types    | domain, project ' in out
    else:
        assert 'hub' in out


def test_a_site_error_is_a_command_error():
    with pytest.raises(exceptions.CommandError,
                       match='reader: GET /sync/changes: 403 refused'):
        _run(sync.ListChanges)
