"""Application credentials written on behalf of another site.

An application credential authenticates as its user with its roles, so a
copy written at this site gives whoever holds its secret that user's
roles *here*. A spoke's administrators can make any credential at their
own site (and through the agent, at the hub): the site that receives it
must judge it against its own data, as Keystone judges a credential when
its owner makes one, and not trust that the origin did.

A write is *from another site* when it carries an origin
(``OpenStack-Sync-Origin``) other than ``[sync] hub_site_id``; the hub's
own site id sent to the hub counts as another site too (no agent sends
it, a spoke that renamed itself might). Such a write may only create a
credential that Keystone's rules would let the user make here:

- the user exists here and is enabled (only an enabled user can make
  one);
- the user holds every role of the credential on its project here
  (``ApplicationCredential._check_assignments``, always applied);
- the user holds no system role and not the ``admin`` role anywhere here,
  and the credential is not system scoped, unless
  ``[sync] upward_privileged_application_credentials`` allows it;
- a credential this site holds is never changed by it: Keystone has no
  update, and a differing copy is a credential another site re-used the
  id of (409);
- it deletes only a credential that site made (this site's change log
  says the credential came from it): otherwise a spoke could delete a
  credential the hub made and create one of its own under the same id
  (403).

For every writer, the secret hash of a credential this site holds never
changes (409): Keystone cannot change it, so a write that would is not a
repair but a take-over. Refusals name what is wrong, never the secret.
"""

from keystone.common import provider_api
import keystone.conf
import sqlalchemy as sa

from keystone_syncext import exception
from keystone_syncext.db import tables
from keystone_syncext.resources import base
from keystone_syncext.writes import origin as origin_mod

CONF = keystone.conf.CONF
PROVIDERS = provider_api.ProviderAPIs

# Keystone's bootstrap role that policies treat as "administrator".
ADMIN_ROLE_NAME = 'admin'


def foreign_origin(session) -> str | None:
    """The origin of the write in ``session`` when it is another site's
    (not this site's hub), else None."""
    origin = origin_mod.of_session(session)
    if not origin:
        return None
    hub = CONF.sync.hub_site_id
    if hub and origin == hub and origin != CONF.sync.site_id:
        return None
    return origin


def check_new(conn, id_: str, resource: dict, origin: str) -> None:
    """Refuse (403) a credential site ``origin`` may not create here."""
    what = f'application credential {id_} from site {origin}'
    user_id = resource['user_id']
    user = base.table(conn, 'user')
    found = conn.execute(sa.select(user.c.enabled).where(
        user.c.id == user_id)).first()
    if found is None:
        raise exception.Forbidden(
            f'{what}: user {user_id} does not exist at this site')
    if not found.enabled:
        raise exception.Forbidden(
            f'{what}: user {user_id} is disabled at this site, so could '
            'not make an application credential here')
    if resource['project_id'] is not None:
        role_id = missing_role(resource)
        if role_id is not None:
            raise exception.Forbidden(
                f'{what}: user {user_id} has no role {role_id} on project '
                f'{resource["project_id"]} at this site, which Keystone '
                'requires of a credential with that role')
    if CONF.sync.upward_privileged_application_credentials:
        return
    if resource['system'] is not None:
        raise exception.Forbidden(
            f'{what}: a system-scoped application credential may not be '
            'written here on behalf of another site '
            '([sync] upward_privileged_application_credentials)')
    why = privileged(conn, user_id)
    if why:
        raise exception.Forbidden(
            f'{what}: user {user_id} {why} at this site; another site may '
            'not write credentials of privileged users here '
            '([sync] upward_privileged_application_credentials)')


def check_change(id_: str, old: dict, resource: dict,
                 origin: str | None) -> None:
    """Refuse (409) changing credential ``id_`` from ``old`` to
    ``resource``: its secret never changes, and another site's write
    never changes it at all."""
    if old['secret_hash'] != resource['secret_hash']:
        raise exception.Conflict(
            f'application credential {id_} exists at this site with '
            'another secret; a secret never changes (Keystone has no way '
            'to change it): delete the credential first')
    if origin is not None:
        raise exception.Conflict(
            f'application credential {id_} exists at this site with other '
            f'content; a write from site {origin} may not change it '
            '(Keystone never updates an application credential)')


def check_delete(conn, id_: str, origin: str) -> None:
    """Refuse (403) deleting credential ``id_`` on behalf of site
    ``origin`` unless it was made here on that site's behalf."""
    change = tables.change
    made_by = conn.execute(
        sa.select(change.c.origin)
        .where(change.c.resource_type == 'application_credential',
               change.c.resource_id == id_, change.c.op == 'create')
        .order_by(change.c.id.desc()).limit(1)).first()
    if made_by is None or made_by.origin != origin:
        raise exception.Forbidden(
            f'application credential {id_}: site {origin} may delete only '
            'the credentials it made, and this site\'s change log does '
            'not say it made this one')


def missing_role(resource: dict) -> str | None:
    """A role of the credential its user does not hold on its project at
    this site (effective assignments: through groups, inheritance and
    implied roles, as Keystone's ``_require_user_has_role_in_project``
    sees them), or None."""
    held = {a['role_id'] for a in
            PROVIDERS.assignment_api.list_role_assignments(
                user_id=resource['user_id'],
                project_id=resource['project_id'], effective=True)}
    return next((r for r in resource['roles'] if r not in held), None)


def privileged(conn, user_id: str) -> str | None:
    """Why user ``user_id`` is privileged at this site (a system role, or
    the admin role anywhere, held directly, through a group, by
    inheritance or by implication), or None."""
    api = PROVIDERS.assignment_api
    if api.list_system_grants_for_user(user_id):
        return 'holds a system role'
    groups = [g['id'] for g in
              PROVIDERS.identity_api.list_groups_for_user(user_id)]
    for group_id in groups:
        if api.list_system_grants_for_group(group_id):
            return f'holds a system role through group {group_id}'
    admin = _admin_role_ids(conn)
    if not admin:
        return None
    for a in api.list_role_assignments(user_id=user_id, effective=True):
        if a.get('system'):
            return 'holds a system role'
        if a['role_id'] in admin:
            return f'holds the {ADMIN_ROLE_NAME} role'
    return None


def _admin_role_ids(conn) -> set[str]:
    role = base.table(conn, 'role')
    return set(conn.execute(sa.select(role.c.id).where(
        role.c.name == ADMIN_ROLE_NAME)).scalars())
