"""The form of the ids chosen through ``/v3/sync``: one rule per type,
checked by every write path (``PUT``, ``DELETE``, each batch item and
both ids of a re-key) before anything is read or written.

A site must never hold an id that Keystone itself could not have given:
the agent copies ids to every spoke, so one accepted by mistake spreads.
The forms, from Keystone's own code:

- ids Keystone generates (domains, projects, roles, users, groups,
  application credentials): ``uuid.uuid4().hex``, 32 lowercase hex
  characters; ids mapped by ``keystone.identity.id_generators.sha256``
  (federated and domain-specific users and groups) are its hex digest, 64
  lowercase hex characters. An explicit domain id given to Keystone's API
  must be a UUID in that same hex form
  (``ResourceBase._validate_id_format``); the default domain is
  ``[identity] default_domain_id`` (``default``);
- ids the operator chooses (identity providers, mappings, the protocol
  part of a federation protocol): Keystone's API takes whatever the URL
  segment holds, stored in a ``String(64)``. Refused here: what no URL
  segment can carry as itself or what would break the synthetic ids (see
  :func:`unsafe`);
- synthetic ids: their parts joined with ``:``, each part in its type's
  form (``keystone_syncext.capture.spec`` composes them the same way).

Whatever the type, an id is refused first when it holds a control,
formatting or line/paragraph separator character (Unicode categories
Cc, Cf, Zl, Zp, which include NUL and the bidirectional overrides),
white space, ``/``, a percent-encoding, or is (or has a part that is) the
path segment ``.`` or ``..``.
"""

import functools
import re
import unicodedata

import keystone.conf
from oslo_config import cfg

CONF = keystone.conf.CONF

KEYSTONE = r'[0-9a-f]{32}|[0-9a-f]{64}'
KEYSTONE_FORM = ('32 lowercase hex characters (a Keystone UUID) or 64 '
                 '(a mapped id)')
# Operator-chosen ids: one URL segment, at most Keystone's column size;
# ':' separates the parts of synthetic ids.
OPERATOR = r'[^/:%\s]{1,64}'
OPERATOR_FORM = ('1 to 64 characters, none of them "/", ":", "%" or '
                 'white space')

_REFUSED_CATEGORIES = {'Cc': 'control', 'Cf': 'formatting',
                       'Zl': 'line separator', 'Zp': 'paragraph separator'}
_PERCENT = re.compile(r'%[0-9A-Fa-f]{2}')


def unsafe(id_) -> str | None:
    """Why ``id_`` can be no id of any type, or None."""
    if not isinstance(id_, str) or not id_:
        return 'must be a non-empty string'
    if len(id_) > 255:
        return 'is longer than any id (255 characters)'
    # Every id Keystone makes is printable ASCII without a space, which
    # holds none of the refused characters (in ASCII those are the
    # control characters and the white space, none printable but the
    # space): only other ids are looked at character by character.
    if not (id_.isascii() and id_.isprintable() and ' ' not in id_):
        why = _refused_character(id_)
        if why is not None:
            return why
    if '/' in id_:
        return 'contains "/"'
    if _PERCENT.search(id_):
        return ('contains a percent-encoding; send the id itself (the URL '
                'of a PUT or DELETE is decoded once)')
    if any(part in ('.', '..') for part in id_.split(':')):
        return 'is (or has a part that is) the path segment "." or ".."'
    return None


def _refused_character(id_: str) -> str | None:
    """Why the first refused character of ``id_`` refuses it, or None."""
    for char in id_:
        kind = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            return f'contains the {kind} character U+{ord(char):04X}'
        if char.isspace():
            return f'contains the white space character U+{ord(char):04X}'
    return None


def _default_domain_id() -> str:
    try:
        return CONF.identity.default_domain_id
    except cfg.NoSuchOptError:
        # Keystone's options are not registered (generating the OpenAPI
        # document): its default.
        return 'default'


def domain() -> str:
    """The form of a domain id here."""
    return f'{KEYSTONE}|{re.escape(_default_domain_id())}'


def domain_form() -> str:
    return (f'{KEYSTONE_FORM}, or {_default_domain_id()!r} (the default '
            'domain)')


@functools.lru_cache(maxsize=64)   # one per id rule in use
def _whole(pattern: str) -> re.Pattern:
    return re.compile(f'(?:{pattern})')


def check(type_name: str, id_, pattern: str, form: str):
    """The message of the 400 for ``id_`` of ``type_name``, or None when
    it is ``pattern`` (a regular expression matched whole)."""
    why = unsafe(id_)
    if why is None and not _whole(pattern).fullmatch(id_):
        why = f'is not of the form Keystone gives {type_name} ids: {form}'
    if why is None:
        return None
    shown = id_ if isinstance(id_, str) else str(id_)
    # ascii(): a control or bidi character is shown escaped, never as is.
    return f'invalid {type_name} id {ascii(shown[:80])}: {why}'
