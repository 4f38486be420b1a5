"""The protocol's hashes have one home each: item hashes in
:mod:`keystone_syncext.common.protocol`, digest buckets in
:mod:`keystone_syncext.digests.hashing`. The extension hashes with them,
and so does the in-memory test site, so that a digest walk against the
fake compares as against a real site."""

from keystone_syncext.common import protocol
from keystone_syncext.digests import hashing
from keystone_syncext.resources import base
from keystone_syncext.testing import fakesite


def test_the_extension_and_the_fake_site_hash_alike():
    assert base.content_hash is protocol.content_hash
    assert fakesite.content_hash is protocol.content_hash
    site = fakesite.FakeSite('s', leaf=4)
    site.load({'role': {'a1': {'id': 'a1'}, 'a2': {'id': 'a2'}}})
    node = site.client(timeout=5).digest('role')
    pairs = [(i, base.content_hash({'id': i})) for i in ('a1', 'a2')]
    assert node['items'] == [{'id': i, 'hash': h} for i, h in pairs]
    assert node['hash'] == hashing.bucket_hash(pairs)


def test_a_content_hash_is_of_the_canonical_form():
    assert protocol.canonical_json({'b': 1, 'a': 'é'}) == \
        '{"a":"é","b":1}'.encode()
    assert protocol.content_hash({'b': 1, 'a': 2}) == \
        protocol.content_hash({'a': 2, 'b': 1})
