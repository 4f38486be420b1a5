"""``keystone-sync join``: adopt the hub's ids at a spoke bootstrapped on
its own.

``keystone-manage bootstrap`` gives every Keystone its own ``admin``,
``member``, ``reader`` (and, by release, ``manager`` and ``service``)
roles, admin project and admin user: the hub's names with other ids. Join
matches the spoke's resources to the hub's by natural key (name within
domain; a user's local name) and re-keys each match to the hub's id with
``POST /v3/sync/rekey``, which moves every reference (assignments, implied
roles, memberships...) in the same transaction. Resources the hub does not
have, those matching an ``--exclude`` pattern, and those the selection
rules keep out (judged on the spoke's representation and on the hub's)
are left alone.
Afterwards the first ``keystone-sync run`` updates the joined resources to
the hub's state, as for any other resource.

Join is resumable: the plan is made afresh from both sites each time, and
a resource already re-keyed (its id now the hub's) is not in it, so
running join again after it stopped half-way (a site unreachable, busy
past the agent's patience), or after a ``run`` that found the name clashes
first, finishes the job. A re-key whose answer was lost after it applied
is recognised as done.

A user merged into its hub namesake gets the hub's password: whoever knows
it then holds whatever the spoke account held at the spoke. So a spoke
user that administers the spoke (a system role, or the ``admin`` role
anywhere: :mod:`keystone_syncext.agent.privileges`) is merged only when
the hub account holds at least as much at the hub (the bootstrap admin,
system admin at both), or when the operator names it (``--merge NAME``).
The agent's own account at the spoke is never merged: it logs in with it.
Those left alone are listed in the plan (``kept``) with the reason, and
the privileged ones merged carry a ``note`` saying why.
"""

import fnmatch

from keystone_syncext.agent import client
from keystone_syncext.agent import privileges as privileges_mod
from keystone_syncext.agent import selection as selection_mod
from keystone_syncext.common import types

# Types re-keyed (those with a natural key in the type table), in
# dependency order: what others point at first.
JOIN_TYPES = types.JOINED


def natural_key(type_name: str, resource: dict):
    """What makes a resource "the same" at two sites (name within
    domain, by the type table), or None."""
    return types.lookup(type_name).natural_key_of(resource)


def _display_name(type_name, resource):
    return types.lookup(type_name).name_of(resource) or resource['id']


def excluded(patterns, type_name, name) -> bool:
    """``patterns`` are ``TYPE:NAME`` globs (``user:svc-*``, ``*:local*``)."""
    for pattern in patterns:
        ptype, _, pname = pattern.partition(':')
        if fnmatch.fnmatchcase(type_name, ptype or '*') and \
                fnmatch.fnmatchcase(name, pname or '*'):
            return True
    return False


class _UserCheck:
    """Whether a spoke user may be merged into its hub namesake; reads
    both sites' assignments once, on the first user matched."""

    def __init__(self, hub, spoke, merge, agent_user):
        self.sites = (hub, spoke)
        self.merge = set(merge)
        self.agent_user = agent_user
        self.read = None

    def verdict(self, entry) -> tuple[bool, str | None]:
        """(merge it, why: None for an ordinary user)."""
        if entry['spoke_id'] == self.agent_user:
            return False, ('the agent\'s own account at the spoke (it logs '
                           'in with it)')
        if self.read is None:
            self.read = [privileges_mod.Privileges(s) for s in self.sites]
        hub, spoke = self.read
        here = spoke.of(entry['spoke_id'])
        if not here:
            return True, None
        what = privileges_mod.describe(here)
        if entry['name'] in self.merge:
            return True, f'privileged at the spoke ({what}); --merge names it'
        there = hub.of(entry['hub_id'])
        if here <= there:
            return True, (f'privileged at the spoke ({what}); the hub '
                          'account holds as much at the hub')
        lacking = privileges_mod.describe(here - there)
        return False, (f'privileged at the spoke ({what}), and the hub '
                       f'account lacks {lacking} at the hub: merging would '
                       'hand these to whoever knows the hub password; '
                       f'--merge {entry["name"]} to merge it anyway')


