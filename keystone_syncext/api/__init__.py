"""The /v3/sync REST API, as Keystone Flask API modules."""

from keystone_syncext.api import sync

APIs = sync.APIs
