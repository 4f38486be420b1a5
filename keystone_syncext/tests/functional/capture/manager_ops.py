"""Create, update and delete every v1 type through Keystone's managers.

Run as a separate process (``python -m ... --config-file keystone.conf``):
Keystone's managers are process-wide singletons, and a process that never
loads keystone_syncext is exactly what capture must cover. Prints one JSON
object: the IDs it made, so the test can judge the change log.
"""

import datetime
import json
import sys
import uuid

from keystone.common import provider_api
from keystone.common import sql
import keystone.conf
from keystone.models import revoke_model
from keystone.server import backends

CONF = keystone.conf.CONF
PROVIDERS = provider_api.ProviderAPIs


def _id():
    return uuid.uuid4().hex


def run():
    out = {}
    resource = PROVIDERS.resource_api
    identity = PROVIDERS.identity_api
    role_api = PROVIDERS.role_api
    assignment = PROVIDERS.assignment_api

    dom_id = _id()
    resource.create_domain(dom_id, {'id': dom_id, 'name': _id()})
    resource.update_domain(dom_id, {'description': 'x'})
    out['domain'] = dom_id

    proj_id = _id()
    resource.create_project(proj_id, {'id': proj_id, 'name': _id(),
                                      'domain_id': dom_id, 'tags': ['t1'],
                                      'is_domain': False,
                                      'parent_id': dom_id})
    resource.update_project(proj_id, {'tags': ['t1', 't2']})
    out['project'] = proj_id

    user = identity.create_user({'name': _id(), 'domain_id': dom_id,
                                 'password': 'manager-Pass1',
                                 'enabled': True})
    identity.update_user(user['id'], {'password': 'manager-Pass2'})
    out['user'] = user['id']

    group = identity.create_group({'name': _id(), 'domain_id': dom_id})
    identity.update_group(group['id'], {'description': 'x'})
    identity.add_user_to_group(user['id'], group['id'])
    out['group'] = group['id']
    out['group_membership'] = f'{user["id"]}:{group["id"]}'

    prior, implied = _id(), _id()
    role_api.create_role(prior, {'id': prior, 'name': _id()})
    role_api.create_role(implied, {'id': implied, 'name': _id()})
    role_api.update_role(prior, {'description': 'x'})
    role_api.create_implied_role(prior, implied)
    out['role'] = prior
    out['implied_role'] = f'{prior}:{implied}'

    assignment.create_grant(prior, user_id=user['id'], project_id=proj_id)
    out['role_assignment'] = f'UserProject:{user["id"]}:{proj_id}:{prior}:0'

    cred = PROVIDERS.application_credential_api.create_application_credential(
        {'id': _id(), 'name': _id(), 'secret': _id(), 'user_id': user['id'],
         'project_id': proj_id, 'roles': [{'id': prior}],
         'access_rules': [{'id': _id(), 'service': 'compute',
                           'method': 'GET', 'path': '/v2.1/servers'}]})
    out['application_credential'] = cred['id']

    federation = PROVIDERS.federation_api
    idp_id, map_id = _id(), _id()
    federation.create_idp(idp_id, {'id': idp_id, 'enabled': True,
                                   'remote_ids': [_id()]})
    federation.create_mapping(map_id, {'id': map_id, 'rules': [
        {'local': [{'user': {'name': '{0}'}}],
         'remote': [{'type': 'REMOTE_USER'}]}]})
    federation.create_protocol(idp_id, 'saml2', {'mapping_id': map_id})
    federation.update_idp(idp_id, {'description': 'x'})
    out['identity_provider'] = idp_id
    out['mapping'] = map_id
    out['federation_protocol'] = f'{idp_id}:saml2'

    # A revocation event revoked long ago: Keystone's revoke() records it
    # and its purge of expired events removes it in the same call. Its id
    # is its columns (keystone_syncext/common/revocation.py, not imported:
    # this process never loads keystone_syncext): the two times, an empty
    # expires_at, seven empty ids, the audit id, an empty audit chain.
    audit, old = _id()[:22], datetime.datetime(2000, 1, 1)
    PROVIDERS.revoke_api.revoke(revoke_model.RevokeEvent(
        audit_id=audit, issued_before=old, revoked_at=old))
    out['revocation_event'] = ':'.join(
        ['20000101000000', '20000101000000', ''] + [''] * 7 + [audit, ''])

    # And delete them all again, leaves first.
    PROVIDERS.application_credential_api.delete_application_credential(
        cred['id'])
    federation.delete_protocol(idp_id, 'saml2')
    federation.delete_idp(idp_id)
    federation.delete_mapping(map_id)
    assignment.delete_grant(prior, user_id=user['id'], project_id=proj_id)
    role_api.delete_implied_role(prior, implied)
    role_api.delete_role(implied)
    role_api.delete_role(prior)
    identity.remove_user_from_group(user['id'], group['id'])
    identity.delete_group(group['id'])
    identity.delete_user(user['id'])
    resource.delete_project(proj_id)
    resource.update_domain(dom_id, {'enabled': False})
    resource.delete_domain(dom_id)
    return out


def main(argv):
    keystone.conf.configure()
    sql.initialize()
    CONF(args=argv[1:], project='keystone')
    backends.load_backends()
    print(json.dumps(run()))


if __name__ == '__main__':
    main(sys.argv)
