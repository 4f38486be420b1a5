"""Application credentials, written with SQLAlchemy Core.

Keystone's application credential manager takes the caller's id but always
hashes a *clear* secret; a sync copies the hash, so the rows are written
here, with the given ``secret_hash`` stored verbatim (never re-hashed), and
the manager's checks and side effects written out:

- the user and the project exist, each role exists (400 naming what is
  missing);
- the name is free for the user (409 with ``existing_id``);
- the user holds every role of the credential on its project at this site
  (Keystone's rule at creation, checked on effective assignments as
  Keystone checks it). The sync agent applies role assignments before
  application credentials (dependency order), and Keystone itself deletes
  a user's credentials on a project when the user loses the roles there,
  so a credential whose roles are missing here could never have existed
  at the origin in that state: 400 naming the missing assignment;
- ``[application_credential] user_limit``;
- access rules are re-used by their external id for the same user, as
  Keystone does; an external id held by another user, or a rule whose
  service/path/method is held by the user under another external id (which
  Keystone would silently re-use, so the copy would differ from the
  origin), is refused with 409;
- ``notifications.Audit.created/updated`` and the manager's cache
  invalidation. Deletes go through the manager
  (``delete_application_credential``), which removes the role and
  access-rule links and notifies; access rules themselves stay, as in
  Keystone.

Keystone has no update for application credentials. A sync update by
this site's hub or its own system admins (the origin's credential differs
from ours: a divergence to repair, e.g. a role deleted) replaces the
row's fields and its role and access-rule links in place, in the write's
transaction, keeping the id (so tokens issued with it are judged against
the new state at their next validation, as Keystone re-reads the
credential then). The secret hash never changes, and a write on behalf of
another site never changes a credential nor makes one Keystone would not
let its user make here: see
:mod:`keystone_syncext.resources.app_cred_origin` and doc/security.md.
"""

from keystone import exception as ks_exception
from keystone import notifications
from keystone.common import provider_api
import keystone.conf
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.resources import app_cred_origin
from keystone_syncext.resources import base
from keystone_syncext.resources import common

CONF = keystone.conf.CONF
PROVIDERS = provider_api.ProviderAPIs

_ACCESS_RULE = {
    'type': 'object',
    'properties': {
        'id': {'type': 'string', 'minLength': 1, 'maxLength': 64},
        # Keystone's column sizes; its API allows no more.
        'service': {'type': ['string', 'null'], 'maxLength': 64},
        'path': {'type': ['string', 'null'], 'maxLength': 128},
        'method': {'type': ['string', 'null'], 'maxLength': 16},
    },
    'required': ['id', 'service', 'path', 'method'],
    'additionalProperties': False,
}


def _from_micro(value):
    if value is None:
        return None
    return base.iso(base.from_micros(int(value)))


def _to_micro(text):
    """``expires_at`` as Keystone's DateTimeInt stores it: microseconds
    since the epoch."""
    if text is None:
        return None
    return base.micros(base.parse_iso(text))


