"""Selective sync: the rules, what they match, and what the agent leaves
alone because of them (judged on representations, without any site)."""

from oslo_config import cfg
import pytest

from keystone_syncext.agent import cli_base
from keystone_syncext.agent import join
from keystone_syncext.agent import opts
from keystone_syncext.agent import selection as sel
from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import writer
from keystone_syncext.testing import fakesite


def _project(id_, name, domain='default', parent=None):
    return {'id': id_, 'name': name, 'domain_id': domain,
            'parent_id': parent or domain, 'description': '',
            'enabled': True, 'tags': [], 'options': {}, 'extra': {}}


def _user(id_, name, domain='default', federated=()):
    return {'id': id_, 'domain_id': domain, 'enabled': True,
            'local': {'name': name, 'passwords': [{'hash': 'SECRET'}]},
            'federated': [{'idp_id': i, 'protocol_id': 'saml2',
                           'unique_id': id_, 'display_name': name}
                          for i in federated]}


def _grant(kind, actor, target, role, inherited=False):
    return {'id': f'{kind}:{actor}:{target}:{role}:{int(inherited)}',
            'type': kind, 'actor_id': actor, 'target_id': target,
            'role_id': role, 'inherited': inherited}


def _site():
    """A small site: two domains, a project tree, users, roles, grants."""
    items = {
        ('domain', 'default'): {'id': 'default', 'name': 'Default'},
        ('domain', 'd-local'): {'id': 'd-local', 'name': 'local'},
        ('project', 'p-top'): _project('p-top', 'top'),
        ('project', 'p-mid'): _project('p-mid', 'mid', parent='p-top'),
        ('project', 'p-leaf'): _project('p-leaf', 'leaf', parent='p-mid'),
        ('project', 'p-other'): _project('p-other', 'other'),
        ('project', 'p-loc'): _project('p-loc', 'loc', domain='d-local'),
        ('role', 'r-member'): {'id': 'r-member', 'name': 'member',
                               'domain_id': None},
        ('role', 'r-dom'): {'id': 'r-dom', 'name': 'dom',
                            'domain_id': 'd-local'},
        ('user', 'u-alice'): _user('u-alice', 'alice'),
        ('user', 'u-svc'): _user('u-svc', 'svc-nova'),
        ('user', 'u-loc'): _user('u-loc', 'bob', domain='d-local'),
        ('user', 'u-fed'): _user('u-fed', 'carol', federated=['idp-x']),
        ('group', 'g-ops'): {'id': 'g-ops', 'name': 'ops',
                             'domain_id': 'default'},
        ('identity_provider', 'idp-x'): {'id': 'idp-x',
                                         'domain_id': 'd-local'},
        ('mapping', 'm-1'): {'id': 'm-1'},
    }
    for g in (_grant('UserProject', 'u-alice', 'p-leaf', 'r-member'),
              _grant('UserProject', 'u-alice', 'p-other', 'r-member'),
              _grant('UserProject', 'u-svc', 'p-other', 'r-member'),
              _grant('GroupDomain', 'g-ops', 'd-local', 'r-member'),
              _grant('UserSystem', 'u-alice', 'system', 'r-member')):
        items[('role_assignment', g['id'])] = g
    for u, g in (('u-alice', 'g-ops'), ('u-svc', 'g-ops')):
        items[('group_membership', f'{u}:{g}')] = {
            'id': f'{u}:{g}', 'user_id': u, 'group_id': g}
    items[('implied_role', 'r-dom:r-member')] = {
        'id': 'r-dom:r-member', 'prior_role_id': 'r-dom',
        'implied_role_id': 'r-member'}
    items[('federation_protocol', 'idp-x:saml2')] = {
        'id': 'idp-x:saml2', 'idp_id': 'idp-x', 'protocol_id': 'saml2',
        'mapping_id': 'm-1'}
    items[('application_credential', 'ac-1')] = {
        'id': 'ac-1', 'name': 'ci', 'user_id': 'u-alice',
        'project_id': 'p-mid'}
    return items


class Fetcher:
    """A site's GET of one resource, counting the requests."""

    def __init__(self, items):
        self.items = items
        self.calls = []

    def __call__(self, type_name, id_):
        self.calls.append((type_name, id_))
        return self.items.get((type_name, id_))


