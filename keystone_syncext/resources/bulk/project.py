"""Set-wise creates of projects.

project (``keystone.resource.core.Manager.create_project``,
``_enforce_project_constraints``, ``_assert_regular_project_constraints``,
``_assert_max_hierarchy_depth``; the first three checks are this
extension's, in the order of ``resource.Project.create``):

- the name (stripped) is free in the domain: 409 with ``existing_id``;
- the domain exists: 400 naming ``domain_id``;
- a parent other than the domain is a project here: 400 naming
  ``parent_id`` (so a parent that is another domain is refused here, and
  Keystone's "parent acting as a domain but not this project's domain"
  cannot arise);
- with ``[resource] project_name_url_safe`` other than ``off``, the name
  (as given) has no URL-reserved character: Keystone's ValidationError;
- the name is stored stripped, a null description as ``''``;
- the parent's domain is the project's domain: Keystone's ValidationError;
- every project above it is enabled, checked in Keystone's order (the
  parent's ancestors from the nearest up to the domain, then the parent),
  the first disabled one named: Keystone's ValidationError;
- depth: the parent and its ancestors (domain included) plus one is at
  most ``[DEFAULT] max_project_tree_depth + 1``, or the unified-limit
  enforcement model's ``MAX_PROJECT_TREE_DEPTH + 1`` when smaller:
  Keystone's 403 ``Max hierarchy depth reached for <parent> branch.``;
- options: only names this Keystone knows, values its validators accept
  (anything else takes the per-item path, which does what the manager
  does with it); tags are rows of ``project_tag``;
- ``notifications.Audit.created('project', id)``.
"""

import json

from keystone import exception as ks_exception
from keystone import i18n
from keystone.common import provider_api
from keystone.common import utils as ks_utils
import keystone.conf

from keystone_syncext import exception
from keystone_syncext.capture import spec
from keystone_syncext.resources import base
from keystone_syncext.resources import common
from keystone_syncext.resources import resource
from keystone_syncext.resources.bulk import core

CONF = keystone.conf.CONF
PROVIDERS = provider_api.ProviderAPIs


class _Node:
    __slots__ = ('id', 'parent_id', 'domain_id', 'enabled', 'is_domain')

    def __init__(self, id_, parent_id, domain_id, enabled, is_domain):
        self.id, self.parent_id, self.domain_id = id_, parent_id, domain_id
        self.enabled, self.is_domain = enabled, is_domain


class ProjectCreates(core.Creates):
    type_name = 'project'

    @classmethod
    def eligible(cls, r):
        return core.options_ok(resource.Project.registry, r['options'])

    def prepare(self, entries):
        conn = self.conn
        t = base.table(conn, 'project')
        self.names = core.Names(conn, t.c.id, t.c.domain_id, t.c.name,
                                [(r['domain_id'], r['name'].strip())
                                 for _, r in entries])
        self.domains = core.existing(conn, 'domain',
                                     {r['domain_id'] for _, r in entries})
        new = {id_ for id_, _ in entries}
        self.nodes = self._hierarchy(t, self.domains | {
            r['parent_id'] for _, r in entries if r['parent_id'] not in new})
        self.max_depth = _max_depth()

    def _hierarchy(self, t, ids) -> dict[str, '_Node']:
        """The projects ``ids`` and every project above them, one query
        per level (Keystone's hidden root domain left out, as its driver
        hides it)."""
        nodes: dict[str, _Node] = {}
        wanted = set(ids)
        while wanted:
            for r in core.select_in(self.conn, t.c.id, wanted, t.c.id,
                                    t.c.parent_id, t.c.domain_id, t.c.enabled,
                                    t.c.is_domain,
                                    where=t.c.id != spec.ROOT_DOMAIN_ID):
                if r.id in wanted:
                    nodes[r.id] = _Node(r.id, r.parent_id, r.domain_id,
                                        bool(r.enabled), bool(r.is_domain))
            wanted = {n.parent_id for n in nodes.values()
                      if n.parent_id is not None
                      and n.parent_id not in nodes} - wanted
        return nodes

    def _above(self, parent: '_Node') -> list['_Node']:
        """Keystone's ``list_project_parents(parent)``, then the parent."""
        chain, seen, node = [], {parent.id}, parent
        while node.parent_id is not None:
            node = self.nodes.get(node.parent_id)
            if node is None or node.id in seen:
                raise exception.BulkFallback(
                    'project hierarchy not read whole')
            seen.add(node.id)
            chain.append(node)
        return chain + [parent]

    def accept(self, id_, r):
        what = f'project {id_}'
        name, domain_id = r['name'].strip(), r['domain_id']
        parent_id = r['parent_id']
        holder = self.names.holder(domain_id, name)
        if holder is not None:
            raise common.name_conflict('project', r['name'], holder)
        if domain_id not in self.domains:
            core.confirm_missing(self.conn, 'domain', domain_id, what)
        parent = self.nodes.get(parent_id)
        if parent_id != domain_id and (parent is None or parent.is_domain):
            core.confirm_missing(self.conn, 'project', parent_id, what,
                                 'parent_id')
        if CONF.resource.project_name_url_safe != 'off' and \
                ks_utils.is_not_url_safe(r['name']):
            raise ks_exception.ValidationError(message=i18n._(
                '%(entity)s name cannot contain the following reserved '
                'characters: %(chars)s') % {
                    'entity': 'Project',
                    'chars': ks_utils.list_url_unsafe_chars(r['name'])})
        if not parent.is_domain and parent.domain_id != domain_id:
            raise ks_exception.ValidationError(message=i18n._(
                'Cannot create project, since it specifies its domain_id '
                '%(domain_id)s, but specifies a parent in a different '
                'domain (%(parent_domain_id)s).') % {
                    'domain_id': domain_id,
                    'parent_domain_id': parent.domain_id})
        above = self._above(parent)
        for ref in above:
            if not ref.enabled:
                raise ks_exception.ValidationError(message=i18n._(
                    'cannot create a project in a branch containing a '
                    'disabled project: %s') % ref.id)
        if len(above) + 1 > self.max_depth:
            raise ks_exception.ForbiddenNotSecurity(
                i18n._('Max hierarchy depth reached for %s branch.')
                % parent_id)
        self.names.claim(domain_id, name, id_)
        self.nodes[id_] = _Node(id_, parent_id, domain_id, r['enabled'],
                                False)

    def write(self, entries):
        core.insert(self.conn, 'project', [{
            'id': id_, 'name': r['name'].strip(),
            'domain_id': r['domain_id'], 'parent_id': r['parent_id'],
            'description': r['description'] or '', 'enabled': r['enabled'],
            'is_domain': False, 'extra': json.dumps(r['extra']),
        } for id_, r in entries])
        core.insert(self.conn, 'project_tag', [
            {'project_id': id_, 'name': tag}
            for id_, r in entries for tag in r['tags']])
        core.insert(self.conn, 'project_option', core.option_rows(
            resource.Project.registry, 'project_id', entries))


def _max_depth() -> int:
    """Keystone's ``_assert_max_hierarchy_depth`` limit."""
    limit = CONF.max_project_tree_depth + 1
    model = PROVIDERS.unified_limit_api.enforcement_model
    if model.MAX_PROJECT_TREE_DEPTH is not None:
        limit = min(limit, model.MAX_PROJECT_TREE_DEPTH + 1)
    return limit
