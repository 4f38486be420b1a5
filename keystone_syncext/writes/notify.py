"""Sending Keystone's own notifications for many resources in one request.

A batch sends the notification an ordinary create, update or delete would
send, for each of up to ``[sync] max_page_size`` items. Keystone's CADF
notifier (``keystone.notifications._send_audit_notification``) reads the
whole service catalog from the database for every notification it sends,
only to name the identity service as the event's observer; at hundreds of
notifications a request that read is most of a batch's time. The catalog
does not change under a batch, so within :func:`catalog_read_once` the
catalog manager answers ``list_services()`` from one read made in the
same thread. Everything else, and every other thread, reads the catalog
as before: the notifications are exactly the ones Keystone sends.

Where they go nowhere -- no notification driver but ``noop`` configured
(``[oslo_messaging_notifications] driver``, empty by default), or a
notifier Keystone could not build -- Keystone still builds every CADF
event (pycadf resources, uuids, timestamps, a serialised payload) and
hands it to a notifier that drops it: in a profile of a seed that was 40%
of a spoke's batch time. Within :func:`audits_built_only_if_heard` this
thread skips Keystone's ``_create_cadf_payload`` and
``_send_audit_notification`` when nothing would be sent; the in-process
callbacks (``notify_event_callbacks``, which Keystone's own caches and
revocations listen to) and basic-format notifications run as before, and
with any real driver configured every audit event is built and sent.
"""

import contextlib
import functools
import threading

from keystone import notifications
from keystone.common import provider_api
import keystone.conf

CONF = keystone.conf.CONF
PROVIDERS = provider_api.ProviderAPIs
# Keystone's functions that only build and send CADF audit events.
AUDIT_SENDERS = ('_create_cadf_payload', '_send_audit_notification')

_local = threading.local()
_install_lock = threading.Lock()


def _install(catalog) -> None:
    """Wrap ``catalog.list_services`` once per process: outside a
    :func:`catalog_read_once` block (any other thread, or a call with
    hints) it is the manager's own."""
    with _install_lock:
        if getattr(catalog, '_sync_catalog_read_once', False):
            return
        original = catalog.list_services

        def list_services(hints=None):
            if hints is None and getattr(_local, 'depth', 0):
                if _local.services is None:
                    _local.services = original()
                return _local.services
            return original(hints)

        catalog.list_services = list_services
        catalog._sync_catalog_read_once = True


@contextlib.contextmanager
def catalog_read_once():
    """Within this block, this thread reads the service catalog at most
    once for the notifications it sends."""
    _install(PROVIDERS.catalog_api)
    depth = getattr(_local, 'depth', 0)
    if not depth:
        _local.services = None
    _local.depth = depth + 1
    try:
        yield
    finally:
        _local.depth = depth
        if not depth:
            _local.services = None


def nothing_heard() -> bool:
    """Whether Keystone's notifier sends its events nowhere."""
    notifier = notifications._get_notifier()   # registers the options
    if not notifier:
        return True
    drivers = CONF.oslo_messaging_notifications.driver
    return not [d for d in drivers if d != 'noop']


def _skipping(original):
    @functools.wraps(original)
    def sender(*args, **kwargs):
        if getattr(_local, 'unheard', False):
            return None
        return original(*args, **kwargs)
    return sender


def _install_audit_skip() -> None:
    """Wrap Keystone's audit senders once per process: outside an
    :func:`audits_built_only_if_heard` block (any other thread) they are
    Keystone's own."""
    with _install_lock:
        if getattr(notifications, '_sync_audit_skip', False):
            return
        for name in AUDIT_SENDERS:
            setattr(notifications, name,
                    _skipping(getattr(notifications, name)))
        notifications._sync_audit_skip = True


@contextlib.contextmanager
def audits_built_only_if_heard():
    """Within this block, this thread builds no CADF audit event that
    Keystone's notifier would drop (see the module's doc)."""
    _install_audit_skip()
    before = getattr(_local, 'unheard', False)
    _local.unheard = nothing_heard()
    try:
        yield
    finally:
        _local.unheard = before
