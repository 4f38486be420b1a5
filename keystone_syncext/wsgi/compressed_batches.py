"""``POST /v3/sync/batch`` bodies sent gzip-compressed.

Keystone refuses a request body over ``[oslo_middleware]
max_request_body_size`` (112 KiB by default), which holds some 300 items
of a batch, and a spoke pays a fixed cost for every request (the
validation of the agent's token above all): with batches that small, a
seed cost each spoke a fifth more CPU per resource than with batches of
1,000 items (doc/benchmarks.md). Identity data compresses several times
over, so the agent sends a batch gzip-compressed (``Content-Encoding:
gzip``) to a site whose capabilities list ``gzip`` in
``batch_content_encodings``, and as many items fit in the same size limit
as in several times that limit uncompressed.

This middleware sits inside Keystone's own, after the token's
validation (the last of ``keystone.server.flask.core.
_KEYSTONE_MIDDLEWARE``):

- Keystone's size limit has judged the body as sent, compressed;
- a body is decompressed only for a request whose token Keystone has
  just validated (``X-Identity-Status: Confirmed``, a header the token
  middleware removes from what the client sent and sets itself);
  without one, 401, and the body is not read;
- at most ``[sync] max_decompressed_batch_size`` bytes come out of it
  (413 beyond: a small body that inflates without end costs no more
  memory than that), and a body that is not one whole gzip stream is
  refused with 400;
- the route then reads the decompressed body as any other (the JSON
  check of Keystone's, the batch's schema, the policy), so what a batch
  may do does not depend on how it was sent.

Any other request, and a batch sent without ``Content-Encoding`` (or
``identity``), passes untouched; a batch in another encoding gets 415.
"""

import io
import json
import zlib

import keystone.conf

from keystone_syncext import conf as conf_mod
from keystone_syncext.common import protocol

CONF = keystone.conf.CONF
BATCH_PATH = '/v3/sync/batch'
ENCODINGS = protocol.BATCH_CONTENT_ENCODINGS
_READ = 65536


class CompressedBatches:
    """WSGI middleware: decompresses the gzip body of an authenticated
    ``POST /v3/sync/batch`` (see the module's docstring)."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        encoding = environ.get('HTTP_CONTENT_ENCODING', '').strip().lower()
        if encoding in ('', 'identity') or not _is_batch(environ):
            return self.application(environ, start_response)
        refusal = _decompress(environ, encoding)
        if refusal is not None:
            return _answer(start_response, *refusal)
        return self.application(environ, start_response)


def _is_batch(environ) -> bool:
    return (environ.get('REQUEST_METHOD') == 'POST' and
            environ.get('PATH_INFO', '').rstrip('/') == BATCH_PATH)


def _decompress(environ, encoding) -> tuple[int, str, str] | None:
    """Replace the request's body with its decompressed form; or (status,
    title, message) of the refusal, the body left as it was."""
    if encoding not in ENCODINGS:
        return (415, 'Unsupported Media Type',
                f'a batch body encoded as {encoding[:40]!r} is not '
                f'accepted; send it as is or as {", ".join(ENCODINGS)}')
    if environ.get('HTTP_X_IDENTITY_STATUS') != 'Confirmed':
        return (401, 'Unauthorized', 'The request you have made requires '
                'authentication.')
    try:
        length = int(environ.get('CONTENT_LENGTH') or '')
    except ValueError:
        return (411, 'Length Required', 'a compressed batch body needs a '
                'Content-Length')
    sent = _read(environ['wsgi.input'], length)
    limit = CONF[conf_mod.GROUP_NAME].max_decompressed_batch_size
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip only
    try:
        body = stream.decompress(sent, limit + 1)
    except zlib.error as e:
        return (400, 'Bad Request', f'the batch body is not a gzip stream '
                f'({e})')
    if len(body) > limit:
        return (413, 'Request Entity Too Large', 'the batch body '
                f'decompresses to more than {limit} bytes ([sync] '
                'max_decompressed_batch_size); send fewer items in each')
    if not stream.eof or stream.unused_data or len(sent) < length:
        return (400, 'Bad Request', 'the batch body is not one whole gzip '
                'stream')
    environ['wsgi.input'] = io.BytesIO(body)
    environ['CONTENT_LENGTH'] = str(len(body))
    del environ['HTTP_CONTENT_ENCODING']
    return None


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
