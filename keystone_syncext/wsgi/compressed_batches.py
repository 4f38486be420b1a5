"""``POST /v3/sync/batch`` bodies sent gzip-compressed.

Keystone refuses a request body over ``[oslo_middleware]
max_request_body_size`` (112 KiB by default), which holds some 300 items
of a batch, and a spoke pays a fixed cost for every request (the
validation of the agent's token above all): with batches that small, a
seed cost each spoke a fifth more CPU per resource than with batches of
1,000 items (doc/benchmarks.md). Identity data compresses several times
over, so the agent sends a batch gzip-compressed (``Content-Encoding:
gzip``) to a site whose capabilities list ``gzip`` in
``batch_content_encodings``, and a page of 1,000 items fits the limit.

A small gzip body can inflate to any size, and Keystone parses a
request's JSON body (``json_body_before_request``) before the route's
policy is enforced. So nothing is decompressed before the policy has
allowed the caller:

- this middleware sits inside Keystone's own (the last of
  ``keystone.server.flask.core._KEYSTONE_MIDDLEWARE``), where Keystone's
  size limit has judged the body as sent; it reads that body, sets it
  aside in the request's environment, and leaves the request an empty
  body, which Keystone's JSON check lets through;
- the route enforces its policy (``identity:sync:batch``, system admins
  by default) first, as every route does, and only then does
  :func:`keystone_syncext.api.validation.json_body` decompress the body
  set aside (:func:`decompressed`), to at most ``[sync]
  max_decompressed_batch_size`` bytes (413 beyond, as soon as more would
  come out), and parse it; a body that is not one whole gzip stream is
  refused with 400;
- after that the batch is checked and applied as one sent as it is.

Any other request, and a batch sent without ``Content-Encoding`` (or
``identity``), passes untouched; a batch in another encoding gets 415,
and a compressed one without ``Content-Length`` 411.
"""

import io
import json
import zlib

import keystone.conf

from keystone_syncext import conf as conf_mod
from keystone_syncext import exception
from keystone_syncext.common import protocol

CONF = keystone.conf.CONF
BATCH_PATH = '/v3/sync/batch'
ENCODINGS = protocol.BATCH_CONTENT_ENCODINGS
# Where the body as sent waits for the route.
ENVIRON_KEY = 'keystone_syncext.gzip_body'
_READ = 65536


class CompressedBatches:
    """WSGI middleware: sets the gzip body of a ``POST /v3/sync/batch``
    aside for the route (see the module's docstring)."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        encoding = environ.get('HTTP_CONTENT_ENCODING', '').strip().lower()
        if encoding in ('', 'identity') or not _is_batch(environ):
            return self.application(environ, start_response)
        refusal = _set_aside(environ, encoding)
        if refusal is not None:
            return _answer(start_response, *refusal)
        return self.application(environ, start_response)


def _is_batch(environ) -> bool:
    return (environ.get('REQUEST_METHOD') == 'POST' and
            environ.get('PATH_INFO', '').rstrip('/') == BATCH_PATH)


def _set_aside(environ, encoding) -> tuple[int, str, str] | None:
    """Move the request's body to ``environ[ENVIRON_KEY]``, the request
    left with an empty one; or (status, title, message) of the refusal."""
    if encoding not in ENCODINGS:
        return (415, 'Unsupported Media Type',
                f'a batch body encoded as {encoding[:40]!r} is not '
                f'accepted; send it as is or as {", ".join(ENCODINGS)}')
    try:
        length = int(environ.get('CONTENT_LENGTH') or '')
    except ValueError:
        return (411, 'Length Required', 'a compressed batch body needs a '
                'Content-Length')
    environ[ENVIRON_KEY] = _read(environ['wsgi.input'], length), length
    environ['wsgi.input'] = io.BytesIO(b'')
    environ['CONTENT_LENGTH'] = '0'
    del environ['HTTP_CONTENT_ENCODING']
    return None


def decompressed(environ) -> bytes | None:
    """The body set aside for this request, decompressed; None when the
    request's body was not compressed. Raises 413 when it decompresses
    to more than ``[sync] max_decompressed_batch_size`` bytes, 400 when
    it is not one whole gzip stream. Called by the route, after its
    policy."""
    found = environ.get(ENVIRON_KEY)
    if found is None:
        return None
    sent, length = found
    limit = CONF[conf_mod.GROUP_NAME].max_decompressed_batch_size
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip only
    try:
        body = stream.decompress(sent, limit + 1)
    except zlib.error as e:
        raise exception.BadRequest(
            f'the batch body is not a gzip stream ({e})') from None
    if len(body) > limit:
        raise exception.TooLarge(
            f'the batch body decompresses to more than {limit} bytes '
            '([sync] max_decompressed_batch_size); send fewer items in '
            'each batch')
    if not stream.eof or stream.unused_data or len(sent) < length:
        raise exception.BadRequest(
            'the batch body is not one whole gzip stream')
    return body


def _read(stream, length: int) -> bytes:
    """``length`` bytes of the request's body, or as many as it had."""
    parts, left = [], length
    while left > 0:
        part = stream.read(min(left, _READ))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b''.join(parts)


def _answer(start_response, status, title, message):
    body = json.dumps({'error': {'code': status, 'title': title,
                                 'message': message}}).encode()
    start_response(f'{status} {title}', [
        ('Content-Type', 'application/json'),
        ('Content-Length', str(len(body)))])
    return [body]
