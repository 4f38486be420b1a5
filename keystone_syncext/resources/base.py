"""What every synced resource type shares: canonical JSON, content hashes,
ordering by id, and the reader/writer interface.

A representation is *canonical*: a JSON object defined by protocol v1, not
by any Keystone release's tables, so a site on Keystone N and one on N+1
produce the same bytes for the same resource. Its SHA-256 over the sorted,
compact JSON is the content hash (and the HTTP ETag). Timestamps and other
site-local fields are not part of it, so two sites holding the same
resource have the same hash, which is what digests compare.

Reads use SQLAlchemy Core on Keystone's tables (reflected once per
process). Writes go through Keystone's managers wherever a manager accepts
the caller's id, so Keystone's own rules, notifications and cache
invalidation apply; the few managers that always generate an id (users,
groups, application credentials) are replaced by the same checks and side
effects written out here, and each type's module says which.
"""

import datetime
import functools
import importlib.metadata
import json
import threading

from keystone import exception as ks_exception
from keystone.common.validation import validators
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.common import protocol
from keystone_syncext.common import types
from keystone_syncext.resources import compiled
from keystone_syncext.resources import ids

PROTOCOL_VERSION = protocol.PROTOCOL_VERSION

# Ids are at most 64 characters in Keystone; synthetic ids join several.
ID_PATTERN = r'^[^/\s]{1,255}$'


# The canonical bytes and content hash of a representation (protocol v1).
canonical_json = protocol.canonical_json
content_hash = protocol.content_hash


def _never(value) -> bool:
    return False


def first_line(exc) -> str:
    """The message of a schema error without jsonschema's dump of the
    schema (which is long, and would echo the input back)."""
    return str(exc).split('\n')[0].strip()


@functools.cache
def keystone_release() -> str:
    """The Keystone release this site runs (``27.1.0``)."""
    return importlib.metadata.version('keystone')


def unstorable(what: str, fields) -> exception.BadRequest:
    """The refusal of ``fields`` of ``what`` (``project p1``) that this
    site's Keystone release cannot store: a field of a representation, or
    a resource option, that another release has (doc/api.md, "Fields by
    Keystone release"). Its message starts with ``protocol.UNSTORABLE``:
    the agent keeps the item pending without sending it again until the
    site runs another release."""
    names = ', '.join(repr(f) for f in sorted(fields))
    return exception.BadRequest(
        f'{what}: '
        + protocol.UNSTORABLE.format(release=keystone_release())
        + f' {names}; upgrade this site to a release that has '
        f'{"them" if len(fields) > 1 else "it"}, or leave '
        f'{"them" if len(fields) > 1 else "it"} out where the resource '
        'is made')


# The compiled check and Keystone's validator of each request-body
# schema, built on first use.
_body_validators: dict[int, tuple] = {}


def check_body(schema: dict, body, what: str) -> None:
    """Check a request ``body`` against ``schema`` (a module-level
    constant), or raise 400 ``invalid <what>: <why>``. A body the compiled
    check accepts is accepted; Keystone's validator judges any other
    (``compiled``). Both are built once per schema: building a validator
    makes a new jsonschema class, which costs more than a batch item's
    whole write."""
    checks = _body_validators.get(id(schema))
    if checks is None:
        checks = _body_validators.setdefault(id(schema), (
            compiled.accepter(schema) or _never,
            validators.SchemaValidator(schema)))
    accepts, validator = checks
    if accepts(body):
        return
    try:
        validator.validate(body)
    except ks_exception.ValidationError as e:
        raise exception.BadRequest(
            f'invalid {what}: {first_line(e)}') from None


# How a schema keyword refuses a value, said without the value (secrets).
_REFUSED_BY = {
    'maxLength': 'is longer than {} characters',
    'minLength': 'is shorter than {} characters',
    'type': 'is not of type {}',
    'pattern': 'does not have the expected form',
    'format': 'is not a valid {}',
}


