"""Keystone's own writes under concurrency, with and without the extension.

Starts real Keystone sites on one database backend behind one server kind
(``threads``: one uWSGI process with 4 threads; ``processes``: two worker
processes), one serving our application with capture installed and one
serving Keystone's own application without it, and runs the same load on
each for ``--seconds``:

- ``--writers`` threads, each looping through Keystone's ordinary v3 API:
  create a project, PATCH it, create a user with a password, issue a token
  as that user, create a group, PATCH it, add the user to it, change the
  user's password, then delete user, group and project;
- on the extension's site, ``--readers`` threads asking, back to back,
  what an eager agent or a monitor asks: ``GET /v3/sync``,
  ``/v3/sync/status`` and ``/v3/sync/changes`` from the head
  (``keystone_syncext.testing.load``).

Every response is counted by status; a 5xx is also counted by route and by
the first words of its message. The figure that matters is ``errors_5xx``
of Keystone's own routes: the extension must not make it worse (the goal is
0 on both). With ``--no-plain`` only the extension's site runs.

The last line of output is one JSON object with the counts.

    python bench/lock_contention.py --backend sqlite --server threads
"""

import argparse
import json
import shutil
import sys
import tempfile
import uuid

from keystone_syncext.testing import backends
from keystone_syncext.testing import load
from keystone_syncext.testing import sites


def measure(backend_name, server, venv, seconds, writers, readers,
            plain=True) -> dict:
    """Both sites, one after the other; returns the figures."""
    workdir = tempfile.mkdtemp(prefix='kssync-lock-')
    backend = backends.get(backend_name, workdir)
    kinds = [('extension', sites.SYNC_APP, True, readers)]
    if plain:
        kinds.append(('plain', sites.KEYSTONE_APP, False, 0))
    out = {'backend': backend_name, 'server': server, 'seconds': seconds,
           'writers': writers, 'readers': readers}
    try:
        for label, app, capture, n_readers in kinds:
            dbname = f'lock_{label}_{uuid.uuid4().hex[:8]}'
            site = sites.Site(label, f'{workdir}/{label}',
                              backend.create(dbname), venv=venv,
                              capture=capture, app=app, server=server)
            try:
                site.setup()
                site.start()
                tally = load.run_load(site, seconds, writers, n_readers)
            finally:
                site.stop()
                backend.drop(dbname)
            figures = tally.summary()
            figures['keystone_5xx'] = tally.server_errors(sync=False)
            figures['sync_5xx'] = tally.server_errors(sync=True)
            out[label] = figures
            print(f'{label}: {json.dumps(figures)}', file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backend', default='sqlite',
                        choices=('sqlite', 'mysql', 'postgresql'))
    parser.add_argument('--server', default='threads',
                        choices=tuple(sites.SERVERS))
    parser.add_argument('--venv', default=sys.prefix,
                        help='virtualenv of the Keystone release to run')
    parser.add_argument('--seconds', type=float, default=30)
    parser.add_argument('--writers', type=int, default=3)
    parser.add_argument('--readers', type=int, default=2)
    parser.add_argument('--no-plain', action='store_true',
                        help='only the site with the extension')
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.backend, args.server, args.venv,
                             args.seconds, args.writers, args.readers,
                             plain=not args.no_plain)))


if __name__ == '__main__':
    main()
