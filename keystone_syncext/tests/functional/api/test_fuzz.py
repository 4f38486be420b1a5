"""The /v3/sync API under generated requests (schemathesis), on a real
Keystone 30 site on SQLite.

Every operation of doc/openapi.json gets valid and invalid requests
generated from its schema (hypothesis, derandomized: a run sends the same
requests each time), sent with the token of each persona of
``personas.PERSONAS``. Across all of them:

- no response is a server error (5xx);
- every response conforms to the document: a status it lists for the
  operation, the content type and the headers it lists, and a body that
  matches the response's schema;
- every refused request (4xx) leaves the database as it was: an SQL dump
  of the site's SQLite file is the same before and after. Accepted writes
  (2xx, which only the system admin may make) may change it.

The quick budget below (over 1,000 requests) runs in the normal suite;
``tox -e fuzz`` raises it with ``KSSYNC_FUZZ_EXAMPLES`` (see
doc/testing.md, also for how long it takes).
"""

import collections
import copy
import hashlib
import json
import os
import re
import sqlite3
import time
from urllib import parse

from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as oas_checks

from keystone_syncext import openapi
from keystone_syncext.testing import backends
from keystone_syncext.testing import secrets as scanning
from keystone_syncext.testing import sites
from keystone_syncext.tests import conftest
from keystone_syncext.tests import personas

DOC = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'doc',
                   'openapi.json')

