"""``keystone-sync``: the command line.

::

    keystone-sync run --hub CLOUD --spoke CLOUD [--spoke CLOUD ...]
                      [--state URL] [--once]
    keystone-sync status [--state URL] [--json]
    keystone-sync conflicts [--state URL] [--spoke CLOUD] [--limit N]
                            [--show ID] [--json]
    keystone-sync join --hub CLOUD --spoke CLOUD [--exclude TYPE:NAME]
                       [--merge USER] [--dry-run]
    keystone-sync reconcile --hub CLOUD --spoke CLOUD [--spoke CLOUD ...]
                            [--state URL] [--dry-run]

Every flag can come from a config file instead (``--config-file``, or
``keystone-sync.conf`` where oslo.config looks for it: ``[DEFAULT] hub``,
``spokes``, ``state`` and the tuning options; see
``etc/keystone-sync.conf.sample``). Flags override the file. The
selective sync rules (``[selection]``, ``[spoke:NAME]``) are in the file
only.
"""

from concurrent import futures
import json
import os
import signal
import sys

from oslo_config import cfg
from oslo_log import log
import prettytable

from keystone_syncext.agent import client
from keystone_syncext.agent import conflicts as conflicts_mod
from keystone_syncext.agent import join as join_mod
from keystone_syncext.agent import opts
from keystone_syncext.agent import reconcile as reconcile_mod
from keystone_syncext.agent import runner
from keystone_syncext.agent import selection as selection_mod
from keystone_syncext.agent import state as state_mod

LOG = log.getLogger(__name__)

# Request logs could carry what the bodies carry: keep them out.
QUIET = ['keystoneauth=WARN', 'openstack=WARN', 'urllib3=WARN',
         'stevedore=WARN', 'alembic=WARN']


def _hub(conf) -> str:
    name = conf.command.cli_hub or conf.hub
    if not name:
        raise SystemExit('keystone-sync: no hub: give --hub CLOUD or set '
                         '[DEFAULT] hub in the config file')
    return name


def _spokes(conf) -> list[str]:
    names = conf.command.cli_spoke or conf.spokes
    if not names:
        raise SystemExit('keystone-sync: no spokes: give --spoke CLOUD '
                         '(repeatable) or set [DEFAULT] spokes')
    if len(set(names)) != len(names):
        raise SystemExit('keystone-sync: a spoke is named twice')
    return list(names)


def _state(conf) -> state_mod.State:
    url = conf.command.cli_state or conf.state
    if url.startswith('sqlite:///~'):
        url = 'sqlite:///' + os.path.expanduser(url[len('sqlite:///'):])
    return state_mod.State(
        url, conflict_retention_days=conf.conflict_retention_days)


def _selections(conf, spoke_names) -> dict:
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


def _resolver(conf, spoke_names) -> conflicts_mod.Resolver:
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


def _hub_site(conf, hub_name, spoke_names) -> client.Site:
    """The hub, with a connection kept for each thread that may use it at
    once: every spoke's upward long-poll, and the spoke writers."""
    return client.from_conf(conf, hub_name, connections=(
        len(spoke_names) + conf.max_parallel_spokes + 2))


def do_run(conf) -> int:
    hub_name, spoke_names = _hub(conf), _spokes(conf)
    if hub_name in spoke_names:
        raise SystemExit(f'keystone-sync: {hub_name} is both hub and spoke')
    selections = _selections(conf, spoke_names)
    agent = runner.Agent(
        conf, _hub_site(conf, hub_name, spoke_names),
        [client.from_conf(conf, n) for n in spoke_names], _state(conf),
        once=conf.command.once, selections=selections,
        resolver=_resolver(conf, spoke_names))

    def _terminate(signum, _frame):
        LOG.info('signal %d: finishing the requests in flight, then '
                 'stopping', signum)
        agent.stop.set()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    agent.service.on_sighup(_rules_reader(conf, spoke_names))
    return agent.run()


def _rules_reader(conf, spoke_names):
    """What SIGHUP calls: the config files read again (the mutable
    options: the selection and conflict rules), then the rules built as
    at the start."""
    def rules():
        conf.mutate_config_files()
        return (_selections(conf, spoke_names),
                _resolver(conf, spoke_names))
    return rules


