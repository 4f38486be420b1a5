"""Tempest's identity API tests against Keystone with and without us.

Starts a real Keystone site (``keystone_syncext.testing.sites``) serving our
application with capture installed, runs Tempest's identity API tests
against it, then does the same against a site of the same Keystone, the
same database backend and the same server kind serving Keystone's own
application without the extension, and prints a side-by-side table:
passed, failed and skipped for each, and the tests that fail only with the
extension. Exit status 1 when the extension has more failures.

Tempest runs from its own virtualenv (``--tempest-venv``, made by
``tools/run-tempest``), with a workspace in a temporary directory.

    python -m keystone_syncext.testing.tempest_run \\
        --tempest-venv .venv-tempest --backend sqlite --server threads
"""

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites

REGEX = r'^tempest\.api\.identity'
# subunit's statuses, as the table counts them.
_STATUS = {'success': 'success', 'failure': 'fail', 'fail': 'fail',
           'skip': 'skip'}


def tempest_conf(site: sites.Site, workdir: str) -> str:
    """tempest.conf for identity only: the site's bootstrap admin, its
    v3 endpoint, the identity features Keystone 30 has, no other
    service."""
    return textwrap.dedent(f"""\
        [DEFAULT]
        log_file = {workdir}/tempest.log
        [auth]
        admin_username = {sites.ADMIN_USER}
        admin_password = {site.admin_password}
        admin_project_name = admin
        admin_domain_name = Default
        admin_system = all
        use_dynamic_credentials = true
        default_credentials_domain_name = Default
        [identity]
        uri_v3 = {site.url}
        auth_version = v3
        region = RegionOne
        v3_endpoint_type = public
        catalog_type = identity
        [identity-feature-enabled]
        api_v2 = false
        api_v3 = true
        trust = true
        access_rules = true
        security_compliance = false
        domain_specific_drivers = false
        immutable_user_source = false
        [enforce_scope]
        keystone = true
        [service_available]
        cinder = false
        glance = false
        neutron = false
        nova = false
        swift = false
        placement = false
        """)


