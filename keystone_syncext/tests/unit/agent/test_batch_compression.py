"""Batches sent gzip-compressed to a site whose capabilities take them
(``agent/batch_body.py``): the same resources arrive in fewer requests,
each within ``batch_bytes`` as sent; a site that does not list gzip, or
``compress_batches = false``, gets them as they are; a batch that
compresses to more than ``batch_bytes`` is split before it is sent."""

import secrets

import pytest

from keystone_syncext.agent import client
from keystone_syncext.tests.unit.agent import fakeworld

world = fakeworld.world
served_world = fakeworld.served_world

BATCH_BYTES = 8192
ROLES = 400


def _fill(hub):
    # Compressible, as identity data is: a name, a description in words.
    for n in range(ROLES):
        hub.put('role', {'id': f'r{n:04d}', 'name': f'role number {n}',
                         'domain_id': None,
                         'description': 'a role of the tests ' * 4})


def _run(world, capsys, **overrides):
    conf = fakeworld.make_conf(batch_bytes=BATCH_BYTES, batch_items=1000,
                               **overrides)
    agent = world.agent(conf)
    rc, lines, _ = fakeworld.run_agent(agent, capsys, 60)
    assert rc == 0, lines
    spoke = world.spokes[0]
    assert {f'r{n:04d}' for n in range(ROLES)} <= set(spoke.data['role'])
    return spoke


def test_compressed_batches_carry_more_items_each(world, capsys):
    _fill(world.hub)
    spoke = world.spokes[0]
    spoke.gzip_limit = 1 << 20
    _run(world, capsys)
    assert spoke.compressed, 'no batch was compressed'
    sent = [s for s, _ in spoke.compressed]
    decompressed = [d for _, d in spoke.compressed]
    assert max(sent) <= BATCH_BYTES
    # Each full batch carried several times batch_bytes of JSON.
    assert max(decompressed) > 3 * BATCH_BYTES


def test_fewer_requests_than_uncompressed(tmp_path, capsys):
    counts = {}
    for compress in (True, False):
        w = fakeworld.World(tmp_path / str(compress))
        _fill(w.hub)
        w.spokes[0].gzip_limit = 1 << 20
        _run(w, capsys, compress_batches=compress)
        counts[compress] = w.spokes[0].calls['batch']
        assert bool(w.spokes[0].compressed) == compress
    assert counts[True] * 2 <= counts[False], counts


def test_a_site_without_gzip_gets_json(world, capsys):
    _fill(world.hub)
    spoke = _run(world, capsys)
    assert spoke.compressed == []


def test_over_http_too(served_world, capsys):
    _fill(served_world.hub)
    spoke = served_world.spokes[0]
    spoke.gzip_limit = 1 << 20
    conf = fakeworld.make_conf(batch_bytes=BATCH_BYTES, batch_items=1000)
    rc, lines, _ = served_world.run_once(conf, capsys, 60)
    assert rc == 0, lines
    assert len(spoke.data['role']) >= ROLES
    assert spoke.compressed and max(s for s, _ in spoke.compressed) \
        <= BATCH_BYTES


def _items(n, size):
    return [{'op': 'upsert', 'type': 'role', 'id': f'x{i}',
             'resource': {'id': f'x{i}', 'name': secrets.token_hex(size)}}
            for i in range(n)]


def test_a_batch_over_batch_bytes_once_compressed_is_not_sent(world):
    spoke = world.spokes[0]
    spoke.gzip_limit = 1 << 20
    site = spoke.client(fakeworld.make_conf())
    site.capabilities()
    before = spoke.calls['batch']
    # Random hex compresses to about half: 8 items of 2 KiB each.
    with pytest.raises(client.SiteError) as raised:
        site.batch(_items(8, 1024), max_bytes=4096)
    assert raised.value.status == 413 and not raised.value.transient
    assert 'over batch_bytes (4096); not sent' in str(raised.value)
    assert spoke.calls['batch'] == before
    # One item is sent whatever its size: the site judges it.
    assert site.batch(_items(1, 4096), max_bytes=4096)[0]['status'] < 300
    # The ratio learnt sizes the next batches: less JSON per batch.
    assert site.compression.budget(4096) < 0.9 * 4096 / 0.4


def test_the_writer_splits_what_compresses_too_little(world, capsys):
    for n in range(40):
        world.hub.put('role', {'id': f'h{n:02d}', 'domain_id': None,
                               'name': secrets.token_hex(256)})
    spoke = world.spokes[0]
    spoke.gzip_limit = 1 << 20
    conf = fakeworld.make_conf(batch_bytes=2048, batch_items=1000)
    rc, lines, _ = fakeworld.run_agent(world.agent(conf), capsys, 60)
    assert rc == 0, lines
    assert {f'h{n:02d}' for n in range(40)} <= set(spoke.data['role'])
    assert max(s for s, _ in spoke.compressed) <= 2048


def test_a_short_batch_goes_as_it_is(world):
    spoke = world.spokes[0]
    spoke.gzip_limit = 1 << 20
    site = spoke.client(fakeworld.make_conf())
    site.capabilities()
    assert site.batch(_items(1, 16))[0]['status'] < 300
    assert spoke.compressed == []
    assert site.batch(_items(4, 512))[0]['status'] < 300
    assert len(spoke.compressed) == 1


def test_the_budget_stays_within_the_sites_limit(world):
    spoke = world.spokes[0]
    spoke.gzip_limit = 65536
    site = spoke.client(fakeworld.make_conf())
    site.capabilities()
    assert site.compression.budget(100000) == 65536
    spoke.gzip_limit = 1 << 20
    site.capabilities()
    assert site.compression.budget(100000) == int(0.9 * 100000 / 0.4)