class _Views:
    """The selection's views of both sites, noted as join lists them
    (nothing to note without a selection)."""

    def __init__(self, selection, hub, spoke):
        self.selection = selection
        self.hub = selection_mod.View(hub.resource)
        self.spoke = selection_mod.View(spoke.resource)

    def note(self, view, type_name, r) -> None:
        if self.selection:
            view.note(type_name, r['id'], r)

    def left_alone(self, type_name, spoke_id, hub_id) -> bool:
        """Whether the selection leaves the pair alone."""
        if not self.selection:
            return False
        sel = self.selection
        return not (sel.judge(self.spoke).selected(type_name, spoke_id)
                    and sel.judge(self.hub).selected(type_name, hub_id))


def _hub_keys(hub, type_name, views: _Views) -> dict:
    """The hub's ``type_name`` resources: natural key -> id."""
    hub_by_key = {}
    for r in client.every_resource(hub, type_name):
        views.note(views.hub, type_name, r)
        key = natural_key(type_name, r)
        if key is not None:
            hub_by_key[key] = r['id']
    return hub_by_key


def _match(type_name, r, hub_by_key, exclude, views: _Views):
    """The plan entry for spoke resource ``r`` (None: nothing to join)."""
    key = natural_key(type_name, r)
    hub_id = hub_by_key.get(key)
    if hub_id is None or hub_id == r['id']:
        return None
    name = _display_name(type_name, r)
    if excluded(exclude, type_name, name) or \
            views.left_alone(type_name, r['id'], hub_id):
        return None
    return {'type': type_name, 'name': name, 'domain_id': key[0],
            'spoke_id': r['id'], 'hub_id': hub_id}


def _place(entry, spoke_ids, users: _UserCheck, result: dict) -> None:
    """Put ``entry`` in the plan: ``kept``, ``blocked`` or ``rekey``."""
    if entry['type'] == 'user':
        ok, why = users.verdict(entry)
        if not ok:
            result['kept'].append(dict(entry, reason=why))
            return
        if why:
            entry['note'] = why
    if entry['hub_id'] in spoke_ids:
        entry['reason'] = ('the hub\'s id is taken at the spoke by '
                           'another resource')
        result['blocked'].append(entry)
    else:
        result['rekey'].append(entry)


def plan(hub: client.Site, spoke: client.Site, exclude=(),
         selection: selection_mod.Selection | None = None, merge=(),
         agent_user: str | None = None) -> dict:
    """What join would do: ``rekey`` (type, name, spoke id, hub id, and a
    ``note`` for a privileged user), ``blocked`` (matches that cannot be
    re-keyed, with the reason) and ``kept`` (users left alone, with the
    reason). ``merge`` names privileged users to merge anyway;
    ``agent_user`` is the agent's own account at the spoke."""
    caps = spoke.capabilities()
    rekeyable = set(caps.get('rekey_types', ()))
    result = {'rekey': [], 'blocked': [], 'kept': []}
    users = _UserCheck(hub, spoke, merge, agent_user)
    views = _Views(selection, hub, spoke)
    for type_name in JOIN_TYPES:
        if type_name not in rekeyable:
            continue
        hub_by_key = _hub_keys(hub, type_name, views)
        spoke_items = client.every_resource(spoke, type_name)
        for r in spoke_items:
            views.note(views.spoke, type_name, r)
        spoke_ids = {r['id'] for r in spoke_items}
        for r in spoke_items:
            entry = _match(type_name, r, hub_by_key, exclude, views)
            if entry is not None:
                _place(entry, spoke_ids, users, result)
    return result


def execute(spoke: client.Site, the_plan: dict, origin: str,
            on_done=lambda entry: None) -> client.SiteError | None:
    """Re-key every planned resource in order, calling ``on_done`` with
    each entry and what it moved (``references``); stops at the first
    that fails, and returns that error (None when all were re-keyed)."""
    for entry in the_plan['rekey']:
        try:
            result = spoke.rekey(entry['type'], entry['spoke_id'],
                                 entry['hub_id'], origin=origin)
            moved = result['references']
        except client.SiteError as e:
            if not _applied_before(spoke, entry, e):
                return e
            moved = {}
        on_done(dict(entry, references=moved))
    return None


def _applied_before(spoke, entry, error) -> bool:
    """Whether a re-key refused as \"from does not exist\" was in fact
    applied, by an earlier attempt whose answer was lost."""
    if error.status != 404:
        return False
    return (spoke.resource(entry['type'], entry['spoke_id']) is None and
            spoke.resource(entry['type'], entry['hub_id']) is not None)
