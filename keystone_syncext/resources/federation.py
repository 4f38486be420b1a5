"""Federation: mappings, identity providers and their protocols, written
through Keystone's federation manager (which takes the caller's ids).

Keystone's rules apply as its API applies them: a mapping's rules are
checked with Keystone's own validator for its schema version (400 with
Keystone's message, before anything is written); an identity provider
needs an existing domain (always given, so Keystone never invents one) and
remote ids no other identity provider holds (409 naming the holder); a
protocol needs its identity provider and mapping (400 naming which).
Deleting an identity provider deletes its protocols and, as Keystone does,
its federated users' shadow records, and invalidates the token cache.
"""

from keystone import exception as ks_exception
from keystone.common import provider_api
from keystone.federation import utils as federation_utils
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import ids

PROVIDERS = provider_api.ProviderAPIs


class Mapping(common.IdTable, base.ResourceType):
    name = 'mapping'
    _props = {
        'id': base.ID,
        'rules': {'type': 'array'},
        'schema_version': {'type': 'string', 'minLength': 1,
                           'maxLength': 5},
    }
    schema = base.closed_object(_props)

    def id_rule(self):
        return ids.OPERATOR, ids.OPERATOR_FORM

    @staticmethod
    def _rules(text):
        """Keystone's MappingModel encodes the rules to JSON text and its
        JsonBlob column encodes that text again."""
        value = base.json_load(text, [])
        return base.json_load(value, []) if isinstance(value, str) \
            else value

    def load(self, conn, rows):
        return [{'id': r.id, 'rules': self._rules(r.rules),
                 'schema_version': r.schema_version,
                 '_meta': common.meta(r)} for r in rows]

    def validate(self, id_, resource):
        super().validate(id_, resource)
        version = resource['schema_version']
        known = federation_utils.IDP_ATTRIBUTE_MAPPING_SCHEMAS
        if version not in known:
            raise exception.BadRequest(
                f'mapping {id_}: schema_version {version!r} is not one this '
                f'Keystone knows ({", ".join(sorted(known))})')
        try:
            federation_utils.validate_mapping_structure(
                {'rules': resource['rules'], 'schema_version': version})
        except ks_exception.ValidationError as e:
            detail = '; '.join(line for line in str(e).splitlines() if line)
            raise exception.BadRequest(f'invalid mapping rules: {detail}') \
                from None

    @staticmethod
    def _fields(resource):
        return {'rules': resource['rules'],
                'schema_version': resource['schema_version']}

    def create(self, session, conn, id_, resource):
        PROVIDERS.federation_api.create_mapping(id_, self._fields(resource))

    def update(self, session, conn, id_, old, resource):
        PROVIDERS.federation_api.update_mapping(id_, self._fields(resource))

    def delete(self, session, conn, id_, old):
        # Keystone lets a mapping go while protocols still name it.
        PROVIDERS.federation_api.delete_mapping(id_)


