"""WSGI entry point: Keystone's public application plus the /v3/sync routes.

Operators swap Keystone's ``keystone.wsgi.api:application`` for
``keystone_syncext.wsgi.api:application``; everything else (middleware,
config files, logging) is Keystone's own.
"""

import flask
import keystone.conf
from keystone.server import wsgi as ks_wsgi
from keystone.server.flask import core as flask_core
from keystone.server.flask.request_processing.middleware import auth_context

from keystone_syncext import api
from keystone_syncext import conf
from keystone_syncext.wsgi import auth_busy


def build_application() -> flask.Flask:
    """Keystone's public app with our blueprints registered.

    Our options are registered before Keystone parses its config files,
    and our routes before the first request (Flask refuses later ones).
    """
    conf.register_opts(keystone.conf.CONF)
    # Ours in place of Keystone's token validation middleware: the same,
    # but a busy database answers a /v3/sync request with 503.
    flask_core._KEYSTONE_MIDDLEWARE = tuple(
        auth_busy.AuthContextMiddleware
        if mw is auth_context.AuthContextMiddleware else mw
        for mw in flask_core._KEYSTONE_MIDDLEWARE)
    app = ks_wsgi.initialize_public_application()
    for api_cls in api.APIs:
        api_cls.instantiate_and_register_to_app(app)
    return app


application = build_application()
