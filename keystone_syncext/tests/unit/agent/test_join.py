"""``join`` and privileged spoke accounts, on listings alone: a spoke
user that administers the spoke is merged into its hub namesake only when
the hub account holds as much at the hub, or when the operator names it;
the agent's own account never."""

from keystone_syncext.agent import join
from keystone_syncext.testing import fakesite


def _plan(hub, spoke, **kwargs):
    """join's plan between two in-memory sites, read through the agent's
    client."""
    return join.plan(hub.client(timeout=5), spoke.client(timeout=5),
                     **kwargs)


def _add(site, items):
    for (type_name, _), resource in items.items():
        site.put(type_name, resource)


def _user(id_, name):
    return {'id': id_, 'domain_id': 'default', 'enabled': True,
            'local': {'name': name, 'passwords': []}, 'federated': []}


def _role(id_, name):
    return {'id': id_, 'name': name, 'domain_id': None}


def _grant(kind, actor, target, role, inherited=False):
    id_ = f'{kind}:{actor}:{target}:{role}:{int(inherited)}'
    return {('role_assignment', id_): {
        'id': id_, 'type': kind, 'actor_id': actor, 'target_id': target,
        'role_id': role, 'inherited': inherited}}


def _site(prefix, users, grants, groups=()):
    """Roles admin > member (implied), a project ``admin``, ``users``,
    ``grants`` and memberships, with ids made of ``prefix``."""
    items = {('role', f'{prefix}-admin'): _role(f'{prefix}-admin', 'admin'),
             ('role', f'{prefix}-member'): _role(f'{prefix}-member',
                                                 'member'),
             ('implied_role', 'imp'): {
                 'id': 'imp', 'prior_role_id': f'{prefix}-admin',
                 'implied_role_id': f'{prefix}-member'},
             ('project', f'{prefix}-p'): {
                 'id': f'{prefix}-p', 'name': 'admin',
                 'domain_id': 'default'}}
    for id_, name in users:
        items[('user', id_)] = _user(id_, name)
    for g in grants:
        items.update(g)
    for user_id, group_id in groups:
        items[('group_membership', f'{user_id}:{group_id}')] = {
            'id': f'{user_id}:{group_id}', 'user_id': user_id,
            'group_id': group_id}
    return fakesite.FakeSite.holding(items, rekey_types=join.JOIN_TYPES)


def _sites():
    hub = _site('h', [('h-admin', 'admin'), ('h-ops', 'ops'),
                      ('h-dev', 'dev'), ('h-bot', 'keystone-sync')], [
        _grant('UserSystem', 'h-admin', 'system', 'h-admin'),
        _grant('UserProject', 'h-admin', 'h-p', 'h-admin')])
    spoke = _site('s', [('s-admin', 'admin'), ('s-ops', 'ops'),
                        ('s-dev', 'dev'), ('s-bot', 'keystone-sync')], [
        _grant('UserSystem', 's-admin', 'system', 's-admin'),
        _grant('UserProject', 's-admin', 's-p', 's-admin'),
        # ops: system admin through a group; dev: a member only.
        _grant('GroupSystem', 's-g', 'system', 's-admin'),
        _grant('UserProject', 's-dev', 's-p', 's-member'),
        _grant('UserSystem', 's-bot', 'system', 's-admin')],
        groups=[('s-ops', 's-g')])
    return hub, spoke


def _users(the_plan, key):
    return {e['name']: e for e in the_plan[key] if e['type'] == 'user'}


def test_a_privileged_spoke_account_is_left_alone():
    hub, spoke = _sites()
    the_plan = _plan(hub, spoke, agent_user='s-bot')
    merged, kept = _users(the_plan, 'rekey'), _users(the_plan, 'kept')
    # admin is system admin at both: merged, and the plan says why.
    assert merged['admin']['hub_id'] == 'h-admin'
    assert 'the hub account holds as much' in merged['admin']['note']
    # dev administers nothing: merged as before, no note.
    assert 'note' not in merged['dev']
    # ops holds system admin through a group here, nothing at the hub.
    assert set(kept) == {'ops', 'keystone-sync'}
    assert 'system admin' in kept['ops']['reason']
    assert '--merge ops' in kept['ops']['reason']
    assert 'own account' in kept['keystone-sync']['reason']


def test_the_operator_may_merge_one_by_name_but_never_the_agent():
    hub, spoke = _sites()
    the_plan = _plan(hub, spoke, merge=['ops', 'keystone-sync'],
                         agent_user='s-bot')
    merged, kept = _users(the_plan, 'rekey'), _users(the_plan, 'kept')
    assert '--merge names it' in merged['ops']['note']
    assert set(kept) == {'keystone-sync'}


def test_admin_on_a_project_counts_and_must_be_matched_by_name():
    hub, spoke = _sites()
    _add(spoke, _grant('UserProject', 's-dev', 's-p', 's-admin'))
    kept = _users(_plan(hub, spoke), 'kept')
    assert 'admin on project admin' in kept['dev']['reason']
    _add(hub, _grant('UserProject', 'h-dev', 'h-p', 'h-admin'))
    assert 'dev' in _users(_plan(hub, spoke), 'rekey')