def schema_problem(validator: validators.SchemaValidator, value,
                   secrets=()) -> str | None:
    """What is wrong with ``value`` by ``validator``'s schema, as
    Keystone's SchemaValidator says it (``Invalid input for field
    'a/b': ...``), or None. An error about a field holding a secret
    (``secrets``: dotted paths, list indexes left out), or about an
    object around one, never shows the value."""
    error = next(iter(validator.validator.iter_errors(value)), None)
    if error is None:
        return None
    path = [str(p) for p in error.path]
    dotted = '.'.join(p for p in path if not p.isdigit())
    holds_secret = any(s == dotted or s.startswith(dotted + '.')
                       for s in secrets) if dotted else (
        secrets and error.validator not in ('required',
                                            'additionalProperties'))
    if holds_secret:
        how = _REFUSED_BY.get(error.validator, 'fails the schema check '
                              f'{error.validator!r}')
        message = ('the value (a secret, not shown) '
                   + how.format(error.validator_value))
    else:
        message = error.message
    if not path:
        return message
    return f"Invalid input for field '{'/'.join(path)}': {message}"


def nul_problem(value, path=()) -> str | None:
    """Where ``value`` holds a NUL character, which PostgreSQL cannot
    store in text (and the other databases would keep, unlike it)."""
    if isinstance(value, str):
        if '\x00' in value:
            return (f"Invalid input for field '{'/'.join(path)}': "
                    'contains the NUL character (U+0000)')
        return None
    if isinstance(value, dict):
        pairs = value.items()
    elif isinstance(value, list):
        pairs = enumerate(value)
    else:
        return None
    for key, item in pairs:
        found = nul_problem(key, path) if isinstance(key, str) and \
            '\x00' in key else nul_problem(item, path + (str(key),))
        if found is not None:
            return found
    return None


def error_body(exc: ks_exception.Error) -> dict:
    body = {'code': exc.code, 'title': exc.title, 'message': str(exc)}
    body.update(getattr(exc, 'extra', {}) or {})
    return {'error': body}


# --- table access -----------------------------------------------------------

_tables: dict[tuple[str, str], sa.Table] = {}
_tables_lock = threading.Lock()


def table(conn, name: str) -> sa.Table:
    """Keystone's table ``name`` as this database has it, with the columns
    our migrations added. Reflected once per process."""
    key = (str(conn.engine.url), name)
    found = _tables.get(key)
    if found is None:
        with _tables_lock:
            found = _tables.get(key)
            if found is None:
                found = sa.Table(name, sa.MetaData(), autoload_with=conn)
                _tables[key] = found
    return found


def has_table(conn, name: str) -> bool:
    try:
        table(conn, name)
    except sa.exc.NoSuchTableError:
        return False
    return True


def binary(conn, column):
    """``column`` compared and ordered by bytes, as Python orders str."""
    dialect = conn.dialect.name
    if dialect == 'postgresql':
        return column.collate('C')
    if dialect == 'mysql':
        return sa.func.binary(column)
    return column


def json_load(text, default):
    if text is None or text == '':
        return default
    if isinstance(text, (dict, list)):
        return text
    return json.loads(text)


def iso(value):
    """Naive UTC datetime -> ISO 8601 with Z, or None."""
    if value is None:
        return None
    return value.isoformat(timespec='microseconds') + 'Z'


def parse_iso(text):
    """ISO 8601 with microseconds and Z (as :func:`iso` writes it) ->
    naive UTC datetime, or None."""
    if text is None:
        return None
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ')


_EPOCH = datetime.datetime(1970, 1, 1)
_MICROSECOND = datetime.timedelta(microseconds=1)


