"""The fields of synced resources that carry hashes of secrets, and what
the agent keeps of them at rest.

A conflict record keeps both versions of a resource for the operator to
read; a password hash or an application credential's secret hash in it
would be one more copy of the secret's hash, readable by whoever reads
the state database, for as long as the record lives. So the record keeps
a keyed fingerprint instead (HMAC-SHA256 with a random key kept in the
state database, ``agent_key``): two versions with the same hash show the
same fingerprint, and the hash itself cannot be had from it (nor a
dictionary attack run on it without the key).
"""

import hashlib
import hmac
import json

from keystone_syncext.common import types

# Where the hashes are in each type's representation: the type table's
# ``secrets``. The types that have any:
TYPES = types.WITH_SECRETS
FINGERPRINT_PREFIX = 'hmac-sha256:'


def replace(type_name: str, resource: dict | None, how) -> dict | None:
    """A copy of ``resource`` with each non-null secret field replaced by
    ``how(value)``; :class:`types.UnknownType` for a type not in the
    table (whose secrets no one could say)."""
    return types.replace_secrets(type_name, resource, how)


def fingerprint(key: bytes, value) -> str:
    """The keyed fingerprint of one secret field's value (kept as is
    when it is one already)."""
    if isinstance(value, str) and value.startswith(FINGERPRINT_PREFIX):
        return value
    digest = hmac.new(key, str(value).encode('utf-8'), hashlib.sha256)
    return FINGERPRINT_PREFIX + digest.hexdigest()


def fingerprinted_json(key: bytes, type_name: str,
                       text: str | None) -> str | None:
    """A stored version (JSON text, or None: deleted) with its secret
    fields fingerprinted."""
    if text is None:
        return None
    resource = json.loads(text)
    return json.dumps(replace(type_name, resource,
                              lambda v: fingerprint(key, v)),
                      sort_keys=True)