def run_tempest(venv: str, site: sites.Site, workdir: str,
                concurrency: int) -> dict[str, str]:
    """Tempest's identity tests against ``site``; returns each test's
    status (success, fail, skip) by name."""
    venv = os.path.abspath(venv)
    tempest = os.path.join(venv, 'bin', 'tempest')
    ws = os.path.join(workdir, 'tempest')
    subprocess.run([tempest, 'init', '--workspace-path',
                    os.path.join(workdir, 'workspaces.yaml'), ws],
                   check=True, capture_output=True)
    with open(os.path.join(ws, 'etc', 'tempest.conf'), 'w') as f:
        f.write(tempest_conf(site, ws))
    start = time.monotonic()
    subprocess.run([tempest, 'run', '--regex', REGEX,
                    '--concurrency', str(concurrency)], cwd=ws,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    print(f'{site.name}: tempest took {time.monotonic() - start:.0f} s',
          file=sys.stderr)
    return results_of(ws, venv)


def results_of(ws: str, venv: str) -> dict[str, str]:
    """Each test's status by name from the last run in workspace ``ws``."""
    venv = os.path.abspath(venv)
    stestr = os.path.join(venv, 'bin', 'stestr')
    subunit2csv = os.path.join(venv, 'bin', 'subunit2csv')
    stream = subprocess.run([stestr, 'last', '--subunit'], cwd=ws,
                            capture_output=True, check=True).stdout
    # subunit2csv exits 1 when the stream has a failure: not an error.
    rows = subprocess.run([subunit2csv], input=stream,
                          capture_output=True).stdout.decode()
    out = {}
    for row in csv.DictReader(io.StringIO(rows)):
        # Drop the [id-...,smoke] tags; setUpClass failures keep theirs
        # in parentheses, which is their name.
        name = row['test'].split('[')[0]
        status = _STATUS.get(row['status'])
        if status:
            out[name] = status
    return out


def one_site(label, app, capture, backend, server, venv, workdir,
             tempest_venv, concurrency) -> dict[str, str]:
    dbname = f'tempest_{label}_{uuid.uuid4().hex[:8]}'
    site = sites.Site(label, os.path.join(workdir, label),
                      backend.create(dbname), venv=venv, capture=capture,
                      app=app, server=server)
    try:
        site.setup()
        site.start()
        return run_tempest(tempest_venv, site, os.path.join(workdir, label),
                           concurrency)
    finally:
        site.stop()
        backend.drop(dbname)


def table(results: dict[str, dict[str, str]], compare=True) -> str:
    """The side-by-side counts and the tests failing only with us."""
    lines = ['| | passed | failed | skipped |', '| --- | --- | --- | --- |']
    for label, res in results.items():
        counts = [sum(1 for s in res.values() if s == status)
                  for status in ('success', 'fail', 'skip')]
        lines.append(f'| {label} | ' + ' | '.join(map(str, counts)) + ' |')
    if not compare:
        return '\n'.join(lines)
    ext, plain = results['extension'], results['plain']
    only = sorted(t for t, s in ext.items()
                  if s == 'fail' and plain.get(t) != 'fail')
    lines.append('')
    lines.append(f'failing only with the extension: {len(only)}')
    lines += [f'  {t}' for t in only]
    only_plain = sorted(t for t, s in plain.items()
                        if s == 'fail' and ext.get(t) != 'fail')
    lines.append(f'failing only without it: {len(only_plain)}')
    lines += [f'  {t}' for t in only_plain]
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tempest-venv', required=True)
    parser.add_argument('--venv', default=sys.prefix,
                        help='virtualenv of the Keystone release to run')
    parser.add_argument('--backend', default='sqlite',
                        choices=('sqlite', 'mysql', 'postgresql'))
    parser.add_argument('--server', default='threads',
                        choices=tuple(sites.SERVERS))
    parser.add_argument('--concurrency', type=int, default=2)
    parser.add_argument('--keep', action='store_true',
                        help='keep the work directory (logs, workspaces)')
    parser.add_argument('--only', choices=('extension', 'plain'),
                        help='run one side only (two runs side by side '
                        'on separate machines or at once)')
    parser.add_argument('--save', metavar='FILE',
                        help='write the results (JSON) here as well')
    parser.add_argument('--compare', nargs=2, metavar=('EXT', 'PLAIN'),
                        help='print the table of two saved results and '
                        'run nothing')
    args = parser.parse_args(argv)
    if args.compare:
        results = {}
        for label, path in zip(('extension', 'plain'), args.compare,
                               strict=True):
            with open(path) as f:
                results[label] = json.load(f)[label]
        print(table(results))
        return _verdict(results)
    workdir = tempfile.mkdtemp(prefix='kssync-tempest-')
    backend = backends.get(args.backend, workdir)
    results = {}
    try:
        for label, app, capture in (
                ('extension', sites.SYNC_APP, True),
                ('plain', sites.KEYSTONE_APP, False)):
            if args.only and label != args.only:
                continue
            results[label] = one_site(
                label, app, capture, backend, args.server, args.venv,
                workdir, args.tempest_venv, args.concurrency)
    finally:
        if args.keep:
            print(f'work directory: {workdir}', file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.save:
        with open(args.save, 'w') as f:
            json.dump(results, f, indent=1, sort_keys=True)
    print(f'Tempest {REGEX}, concurrency {args.concurrency}, '
          f'{args.backend}, server {args.server}')
    if args.only:
        print(table(results, compare=False))
        return 0
    print(table(results))
    return _verdict(results)


def _verdict(results) -> int:
    failures = {label: sum(1 for s in res.values() if s == 'fail')
                for label, res in results.items()}
    return 1 if failures['extension'] > failures['plain'] else 0


if __name__ == '__main__':
    sys.exit(main())