def _synced(selection, items=None):
    """The set of (type, id) a selection syncs out of ``items``."""
    items = items or _site()
    judge = selection.judge(sel.View(Fetcher(items)))
    return {k for k in items if judge.selected(*k)}


# -- rules --------------------------------------------------------------

def test_rules_parse_every_form():
    assert sel.parse('type:user') == sel.Rule('type', 'user', None,
                                              'type:user')
    assert sel.parse(' domain:local ').value == 'local'
    assert sel.parse('project:a:b').value == 'a:b'   # ids may hold ':'
    rule = sel.parse('name:user:svc-*')
    assert (rule.kind, rule.type, rule.value) == ('name', 'user', 'svc-*')


@pytest.mark.parametrize('text, says', [
    ('user', 'expected one of'),
    ('kind:user', 'expected one of'),
    ('domain:', 'expected one of'),
    ('type:users', "unknown type 'users'"),
    ('name:user', 'name:TYPE:GLOB'),
    ('name:user:', 'name:TYPE:GLOB'),
    ('name:role_assignment:x*', 'name:TYPE:GLOB'),
])
def test_malformed_rules_are_refused_with_the_rule_named(text, says):
    with pytest.raises(sel.RuleError) as e:
        sel.parse(text)
    assert repr(text) in str(e.value) and says in str(e.value)


def test_the_types_are_the_agents():
    assert set(sel.TYPES) == set(writer.TYPE_ORDER)


def test_no_rules_sync_everything_and_look_nothing_up():
    fetch = Fetcher(_site())
    selection = sel.Selection()
    assert not selection
    changes = [state_mod.Change(1, 'user', 'u-svc', 'delete')]
    assert selection.filter('s', changes, fetch, fetch) == (changes, [])
    assert fetch.calls == []


# -- matching, dependents, subtrees --------------------------------------

def test_excluded_domain_takes_everything_in_it_and_on_it():
    gone = _site().keys() - _synced(sel.Selection(exclude=['domain:local']))
    assert gone == {
        ('domain', 'd-local'), ('project', 'p-loc'), ('role', 'r-dom'),
        ('user', 'u-loc'), ('identity_provider', 'idp-x'),
        # A federated user of an identity provider in that domain.
        ('user', 'u-fed'),
        ('role_assignment', 'GroupDomain:g-ops:d-local:r-member:0'),
        ('implied_role', 'r-dom:r-member'),
        ('federation_protocol', 'idp-x:saml2')}


def test_domain_rule_takes_an_id_as_well_as_a_name():
    by_id = _synced(sel.Selection(exclude=['domain:d-local']))
    assert by_id == _synced(sel.Selection(exclude=['domain:local']))


def test_excluded_project_takes_its_subtree_and_what_refers_to_it():
    gone = _site().keys() - _synced(sel.Selection(exclude=['project:mid']))
    assert gone == {
        ('project', 'p-mid'), ('project', 'p-leaf'),
        ('role_assignment', 'UserProject:u-alice:p-leaf:r-member:0'),
        ('application_credential', 'ac-1')}


def test_name_pattern_takes_matching_users_and_their_grants():
    gone = _site().keys() - _synced(
        sel.Selection(exclude=['name:user:svc-*']))
    assert gone == {
        ('user', 'u-svc'), ('group_membership', 'u-svc:g-ops'),
        ('role_assignment', 'UserProject:u-svc:p-other:r-member:0')}


def test_excluding_a_role_takes_its_grants_and_implications():
    gone = _site().keys() - _synced(sel.Selection(exclude=['type:role']))
    assert {t for t, _ in gone} == {'role', 'role_assignment',
                                    'implied_role'}
    assert len(gone) == 2 + 5 + 1


def test_include_rules_pick_scopes_and_dependents_follow():
    synced = _synced(sel.Selection(include=['project:top', 'type:user',
                                            'type:role']))
    assert ('project', 'p-leaf') in synced        # in the subtree
    assert ('project', 'p-other') not in synced
    assert ('domain', 'default') not in synced
    assert ('user', 'u-alice') in synced
    assert ('role', 'r-dom') in synced            # its domain is not synced,
    #                                               but it is not excluded
    # A grant is synced when its actor, target and role all are.
    assert ('role_assignment',
            'UserProject:u-alice:p-leaf:r-member:0') in synced
    assert ('role_assignment',
            'UserProject:u-alice:p-other:r-member:0') not in synced
    assert ('role_assignment',
            'UserSystem:u-alice:system:r-member:0') in synced
    assert ('application_credential', 'ac-1') in synced
    assert ('group_membership', 'u-alice:g-ops') not in synced