def micros(value: datetime.datetime) -> int:
    """Keystone's DateTimeInt: microseconds since the epoch (exact)."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime.datetime:
    """The naive UTC datetime of a DateTimeInt (exact)."""
    return _EPOCH + value * _MICROSECOND


# --- the type interface -----------------------------------------------------

# Type name -> the ResourceType subclass declaring it, filled as the
# resource modules are imported (ResourceType.__init_subclass__).
_REGISTERED: dict[str, type] = {}


def registered() -> dict[str, type]:
    """Type name -> the class that declares it, for every resource
    class imported so far."""
    return dict(_REGISTERED)


class ResourceType:
    """One synced type. Subclasses set the class attributes and implement
    the read and write methods; ``conn`` is a SQLAlchemy Connection and
    ``session`` the ORM session of the same transaction.

    What the type is to the others (rank, containment, references, name,
    secret and site-local fields) is its row of the type table,
    :mod:`keystone_syncext.common.types`, read through ``info``,
    ``secrets`` and ``site_local``; a unit test keeps each class's schema
    true to its row.

    :cvar name: the type name in URLs and the feed (its row's name).
    :cvar schema: JSON schema of the canonical representation (v1).
    :cvar synthetic: the id is made of other fields joined with ':'.
    :cvar rekey_refs: ``(table, column)`` pairs that hold this type's id
        without a foreign key (the foreign keys are read from the schema:
        :mod:`keystone_syncext.resources.references`), for re-key; empty
        when the type cannot be re-keyed.
    """

    name: str = ''
    schema: dict = {}
    synthetic = False
    rekey_refs: tuple[tuple[str, str], ...] = ()

    def __init_subclass__(cls, **kwargs):
        """A class that declares its own ``name`` is that type's class:
        it registers itself (:func:`registered`). The name must be a row
        of the type table, and only one class may claim it."""
        super().__init_subclass__(**kwargs)
        if 'name' not in vars(cls):
            return
        types.lookup(cls.name)   # UnknownType: not in the table
        other = _REGISTERED.setdefault(cls.name, cls)
        if other is not cls:
            raise TypeError(f'{cls.__qualname__} and {other.__qualname__} '
                            f'both declare type {cls.name!r}')

    @property
    def info(self) -> types.TypeInfo:
        """This type's row of the type table."""
        return types.lookup(self.name)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Dotted paths of the fields that carry hashes of secrets."""
        return self.info.secrets

    @property
    def site_local(self) -> dict[str, str]:
        """Keystone fields of this resource that are never synced, with
        why (its row of the type table)."""
        return self.info.site_local

    # -- reading
    def fetch(self, conn, *, ids=None, marker=None, limit=None,
              prefix=None) -> list[dict]:
        """Canonical representations ordered by id (bytewise), filtered by
        ``ids``, ``id > marker``, id starting with ``prefix``; at most
        ``limit``. Each dict carries its timestamps under ``_meta``."""
        raise NotImplementedError

    def get(self, conn, id_: str) -> dict | None:
        found = self.fetch(conn, ids=[id_])
        return found[0] if found else None

    def exists(self, conn, id_: str) -> bool:
        """Whether this site holds the resource (a type stored in a table
        of its own asks it more cheaply)."""
        return self.get(conn, id_) is not None

    # -- writing
    def id_of(self, resource: dict) -> str:
        """The id a representation names (its ``id``, or for synthetic
        types the id its fields make)."""
        return resource['id']

    def id_rule(self) -> tuple[str, str]:
        """``(regular expression, description)`` of the ids of this type
        (``keystone_syncext.resources.ids``): by default, the ids Keystone
        generates."""
        return ids.KEYSTONE, ids.KEYSTONE_FORM

    def check_id(self, id_) -> None:
        """400 unless ``id_`` has the form of this type's ids. Every write
        path checks the id it is given with this before anything else."""
        message = ids.check(self.name, id_, *self.id_rule())
        if message is not None:
            raise exception.BadRequest(message)

    def id_holder(self, conn, id_: str) -> str | None:
        """What already holds ``id_`` where a new resource of this type
        would be stored, when it is not a resource of this type (a domain
        for a project id...), or None. Types stored apart have none."""
        return None

    def validate(self, id_: str, resource) -> None:
        """Id, schema and the type's own checks; raises BadRequest, writes
        nothing. ``PUT`` and every batch upsert (set-wise or one by one)
        are checked by this one function."""
        self.check_id(id_)
        if not isinstance(resource, dict):
            raise exception.BadRequest(
                f'the {self.name} representation must be a JSON object')
        props = self.schema.get('properties')
        if props is not None and \
                self.schema.get('additionalProperties') is False:
            unknown = set(resource) - set(props)
            if unknown:
                raise unstorable(f'{self.name} {id_}', unknown)
        problem = (None if self.accepts(resource) else schema_problem(
            self.validator, resource, self.secrets)) or nul_problem(resource)
        if problem is not None:
            raise exception.BadRequest(f'invalid {self.name} {id_}: {problem}')
        if self.id_of(resource) != id_:
            raise exception.BadRequest(
                f'the {self.name} representation names id '
                f'{self.id_of(resource)!r}, not {id_!r}')

    @functools.cached_property
    def accepts(self):
        """True of a representation ``schema`` accepts (``compiled``);
        False means Keystone's validator has to judge it."""
        return compiled.accepter(self.schema) or _never

    @functools.cached_property
    def validator(self) -> validators.SchemaValidator:
        """Keystone's validator of ``schema``, built once: building one
        makes a new jsonschema class, which costs more than a batch item's
        whole write."""
        return validators.SchemaValidator(self.schema)

    def create(self, session, conn, id_: str, resource: dict) -> None:
        raise NotImplementedError

    def update(self, session, conn, id_: str, old: dict,
               resource: dict) -> None:
        raise NotImplementedError

    def delete(self, session, conn, id_: str, old: dict) -> None:
        raise NotImplementedError

    def stale_cache(self, id_: str, old: dict | None,
                    new: dict | None) -> list[tuple] | None:
        """The entries of Keystone's caches that writing ``id_`` from
        ``old`` to ``new`` (None: absent) makes stale, as
        ``keystone_syncext.writes.caching`` names them: those Keystone's own
        managers invalidate for the same change, plus any entry of this
        resource (a manager called inside the write may have cached it
        before we wrote the rest). None, the default: this type cannot
        say, so the write drops everything Keystone caches."""
        return None

    def sort_key(self, resource: dict | None, batch: dict) -> int:
        """Order among upserts of this type in one batch (projects:
        parents first). ``batch`` maps id -> representation."""
        return 0


def strip_meta(item: dict) -> dict:
    return {k: v for k, v in item.items() if k != '_meta'}


def envelope(type_name: str, item: dict) -> dict:
    """A resource as the API returns it: the canonical representation
    under ``resource``, its hash, and this site's timestamps."""
    meta = item.get('_meta', {})
    resource = strip_meta(item)
    return {
        'type': type_name,
        'id': resource['id'],
        'hash': content_hash(resource),
        'created_at': meta.get('created_at'),
        'updated_at': meta.get('updated_at'),
        'resource': resource,
    }


def nullable(schema: dict) -> dict:
    out = dict(schema)
    types = out.get('type')
    out['type'] = [types, 'null'] if isinstance(types, str) else \
        list(types) + ['null']
    return out


# A reference to an id (the type's own id is checked by ``check_id``):
# Keystone's column size; no "/", ":", "%", white space, control or
# formatting character (see keystone_syncext.resources.ids).
ID = {'type': 'string', 'minLength': 1, 'maxLength': 64,
      'pattern': r'^[^/\s:%\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f'
                 r'\u2028-\u202e\u2060-\u206f\ufeff]+$'}
# Keystone's names: at most 255 characters (its column; some types' are
# shorter: name_of), with something other than white space.
NAME = {'type': 'string', 'minLength': 1, 'maxLength': 255,
        'pattern': r'\S'}


def name_of(max_length: int) -> dict:
    """A name whose Keystone column holds ``max_length`` characters."""
    return dict(NAME, maxLength=max_length)


# Timestamps that are synced data, in one canonical spelling, and a real
# date and time (Keystone's own ``date-time`` format check).
TIMESTAMP = {'type': 'string', 'format': 'date-time',
             'pattern': r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$'}
DESCRIPTION = {'type': ['string', 'null']}
EXTRA = {'type': 'object'}
OPTIONS = {'type': 'object'}


def closed_object(props: dict) -> dict:
    """The schema of a representation: an object with exactly the
    properties ``props``, every one required."""
    return {'type': 'object', 'properties': props, 'required': list(props),
            'additionalProperties': False}