# Generated requests per operation: the system admin's pass through the
# policy to the handlers, so they get most; the others' are refused by
# the policy (or by Keystone, without a token) before a handler runs.
EXAMPLES = int(os.environ.get('KSSYNC_FUZZ_EXAMPLES', '60'))
OTHERS_EXAMPLES = max(1, EXAMPLES // 10)
# Per resource type, for the typed PUTs (see _document).
TYPED_EXAMPLES = max(1, EXAMPLES // 4)
# The run stops sending after this long, and fails: a guard against a
# hang, far above what the budget takes (see doc/testing.md).
WALL_CLOCK = float(os.environ.get('KSSYNC_FUZZ_SECONDS',
                                  str(max(600, EXAMPLES * 10))))
# The fewest requests a run must have sent, all personas together.
MIN_REQUESTS = 1000 if EXAMPLES >= 60 else 0
# A long-poll holds the (only) caller: a wait of at most a second keeps
# the feed's waiting path in play without spending the budget on it.
# Keystone's cache on: validating the token is most of a refused request's
# time without it. In memory, so one uWSGI process (see fuzz_site).
EXTRA_CONFIG = ('[sync]\nmax_wait_seconds = 1\n'
                '[cache]\nenabled = true\nbackend = dogpile.cache.memory\n')

# The document's pattern of the {id} path parameter.
PATH_ID = re.compile(r'^[^/\s]{1,255}$')

CHECKS = [
    not_a_server_error,
    oas_checks.status_code_conformance,
    oas_checks.content_type_conformance,
    oas_checks.response_headers_conformance,
    oas_checks.response_schema_conformance,
]


@pytest.fixture(scope='module')
def fuzz_site(secret_scan, tmp_path_factory, sqlite_dir, schema_template):
    """A site of its own: the fuzzer writes whatever the system admin may
    write, and the database checks need a site nobody else writes to.
    One uWSGI process: an in-memory cache is per process, and our writes
    invalidate only their own process's (requests go one at a time
    anyway)."""
    db = backends.get('sqlite', sqlite_dir)
    site, dbname = conftest._new_site(
        db, schema_template(db, conftest.VENV30),
        str(tmp_path_factory.mktemp('fuzz')), 'fuzz', conftest.VENV30,
        app=sites.SYNC_APP, extra_config=EXTRA_CONFIG, processes=1)
    secret_scan.log_dir(site.dir)
    secret_scan.secret(site.admin_password, 'bootstrap admin password')
    try:
        yield site
    finally:
        try:
            secret_scan.hashes_of(site.engine())
        finally:
            conftest._stop_and_drop([(db, site, dbname)])


@pytest.fixture(scope='module')
def tokens(fuzz_site, secret_scan):
    sess = fuzz_site.admin_session()
    secret_scan.secret(sess.get_token(), 'bootstrap admin token')
    return personas.make_tokens(fuzz_site)


class Database:
    """The site's SQLite database, as the fuzzer judges it."""

    def __init__(self, site):
        path = site.db_url[len('sqlite:///'):]
        self.conn = sqlite3.connect(f'file:{path}?mode=ro', uri=True,
                                    isolation_level=None)
        self.version = self._data_version()

    def _data_version(self) -> int:
        return self.conn.execute('PRAGMA data_version').fetchone()[0]

    def changed(self) -> bool:
        """Whether any other connection committed since the last call.
        SQLite changes ``data_version`` on every commit by another
        connection (another process included), so an unchanged value
        proves that nothing was written, and the dump below is only taken
        when something may have been."""
        version = self._data_version()
        changed, self.version = version != self.version, version
        return changed

    def dump_hash(self) -> str:
        """A hash of the SQL dump of the whole database: every table, row,
        index and trigger, Keystone's and ours. Nothing is left out: no
        /v3/sync request writes anything when it is refused (Keystone
        validates fernet tokens without writing, and lockout and
        inactivity tracking write at /v3/auth/tokens, never here)."""
        h = hashlib.sha256()
        for line in self.conn.iterdump():
            h.update(line.encode())
            h.update(b'\n')
        return h.hexdigest()

    def close(self):
        self.conn.close()


def _document() -> dict:
    """doc/openapi.json, plus one ``PUT /v3/sync/resources/<type>/{id}``
    per resource type whose body is that type's representation.

    The document's own PUT takes any type's representation in the body
    (OpenAPI cannot tie the body's schema to the ``type`` in the path), so
    almost none of the bodies generated for it fit the type they are sent
    to, and nearly every one is refused before a write is tried. These
    operations address the very same route, with bodies that can be
    written, so the handlers' write paths (and their rollback when
    Keystone refuses) get fuzzed too."""
    with open(DOC) as f:
        doc = json.load(f)
    put = doc['paths']['/v3/sync/resources/{type}/{id}']['put']
    for type_name in doc['components']['parameters']['type']['schema'][
            'enum']:
        op = copy.deepcopy(put)
        op['operationId'] = f'put_{type_name}'
        op['parameters'] = [p for p in op['parameters']
                            if not p['$ref'].endswith('/type')]
        op['requestBody']['content']['application/json']['schema'] = {
            'type': 'object', 'additionalProperties': False,
            'required': ['resource'],
            'properties': {'resource': {'$ref': '#/components/schemas/'
                                        + openapi.schema_name(type_name)}}}
        doc['paths'][f'/v3/sync/resources/{type_name}/{{id}}'] = {'put': op}
    return doc


def _operations() -> tuple[list, list]:
    """The document's operations, and the typed PUTs of ``_document``."""
    schema = schemathesis.openapi.from_dict(_document(),
                                            config=schemathesis.Config())
    ops = [result.ok() for result in schema.get_all_operations()]
    typed = [op for op in ops if op.definition.raw.get(
        'operationId', '').startswith('put_')]
    return [op for op in ops if op not in typed], typed


def _same_id(case):
    """A typed PUT's path names the id its body has (else: 400), when
    that id can be a path segment at all ("." and ".." cannot: they are
    resolved away). Generated path parameters are kept URL-quoted."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get('resource'), dict):
        id_ = body['resource'].get('id')
        if isinstance(id_, str) and PATH_ID.match(id_) \
                and id_ not in ('.', '..'):
            case.path_parameters = dict(case.path_parameters or {},
                                        id=parse.quote(id_, safe=''))
    return case


class Run:
    """What the requests met."""

    def __init__(self, site, tokens):
        self.site = site
        self.base = site.url[:-len('/v3')]
        self.tokens = tokens
        self.db = Database(site)
        self.before = self.db.dump_hash()
        self.http = requests.Session()
        # A new connection per request: the site's uWSGI closes each one
        # after its answer without saying so (as deployed); the fuzz suite
        # judges answers, not connection reuse (the agent's suites do).
        self.http.headers['Connection'] = 'close'
        self.deadline = time.monotonic() + WALL_CLOCK
        self.sent = collections.Counter()       # persona -> requests
        self.covered = collections.Counter()    # (operation, persona)
        self.statuses = collections.Counter()   # status -> requests
        self.server_errors = []
        self.nonconforming = []
        self.wrote_when_refused = []
        self.out_of_time = False
        self.dumps = 0

    def send(self, case, who):
        if time.monotonic() > self.deadline:
            self.out_of_time = True
            return
        # The persona's token, never the one generated for the scheme.
        headers = {k: v for k, v in (case.headers or {}).items()
                   if k.lower() != 'x-auth-token'}
        case.headers = headers
        resp = case.call(base_url=self.base, session=self.http,
                         headers=personas.headers(self.tokens[who]),
                         timeout=60)
        # Some invalid requests leave the credentials out on purpose.
        if 'X-Auth-Token' not in resp.request.headers:
            who = 'anonymous'
        self.sent[who] += 1
        self.covered[(case.operation.label, who)] += 1
        self.statuses[resp.status_code] += 1

        def where():
            # Only for a failure: the curl command line costs time.
            return (f'{who}: {case.operation.label} -> {resp.status_code}'
                    '\n  '
                    + case.as_curl_command(headers=personas.headers('TOKEN'))
                    + f'\n  {resp.text[:300]!r}')

        if resp.status_code >= 500:
            self.server_errors.append(where())
        if resp.status_code >= 400:
            # No error body carries a secret (scanned at the module's end
            # with the logs): the site's password and secret hashes, the
            # tokens, the admin's password.
            scanning.REGISTRY.output(
                f'{case.operation.label} -> {resp.status_code} body',
                resp.text)
        try:
            case.validate_response(resp, checks=CHECKS)
        except FailureGroup as e:
            titles = sorted({f.title for f in e.exceptions})
            self.nonconforming.append(f'{where()}\n  {titles}')
        if self.db.changed():
            self.dumps += 1
            after = self.db.dump_hash()
            if 400 <= resp.status_code < 500 and after != self.before:
                self.wrote_when_refused.append(where())
            self.before = after


def _fuzz(run, operation, who, examples, typed=False):
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    if typed:
        strategy = strategy.map(_same_id)

    # Derandomized: the same requests every run. Failures are collected,
    # never raised, so nothing shrinks and every example is sent once.
    @settings(max_examples=examples, derandomize=True, database=None,
              deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def fuzz(case):
        run.send(case, who)

    fuzz()


@pytest.fixture(scope='module')
def run(fuzz_site, tokens):
    r = Run(fuzz_site, tokens)
    started = time.monotonic()
    operations, typed = _operations()
    for operation in operations:
        for who in personas.PERSONAS:
            _fuzz(r, operation, who, EXAMPLES if who == 'system_admin'
                  else OTHERS_EXAMPLES)
    # Only the system admin gets past the policy to a write.
    for operation in typed:
        _fuzz(r, operation, 'system_admin', TYPED_EXAMPLES, typed=True)
    r.seconds = time.monotonic() - started
    r.db.close()
    print(f'\nfuzz: {sum(r.sent.values())} requests in {r.seconds:.0f} s; '
          f'by persona {dict(r.sent)}; by status {dict(r.statuses)}')
    return r


def _report(found):
    return f'{len(found)} found:\n' + '\n'.join(found)


def test_every_operation_was_called_by_every_persona(run):
    assert not run.out_of_time, f'the run took over {WALL_CLOCK} s'
    operations = {op.label for op in _operations()[0]}
    assert len(operations) == 12
    missing = {(op, who) for op in operations for who in personas.PERSONAS
               if not run.covered[(op, who)]}
    assert not missing
    assert sum(run.sent.values()) >= MIN_REQUESTS, dict(run.sent)


def test_no_server_error(run):
    assert not run.server_errors, _report(run.server_errors)


def test_every_response_is_as_documented(run):
    assert not run.nonconforming, _report(run.nonconforming)


def test_refused_requests_write_nothing(run):
    # Some were refused, and some accepted writes did change the database
    # (so the dump does see changes).
    assert sum(n for s, n in run.statuses.items() if 400 <= s < 500) > 100
    assert run.statuses[201] > 0 and run.dumps > 0
    assert not run.wrote_when_refused, _report(run.wrote_when_refused)
