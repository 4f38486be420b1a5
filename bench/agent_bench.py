"""What the benchmarks that run the agent (agent_sync.py, reconcile.py)
share: their common options, the sites' configuration, filling a site
through its batch route, the agent's command line and the clean-up.

Not a benchmark itself; bench/run.py does not run it.
"""

import concurrent.futures
import os
import shutil
import subprocess
import sys

from batch_rate import CACHE_CONFIG
from batch_rate import EXTRA_CONFIG

from keystone_syncext.testing import sites

AGENT = [sys.executable, '-m', 'keystone_syncext.agent.cli']


def add_options(parser) -> None:
    """``--cache``, ``--keep`` and ``--debug``, as every agent bench has
    them."""
    parser.add_argument('--cache', action='store_true',
                        help='run Keystone with its cache on, as '
                        'production does (see batch_rate.py)')
    parser.add_argument('--keep', action='store_true',
                        help='leave the sites and the agent log behind')
    parser.add_argument('--debug', action='store_true',
                        help='the agent logs every request and its time')


def start(all_sites, cache: bool, **setup) -> None:
    """Set up and start the sites two at a time, with bodies up to 64 MiB
    (the agent's batches may be that large) and Keystone's cache on if
    ``cache``."""
    extra = EXTRA_CONFIG + (CACHE_CONFIG if cache else '')
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(
                lambda s: s.setup(extra, **setup).start(), site)
                for site in all_sites]:
            done.result()


def fill(site, items, chunk=1000, sess=None) -> None:
    """Create ``items`` at ``site`` through its batch route, ``chunk`` at
    a time; every one must be created."""
    sess = sess or site.admin_session()
    for n in range(0, len(items), chunk):
        resp = sess.post(f'{site.url}/sync/batch',
                         json={'items': items[n:n + chunk]})
        bad = [r for r in resp.json()['results'] if r['status'] != 201]
        if bad:
            raise SystemExit(f'{site.name}: batch items failed: {bad[:3]}')


class Agent:
    """The real ``keystone-sync`` command line, for a hub named ``hub``
    and ``spokes``, its state database and log in ``workdir``."""

    def __init__(self, workdir: str, spokes: list[str], debug: bool,
                 extra: str = '', state_url: str | None = None):
        self.env = dict(os.environ,
                        OS_CLIENT_CONFIG_FILE=f'{workdir}/clouds.yaml')
        self.state_url = state_url or f'sqlite:///{workdir}/state.sqlite'
        self.conf = f'{workdir}/keystone-sync.conf'
        self.clouds = f'{workdir}/clouds.yaml'
        with open(self.conf, 'w') as f:
            f.write(f'[DEFAULT]\nhub = hub\nspokes = {",".join(spokes)}\n'
                    f'state = {self.state_url}\n'
                    f'log_file = {workdir}/agent.log\n' + extra
                    + ('debug = true\n' if debug else ''))

    def _cmd(self, argv, conf=()) -> list[str]:
        return AGENT + ['--config-file', self.conf,
                        *[a for c in conf for a in ('--config-file', c)],
                        *argv]

    def __call__(self, *argv) -> str:
        """Run one command to its end; its output, stdout then stderr,
        where ``join`` and ``reconcile`` say their summaries (stops the
        bench if it fails)."""
        proc = subprocess.run(self._cmd(argv), env=self.env,
                              stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f'keystone-sync {" ".join(argv)} failed:\n'
                             f'{proc.stdout}\n{proc.stderr[-3000:]}')
        return proc.stdout + proc.stderr

    def start(self, *argv, conf=()) -> subprocess.Popen:
        """Start a command that runs until stopped; ``conf``: more
        configuration files, read after the agent's own (a member's
        ``[coordination]``, ``[metrics]`` and log file)."""
        return subprocess.Popen(self._cmd(argv, conf), env=self.env,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL)


def clean_up(all_sites, workdir: str, keep: bool) -> None:
    """Stop the sites; remove their directory unless ``keep``."""
    for site in all_sites:
        site.stop()
    if keep:
        print(f'sites and agent log left in {workdir}')
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def write_clouds(agent: Agent, hub, spokes) -> None:
    """The agent's clouds.yaml: the hub's admin, an agent account of its
    own at each spoke."""
    clouds = {'hub': hub.admin_auth()}
    for s in spokes:
        clouds[s.name] = s.add_agent_account()
    sites.write_clouds_yaml(agent.clouds, clouds)
