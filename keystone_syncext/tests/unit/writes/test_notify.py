"""catalog_read_once: one catalog read per batch, in that thread only."""

import threading
import types

from keystone_syncext.writes import notify


class FakeCatalog:
    def __init__(self):
        self.reads = 0

    def list_services(self, hints=None):
        self.reads += 1
        return [{'id': f'svc-{self.reads}', 'type': 'identity',
                 'hints': hints}]


def test_one_read_within_the_block_and_fresh_reads_outside(monkeypatch):
    catalog = FakeCatalog()
    monkeypatch.setattr(notify, 'PROVIDERS',
                        types.SimpleNamespace(catalog_api=catalog))
    assert catalog.list_services()[0]['id'] == 'svc-1'
    with notify.catalog_read_once():
        first = catalog.list_services()
        with notify.catalog_read_once():   # nested: still the same read
            assert catalog.list_services() is first
        assert catalog.list_services() is first
        # A call with hints is not the notifier's: it reads.
        assert catalog.list_services(hints='h')[0]['hints'] == 'h'
    assert catalog.reads == 3
    # Outside, every call reads again; a new block reads once more.
    assert catalog.list_services()[0]['id'] == 'svc-4'
    with notify.catalog_read_once():
        assert catalog.list_services()[0]['id'] == 'svc-5'
        assert catalog.list_services()[0]['id'] == 'svc-5'


def test_other_threads_read_as_before(monkeypatch):
    catalog = FakeCatalog()
    monkeypatch.setattr(notify, 'PROVIDERS',
                        types.SimpleNamespace(catalog_api=catalog))
    seen = []
    with notify.catalog_read_once():
        catalog.list_services()
        for _ in range(2):
            t = threading.Thread(
                target=lambda: seen.append(catalog.list_services()[0]['id']))
            t.start()
            t.join()
    assert seen == ['svc-2', 'svc-3']
