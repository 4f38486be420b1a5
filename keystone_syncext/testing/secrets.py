"""Secrets the end-to-end suites used, and a scan of the product's logs
for them.

Secrets travel only as hashes and never reach a log or an error message
(doc/security.md, "Secrets in logs"). The suites that run real processes
(Keystone under uWSGI, the agent) register every secret they handle --
passwords, application credential secrets, tokens, and the password and
secret hashes read from each site's database -- and every log those
processes wrote; at the end of the module a fixture (``secret_scan`` in the
tests' conftest) scans them all and fails with the file and line of each
hit.

Only what the product's processes wrote is scanned: the Keystone and
uWSGI logs in each site's directory, the agent's log file and its captured
stdout/stderr. pytest's own output is not: it shows secrets when a test
prints them, which is not the product leaking them.
"""

import dataclasses
import os

import sqlalchemy as sa

# A hit shows this many characters of the secret: enough to tell which one
# leaked, not enough to use it.
SHOWN = 4
# Shorter values would match by chance (and no secret here is this short).
MIN_LENGTH = 8
# Files below a registered directory that are logs.
LOG_SUFFIXES = ('.log',)


@dataclasses.dataclass(frozen=True)
class Hit:
    """A secret found at ``where`` (a file, or a captured stream), on
    1-based ``line``."""

    where: str
    line: int
    what: str
    secret: str

    def __str__(self) -> str:
        return (f'{self.where}:{self.line}: {self.what} '
                f'{self.secret[:SHOWN]}...')


def scan_lines(lines, secrets: dict[str, str], where: str) -> list[Hit]:
    """Every occurrence of a secret (a key of ``secrets``; its value says
    what it is) in ``lines``, one hit per secret per line."""
    hits = []
    for number, line in enumerate(lines, 1):
        for value, what in secrets.items():
            if value in line:
                hits.append(Hit(where, number, what, value))
    return hits


def log_files(directory: str) -> list[str]:
    """The log files anywhere below ``directory``."""
    found = []
    for root, _dirs, files in os.walk(directory):
        found += [os.path.join(root, f) for f in files
                  if f.endswith(LOG_SUFFIXES)]
    return sorted(found)


def stored_hashes(engine: sa.engine.Engine) -> list[tuple[str, str]]:
    """``(hash, what)`` for every password hash and application
    credential secret hash a Keystone database holds."""
    out = []
    with engine.connect() as conn:
        for table, column in (('password', 'password_hash'),
                              ('application_credential', 'secret_hash')):
            rows = conn.execute(sa.text(
                f'SELECT {column} FROM {table} '
                f'WHERE {column} IS NOT NULL')).scalars()
            out += [(value, f'{table}.{column}') for value in rows]
    return out


class Collector:
    """Secrets, and the logs to search for them."""

    def __init__(self):
        self.secrets: dict[str, str] = {}
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        self.outputs: list[tuple[str, str]] = []

    def secret(self, value: str | None, what: str) -> None:
        """Remember a secret; ``what`` names it in a hit (the value itself
        is never shown in full)."""
        if value and len(value) >= MIN_LENGTH:
            self.secrets.setdefault(value, what)

    def hashes_of(self, engine: sa.engine.Engine) -> None:
        """Remember every hash stored in a site's database. Call it while
        the database still exists: tests drop theirs at the end."""
        for value, what in stored_hashes(engine):
            self.secret(value, what)

    def log_file(self, path: str) -> None:
        self.files.add(os.path.abspath(path))

    def log_dir(self, path: str) -> None:
        """Every log file below ``path``, as found when scanning (a site's
        processes write theirs after it is registered)."""
        self.dirs.add(os.path.abspath(path))

    def output(self, label: str, text: str | None) -> None:
        """Captured stdout or stderr of a product process."""
        if text:
            self.outputs.append((label, text))

    def scan(self) -> list[Hit]:
        paths = set(self.files)
        for d in self.dirs:
            found = log_files(d)
            if not found:
                # A scan of nothing would pass: the logs moved, or the
                # processes never ran.
                raise AssertionError(f'no log file below {d}')
            paths.update(found)
        hits = []
        for path in sorted(paths):
            if not os.path.exists(path):
                continue
            with open(path, errors='replace') as f:
                hits += scan_lines(f, self.secrets, path)
        for label, text in self.outputs:
            hits += scan_lines(text.splitlines(), self.secrets, label)
        return hits

    def clear(self) -> None:
        self.__init__()


# The registry the suites and their helpers add to (see the module's
# docstring); the ``secret_scan`` fixture scans and clears it.
REGISTRY = Collector()


def report(hits: list[Hit]) -> str:
    return (f'{len(hits)} secret(s) found in logs:\n'
            + '\n'.join(str(h) for h in hits))
