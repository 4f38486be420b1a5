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
"""

import contextlib
import threading

from keystone.common import provider_api

PROVIDERS = provider_api.ProviderAPIs

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
