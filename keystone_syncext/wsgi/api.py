"""WSGI entry point: Keystone's public application plus the /v3/sync routes.

Operators swap Keystone's ``keystone.wsgi.api:application`` for
``keystone_syncext.wsgi.api:application``; everything else (middleware,
config files, logging) is Keystone's own.
"""

import flask
import keystone.conf
from keystone.server import wsgi as ks_wsgi

from keystone_syncext import api
from keystone_syncext import conf


def build_application() -> flask.Flask:
    """Keystone's public app with our blueprints registered.

    Our options are registered before Keystone parses its config files,
    and our routes before the first request (Flask refuses later ones).
    """
    conf.register_opts(keystone.conf.CONF)
    app = ks_wsgi.initialize_public_application()
    for api_cls in api.APIs:
        api_cls.instantiate_and_register_to_app(app)
    return app


application = build_application()
