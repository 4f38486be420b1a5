"""The agent's passes and the request id each carries (doc/agent.md,
"Request ids"), and the name and version its requests give in their
``User-Agent``.

A pass is this thread's current oslo.context ``RequestContext``: the
client (client.py) sends its ``global_request_id`` as
``X-OpenStack-Request-ID`` on every request, and oslo.log prints it on
every line the agent logs meanwhile.
"""

import contextlib
import functools
import importlib.metadata

from oslo_context import context as oslo_context

APP_NAME = 'keystone-sync'


def app_version() -> str:
    return importlib.metadata.version('keystone-syncext')


def named(session):
    """``session`` (keystoneauth), its ``User-Agent`` starting
    ``keystone-sync/<version>`` (its ``app_name`` and ``app_version``)."""
    session.app_name, session.app_version = APP_NAME, app_version()
    return session


@contextlib.contextmanager
def one_pass():
    """One pass of the agent (doc/agent.md, "Request ids"): every request
    this thread makes meanwhile carries one new ``X-OpenStack-Request-ID``
    (keystoneauth's global request id), which each site's log prints for
    them, and so does every line the agent logs meanwhile (oslo.log's
    context format: an oslo.context ``RequestContext`` is this thread's
    current context). Yields the id."""
    outer = oslo_context.get_current()
    ctx = oslo_context.RequestContext(overwrite=True)
    ctx.global_request_id = ctx.request_id
    try:
        yield ctx.global_request_id
    finally:
        if outer is not None:
            outer.update_store()
        else:
            # oslo.context has no public way back to "no context"; its
            # thread-local store is what get_current() reads (the unit
            # test of one_pass pins this).
            vars(oslo_context._request_store).pop('context', None)


def carry_pass(fn):
    """``fn`` for another thread, in this thread's current pass: the
    requests a pass makes from helper threads (seeding's read-ahead,
    reconcile's pools) carry its id too."""
    ctx = oslo_context.get_current()

    @functools.wraps(fn)
    def in_pass(*args, **kwargs):
        if ctx is not None:
            ctx.update_store()
        return fn(*args, **kwargs)
    return in_pass


def pass_id() -> str | None:
    """The current pass's request id (None outside a pass)."""
    ctx = oslo_context.get_current()
    return ctx.global_request_id if ctx is not None else None