def _when(value) -> str:
    return value.strftime('%Y-%m-%d %H:%M:%S') if value else '-'


def _audit_cell(row) -> str:
    """The status table's last audit: when, the drift it found, the
    writes it made."""
    if not row['last_audit_at']:
        return '-'
    return (f'{_when(row["last_audit_at"])}: {row["audit_found"]} drift, '
            f'{row["audit_repaired"]} written')


def do_status(conf) -> int:
    st = _state(conf)
    st.migrate()
    report = st.report()
    if conf.command.json:
        print(json.dumps(report, default=str, indent=1, sort_keys=True))
        return 0
    hub = report['hub']
    if hub is None:
        print('no hub followed yet: run keystone-sync run first')
        return 0
    print(f'hub {hub["name"]} (site {hub["site_id"]}): last read '
          f'{_when(hub["last_read_at"])}, '
          f'{"at the head" if hub["cursor"] == hub["head"] else "behind"}'
          + (f', last error {_when(hub["last_error_at"])}: '
             f'{hub["last_error"]}' if hub['last_error'] else ''))
    table = prettytable.PrettyTable(
        ['spoke', 'state', 'lag (changes)', 'lag (s)', 'pending',
         'conflicts', 'last success (UTC)', 'last reconcile (UTC)',
         'last audit (UTC)', 'last error'])
    table.align = 'l'
    for row in report['spokes']:
        error = (f'{_when(row["last_error_at"])} {row["last_error"]}'
                 if row['last_error'] else '-')
        table.add_row([row['spoke'], row['state'], row['lag_changes'],
                       row['lag_seconds'], row['pending'],
                       row['conflicts'], _when(row['last_success_at']),
                       _when(row['last_reconcile_at']), _audit_cell(row),
                       error[:80]])
    print(table)
    for row in report['spokes']:
        if row['pending_reason']:
            # Why the oldest item waits: a refused attack looks like this.
            print(f'{row["spoke"]}: oldest pending: '
                  f'{row["pending_reason"][:300]}')
    return 0


def _conflict(row) -> dict:
    """A conflict as shown: versions with the hashes of secrets
    redacted."""
    out = dict(row._mapping)
    for side in ('hub_version', 'spoke_version'):
        version = json.loads(out[side]) if out[side] else None
        out[side] = conflicts_mod.redact(row.type, version)
    out['fields'] = conflicts_mod.differing_fields(out['hub_version'],
                                                   out['spoke_version'])
    return out


def do_conflicts(conf) -> int:
    st = _state(conf)
    st.migrate()
    cmd = conf.command
    spoke_names = cmd.cli_spoke or []
    rows = [_conflict(r) for r in st.conflicts(limit=None if cmd.show
                                               else cmd.limit)
            if not spoke_names or r.spoke in spoke_names]
    if cmd.show is not None:
        rows = [r for r in rows if r['id'] == cmd.show]
        if not rows:
            print(f'keystone-sync: no conflict {cmd.show}', file=sys.stderr)
            return 1
    if cmd.json or cmd.show is not None:
        print(json.dumps(rows if cmd.show is None else rows[0],
                         default=str, indent=1, sort_keys=True))
        return 0
    if not rows:
        print('no conflicts recorded')
        return 0
    table = prettytable.PrettyTable(
        ['id', 'detected (UTC)', 'spoke', 'type', 'resource', 'fields',
         'winner', 'why'])
    table.align = 'l'
    for r in rows:
        table.add_row([r['id'], _when(r['detected_at']), r['spoke'],
                       r['type'], r['resource_id'],
                       ', '.join(r['fields']) or '-',
                       r['winner'] if r['winner'] == conflicts_mod.HUB
                       else f'spoke {r["winner"]}', r['reason'][:100]])
    print(table)
    print('keystone-sync conflicts --show ID prints both versions '
          '(secrets redacted)')
    return 0