def test_exclude_wins_over_include():
    synced = _synced(sel.Selection(include=['type:user'],
                                   exclude=['name:user:svc-*']))
    assert {k for k in synced} == {('user', 'u-alice'), ('user', 'u-loc'),
                                   ('user', 'u-fed')}


def test_a_loop_in_the_hierarchy_does_not_hang():
    items = _site()
    items[('project', 'p-top')] = _project('p-top', 'top', parent='p-leaf')
    synced = _synced(sel.Selection(exclude=['project:nothing']), items)
    assert ('project', 'p-leaf') in synced


def test_rules_decide_without_lookups_when_they_cannot_matter():
    selection = sel.Selection(exclude=['type:mapping'])
    assert not selection.concerns('user')
    assert selection.concerns('federation_protocol')
    assert not selection.concerns('role_assignment')
    assert sel.Selection(exclude=['domain:x']).concerns('role_assignment')
    assert sel.Selection(include=['type:user']).concerns('mapping')


# -- what the agent writes -----------------------------------------------

def _filter(selection, changes, hub_items, spoke_items):
    hub, spoke = Fetcher(hub_items), Fetcher(spoke_items)
    keep, skipped = selection.filter('spoke1', changes, hub, spoke)
    return [c.key for c in keep], {c.key: why for c, why in skipped}, \
        hub, spoke


def test_upserts_of_excluded_resources_are_left_alone():
    hub = _site()
    changes = [state_mod.Change(n, t, i, 'upsert', None, hub[(t, i)])
               for n, (t, i) in enumerate(sorted(hub))]
    keep, skipped, _, _ = _filter(
        sel.Selection(exclude=['name:user:svc-*', 'domain:local']),
        changes, hub, {})
    assert ('user', 'u-svc') in skipped and ('user', 'u-alice') in keep
    assert "exclude rule 'name:user:svc-*'" in skipped[('user', 'u-svc')]
    assert skipped[('group_membership', 'u-svc:g-ops')] == \
        "user u-svc: exclude rule 'name:user:svc-*'"
    assert len(keep) + len(skipped) == len(changes)
    assert 'SECRET' not in repr(skipped)


def test_a_delete_is_judged_on_the_spokes_representation():
    hub, spoke = _site(), _site()
    # At the hub the user was renamed out of the pattern, then deleted;
    # the spoke still holds the excluded copy, so it stays.
    del hub[('user', 'u-svc')]
    changes = [state_mod.Change(1, 'user', 'u-svc', 'delete'),
               state_mod.Change(2, 'user', 'u-alice', 'delete'),
               state_mod.Change(3, 'user', 'u-gone', 'delete')]
    keep, skipped, hub_fetch, spoke_fetch = _filter(
        sel.Selection(exclude=['name:user:svc-*']), changes, hub, spoke)
    assert keep == [('user', 'u-alice'), ('user', 'u-gone')]
    assert list(skipped) == [('user', 'u-svc')]
    assert hub_fetch.calls == []


def test_moving_out_of_scope_at_the_hub_updates_nothing_deletes_nothing():
    hub = _site()
    # The hub moves p-other under p-mid, which is excluded, and renames
    # alice into the pattern: both upserts are left alone (the spoke
    # keeps its copy as it was), and the move is seen within the batch.
    moved = _project('p-other', 'other', parent='p-mid')
    renamed = _user('u-alice', 'svc-alice')
    hub[('project', 'p-other')], hub[('user', 'u-alice')] = moved, renamed
    grant = hub[('role_assignment', 'UserProject:u-svc:p-other:r-member:0')]
    changes = [state_mod.Change(1, 'project', 'p-other', 'upsert', None,
                                _project('p-other', 'other')),
               state_mod.Change(2, 'project', 'p-other', 'upsert', None,
                                moved),
               state_mod.Change(3, 'user', 'u-alice', 'upsert', None,
                                renamed),
               state_mod.Change(4, 'role_assignment', grant['id'], 'upsert',
                                None, grant)]
    keep, skipped, _, spoke = _filter(
        sel.Selection(exclude=['project:mid', 'name:user:svc-*']),
        changes, hub, _site())
    assert keep == []
    assert set(skipped) == {('project', 'p-other'), ('user', 'u-alice'),
                            ('role_assignment', grant['id'])}
    assert spoke.calls == []


