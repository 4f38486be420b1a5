"""Users; and what users, groups and group memberships share.

Keystone's identity manager always generates the id of a new user or
group, so creates (and, for users, every update: the manager would re-hash
a password, and a synced password arrives already hashed) write Keystone's
rows with SQLAlchemy Core, with the manager's checks and side effects
written out here:

- checks: the domain exists and its identity backend is SQL; the default
  project is not a domain; the name is free in the domain (409 naming the
  user or group that has it); the domain of a user or group never changes;
  resource options are ones this Keystone knows, with valid values; every
  password hash is in a format this Keystone can verify (never re-hashed,
  never echoed in an error); the identity provider and protocol of a
  federated identity exist here, and no other user has that identity;
- side effects: ``notifications.Audit.created/updated/deleted('user'|'group',
  id)``; a revocation event for the user
  (``PERSIST_REVOCATION_EVENT_FOR_USER``) and the token cache notification
  when a password changes or the user is disabled, as
  ``keystone.identity.core.Manager.update_user`` does; re-enabling a user
  clears its lockout and restarts its inactivity clock, as Keystone's
  ``User.enabled`` setter does. Caches are invalidated by
  ``writes.transaction.writing`` after commit.

Group updates and deletes, user deletes and memberships go through the
identity manager (which cleans up assignments, credentials, memberships
and emits the same notifications as the ordinary API).

Site-local and never synced:

- ``user.last_active_at`` (inactivity is judged per site: a user who logs
  in only at one site is inactive at the others);
- ``local_user.failed_auth_count`` / ``failed_auth_at`` (lockout counts
  failures at this site; an update keeps them, a re-enable clears them as
  Keystone does);
- ``expiring_user_group_membership`` (made by federation mapping rules at
  each login, at the site of the login);
- users with a ``nonlocal_user`` row: shadow records of users of an LDAP
  (or other non-SQL) identity backend, which each site builds itself from
  its own directory on first login, under the same deterministic id
  (Keystone's id mapping). They are not part of the ``user`` type at all:
  they are neither listed nor written here, and a user or group in a
  domain with a non-SQL backend is refused with 400.

Groups and memberships: :mod:`keystone_syncext.resources.group`;
passwords: :mod:`keystone_syncext.resources.passwords`.
"""

import json

from keystone import notifications
from keystone.common import provider_api
import keystone.conf
from keystone.identity.backends import resource_options as user_ro
from oslo_utils import timeutils
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import passwords

CONF = keystone.conf.CONF
PROVIDERS = provider_api.ProviderAPIs




_LOCAL = {
    'type': ['object', 'null'],
    'properties': {
        'name': base.NAME,
        'passwords': {'type': 'array', 'items': passwords.PASSWORD},
    },
    'required': ['name', 'passwords'],
    'additionalProperties': False,
}
_FEDERATED = {
    'type': 'object',
    'properties': {
        'idp_id': base.ID,
        'protocol_id': base.ID,
        'unique_id': {'type': 'string', 'minLength': 1, 'maxLength': 255},
        'display_name': {'type': ['string', 'null'], 'maxLength': 255},
    },
    'required': ['idp_id', 'protocol_id', 'unique_id', 'display_name'],
    'additionalProperties': False,
}




def has_sql_backend(domain_id) -> bool:
    """Only a domain whose identity backend is SQL keeps users and groups
    in these tables."""
    api = PROVIDERS.identity_api
    select = getattr(api, '_select_identity_driver', None)
    driver = select(domain_id) if select else None
    return driver is None or getattr(driver, 'is_sql', True)


def non_sql_backend(domain_id, what) -> exception.BadRequest:
    return exception.BadRequest(
        f'{what}: domain {domain_id} uses a non-SQL identity backend '
        'here; its users and groups come from that backend and are '
        'not synced')


def require_sql_backend(domain_id, what):
    if not has_sql_backend(domain_id):
        raise non_sql_backend(domain_id, what)


def default_project_is_domain(user_id, project_id) -> exception.BadRequest:
    return exception.BadRequest(
        f"user {user_id}: the default project {project_id} is a "
        'domain; a user\'s default project cannot be a domain')


def check_domain_unchanged(type_name, id_, old, resource):
    if resource['domain_id'] != old['domain_id']:
        raise exception.BadRequest(
            f'{type_name} {id_} belongs to domain {old["domain_id"]!r} '
            'here; Keystone cannot move it to another domain')


