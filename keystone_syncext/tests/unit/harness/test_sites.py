"""The test sites' own safety: a site never takes another server on its
port for itself (a readiness probe answered by the wrong server would send
the site's admin password there and fail with a puzzling 401)."""

import subprocess

import pytest

from keystone_syncext.testing import sites
from keystone_syncext.tests.unit import httpstub


def test_ports_are_never_handed_out_twice():
    ports = [sites.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_probe_answered_by_another_server_is_not_ready(tmp_path):
    site = sites.Site('clash', str(tmp_path / 'clash'),
                      f'sqlite:///{tmp_path}/clash.db')
    with httpstub.serve() as port:
        site.port = port
        # The site's own server is alive but never got the port (the
        # state in which uWSGI has not exited yet after failing to bind).
        site.proc = subprocess.Popen(['sleep', '60'], start_new_session=True)
        with pytest.raises(RuntimeError, match='served by another process'):
            site._wait_ready(timeout=10)
        assert site.proc is None    # stopped, not left running
