"""``keystone-sync status`` and ``conflicts``: reports read from the state
database, as cliff Listers and ShowOnes (every format, ``-c``)."""

import datetime
import json

from cliff import columns
from cliff import lister
from cliff import show
from osc_lib.cli import format_columns

from keystone_syncext.agent import cli_base
from keystone_syncext.agent import conflicts as conflicts_mod


class When(columns.FormattableColumn):
    """A time of the state database (naive UTC): to the second in a
    table, whole in json and yaml."""

    def human_readable(self):
        return self._value.strftime('%Y-%m-%d %H:%M:%S') if self._value \
            else '-'

    def machine_readable(self):
        return str(self._value) if self._value else None


class Text(columns.FormattableColumn):
    """A long text (an error, a reason): cut in a table, whole
    otherwise."""

    WIDTH = 80

    def human_readable(self):
        return (self._value or '-')[:self.WIDTH]


class Reason(Text):
    WIDTH = 300


class Winner(columns.FormattableColumn):
    """``hub`` or a spoke's name; a table says ``spoke NAME``."""

    def human_readable(self):
        return self._value if self._value == conflicts_mod.HUB \
            else f'spoke {self._value}'


def status_row(row: dict) -> dict:
    """One spoke's line of ``keystone-sync status``, column by column,
    from its entry of ``State.report()``: add a column here."""
    return {
        'spoke': row.get('spoke'),
        'site_id': row.get('site_id'),
        'state': row.get('state'),
        # The agent (member) whose claim on the spoke is live.
        'owner': row.get('owner'),
        'lag_changes': row.get('lag_changes'),
        # State.report() computes it, for the metrics too.
        'lag_seconds': row.get('lag_seconds', 0.0),
        'pending': row.get('pending'),
        'conflicts': row.get('conflicts'),
        'last_success_at': When(row.get('last_success_at')),
        'last_reconcile_at': When(row.get('last_reconcile_at')),
        # The periodic audit: when, the drift it found, the writes it made.
        'last_audit_at': When(row.get('last_audit_at')),
        'audit_found': row.get('audit_found'),
        'audit_repaired': row.get('audit_repaired'),
        'last_error_at': When(row.get('last_error_at')),
        'last_error': Text(row.get('last_error')),
        'oldest_unapplied': When(row.get('oldest_unapplied')),
        'pending_since': When(row.get('pending_since')),
        # Why the oldest item waits: a refused attack looks like this.
        'pending_reason': Reason(row.get('pending_reason')),
    }


def _report(app, args) -> dict:
    st = cli_base.open_state(app.conf, args)
    st.migrate()
    return st.report()


class _StateReport:
    """A report read from the state database, with ``--json``."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        cli_base.add_state(parser)
        cli_base.add_json_alias(parser)
        return parser


class Status(_StateReport, lister.Lister):
    """Each spoke's state, lag, pending items, conflicts and errors, from
    the state database."""

    def take_action(self, parsed_args):
        report = _report(self.app, parsed_args)
        if report['hub'] is None:
            self.app.stderr.write('no hub followed yet: run keystone-sync '
                                  'run first\n')
        rows = [status_row(r) for r in report['spokes']]
        names = tuple(status_row({}))
        return names, [tuple(r[n] for n in names) for r in rows]


class HubStatus(_StateReport, show.ShowOne):
    """The hub the agent follows: its feed position and last error."""

    def take_action(self, parsed_args):
        hub = _report(self.app, parsed_args)['hub']
        if hub is None:
            raise RuntimeError('no hub followed yet: run keystone-sync run '
                               'first')
        out = {'name': hub['name'], 'site_id': hub['site_id'],
               'cursor': hub['cursor'], 'head': hub['head'],
               'at_head': hub['cursor'] == hub['head'],
               'last_read_at': When(hub['last_read_at']),
               'last_error_at': When(hub['last_error_at']),
               'last_error': Text(hub['last_error'])}
        return tuple(out), tuple(out.values())


def conflict_dict(row) -> dict:
    """A conflict as stored, with both versions' hashes of secrets
    redacted and the fields that differ."""
    # Plain str keys: SQLAlchemy's are a subclass yaml cannot dump.
    out = {str(k): v for k, v in row._mapping.items()}
    for side in ('hub_version', 'spoke_version'):
        version = json.loads(out[side]) if out[side] else None
        out[side] = conflicts_mod.redact(row.type, version)
    out['fields'] = conflicts_mod.differing_fields(out['hub_version'],
                                                   out['spoke_version'])
    return out


LIST_COLUMNS = ('id', 'detected_at', 'spoke', 'type', 'resource_id',
                'fields', 'winner', 'reason')


def _formatted(conflict: dict) -> dict:
    out = dict(conflict)
    for key, value in conflict.items():
        if isinstance(value, datetime.datetime):
            out[key] = When(value)
        elif isinstance(value, dict):
            out[key] = format_columns.DictColumn(value)
    out['fields'] = format_columns.ListColumn(conflict['fields'])
    out['winner'] = Winner(conflict['winner'])
    out['reason'] = Text(conflict['reason'])
    return out


class Conflicts(lister.Lister):
    """The conflicts resolved: resources changed both at the hub and at a
    spoke, the winner and why (``conflict show ID``: both versions)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        cli_base.add_state(parser)
        parser.add_argument('--spoke', metavar='CLOUD', action='append',
                            dest='cli_spoke',
                            help='only this spoke\'s (repeatable)')
        parser.add_argument('--limit', type=int, default=50,
                            help='the newest N (default 50; 0: all)')
        parser.add_argument('--long', action='store_true',
                            help='every field, both versions included')
        parser.add_argument('--show', type=int, metavar='ID',
                            help='the same as conflict show ID -f json')
        cli_base.add_json_alias(parser, long=True)
        return parser

    def run(self, parsed_args):
        if parsed_args.show is None:
            return super().run(parsed_args)
        one = ConflictShow(self.app, self.app_args)
        args = one.get_parser('conflict show').parse_args(
            [str(parsed_args.show), '-f', 'json'])
        args.cli_state = parsed_args.cli_state
        return one.run(args)

    def take_action(self, parsed_args):
        st = cli_base.open_state(self.app.conf, parsed_args)
        st.migrate()
        spokes = parsed_args.cli_spoke or []
        rows = [conflict_dict(r) for r in st.conflicts(
            limit=parsed_args.limit or None)
            if not spokes or r.spoke in spokes]
        names = (LIST_COLUMNS + tuple(sorted(
            set(rows[0]) - set(LIST_COLUMNS)))
            if parsed_args.long and rows else LIST_COLUMNS)
        return names, [tuple(_formatted(r).get(c) for c in names)
                       for r in rows]


class ConflictShow(show.ShowOne):
    """One conflict whole: both versions (secrets redacted), the winner
    and why."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('id', type=int, help='the conflict\'s id')
        cli_base.add_state(parser)
        return parser

    def take_action(self, parsed_args):
        st = cli_base.open_state(self.app.conf, parsed_args)
        st.migrate()
        found = [r for r in st.conflicts() if r.id == parsed_args.id]
        if not found:
            raise LookupError(f'no conflict {parsed_args.id}')
        conflict = _formatted(conflict_dict(found[0]))
        names = tuple(sorted(conflict))
        return names, tuple(conflict[n] for n in names)
