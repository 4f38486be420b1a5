"""WSGI entry points (``keystone_syncext.wsgi.api:application``)."""