class ApplicationCredential(common.IdTable, base.ResourceType):
    name = 'application_credential'
    _props = {
        'id': base.ID,
        'name': base.NAME,
        'description': base.DESCRIPTION,
        'user_id': base.ID,
        'project_id': base.nullable(base.ID),
        'system': {'type': ['string', 'null'], 'maxLength': 64},
        'secret_hash': {'type': 'string', 'minLength': 1,
                        'maxLength': 255},
        'expires_at': base.nullable(base.TIMESTAMP),
        'unrestricted': {'type': ['boolean', 'null']},
        'roles': {'type': 'array', 'uniqueItems': True, 'items': base.ID},
        'access_rules': {'type': 'array', 'items': _ACCESS_RULE},
    }
    schema = {'type': 'object', 'properties': _props,
              'required': list(_props), 'additionalProperties': False}
    rekey_refs = ()

    # -- reading

    def load(self, conn, rows):
        internal = [r.internal_id for r in rows]
        roles = common.children(conn, 'application_credential_role',
                                'application_credential_id', internal,
                                'role_id')
        rules = self._access_rules(conn, internal)
        return [{
            'id': r.id, 'name': r.name, 'description': r.description,
            'user_id': r.user_id, 'project_id': r.project_id,
            'system': r.system, 'secret_hash': r.secret_hash,
            'expires_at': _from_micro(r.expires_at),
            # NULL (not given) and false are both kept, as Keystone has them.
            'unrestricted': (None if r.unrestricted is None
                             else bool(r.unrestricted)),
            'roles': sorted(roles.get(r.internal_id, [])),
            'access_rules': sorted(rules.get(r.internal_id, []),
                                   key=lambda a: a['id']),
            '_meta': common.meta(r),
        } for r in rows]

    @staticmethod
    def _access_rules(conn, internal_ids) -> dict[int, list]:
        if not internal_ids:
            return {}
        link = base.table(conn, 'application_credential_access_rule')
        rule = base.table(conn, 'access_rule')
        out: dict[int, list] = {}
        for owner, ext, service, path, method in conn.execute(
                sa.select(link.c.application_credential_id,
                          rule.c.external_id, rule.c.service, rule.c.path,
                          rule.c.method)
                .join_from(link, rule, link.c.access_rule_id == rule.c.id)
                .where(link.c.application_credential_id.in_(
                    internal_ids))):
            out.setdefault(owner, []).append(
                {'id': ext, 'service': service, 'path': path,
                 'method': method})
        return out

    def existing_named(self, conn, resource):
        t = base.table(conn, self.table_name)
        return conn.execute(sa.select(t.c.id).where(
            t.c.user_id == resource['user_id'],
            t.c.name == resource['name'])).scalars().all()

    # -- checks

    def validate(self, id_, resource):
        """The schema, without ever echoing the secret hash: a schema
        error quotes the offending value."""
        if isinstance(resource, dict) and 'secret_hash' in resource:
            value = resource['secret_hash']
            if not isinstance(value, str) or not 1 <= len(value) <= 255:
                raise exception.BadRequest(
                    f'invalid {self.name}: secret_hash must be a string of '
                    '1 to 255 characters')
        try:
            super().validate(id_, resource)
        except exception.BadRequest as e:
            message = str(e)
            secret = resource.get('secret_hash') \
                if isinstance(resource, dict) else None
            if isinstance(secret, str) and secret in message:
                message = message.replace(secret, '<secret_hash>')
            raise exception.BadRequest(message) from None
        ids = [a['id'] for a in resource['access_rules']]
        if len(set(ids)) != len(ids):
            raise exception.BadRequest(
                f'invalid {self.name}: access rule ids repeat')

    def _check(self, conn, id_, resource, old=None):
        what = f'application credential {id_}'
        if old is None or (old['name'], old['user_id']) != \
                (resource['name'], resource['user_id']):
            common.check_name_free(self, conn, id_, resource)
        user = base.table(conn, 'user')
        if conn.execute(sa.select(sa.literal(1)).where(
                user.c.id == resource['user_id'])).first() is None:
            raise exception.BadRequest(
                f'{what} refers to user {resource["user_id"]!r} (user_id), '
                'which does not exist at this site; sync it first')
        if resource['project_id'] is not None:
            common.require(conn, 'project', resource['project_id'], what)
        for role_id in resource['roles']:
            common.require(conn, 'role', role_id, what, field='roles')
        if old is None or any(old[k] != resource[k] for k in
                              ('user_id', 'project_id', 'roles')):
            self._check_assignments(id_, resource)
        if old is None or old['user_id'] != resource['user_id']:
            self._check_limit(conn, resource['user_id'])

    @staticmethod
    def _check_assignments(id_, resource):
        """Keystone's ``_require_user_has_role_in_project``, with the
        same (effective) assignments."""
        role_id = app_cred_origin.missing_role(resource)
        if role_id is not None:
            raise exception.BadRequest(
                f'application credential {id_}: user '
                f'{resource["user_id"]} has no role {role_id} on '
                f'project {resource["project_id"]} at this site, which '
                'Keystone requires; sync the role assignment first')

    def _check_limit(self, conn, user_id):
        limit = CONF.application_credential.user_limit
        if limit < 0:
            return
        t = base.table(conn, self.table_name)
        count = conn.execute(sa.select(sa.func.count()).select_from(t)
                             .where(t.c.user_id == user_id)).scalar()
        if count >= limit:
            raise exception.BadRequest(
                f'user {user_id} already has {count} application '
                f'credentials, the limit at this site '
                '([application_credential] user_limit)')

    # -- writing

    @staticmethod
    def _row(resource) -> dict:
        return {'name': resource['name'],
                'description': resource['description'],
                'user_id': resource['user_id'],
                'project_id': resource['project_id'],
                'system': resource['system'],
                'secret_hash': resource['secret_hash'],
                'expires_at': _to_micro(resource['expires_at']),
                'unrestricted': resource['unrestricted']}

    def create(self, session, conn, id_, resource):
        origin = app_cred_origin.foreign_origin(session)
        if origin is not None:
            app_cred_origin.check_new(conn, id_, resource, origin)
        self._check(conn, id_, resource)
        t = base.table(conn, self.table_name)
        conn.execute(t.insert().values(id=id_, **self._row(resource)))
        internal_id = conn.execute(sa.select(t.c.internal_id).where(
            t.c.id == id_)).scalar_one()
        self._write_links(conn, internal_id, resource)
        notifications.Audit.created(self.name, id_)

    def update(self, session, conn, id_, old, resource):
        app_cred_origin.check_change(
            id_, old, resource, app_cred_origin.foreign_origin(session))
        self._check(conn, id_, resource, old)
        t = base.table(conn, self.table_name)
        internal_id = conn.execute(sa.select(t.c.internal_id).where(
            t.c.id == id_)).scalar_one()
        conn.execute(t.update().where(t.c.internal_id == internal_id)
                     .values(**self._row(resource)))
        for name in ('application_credential_role',
                     'application_credential_access_rule'):
            link = base.table(conn, name)
            conn.execute(link.delete().where(
                link.c.application_credential_id == internal_id))
        self._write_links(conn, internal_id, resource)
        api = PROVIDERS.application_credential_api
        api.get_application_credential.invalidate(api, id_)
        notifications.Audit.updated(self.name, id_)

    def _write_links(self, conn, internal_id, resource):
        if resource['roles']:
            link = base.table(conn, 'application_credential_role')
            conn.execute(link.insert(), [
                {'application_credential_id': internal_id, 'role_id': r}
                for r in resource['roles']])
        rule_ids = [self._access_rule(conn, resource['user_id'], rule)
                    for rule in resource['access_rules']]
        if rule_ids:
            link = base.table(conn, 'application_credential_access_rule')
            conn.execute(link.insert(), [
                {'application_credential_id': internal_id,
                 'access_rule_id': r} for r in rule_ids])

    @staticmethod
    def _access_rule(conn, user_id, rule) -> int:
        """The internal id of the user's access rule with this external
        id, made if the user has none."""
        t = base.table(conn, 'access_rule')
        found = conn.execute(sa.select(t).where(
            t.c.external_id == rule['id'])).first()
        if found is not None:
            if found.user_id != user_id:
                raise exception.Conflict(
                    f'access rule {rule["id"]} belongs to another user at '
                    'this site')
            if (found.service, found.path, found.method) != \
                    (rule['service'], rule['path'], rule['method']):
                raise exception.Conflict(
                    f'access rule {rule["id"]} is {found.method} '
                    f'{found.service} {found.path} at this site, not '
                    f'{rule["method"]} {rule["service"]} {rule["path"]}; '
                    'Keystone never changes an access rule')
            return found.id
        same = conn.execute(sa.select(t.c.external_id).where(
            t.c.user_id == user_id, t.c.service == rule['service'],
            t.c.path == rule['path'], t.c.method == rule['method'])).first()
        if same is not None:
            raise exception.Conflict(
                f'user {user_id} already has this access rule at this site '
                f'under id {same.external_id}, not {rule["id"]} (Keystone '
                'would re-use it, and the copy would differ)',
                existing_id=same.external_id)
        conn.execute(t.insert().values(
            external_id=rule['id'], user_id=user_id,
            service=rule['service'], path=rule['path'],
            method=rule['method']))
        return conn.execute(sa.select(t.c.id).where(
            t.c.external_id == rule['id'])).scalar_one()

    def delete(self, session, conn, id_, old):
        origin = app_cred_origin.foreign_origin(session)
        if origin is not None:
            app_cred_origin.check_delete(conn, id_, origin)
        try:
            PROVIDERS.application_credential_api \
                .delete_application_credential(id_)
        except ks_exception.ApplicationCredentialNotFound:
            raise exception.NotFound(f'{self.name} {id_} does not exist at '
                                     'this site') from None
        session.flush()
