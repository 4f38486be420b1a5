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


class Heard:
    """Keystone's notifier configured with ``drivers``, and the audit
    events that reach it."""

    def __init__(self, monkeypatch, drivers):
        from keystone import notifications
        self.sent = []
        conf = types.SimpleNamespace(
            notification_format='cadf', default_publisher_id=None,
            notification_opt_out=[],
            oslo_messaging_notifications=types.SimpleNamespace(
                driver=drivers))
        monkeypatch.setattr(notify, 'CONF', conf)
        monkeypatch.setattr(notifications, 'CONF', conf)
        monkeypatch.setattr(notifications, '_get_notifier',
                            lambda: types.SimpleNamespace(
                                info=lambda ctx, event_type, payload:
                                self.sent.append(event_type)))
        monkeypatch.setattr(notifications, '_check_notification_opt_out',
                            lambda *a: False)
        helper = types.SimpleNamespace(catalog_api=FakeCatalog())
        monkeypatch.setattr(notifications, '_CATALOG_HELPER_OBJ', helper)
        self.callbacks = []
        monkeypatch.setattr(
            notifications, 'notify_event_callbacks',
            lambda service, rtype, op, payload: self.callbacks.append(
                (rtype, op)))

    @staticmethod
    def emit():
        from keystone import notifications
        notifications.Audit.created('project', 'p1')
        notifications.Audit.added_to('group', 'g1', 'user', 'u1')


def test_audits_not_built_when_nothing_would_send_them(monkeypatch):
    heard = Heard(monkeypatch, [])
    heard.emit()
    assert len(heard.sent) == 2   # built and handed to a notifier anyway
    with notify.audits_built_only_if_heard():
        heard.emit()
    assert len(heard.sent) == 2
    # Keystone's in-process callbacks ran for every event all the same.
    assert heard.callbacks == [('project', 'created'),
                               ('group', 'updated')] * 2
    heard.emit()   # after the block: Keystone's own again
    assert len(heard.sent) == 4


def test_audits_sent_as_before_when_a_driver_is_configured(monkeypatch):
    heard = Heard(monkeypatch, ['noop', 'log'])
    with notify.audits_built_only_if_heard():
        heard.emit()
        seen = []
        t = threading.Thread(target=lambda: seen.append(
            notify.nothing_heard()))
        t.start()
        t.join()
    assert heard.sent == ['identity.project.created',
                          'identity.group.updated']
    assert seen == [False]


def test_other_threads_build_audits_as_before(monkeypatch):
    heard = Heard(monkeypatch, ['noop'])
    with notify.audits_built_only_if_heard():
        t = threading.Thread(target=heard.emit)
        t.start()
        t.join()
        heard.emit()
    assert len(heard.sent) == 2
