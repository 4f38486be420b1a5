"""The resource suites' client: a site's system admin on Keystone's
ordinary API and ``/v3/sync``, with the checks every resource type's tests
make (a round trip, a refusal that writes nothing)."""

import uuid

import sqlalchemy as sa

from keystone_syncext.db import tables
from keystone_syncext.resources import base


def hex_id(prefix: str = '') -> str:
    return f'{prefix}{uuid.uuid4().hex[:12]}'


class Client:
    """The bootstrap admin of one site (system scoped). Its writes through
    ``/v3/sync`` carry ``headers`` (an ``OpenStack-Sync-Origin``, say)."""

    def __init__(self, site, headers=None):
        self.site = site
        self.sess = site.admin_session()
        self.headers = dict(headers or {})

    def call(self, method, path, expect=None, **kw):
        """A request relative to ``site.url``; asserts the status when
        ``expect`` is given and returns the response either way."""
        resp = self.sess.request(self.site.url + path, method,
                                 raise_exc=False, **kw)
        if expect is not None:
            assert resp.status_code == expect, (method, path,
                                                resp.status_code, resp.text)
        return resp

    __call__ = call

    def get(self, type_, id_, **kw):
        return self.call('GET', f'/sync/resources/{type_}/{id_}', **kw)

    def read(self, type_, id_):
        """The envelope of ``type_`` ``id_`` (200), whose hash is the
        ETag."""
        resp = self.get(type_, id_, expect=200)
        env = resp.json()
        assert resp.headers['ETag'] == f'"{env["hash"]}"'
        return env

    def put(self, type_, id_, resource, expect=None):
        return self.call('PUT', f'/sync/resources/{type_}/{id_}',
                         expect=expect, json={'resource': resource},
                         headers=self.headers)

    def delete(self, type_, id_, expect=204):
        return self.call('DELETE', f'/sync/resources/{type_}/{id_}',
                         expect=expect, headers=self.headers)

    def role_id(self, name):
        roles = self('GET', f'/roles?name={name}', expect=200).json()
        return roles['roles'][0]['id']

    def copy_to(self, other, type_, id_):
        """GET here, PUT there; returns the envelope there."""
        env = self.get(type_, id_, expect=200).json()
        resp = other.put(type_, id_, env['resource'])
        assert resp.status_code in (200, 201), resp.text
        assert resp.json()['hash'] == env['hash']
        return resp.json()

    # -- judging through the database

    def last_change(self):
        with self.site.engine().connect() as conn:
            return conn.execute(sa.select(sa.func.max(tables.change.c.id))
                                ).scalar() or 0

    def tombstone(self, type_, id_):
        t = tables.tombstone.c
        with self.site.engine().connect() as conn:
            return conn.execute(sa.select(tables.tombstone).where(
                t.resource_type == type_, t.resource_id == id_)).first()


def check_roundtrip(client, type_, id_, resource, resp, status):
    """``resp`` (a PUT of ``resource``) answered ``status`` with the
    envelope of exactly ``resource`` and its hash, and a GET reads the
    same back."""
    assert resp.status_code == status, resp.text
    env = resp.json()
    assert env['id'] == id_
    assert env['resource'] == resource
    assert env['hash'] == base.content_hash(resource)
    assert resp.headers['ETag'] == f'"{env["hash"]}"'
    got = client.get(type_, id_, expect=200)
    assert got.json()['resource'] == resource
    assert got.headers['ETag'] == resp.headers['ETag']
    return env


def refused(client, type_, id_, resource, status):
    """PUT that must be refused with ``status`` without writing."""
    before = client.last_change()
    resp = client.put(type_, id_, resource)
    assert resp.status_code == status, resp.text
    assert client.last_change() == before
    client.get(type_, id_, expect=404)
    return resp.json()['error']
