"""Synced passwords: their hashes (never re-hashed, never echoed) and
timestamps, as Keystone's ``password`` table holds them.

Only :mod:`keystone_syncext.resources.identity` (the user type) and the
batch's set-wise user creates write them.
"""

import binascii
import re

from keystone.common import password_hashers
from keystone.common import password_hashing

from keystone_syncext import exception
from keystone_syncext.resources import base

# Password timestamps are synced data (expiry).
TIMESTAMP = base.TIMESTAMP

PASSWORD = {
    'type': 'object',
    'properties': {
        # NULL: Keystone stores a password row without hash when a
        # password is unset.
        'hash': {'type': ['string', 'null'], 'minLength': 1,
                 'maxLength': 255},
        'created_at': TIMESTAMP,
        'expires_at': base.nullable(TIMESTAMP),
        'self_service': {'type': 'boolean'},
    },
    'required': ['hash', 'created_at', 'expires_at', 'self_service'],
    'additionalProperties': False,
}


def password_time(as_int, as_datetime):
    """Keystone reads the integer column, falling back to the datetime one
    (0 means unset); see keystone.identity.backends.sql_model.Password."""
    if as_int:
        return base.from_micros(as_int)
    return as_datetime


# Shapes of the hashes each of Keystone's hashers parses (see
# keystone.common.password_hashers): checked without computing a hash,
# which would cost what a login costs for every password written.
_B64 = r'[./A-Za-z0-9+]+'
_HASH_SHAPES = {
    'bcrypt': re.compile(r'^\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}$'),
    'bcrypt_sha256': re.compile(
        r'^\$bcrypt-sha256\$(?=[^$]*\bt=2[ab]\b)(?=[^$]*\br=\d{1,2}\b)'
        r'[a-z0-9=,]+\$[./A-Za-z0-9]{22}\$[./A-Za-z0-9]{31}$'),
    'pbkdf2_sha512': re.compile(rf'^\$pbkdf2-sha512\$\d+\${_B64}\${_B64}$'),
    'scrypt': re.compile(
        rf'^\$scrypt\$ln=\d+,r=\d+,p=\d+\${_B64}\${_B64}$'),
}


def check_hash(user_id: str, hashed: str | None) -> None:
    """400 unless this Keystone can verify ``hashed``. The message never
    contains the hash."""
    if hashed is None:
        return
    try:
        hasher = password_hashing._get_hasher_from_ident(hashed)
    except (ValueError, IndexError):
        hasher = None
    shape = _HASH_SHAPES.get(getattr(hasher, 'name', None))
    if hasher is None or (shape is not None and not shape.match(hashed)) \
            or not _base64_parts_decode(hasher, hashed):
        raise exception.BadRequest(
            f'user {user_id}: unsupported password hash format (this '
            'Keystone cannot verify it)')


def _base64_parts_decode(hasher, hashed) -> bool:
    """Salt and digest of pbkdf2/scrypt hashes decode as Keystone's
    verifiers decode them."""
    if hasher.name not in ('pbkdf2_sha512', 'scrypt'):
        return True
    try:
        for part in hashed.split('$')[-2:]:
            password_hashers.b64s_decode(
                part.replace('.', '+').encode('ascii'))
    except (ValueError, binascii.Error):
        return False
    return True



def current_hash(local):
    return local['passwords'][-1]['hash'] if local['passwords'] else None



def insert_passwords(conn, local_user_id, passwords):
    if not passwords:
        return
    pw = base.table(conn, 'password')
    # One row at a time: the ids (which break created_at ties on read)
    # follow the order given.
    for p in passwords:
        conn.execute(pw.insert().values(password_row(local_user_id, p)))


def password_row(local_user_id, password: dict) -> dict:
    """The ``password`` row of one synced password."""
    created = base.parse_iso(password['created_at'])
    expires = base.parse_iso(password['expires_at'])
    return {
        'local_user_id': local_user_id,
        'password_hash': password['hash'],
        'created_at': created,
        'created_at_int': base.micros(created),
        'expires_at': expires,
        'expires_at_int': None if expires is None else base.micros(expires),
        'self_service': password['self_service'],
    }
