"""SQLite capture overhead, split: how much is parsing the schema on each
new connection (oslo.db gives file SQLite a NullPool, so Keystone opens
one per query or so) and how much is running the triggers.

Two Keystone databases on SQLite made alike (``db_sync`` and
``bootstrap``), capture installed on one (``keystone-syncext-manage
db_sync``). Rounds alternate which goes first; each round times, per
database:

- ``connect``: open a new connection and run one trivial statement
  (``SELECT 1 FROM project LIMIT 1``): SQLite reads and parses the whole
  schema, triggers included, at a connection's first statement;
- ``write``: on one open connection, insert a project, update it and
  delete it, one transaction each: the triggers' own work.

Reported: the medians in microseconds and the capture / plain ratios.

    python bench/capture_split.py --rounds 20 --ops 50
"""

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid

from keystone_syncext.testing import backends
from keystone_syncext.testing import sites


def make(workdir, backend, capture: bool) -> str:
    name = f'split_{"capture" if capture else "plain"}'
    url = backend.create(name)
    sites.Site(name, f'{workdir}/{name}', url, capture=capture).setup()
    return url.split('sqlite:///', 1)[1]


def connects(path: str, ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        conn = sqlite3.connect(path)
        conn.execute('SELECT 1 FROM project LIMIT 1').fetchall()
        conn.close()
    return (time.perf_counter() - start) / ops * 1e6


def writes(path: str, ops: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute('SELECT 1 FROM project LIMIT 1').fetchall()
    start = time.perf_counter()
    for _ in range(ops):
        pid = uuid.uuid4().hex
        for sql, args in (
                ("INSERT INTO project (id, name, extra, description, "
                 "enabled, domain_id, parent_id, is_domain) VALUES "
                 "(?, ?, '{}', '', 1, 'default', 'default', 0)",
                 (pid, f'split-{pid}')),
                ('UPDATE project SET description = ? WHERE id = ?',
                 ('changed', pid)),
                ('DELETE FROM project WHERE id = ?', (pid,))):
            conn.execute('BEGIN')
            conn.execute(sql, args)
            conn.execute('COMMIT')
    conn.close()
    return (time.perf_counter() - start) / ops / 3 * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--ops', type=int, default=50)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix='kssync-bench-split-')
    backend = backends.get('sqlite', workdir)
    try:
        paths = {'capture': make(workdir, backend, True),
                 'plain': make(workdir, backend, False)}
        got = {(k, m): [] for k in paths for m in ('connect', 'write')}
        for n in range(args.rounds):
            order = ('capture', 'plain') if n % 2 else ('plain', 'capture')
            for kind in order:
                got[(kind, 'connect')].append(connects(paths[kind],
                                                       args.ops))
                got[(kind, 'write')].append(writes(paths[kind], args.ops))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = {'rounds': args.rounds, 'ops': args.ops}
    for m in ('connect', 'write'):
        c = statistics.median(got[('capture', m)])
        p = statistics.median(got[('plain', m)])
        out[f'{m}_us_capture'] = round(c, 1)
        out[f'{m}_us_plain'] = round(p, 1)
        out[f'{m}_ratio'] = round(c / p, 3)
        print(f'{m:8} capture {c:9.1f} us  plain {p:9.1f} us  '
              f'ratio {c / p:.3f}')
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
