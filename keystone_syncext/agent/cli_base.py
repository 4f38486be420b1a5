"""What the commands of ``keystone-sync`` share: the sites, the state
database and the rules named by the flags or the config file, and the
flags themselves."""

import argparse
import os

from oslo_log import log

from keystone_syncext.agent import client
from keystone_syncext.agent import conflicts as conflicts_mod
from keystone_syncext.agent import opts
from keystone_syncext.agent import selection as selection_mod
from keystone_syncext.agent import state as state_mod

LOG = log.getLogger(__name__)


def hub_name(conf, args) -> str:
    name = args.cli_hub or conf.hub
    if not name:
        raise SystemExit('keystone-sync: no hub: give --hub CLOUD or set '
                         '[DEFAULT] hub in the config file')
    return name


def spoke_names(conf, args) -> list[str]:
    names = args.cli_spoke or conf.spokes
    if not names:
        raise SystemExit('keystone-sync: no spokes: give --spoke CLOUD '
                         '(repeatable) or set [DEFAULT] spokes')
    if len(set(names)) != len(names):
        raise SystemExit('keystone-sync: a spoke is named twice')
    return list(names)


def site_names(conf, args) -> tuple[str, list[str]]:
    """The hub's and the spokes' cloud names, checked."""
    hub, spokes = hub_name(conf, args), spoke_names(conf, args)
    if hub in spokes:
        raise SystemExit(f'keystone-sync: {hub} is both hub and spoke')
    return hub, spokes


def open_state(conf, args) -> state_mod.State:
    url = args.cli_state or conf.state
    if url.startswith('sqlite:///~'):
        url = 'sqlite:///' + os.path.expanduser(url[len('sqlite:///'):])
    return state_mod.State(
        url, conflict_retention_days=conf.conflict_retention_days)


def selections(conf, spoke_names) -> dict:
    """Each spoke's rule set, checked now: a malformed rule stops the
    agent before it writes anything."""
    out = {}
    for name in spoke_names:
        include, exclude = opts.spoke_rules(conf, name)
        try:
            out[name] = selection_mod.Selection(include, exclude)
        except selection_mod.RuleError as e:
            raise SystemExit(f'keystone-sync: spoke {name}: {e}') from None
        if out[name]:
            LOG.info('spoke %(spoke)s: include %(inc)s, exclude %(exc)s',
                     {'spoke': name,
                      'inc': [r.text for r in out[name].include] or 'all',
                      'exc': [r.text for r in out[name].exclude]})
    return out


def resolver(conf, spoke_names) -> conflicts_mod.Resolver:
    """The conflict rules, checked now like the selection rules."""
    rules = {name: opts.authoritative_rules(conf, name)
             for name in spoke_names}
    try:
        resolver = conflicts_mod.Resolver(conf.conflicts.strategy, rules)
    except selection_mod.RuleError as e:
        raise SystemExit(f'keystone-sync: authoritative: {e}') from None
    for name, texts in resolver.rules.items():
        LOG.info('spoke %(spoke)s is authoritative for %(rules)s',
                 {'spoke': name, 'rules': texts})
    return resolver


def hub_site(conf, hub_name, spoke_names) -> client.Site:
    """The hub, with a connection kept for each thread that may use it at
    once: every spoke's upward long-poll, and the spoke writers."""
    return client.from_conf(conf, hub_name, connections=(
        len(spoke_names) + conf.max_parallel_spokes + 2))


def add_state(parser) -> None:
    parser.add_argument('--state', metavar='URL', dest='cli_state',
                        help='state database (SQLAlchemy URL)')


def add_sites(parser) -> None:
    parser.add_argument('--hub', metavar='CLOUD', dest='cli_hub',
                        help='the hub, a cloud in clouds.yaml')
    parser.add_argument('--spoke', metavar='CLOUD', action='append',
                        dest='cli_spoke',
                        help='a spoke, a cloud in clouds.yaml (repeatable)')


class JsonAlias(argparse.Action):
    """``--json``: ``-f json``, and ``--long`` where there is one."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.formatter = 'json'
        if hasattr(namespace, 'long'):
            namespace.long = True


def add_json_alias(parser, long=False) -> None:
    """``--json``, the flag of the hand-printed reports, kept as an
    alias of ``-f json`` (with every field, as it printed: ``--long``)."""
    parser.add_argument('--json', action=JsonAlias, nargs=0,
                        help='the same as -f json'
                        + (' --long' if long else ''))
