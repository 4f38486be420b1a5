"""The README's first command, ``tools/demo``, ends by showing
``keystone-sync status`` beside ``openstack sync status show --os-cloud
hub``: the real ``openstack`` command, with the clouds.yaml the demo
writes. Against a hub started as the demo starts its sites, that command
answers the first time, every time: nothing in the demo retries it."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..')
# Runs of the command: each authenticates afresh (a discovery GET, then
# the token's POST), which is where a reused connection shows.
RUNS = 3

pytestmark = pytest.mark.backend_independent


def _demo():
    spec = importlib.util.spec_from_file_location(
        'demo', os.path.join(ROOT, 'tools', 'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_openstack_sync_status_show_answers_at_the_demos_hub(tmp_path,
                                                              capfd):
    demo = _demo()
    workdir = str(tmp_path)
    hub = demo.make_site(workdir, 'hub')
    try:
        demo.start_sites(workdir, hub, [])
        capfd.readouterr()
        for _ in range(RUNS):
            rc = demo.agent(workdir, 'sync', 'status', 'show', '--os-cloud',
                            'hub', '-f', 'json', program='openstack')
            out, err = capfd.readouterr()
            assert rc == 0, err
            # After the "$ openstack ..." line the demo prints.
            shown = json.loads(out.split('\n', 1)[1])
            assert shown['capture_complete'] is True
    finally:
        hub.stop()
