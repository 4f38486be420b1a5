"""WSGI entry point: Keystone's public application plus the /v3/sync routes.

Operators swap Keystone's ``keystone.wsgi.api:application`` for
``keystone_syncext.wsgi.api:application``; everything else (middleware,
config files, logging) is Keystone's own.
"""

import gc

import flask
from keystone.common.sql import core as sql_core
import keystone.conf
from keystone.server import wsgi as ks_wsgi
from keystone.server.flask import core as flask_core
from keystone.server.flask.request_processing.middleware import auth_context
from oslo_log import log

from keystone_syncext import api
from keystone_syncext import conf
from keystone_syncext.wsgi import auth_busy
from keystone_syncext.wsgi import compressed_batches
from keystone_syncext.wsgi import request_pool

LOG = log.getLogger(__name__)


def build_application() -> flask.Flask:
    """Keystone's public app with our blueprints registered.

    Our options are registered before Keystone parses its config files,
    and our routes before the first request (Flask refuses later ones).
    """
    conf.register_opts(keystone.conf.CONF)
    # Ours in place of Keystone's token validation middleware: the same,
    # but a busy database answers a /v3/sync request with 503. After it,
    # innermost, the decompression of batches (once a token is
    # validated, within Keystone's size limit).
    flask_core._KEYSTONE_MIDDLEWARE = tuple(
        auth_busy.AuthContextMiddleware
        if mw is auth_context.AuthContextMiddleware else mw
        for mw in flask_core._KEYSTONE_MIDDLEWARE
        if mw is not compressed_batches.CompressedBatches) + (
        compressed_batches.CompressedBatches,)
    app = ks_wsgi.initialize_public_application()
    for api_cls in api.APIs:
        api_cls.instantiate_and_register_to_app(app)
    _scope_sqlite_connections(app)
    _freeze_loaded_objects()
    return app


def _freeze_loaded_objects() -> None:
    """Keystone's objects, made once at load and kept for the process's
    life, out of every later full collection (``[sync]
    freeze_loaded_objects``): what is garbage already is collected
    first, so that nothing dead is kept."""
    if not keystone.conf.CONF[conf.GROUP_NAME].freeze_loaded_objects:
        return
    gc.collect()
    gc.freeze()
    LOG.info('%d objects made at load frozen out of garbage collection '
             '([sync] freeze_loaded_objects)', gc.get_freeze_count())


def _scope_sqlite_connections(app: flask.Flask) -> None:
    """On a SQLite file, connections reused within a request and closed at
    its end (``[sync] sqlite_request_connections``; see
    :mod:`keystone_syncext.wsgi.request_pool`). The engine is the one
    Keystone's sessions use, started here rather than on the first
    request; the wrapper is outermost, so Keystone's middleware (token
    validation) runs inside the request's scope."""
    if not keystone.conf.CONF[conf.GROUP_NAME].sqlite_request_connections:
        return
    if not request_pool.is_file_sqlite_url(
            keystone.conf.CONF.database.connection):
        return
    manager = sql_core._get_main_context_manager()
    pools = []
    for facade in (manager.writer, manager.reader):
        new = request_pool.install(facade.get_engine())
        if new is not None and new not in pools:
            pools.append(new)
    if pools:
        app.wsgi_app = request_pool.wrap_wsgi(app.wsgi_app, pools)
        LOG.info('SQLite connections reused within a request and closed '
                 'at its end ([sync] sqlite_request_connections)')


application = build_application()