def do_join(conf) -> int:
    hub_name = _hub(conf)
    spoke_names = _spokes(conf)
    if len(spoke_names) != 1:
        raise SystemExit('keystone-sync join: one --spoke at a time')
    selection = _selections(conf, spoke_names)[spoke_names[0]]
    hub = client.from_conf(conf, hub_name)
    spoke = client.from_conf(conf, spoke_names[0])
    try:
        hub_caps = hub.capabilities()
        the_plan = join_mod.plan(hub, spoke, conf.command.exclude or [],
                                 selection=selection,
                                 merge=conf.command.merge or [],
                                 agent_user=spoke.user_id())
    except client.SiteError as e:
        print(f'keystone-sync join: {e}', file=sys.stderr)
        return 1
    table = prettytable.PrettyTable(['type', 'domain', 'name', 'spoke id',
                                     'hub id', 'note'])
    table.align = 'l'
    for e in the_plan['rekey']:
        table.add_row([e['type'], e['domain_id'], e['name'], e['spoke_id'],
                       e['hub_id'], e.get('note', '')])
    for e in the_plan['kept']:
        table.add_row([e['type'], e['domain_id'], e['name'], e['spoke_id'],
                       '(left alone)', e['reason']])
    verb = 'would re-key' if conf.command.dry_run else 're-keying'
    print(f'{verb} {len(the_plan["rekey"])} resources of spoke '
          f'{spoke.name} to hub {hub.name}\'s ids'
          + (f', leaving {len(the_plan["kept"])} users alone'
             if the_plan['kept'] else '') + ':')
    print(table)
    for e in the_plan['blocked']:
        print(f'cannot re-key {e["type"]} {e["name"]} ({e["spoke_id"]}): '
              f'{e["reason"]}', file=sys.stderr)
    if conf.command.dry_run:
        return 1 if the_plan['blocked'] else 0

    def done(entry):
        moved = ', '.join(f'{k} {v}' for k, v in
                          sorted(entry['references'].items())) or 'none'
        print(f're-keyed {entry["type"]} {entry["name"]}: '
              f'{entry["spoke_id"]} -> {entry["hub_id"]} (references '
              f'moved: {moved})', flush=True)

    error = join_mod.execute(spoke, the_plan, hub_caps['site_id'], done)
    if error is not None:
        print(f'keystone-sync join: stopped: {error}; run the same join '
              'again to finish (it resumes where it stopped)',
              file=sys.stderr)
        return 1
    return 1 if the_plan['blocked'] else 0


REPORT_FIELDS = ('compared', 'missing', 'differ', 'upserts', 'deletes',
                 'kept_local', 'refused', 'bytes')


def do_reconcile(conf) -> int:
    hub_name, spoke_names = _hub(conf), _spokes(conf)
    if hub_name in spoke_names:
        raise SystemExit(f'keystone-sync: {hub_name} is both hub and spoke')
    dry_run = conf.command.dry_run
    st = _state(conf)
    st.migrate()
    hub = _hub_site(conf, hub_name, spoke_names)
    # The same rules as run: what they keep out of a spoke is neither
    # written nor deleted there.
    agent = runner.Agent(conf, hub, [client.from_conf(conf, n)
                                     for n in spoke_names], st,
                         selections=_selections(conf, spoke_names),
                         resolver=_resolver(conf, spoke_names))
    try:
        agent.adopt_hub(hub.capabilities())
    except client.SiteError as e:
        print(f'hub {hub_name}: {e}', file=sys.stderr)
        return 1

    def one(site):
        st.spoke(site.name)
        try:
            agent.connect(site)
            return reconcile_mod.reconcile_spoke(agent, agent.writer, site,
                                                 dry_run=dry_run)
        except client.SiteError as e:
            return e

    # Spokes side by side (each site answers its own digests); the
    # reports are printed in the order the spokes were named.
    with futures.ThreadPoolExecutor(
            min(len(agent.spokes), conf.max_parallel_spokes)) as pool:
        outcomes = list(pool.map(one, agent.spokes))
    bad = 0
    for site, reports in zip(agent.spokes, outcomes, strict=True):
        if isinstance(reports, client.SiteError):
            print(f'spoke {site.name}: not reconciled: {reports}',
                  file=sys.stderr)
            bad += 1
            continue
        _print_reconcile(site.name, hub_name, reports, dry_run)
        refused = sum(r.refused for r in reports)
        if refused:
            print(f'spoke {site.name}: not reconciled: {refused} items '
                  f'refused; first: {st.report_pending(site.name)}',
                  file=sys.stderr)
            bad += 1
        elif not dry_run:
            st.reconciled(site.name)
    return 1 if bad else 0