class IdentityProvider(common.IdTable, base.ResourceType):
    name = 'identity_provider'
    _props = {
        'id': base.ID,
        'enabled': {'type': 'boolean'},
        'description': base.DESCRIPTION,
        'domain_id': base.ID,
        # Keystone's column is an Integer.
        'authorization_ttl': {'type': ['integer', 'null'], 'minimum': 0,
                              'maximum': 2 ** 31 - 1},
        # Keystone's column holds 255 characters (its API allows 64).
        'remote_ids': {'type': 'array', 'uniqueItems': True,
                       'items': {'type': 'string', 'minLength': 1,
                                 'maxLength': 255}},
    }
    schema = base.closed_object(_props)

    def id_rule(self):
        return ids.OPERATOR, ids.OPERATOR_FORM

    def load(self, conn, rows):
        idp_ids = [r.id for r in rows]
        remote = common.children(conn, 'idp_remote_ids', 'idp_id', idp_ids,
                                 'remote_id')
        return [{'id': r.id, 'enabled': bool(r.enabled),
                 'description': r.description, 'domain_id': r.domain_id,
                 'authorization_ttl': r.authorization_ttl,
                 'remote_ids': sorted(remote.get(r.id, [])),
                 '_meta': common.meta(r)} for r in rows]

    @staticmethod
    def _check_remote_ids_free(conn, id_, remote_ids):
        """Keystone keeps a remote id to one identity provider, and says
        only "Duplicate remote ID"; name the holder."""
        if not remote_ids:
            return
        t = base.table(conn, 'idp_remote_ids')
        held = conn.execute(sa.select(t.c.remote_id, t.c.idp_id).where(
            t.c.remote_id.in_(remote_ids), t.c.idp_id != id_)
            .order_by(t.c.remote_id)).first()
        if held is not None:
            raise exception.NameConflict(
                f'remote id {held.remote_id!r} is already used by identity '
                f'provider {held.idp_id} at this site',
                existing_id=held.idp_id)

    @staticmethod
    def _fields(resource):
        return {'enabled': resource['enabled'],
                'description': resource['description'],
                'authorization_ttl': resource['authorization_ttl'],
                'remote_ids': list(resource['remote_ids'])}

    def create(self, session, conn, id_, resource):
        common.require(conn, 'domain', resource['domain_id'],
                       f'identity provider {id_}')
        self._check_remote_ids_free(conn, id_, resource['remote_ids'])
        PROVIDERS.federation_api.create_idp(
            id_, dict(self._fields(resource),
                      domain_id=resource['domain_id']))

    def update(self, session, conn, id_, old, resource):
        if resource['domain_id'] != old['domain_id']:
            raise exception.BadRequest(
                f'identity provider {id_} belongs to domain '
                f'{old["domain_id"]!r} here; Keystone cannot move an '
                'identity provider to another domain')
        self._check_remote_ids_free(conn, id_, resource['remote_ids'])
        PROVIDERS.federation_api.update_idp(id_, self._fields(resource))

    def delete(self, session, conn, id_, old):
        PROVIDERS.federation_api.delete_idp(id_)


class FederationProtocol(base.ResourceType):
    """Id ``idp_id:protocol_id``, as change capture builds it."""

    name = 'federation_protocol'
    synthetic = True
    _props = {
        'id': {'type': 'string'},
        'idp_id': base.ID,
        'protocol_id': base.ID,
        'mapping_id': base.ID,
        'remote_id_attribute': {'type': ['string', 'null'],
                                'maxLength': 64},
    }
    schema = base.closed_object(_props)

    def id_of(self, resource):
        return f'{resource["idp_id"]}:{resource["protocol_id"]}'

    def id_rule(self):
        return (f'(?:{ids.OPERATOR}):(?:{ids.OPERATOR})',
                f'idp_id:protocol_id, each {ids.OPERATOR_FORM}')

    def fetch(self, conn, *, ids=None, marker=None, limit=None,
              prefix=None):
        t = base.table(conn, 'federation_protocol')
        query = sa.select(t)
        if ids is not None:
            query = common.pair_filter(query, t.c.idp_id, t.c.id, ids)
            if query is None:
                return []
        elif prefix:
            # Every id starts with its idp_id: narrow in SQL first.
            idp_part = prefix.split(':', 1)[0]
            query = query.where(t.c.idp_id.startswith(
                idp_part, autoescape=True))
        query = common.page(conn, query, t.c.idp_id + ':' + t.c.id, ids=ids,
                            marker=marker, limit=limit, prefix=prefix)
        items = [{'id': f'{r.idp_id}:{r.id}', 'idp_id': r.idp_id,
                  'protocol_id': r.id, 'mapping_id': r.mapping_id,
                  'remote_id_attribute': r.remote_id_attribute,
                  '_meta': common.meta(r)} for r in conn.execute(query)]
        return common.filter_ids(items, marker=marker, limit=limit,
                                 prefix=prefix)

    def _check(self, conn, id_, resource):
        what = f'federation protocol {id_}'
        common.require(conn, 'identity_provider', resource['idp_id'], what,
                       field='idp_id')
        common.require(conn, 'mapping', resource['mapping_id'], what)

    @staticmethod
    def _fields(resource):
        return {'mapping_id': resource['mapping_id'],
                'remote_id_attribute': resource['remote_id_attribute']}

    def create(self, session, conn, id_, resource):
        self._check(conn, id_, resource)
        PROVIDERS.federation_api.create_protocol(
            resource['idp_id'], resource['protocol_id'],
            self._fields(resource))

    def update(self, session, conn, id_, old, resource):
        self._check(conn, id_, resource)
        PROVIDERS.federation_api.update_protocol(
            resource['idp_id'], resource['protocol_id'],
            self._fields(resource))

    def delete(self, session, conn, id_, old):
        PROVIDERS.federation_api.delete_protocol(
            old['idp_id'], old['protocol_id'])
