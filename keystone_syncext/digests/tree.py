"""The digest routes: the tree of hashed buckets two sites compare."""

import keystone.conf

from keystone_syncext import exception
from keystone_syncext import resources
from keystone_syncext.digests import hashing
from keystone_syncext.digests import store
from keystone_syncext.feed import history

CONF = keystone.conf.CONF


def digest(type_name: str, prefix: str = '') -> dict:
    """Hash buckets of the ids starting with ``prefix``, one per next
    character, so two sites compare a type in a few small requests and
    drill down only where the buckets differ. A bucket (or the whole
    prefix) small enough lists its ``(id, hash)`` pairs directly. The
    pairs come from the stored hashes (``keystone_syncext.digests.store``).

    ``common_prefix`` is the longest prefix all those ids share (absent
    when there are none): ids such as role assignments'
    ``UserProject:<user>:...`` share a dozen characters, and a reader
    that sees both sites' common prefixes can skip the levels in
    between instead of asking for each (an older reader ignores it)."""
    rtype = resources.get(type_name)
    prefix = prefix or ''
    history.check_capture()
    return hashing.node(type_name, prefix, store.pairs(rtype, [prefix])[0])


def digest_many(body) -> list[dict]:
    """:func:`digest` of each ``{"type", "prefix"}`` in ``body``, in
    order: a reconcile asks for a whole level of its walk, every type at
    once, in one request instead of one per node. The whole body is
    checked before anything is read; each answer is exactly what
    ``GET /v3/sync/digest/{type}?prefix=P`` gives."""
    nodes = body['digests']
    most = CONF.sync.max_digests_per_request
    if len(nodes) > most:
        raise exception.BadRequest(
            f'one request may ask for at most {most} digests ([sync] '
            f'max_digests_per_request), not {len(nodes)}')
    at: dict[str, list[int]] = {}   # type -> where its nodes are
    for n, node in enumerate(nodes):
        resources.get(node['type'])
        at.setdefault(node['type'], []).append(n)
    history.check_capture()
    out: list = [None] * len(nodes)
    for type_name, where in at.items():
        prefixes = [nodes[n].get('prefix', '') for n in where]
        found = store.pairs(resources.get(type_name), prefixes)
        for n, prefix, pairs in zip(where, prefixes, found, strict=True):
            out[n] = hashing.node(type_name, prefix, pairs)
    return out
