"""The digest tree's hashing: pure, Keystone-free, and what a site answers."""

import hashlib
import subprocess
import sys

from keystone_syncext.digests import hashing


def test_hashing_and_cursors_import_without_keystone():
    """A test site (and the agent) build digests and read cursors without
    Keystone installed: importing them must not import it."""
    probe = ('import sys\n'
             'import keystone_syncext.digests.hashing\n'
             'import keystone_syncext.feed.cursors\n'
             'loaded = sorted(m for m in sys.modules\n'
             '                if m.split(".")[0] in ("keystone", "oslo_db",'
             ' "sqlalchemy"))\n'
             'print(",".join(loaded))\n')
    out = subprocess.run([sys.executable, '-c', probe], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == ''


def test_bucket_hash_is_sha256_of_id_hash_lines():
    pairs = [('a1', 'h1'), ('b2', 'h2')]
    assert hashing.bucket_hash(pairs) == hashlib.sha256(
        b'a1 h1\nb2 h2\n').hexdigest()
    assert hashing.bucket_hash([]) == hashlib.sha256(b'').hexdigest()


def test_node_buckets_by_next_character_in_byte_order():
    pairs = [('ab1', 'x'), ('ab2', 'y'), ('aZ', 'z'), ('a\u00e9', 'w')]
    pairs.sort(key=lambda p: p[0].encode())
    node = hashing.node('user', 'a', pairs)
    assert [b['prefix'] for b in node['buckets']] == ['aZ', 'ab', 'a\u00e9']
    assert node['buckets'][1] == {
        'prefix': 'ab', 'count': 2,
        'hash': hashing.bucket_hash([('ab1', 'x'), ('ab2', 'y')])}
    assert node['count'] == 4
    assert node['hash'] == hashing.bucket_hash(pairs)
    assert node['common_prefix'] == 'a'
    assert node['items'] == [{'id': i, 'hash': h} for i, h in pairs]


def test_node_lists_items_only_up_to_the_leaf_size():
    many = [(f'id{n:04d}', 'h') for n in range(hashing.LEAF_SIZE + 1)]
    node = hashing.node('role', '', many)
    assert 'items' not in node
    assert node['common_prefix'] == 'id00'
    assert 'items' in hashing.node('role', '', many[:hashing.LEAF_SIZE])


def test_empty_node_has_no_common_prefix():
    node = hashing.node('group', 'x', [])
    assert node == {'type': 'group', 'prefix': 'x', 'count': 0,
                    'hash': hashlib.sha256(b'').hexdigest(), 'buckets': [],
                    'items': []}