class User(common.IdTable, base.ResourceType):
    name = 'user'
    registry = user_ro.USER_OPTIONS_REGISTRY
    _props = {
        'id': base.ID,
        'domain_id': base.ID,
        'enabled': {'type': 'boolean'},
        'default_project_id': base.nullable(base.ID),
        'options': base.OPTIONS,
        'extra': base.EXTRA,
        'local': _LOCAL,
        'federated': {'type': 'array', 'items': _FEDERATED},
    }
    schema = {'type': 'object', 'properties': _props,
              'required': list(_props), 'additionalProperties': False}
    rekey_unique = ()  # the user table has no name (local_user has)

    def held_by(self, row):
        return (f'user {row.id} of a non-SQL identity backend (not '
                'synced)')

    rekey_refs = (
        ('local_user', 'user_id'), ('nonlocal_user', 'user_id'),
        ('federated_user', 'user_id'), ('user_option', 'user_id'),
        ('user_group_membership', 'user_id'),
        ('expiring_user_group_membership', 'user_id'),
        ('assignment', 'actor_id'), ('system_assignment', 'actor_id'),
        ('application_credential', 'user_id'), ('access_rule', 'user_id'),
        ('credential', 'user_id'),
        ('trust', 'trustor_user_id'), ('trust', 'trustee_user_id'),
        ('request_token', 'authorizing_user_id'),
        ('access_token', 'authorizing_user_id'),
        ('id_mapping', 'public_id'),
    )


    # -- reading

    def where(self, t):
        # Shadow rows of LDAP/non-SQL users are not synced (see above).
        nonlocal_user = sa.table('nonlocal_user', sa.column('user_id'))
        return ~sa.exists().where(nonlocal_user.c.user_id == t.c.id)

    def load(self, conn, rows):
        ids = [r.id for r in rows]
        locals_ = self._locals(conn, ids)
        federated = self._federated(conn, ids)
        options = common.options(conn, 'user_option', 'user_id', ids,
                                 self.registry)
        return [{
            'id': r.id,
            'domain_id': r.domain_id,
            'enabled': bool(r.enabled),
            'default_project_id': r.default_project_id,
            'options': options.get(r.id, {}),
            'extra': base.json_load(r.extra, {}),
            'local': locals_.get(r.id),
            'federated': federated.get(r.id, []),
            '_meta': common.meta(r),
        } for r in rows]

    @staticmethod
    def _locals(conn, ids):
        if not ids:
            return {}
        lu = base.table(conn, 'local_user')
        pw = base.table(conn, 'password')
        local_rows = conn.execute(sa.select(lu.c.id, lu.c.user_id, lu.c.name)
                                  .where(lu.c.user_id.in_(ids))).all()
        by_local = {r.id: [] for r in local_rows}
        if by_local:
            for p in conn.execute(sa.select(pw).where(
                    pw.c.local_user_id.in_(list(by_local)))):
                created = passwords.password_time(p.created_at_int,
                                                  p.created_at)
                by_local[p.local_user_id].append((created, p.id, {
                    'hash': p.password_hash,
                    'created_at': base.iso(created),
                    'expires_at': base.iso(passwords.password_time(
                        p.expires_at_int, p.expires_at)),
                    'self_service': bool(p.self_service),
                }))
        out = {}
        for r in local_rows:
            # Keystone's order (Password.created_at_int); the row id breaks
            # ties the way the rows were written.
            ordered = [p for _, _, p in sorted(
                by_local[r.id], key=lambda x: (x[0], x[1]))]
            out[r.user_id] = {'name': r.name, 'passwords': ordered}
        return out

    @staticmethod
    def _federated(conn, ids):
        if not ids:
            return {}
        fu = base.table(conn, 'federated_user')
        out = {}
        for r in conn.execute(sa.select(fu).where(fu.c.user_id.in_(ids))):
            out.setdefault(r.user_id, []).append({
                'idp_id': r.idp_id, 'protocol_id': r.protocol_id,
                'unique_id': r.unique_id, 'display_name': r.display_name})
        for items in out.values():
            items.sort(key=_federated_key)
        return out

    def existing_named(self, conn, resource):
        lu = base.table(conn, 'local_user')
        return conn.execute(sa.select(lu.c.user_id).where(
            lu.c.domain_id == resource['domain_id'],
            lu.c.name == resource['name'])).scalars().all()

    # -- writing

    def validate(self, id_, resource):
        super().validate(id_, resource)
        local = resource['local']
        if local is not None:
            stamps = [p['created_at'] for p in local['passwords']]
            if stamps != sorted(stamps):
                raise exception.BadRequest(
                    f'user {id_}: local.passwords must be ordered oldest '
                    'first (by created_at)')
        keys = [_federated_key(f) for f in resource['federated']]
        if keys != sorted(keys) or len(set(keys)) != len(keys):
            raise exception.BadRequest(
                f'user {id_}: federated must be sorted by (idp_id, '
                'protocol_id, unique_id), without duplicates')
        common.check_options(self.registry, f'user {id_}',
                             resource['options'])

    def _check(self, conn, id_, resource, old=None):
        """Keystone's rules for a user as given (before writing)."""
        what = f'user {id_}'
        if old is None:
            common.require(conn, 'domain', resource['domain_id'], what)
            require_sql_backend(resource['domain_id'], what)
        else:
            check_domain_unchanged('user', id_, old, resource)
        project_id = resource['default_project_id']
        if project_id and (old is None or
                           project_id != old['default_project_id']):
            p = base.table(conn, 'project')
            if conn.execute(sa.select(p.c.is_domain).where(
                    p.c.id == project_id)).scalar():
                raise default_project_is_domain(id_, project_id)
        local = resource['local']
        if local is not None:
            if old is None or old['local'] is None or \
                    old['local']['name'] != local['name']:
                common.check_name_free(self, conn, id_, {
                    'name': local['name'],
                    'domain_id': resource['domain_id']})
            for p in local['passwords']:
                passwords.check_hash(id_, p['hash'])
        if old is None or old['federated'] != resource['federated']:
            self._check_federated(conn, id_, resource['federated'])

    @staticmethod
    def _check_federated(conn, id_, federated):
        if not federated:
            return
        fp = base.table(conn, 'federation_protocol')
        fu = base.table(conn, 'federated_user')
        for f in federated:
            if conn.execute(sa.select(sa.literal(1)).where(
                    fp.c.idp_id == f['idp_id'],
                    fp.c.id == f['protocol_id'])).first() is None:
                raise exception.BadRequest(
                    f'user {id_} refers to federation protocol '
                    f'{f["idp_id"]}:{f["protocol_id"]} (federated '
                    'idp_id/protocol_id), which does not exist at this '
                    'site; sync it first')
            other = conn.execute(sa.select(fu.c.user_id).where(
                fu.c.idp_id == f['idp_id'],
                fu.c.protocol_id == f['protocol_id'],
                fu.c.unique_id == f['unique_id'],
                fu.c.user_id != id_)).scalar()
            if other is not None:
                raise exception.NameConflict(
                    f'federated identity {f["unique_id"]!r} of '
                    f'{f["idp_id"]}:{f["protocol_id"]} already belongs to '
                    f'user {other} at this site', existing_id=other)

    def create(self, session, conn, id_, resource):
        session.flush()
        self._check(conn, id_, resource)
        now = timeutils.utcnow()
        u = base.table(conn, 'user')
        conn.execute(u.insert().values(
            id=id_, domain_id=resource['domain_id'],
            enabled=resource['enabled'],
            extra=json.dumps(resource['extra']),
            default_project_id=resource['default_project_id'],
            created_at=now,
            last_active_at=active_today() if resource['enabled'] else None))
        _write_options(conn, id_, {}, resource['options'], self.registry)
        if resource['local'] is not None:
            self._insert_local(conn, id_, resource)
        self._write_federated(conn, id_, resource['federated'])
        # Keystone's ORM objects of this transaction must not outlive
        # rows changed under them (a later manager call would use them).
        session.expire_all()
        notifications.Audit.created('user', id_)

    def update(self, session, conn, id_, old, resource):
        session.flush()
        self._check(conn, id_, resource, old)
        u = base.table(conn, 'user')
        values = {}
        if resource['default_project_id'] != old['default_project_id']:
            values['default_project_id'] = resource['default_project_id']
        if resource['extra'] != old['extra']:
            values['extra'] = json.dumps(resource['extra'])
        enabling = resource['enabled'] and not old['enabled']
        disabling = old['enabled'] and not resource['enabled']
        if enabling or disabling:
            values['enabled'] = resource['enabled']
        if enabling:
            # Keystone's User.enabled setter: a re-enabled user starts a
            # new inactivity period and its lockout is cleared.
            today = active_today()
            if today is not None:
                values['last_active_at'] = today
        if values:
            conn.execute(u.update().where(u.c.id == id_).values(values))
        _write_options(conn, id_, old['options'], resource['options'],
                       self.registry)
        password_changed = self._update_local(conn, id_, old, resource)
        if enabling and resource['local'] is not None:
            lu = base.table(conn, 'local_user')
            conn.execute(lu.update().where(lu.c.user_id == id_).values(
                failed_auth_count=0, failed_auth_at=None))
        if resource['federated'] != old['federated']:
            fu = base.table(conn, 'federated_user')
            conn.execute(fu.delete().where(fu.c.user_id == id_))
            self._write_federated(conn, id_, resource['federated'])
        session.expire_all()  # see create
        notifications.Audit.updated('user', id_)
        if disabling or password_changed:
            # As keystone.identity.core.Manager.update_user does.
            notifications.Audit.internal(
                notifications.PERSIST_REVOCATION_EVENT_FOR_USER, id_)
            notifications.invalidate_token_cache_notification(
                f'Invalidating the token cache because user {id_} was '
                'disabled or changed password (sync).')

    def _insert_local(self, conn, id_, resource):
        lu = base.table(conn, 'local_user')
        local_id = conn.execute(lu.insert().values(
            user_id=id_, domain_id=resource['domain_id'],
            name=resource['local']['name'])).inserted_primary_key[0]
        passwords.insert_passwords(conn, local_id,
                                   resource['local']['passwords'])

    def _update_local(self, conn, id_, old, resource) -> bool:
        """Bring local_user and password rows to ``resource``; True when
        the password changed. Keeps local_user's own (site-local) lockout
        fields unless the local identity goes away."""
        lu = base.table(conn, 'local_user')
        pw = base.table(conn, 'password')
        new, was = resource['local'], old['local']
        local_id = conn.execute(sa.select(lu.c.id).where(
            lu.c.user_id == id_)).scalar()
        if new is None:
            if was is not None:
                # Not left to ON DELETE CASCADE: SQLite may not enforce it.
                conn.execute(pw.delete().where(
                    pw.c.local_user_id == local_id))
                conn.execute(lu.delete().where(lu.c.id == local_id))
            return was is not None
        if was is None:
            self._insert_local(conn, id_, resource)
            return True
        if new['name'] != was['name']:
            conn.execute(lu.update().where(lu.c.user_id == id_)
                         .values(name=new['name']))
        if new['passwords'] == was['passwords']:
            return False
        conn.execute(pw.delete().where(pw.c.local_user_id == local_id))
        passwords.insert_passwords(conn, local_id, new['passwords'])
        return passwords.current_hash(new) != passwords.current_hash(was)

    @staticmethod
    def _write_federated(conn, id_, federated):
        if federated:
            fu = base.table(conn, 'federated_user')
            conn.execute(fu.insert(), [dict(f, user_id=id_)
                                       for f in federated])

    def delete(self, session, conn, id_, old):
        PROVIDERS.identity_api.delete_user(id_)


def _federated_key(f):
    return (f['idp_id'], f['protocol_id'], f['unique_id'])




def active_today():
    """What Keystone's User.enabled setter stores in last_active_at when
    a user is enabled: today, if inactivity is tracked at all."""
    if CONF.security_compliance.disable_user_account_days_inactive:
        return timeutils.utcnow().date()
    return None


def _write_options(conn, user_id, old, new, registry):
    t = base.table(conn, 'user_option')
    by_name = registry.options_by_name
    for name in old.keys() - new.keys():
        opt = by_name.get(name)
        option_id = opt.option_id if opt else name
        conn.execute(t.delete().where(t.c.user_id == user_id,
                                      t.c.option_id == option_id))
    for name, value in new.items():
        if name in old and old[name] == value:
            continue
        option_id = by_name[name].option_id
        if name in old:
            conn.execute(t.update().where(
                t.c.user_id == user_id, t.c.option_id == option_id)
                .values(option_value=json.dumps(value)))
        else:
            conn.execute(t.insert().values(
                user_id=user_id, option_id=option_id,
                option_value=json.dumps(value)))