def test_what_refers_to_something_gone_is_not_written():
    # The hub deleted the user since (its delete, and the grant's, follow
    # in the feed): whether the rules exclude it cannot be told, so the
    # grant is not written -- the spoke may hold an excluded copy.
    hub = _site()
    grant = hub.pop(('role_assignment',
                     'UserProject:u-svc:p-other:r-member:0'))
    del hub[('user', 'u-svc')]
    keep, skipped, _, _ = _filter(
        sel.Selection(exclude=['name:user:svc-*']),
        [state_mod.Change(1, 'role_assignment', grant['id'], 'upsert', None,
                          grant)], hub, {})
    assert keep == [] and skipped == {
        ('role_assignment', grant['id']): 'user u-svc: not at the site'}


def test_the_hub_is_looked_up_once_per_pass():
    hub = _site()
    selection = sel.Selection(exclude=['domain:local'])
    fetch = Fetcher(hub)
    grant_ids = [k for k in hub if k[0] == 'role_assignment']
    with selection.scope(fetch):
        for t, i in grant_ids:
            selection.filter('s', [state_mod.Change(1, t, i, 'upsert', None,
                                                    hub[(t, i)])],
                             fetch, Fetcher({}))
    assert len(fetch.calls) == len(set(fetch.calls))


# -- configuration and join ----------------------------------------------

def _conf(tmp_path, text):
    path = tmp_path / 'keystone-sync.conf'
    path.write_text(text)
    conf = cfg.ConfigOpts()
    opts.register(conf)
    conf(['--config-file', str(path)])
    return conf


def test_spoke_groups_replace_the_global_rules(tmp_path):
    conf = _conf(tmp_path, '[selection]\ninclude = type:user\n'
                 'exclude = domain:local, name:user:svc-*\n'
                 '[spoke:edge1]\nexclude = type:group\n')
    assert opts.spoke_rules(conf, 'edge1') == (['type:user'], ['type:group'])
    assert opts.spoke_rules(conf, 'edge2') == (
        ['type:user'], ['domain:local', 'name:user:svc-*'])


def test_a_malformed_rule_stops_the_agent_naming_spoke_and_rule(tmp_path):
    conf = _conf(tmp_path, '[selection]\nexclude = domain:x, type:usr\n')
    with pytest.raises(SystemExit) as e:
        cli_base.selections(conf, ['edge1'])
    assert 'spoke edge1' in str(e.value) and "'type:usr'" in str(e.value)


def _client(items):
    """The agent's client of an in-memory site holding ``items``."""
    return fakesite.FakeSite.holding(
        items, rekey_types=join.JOIN_TYPES).client(timeout=5)


def test_join_leaves_alone_what_the_rules_keep_out():
    hub = {('domain', 'default'): {'id': 'default', 'name': 'Default'},
           ('user', 'h-admin'): _user('h-admin', 'admin'),
           ('user', 'h-svc'): _user('h-svc', 'svc-glance'),
           ('project', 'h-admin-p'): _project('h-admin-p', 'admin')}
    spoke = {('domain', 'default'): {'id': 'default', 'name': 'Default'},
             ('user', 's-admin'): _user('s-admin', 'admin'),
             ('user', 's-svc'): _user('s-svc', 'svc-glance'),
             ('project', 's-admin-p'): _project('s-admin-p', 'admin')}
    everything = join.plan(_client(hub), _client(spoke))
    assert len(everything['rekey']) == 3
    the_plan = join.plan(_client(hub), _client(spoke), selection=(
        sel.Selection(exclude=['name:user:svc-*', 'project:admin'])))
    assert [e['spoke_id'] for e in the_plan['rekey']] == ['s-admin']