def _print_reconcile(spoke, hub, reports, dry_run) -> None:
    table = prettytable.PrettyTable(['type', 'buckets compared', 'missing',
                                     'differ', 'upserts', 'deletes',
                                     'kept site-local', 'refused', 'bytes'])
    table.align = 'r'
    table.align['type'] = 'l'
    total = reconcile_mod.TypeReport('total')
    for r in reports:
        table.add_row([r.type] + [getattr(r, f) for f in REPORT_FIELDS])
        for f in REPORT_FIELDS:
            setattr(total, f, getattr(total, f) + getattr(r, f))
    table.add_row(['total'] + [getattr(total, f) for f in REPORT_FIELDS])
    verb = 'would reconcile (dry run)' if dry_run else 'reconciled'
    print(f'spoke {spoke}: {verb} with hub {hub}: {total.upserts} upserts, '
          f'{total.deletes} deletes, {total.kept_local} site-local kept, '
          f'{total.bytes} bytes')
    print(table)


def _add_commands(subparsers):
    def command(func, name, help_):
        parser = subparsers.add_parser(name, help=help_)
        parser.set_defaults(func=func)
        return parser

    run = command(do_run, 'run', 'sync the spokes with the hub')
    status = command(do_status, 'status', 'each spoke\'s lag, pending '
                     'items and errors, from the state database')
    status.add_argument('--json', action='store_true',
                        help='print the report as JSON')
    conflicts = command(do_conflicts, 'conflicts', 'the conflicts '
                        'resolved: resources changed both at the hub and '
                        'at a spoke, both versions, the winner and why')
    conflicts.add_argument('--spoke', metavar='CLOUD', action='append',
                           dest='cli_spoke',
                           help='only this spoke\'s (repeatable)')
    conflicts.add_argument('--limit', type=int, default=50,
                           help='the newest N (default 50; 0: all)')
    conflicts.add_argument('--show', type=int, metavar='ID',
                           help='one conflict whole, both versions '
                           '(secrets redacted), as JSON')
    conflicts.add_argument('--json', action='store_true',
                           help='print them as JSON')
    join = command(do_join, 'join', 're-key a spoke bootstrapped on its '
                   'own to the hub\'s ids (roles, admin project and '
                   'user...) before its first run')
    join.add_argument('--dry-run', action='store_true',
                      help='show the plan and change nothing')
    join.add_argument('--exclude', action='append', metavar='TYPE:NAME',
                      help='leave matching resources alone (globs, '
                      'repeatable), e.g. user:svc-*; the [selection] '
                      'rules are honoured as well')
    join.add_argument('--merge', action='append', metavar='USER',
                      help='merge this spoke user into its hub namesake '
                      'even though it administers the spoke and the hub '
                      'account does not hold as much at the hub '
                      '(repeatable; never the agent\'s own account)')
    reconcile = command(do_reconcile, 'reconcile', 'compare the hub\'s '
                        'and each spoke\'s digests and repair what differs '
                        '(deletes only what the agent put there)')
    reconcile.add_argument('--dry-run', action='store_true',
                           help='show what differs and change nothing')
    for parser in (run, status, conflicts, join, reconcile):
        parser.add_argument('--state', metavar='URL', dest='cli_state',
                            help='state database (SQLAlchemy URL)')
    for parser in (run, join, reconcile):
        parser.add_argument('--hub', metavar='CLOUD', dest='cli_hub',
                            help='the hub, a cloud in clouds.yaml')
        parser.add_argument('--spoke', metavar='CLOUD', action='append',
                            dest='cli_spoke',
                            help='a spoke, a cloud in clouds.yaml '
                            '(repeatable)')
    run.add_argument('--once', action='store_true',
                     help='sync until every reachable spoke has converged '
                     'with the hub, then exit: 0 only if all did')


def main(argv=None) -> int:
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    log.set_defaults(default_log_levels=log.get_default_log_levels()
                     + QUIET)
    opts.register(conf)
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='commands', handler=_add_commands))
    conf(sys.argv[1:] if argv is None else argv, project='keystone-sync')
    log.setup(conf, 'keystone-sync')
    return conf.command.func(conf)


if __name__ == '__main__':
    sys.exit(main())
