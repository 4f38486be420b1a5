"""How the body of a ``POST /sync/batch`` goes to a site: as JSON, or
gzip-compressed to a site that takes that.

A site's Keystone refuses a body over its ``[oslo_middleware]
max_request_body_size`` (112 KiB by default), about 300 items of a seed
sent as they are, and each request costs the site a fixed amount (the
validation of the agent's token above all). A site whose capabilities
list ``gzip`` in ``batch_content_encodings`` decompresses a batch body
itself, to at most its ``max_decompressed_batch_size``; identity data
compresses to an eighth or so at gzip's fastest level, so the same
``batch_bytes`` then carries several times as many items (up to
``batch_items`` and the site's ``max_page_size``). ``compress_batches =
false`` sends every batch as it is.
"""

import gzip
import json

# A compressed batch's size over its uncompressed one: what the first
# batch to a site is sized by, and the least any later one is sized by.
FIRST_GZIP_RATIO = 0.4
MIN_GZIP_RATIO = 0.05
# A body shorter than this goes as it is: it fits one packet anyway (a
# change propagated alone is a few hundred bytes).
SMALLEST_COMPRESSED = 1400


class Compression:
    """One site's batch compression: whether it is used, the site's
    limit, and the ratio of the last batch compressed for it."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.used = False
        self.limit: int | None = None
        self.ratio = FIRST_GZIP_RATIO

    def read(self, caps: dict) -> None:
        """Take the site's capabilities (``GET /v3/sync``)."""
        most = caps.get('max_decompressed_batch_size')
        self.limit = (most if isinstance(most, int)
                      and not isinstance(most, bool) and most > 0 else None)
        encodings = caps.get('batch_content_encodings')
        self.used = bool(self.enabled and isinstance(encodings, list)
                         and 'gzip' in encodings and self.limit)

    def budget(self, max_bytes: int) -> int:
        """The most uncompressed bytes of items to gather for one batch
        whose body, as sent, should stay within ``max_bytes``: that
        itself, or when compressing what compresses to about 90% of it
        at the last batch's ratio, within the site's limit."""
        if not self.used:
            return max_bytes
        return min(self.limit,
                   max(max_bytes, int(0.9 * max_bytes / self.ratio)))

    def pack(self, items) -> tuple[bytes, str | None]:
        """The JSON body of a batch of ``items`` and its Content-Encoding:
        gzip-compressed, or as it is (None) when short."""
        body = json.dumps({'items': items}, separators=(',', ':')).encode()
        if len(body) < SMALLEST_COMPRESSED:
            return body, None
        packed = gzip.compress(body, compresslevel=1, mtime=0)
        self.ratio = max(len(packed) / len(body), MIN_GZIP_RATIO)
        return packed, 'gzip'


def chunks(things, max_items, max_bytes, as_item=lambda thing: thing):
    """Split ``things`` (in order) into lists whose batch bodies
    (``as_item`` of each, as JSON) stay under both limits. ``max_bytes``
    is a number, or a function that gives it as each list begins: after
    the list before it was sent, when read as the writer reads them."""
    limit = max_bytes if callable(max_bytes) else lambda: max_bytes
    batch, size, most = [], 20, limit()
    for thing in things:
        n = len(json.dumps(as_item(thing), separators=(',', ':'))) + 1
        if batch and (len(batch) >= max_items or size + n > most):
            yield batch
            batch, size, most = [], 20, limit()
        batch.append(thing)
        size += n
    if batch:
        yield batch
