"""``keystone-sync run``, ``join`` and ``reconcile``: the commands that
talk to the sites. ``join``'s plan and ``reconcile``'s report are cliff
Listers; what happens meanwhile (a headline, each re-key, each spoke's
summary, errors) goes to stderr, so ``-f json`` output stays parseable."""

from concurrent import futures
import logging
import os
import signal
import sys

from cliff import command
from cliff import lister
from oslo_log import log

from keystone_syncext.agent import cli_base
from keystone_syncext.agent import client
from keystone_syncext.agent import join as join_mod
from keystone_syncext.agent import passes
from keystone_syncext.agent import reconcile as reconcile_mod
from keystone_syncext.agent import runner

LOG = log.getLogger(__name__)


class Run(command.Command):
    """Sync the spokes with the hub."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        cli_base.add_state(parser)
        cli_base.add_sites(parser)
        parser.add_argument('--once', action='store_true',
                            help='sync until every reachable spoke has '
                            'converged with the hub, then exit: 0 only if '
                            'all did')
        return parser

    def take_action(self, parsed_args):
        conf = self.app.conf
        hub_name, spoke_names = cli_base.site_names(conf, parsed_args)
        selections = cli_base.selections(conf, spoke_names)
        agent = runner.Agent(
            conf, cli_base.hub_site(conf, hub_name, spoke_names),
            [client.from_conf(conf, n) for n in spoke_names],
            cli_base.open_state(conf, parsed_args), once=parsed_args.once,
            selections=selections,
            resolver=cli_base.resolver(conf, spoke_names))

        def _terminate(signum, _frame):
            LOG.info('signal %d: finishing the requests in flight, then '
                     'stopping', signum)
            agent.stop.set()
        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        agent.service.on_sighup(rules_reader(conf, spoke_names))
        rc = agent.run()
        if agent.left_behind:
            # Requests still in flight past the stop's bound (logged):
            # the interpreter's exit would wait for them anyway (it joins
            # concurrent.futures' workers, a seed's reads among them), up
            # to the request timeout and its retries.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)
        return rc


def rules_reader(conf, spoke_names):
    """What SIGHUP calls: the config files read again (the mutable
    options: the selection and conflict rules), then the rules built as
    at the start."""
    def rules():
        conf.mutate_config_files()
        return (cli_base.selections(conf, spoke_names),
                cli_base.resolver(conf, spoke_names))
    return rules


JOIN_COLUMNS = ('type', 'domain_id', 'name', 'spoke_id', 'hub_id', 'note',
                'outcome')


def _moved(entry) -> str:
    return ', '.join(f'{k} {v}' for k, v in
                     sorted(entry['references'].items())) or 'none'


class _SiteReport(lister.Lister):
    """A report made by talking to the sites (``join``, ``reconcile``):
    the state and site options, ``--dry-run``, and an exit code of 1
    when an entry failed, whatever the output format."""

    exit_code = 0
    dry_run_help = 'change nothing'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        cli_base.add_state(parser)
        cli_base.add_sites(parser)
        parser.add_argument('--dry-run', action='store_true',
                            help=self.dry_run_help)
        return parser

    def run(self, parsed_args):
        # One pass (doc/agent.md, "Request ids"): every request of the
        # command carries one X-OpenStack-Request-ID.
        with passes.one_pass():
            return super().run(parsed_args) or self.exit_code


class Join(_SiteReport):
    """Re-key a spoke bootstrapped on its own to the hub's ids (roles,
    admin project and user...) before its first run; lists the plan and
    what became of each entry."""

    dry_run_help = 'show the plan and change nothing'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--exclude', action='append',
                            metavar='TYPE:NAME',
                            help='leave matching resources alone (globs, '
                            'repeatable), e.g. user:svc-*; the [selection] '
                            'rules are honoured as well')
        parser.add_argument('--merge', action='append', metavar='USER',
                            help='merge this spoke user into its hub '
                            'namesake even though it administers the spoke '
                            'and the hub account does not hold as much at '
                            'the hub (repeatable; never the agent\'s own '
                            'account)')
        return parser

    def _say(self, text):
        self.app.stderr.write(text + '\n')
        self.app.stderr.flush()

    def take_action(self, parsed_args):
        conf = self.app.conf
        hub_name, spoke_names = cli_base.site_names(conf, parsed_args)
        if len(spoke_names) != 1:
            raise SystemExit('keystone-sync join: one --spoke at a time')
        selection = cli_base.selections(conf, spoke_names)[spoke_names[0]]
        hub = client.from_conf(conf, hub_name)
        spoke = client.from_conf(conf, spoke_names[0])
        try:
            hub_caps = hub.capabilities()
            plan = join_mod.plan(hub, spoke, parsed_args.exclude or [],
                                 selection=selection,
                                 merge=parsed_args.merge or [],
                                 agent_user=spoke.user_id())
        except client.SiteError as e:
            self._say(f'keystone-sync join: {e}')
            self.exit_code = 1
            return JOIN_COLUMNS, []
        dry_run = parsed_args.dry_run
        self._say(f'{"would re-key" if dry_run else "re-keying"} '
                  f'{len(plan["rekey"])} resources of spoke {spoke.name} '
                  f'to hub {hub.name}\'s ids'
                  + (f', leaving {len(plan["kept"])} users alone'
                     if plan['kept'] else ''))
        for e in plan['blocked']:
            self._say(f'cannot re-key {e["type"]} {e["name"]} '
                      f'({e["spoke_id"]}): {e["reason"]}')
        self.exit_code = 1 if plan['blocked'] else 0
        outcomes = {id(e): 'would re-key' if dry_run else 'not done'
                    for e in plan['rekey']}
        if not dry_run:
            self._execute(spoke, plan, hub_caps['site_id'], outcomes)
        return JOIN_COLUMNS, self._rows(plan, outcomes)

    def _execute(self, spoke, plan, origin, outcomes):
        by_key = {(e['type'], e['spoke_id']): e for e in plan['rekey']}

        def done(entry):
            outcomes[id(by_key[entry['type'], entry['spoke_id']])] = (
                f're-keyed (references moved: {_moved(entry)})')
            self._say(f're-keyed {entry["type"]} {entry["name"]}: '
                      f'{entry["spoke_id"]} -> {entry["hub_id"]} '
                      f'(references moved: {_moved(entry)})')

        error = join_mod.execute(spoke, plan, origin, done)
        if error is not None:
            self._say(f'keystone-sync join: stopped: {error}; run the same '
                      'join again to finish (it resumes where it stopped)')
            self.exit_code = 1

    @staticmethod
    def _rows(plan, outcomes):
        rows = [(e['type'], e['domain_id'], e['name'], e['spoke_id'],
                 e['hub_id'], e.get('note', ''), outcomes[id(e)])
                for e in plan['rekey']]
        rows += [(e['type'], e['domain_id'], e['name'], e['spoke_id'],
                  None, e['reason'], 'left alone') for e in plan['kept']]
        rows += [(e['type'], e.get('domain_id'), e['name'], e['spoke_id'],
                  e.get('hub_id'), e['reason'], 'blocked')
                 for e in plan['blocked']]
        return rows


REPORT_FIELDS = ('compared', 'missing', 'differ', 'upserts', 'deletes',
                 'kept_local', 'refused', 'bytes')


class Reconcile(_SiteReport):
    """Compare the hub's and each spoke's digests and repair what differs
    (deletes only what the agent put there); one row per spoke and type,
    and a total per spoke."""

    dry_run_help = 'show what differs and change nothing'

    def take_action(self, parsed_args):
        conf = self.app.conf
        hub_name, spoke_names = cli_base.site_names(conf, parsed_args)
        st = cli_base.open_state(conf, parsed_args)
        st.migrate()
        hub = cli_base.hub_site(conf, hub_name, spoke_names)
        # The same rules as run: what they keep out of a spoke is neither
        # written nor deleted there.
        agent = runner.Agent(conf, hub, [client.from_conf(conf, n)
                                         for n in spoke_names], st,
                             selections=cli_base.selections(conf, spoke_names),
                             resolver=cli_base.resolver(conf, spoke_names))
        columns = ('spoke', 'type') + REPORT_FIELDS
        try:
            agent.adopt_hub(hub.capabilities())
        except client.SiteError as e:
            self.app.stderr.write(f'hub {hub_name}: {e}\n')
            self.exit_code = 1
            return columns, []
        outcomes = self._reconcile(agent, st, parsed_args.dry_run)
        rows = []
        for site, reports in zip(agent.spokes, outcomes, strict=True):
            if not isinstance(reports, client.SiteError):
                rows += self._spoke_rows(site.name, hub_name, reports,
                                         parsed_args.dry_run)
            self._judge(st, site, reports, parsed_args.dry_run)
        return columns, rows

    def _reconcile(self, agent, st, dry_run):
        def one(site):
            st.spoke(site.name)
            try:
                agent.connect(site)
                return reconcile_mod.reconcile_spoke(
                    agent, agent.writer, site, dry_run=dry_run)
            except client.SiteError as e:
                return e

        # Spokes side by side (each site answers its own digests); the
        # reports are listed in the order the spokes were named.
        with futures.ThreadPoolExecutor(
                min(len(agent.spokes),
                    self.app.conf.max_parallel_spokes)) as pool:
            return list(pool.map(one, agent.spokes))

    def _judge(self, st, site, reports, dry_run):
        if isinstance(reports, client.SiteError):
            self.app.stderr.write(f'spoke {site.name}: not reconciled: '
                                  f'{reports}\n')
            self.exit_code = 1
            return
        refused = sum(r.refused for r in reports)
        if refused:
            self.app.stderr.write(
                f'spoke {site.name}: not reconciled: {refused} items '
                f'refused; first: {st.report_pending(site.name)}\n')
            self.exit_code = 1
        elif not dry_run:
            st.reconciled(site.name)

    def _spoke_rows(self, spoke, hub, reports, dry_run):
        total = reconcile_mod.TypeReport('total')
        rows = []
        for r in reports:
            rows.append((spoke, r.type) + tuple(getattr(r, f)
                                                for f in REPORT_FIELDS))
            for f in REPORT_FIELDS:
                setattr(total, f, getattr(total, f) + getattr(r, f))
        rows.append((spoke, 'total') + tuple(getattr(total, f)
                                             for f in REPORT_FIELDS))
        verb = 'would reconcile (dry run)' if dry_run else 'reconciled'
        self.app.stderr.write(
            f'spoke {spoke}: {verb} with hub {hub}: {total.upserts} '
            f'upserts, {total.deletes} deletes, {total.kept_local} '
            f'site-local kept, {total.bytes} bytes\n')
        return rows
