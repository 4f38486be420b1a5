"""``openstack sync ...``: the ``/v3/sync`` API of the site OSC is
pointed at (``--os-cloud``), read-only. What the site refuses (a caller
without the system reader or admin role its policy asks for) is the
ordinary ``openstack`` error: the site's message, exit 1."""


from cliff import columns
from osc_lib import exceptions
from osc_lib.cli import format_columns
from osc_lib.command import command

from keystone_syncext.agent import client


class _Values(columns.FormattableColumn):
    """A list of plain values (names, version numbers) in the order the
    site gives them: comma-separated in a table, a list otherwise."""

    def human_readable(self):
        return ', '.join(str(v) for v in self._value)


def _column(value):
    """A value as a column: lists and mappings formatted in a table,
    whole in json and yaml."""
    if isinstance(value, dict):
        return format_columns.DictColumn(value)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return format_columns.ListDictColumn(value)
    if isinstance(value, list):
        return _Values(value)
    return value


def _record(body: dict):
    names = tuple(sorted(body))
    return names, tuple(_column(body[n]) for n in names)


def _rows(names: tuple, long: bool, items: list):
    """A listing's columns and rows; ``--long`` adds each resource."""
    names += ('resource',) if long else ()
    return names, [tuple(_column(i.get(n)) for n in names) for i in items]


def _argument(*names, **kwargs):
    """One of a command's ``arguments``: ``add_argument``'s own words."""
    return names, kwargs


def _positive_limit(parsed_args):
    if parsed_args.limit < 1:
        raise exceptions.CommandError('--limit must be at least 1')


class _SyncCommand:
    """What every sync command shares: its arguments, declared as
    ``arguments``; the site's client; and its errors
    (``client.SiteError``) raised as OSC's ``CommandError``."""

    arguments = ()

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        for names, kwargs in self.arguments:
            parser.add_argument(*names, **kwargs)
        return parser

    def take_action(self, parsed_args):
        try:
            return self.sync_action(self.app.client_manager.sync,
                                    parsed_args)
        except client.SiteError as e:
            raise exceptions.CommandError(str(e)) from None

    def say(self, text):
        self.app.stderr.write(text + '\n')


class ShowCapabilities(_SyncCommand, command.ShowOne):
    _description = ('The site\'s sync capabilities: protocol versions, '
                    'site id, types, retention, cursors, limits')

    def sync_action(self, sync, parsed_args):
        return _record(sync.about())


class ShowStatus(_SyncCommand, command.ShowOne):
    _description = ('The site\'s change capture health (system reader): '
                    'whether capture is complete, what is missing, the '
                    'feed\'s cursors')

    def sync_action(self, sync, parsed_args):
        return _record(sync.status())


CHANGE_COLUMNS = ('cursor', 'type', 'id', 'op', 'changed_at', 'origin',
                  'hash')


class ListChanges(_SyncCommand, command.Lister):
    _description = ('The site\'s change feed, in feed order (system '
                    'admin); the cursor to continue from is said on '
                    'stderr')

    arguments = (
        _argument('--since', metavar='<cursor>',
                  help='after this cursor (default: the beginning of the '
                  'kept history)'),
        _argument('--type', metavar='<type>', action='append', dest='types',
                  help='only changes of this type (repeatable)'),
        _argument('--limit', metavar='<n>', type=int, default=100,
                  help='at most N changes (default 100; the site caps it)'),
        _argument('--long', action='store_true',
                  help='with each resource\'s representation'),
    )

    def sync_action(self, sync, parsed_args):
        _positive_limit(parsed_args)
        page = sync.changes(since=parsed_args.since, limit=parsed_args.limit,
                            types=parsed_args.types)
        self.say(f'next cursor: {page["next"]}'
                 + (' (more changes follow)' if page.get('more') else ''))
        return _rows(CHANGE_COLUMNS, parsed_args.long, page['changes'])


RESOURCE_COLUMNS = ('id', 'hash', 'created_at', 'updated_at')


class ListResources(_SyncCommand, command.Lister):
    _description = ('One page of the resources of a type, ordered by id, '
                    'with their content hashes (system admin)')

    arguments = (
        _argument('type', metavar='<type>',
                  help='a type the site syncs (openstack sync capabilities '
                  'show -c resource_types)'),
        _argument('--marker', metavar='<id>', help='after this id'),
        _argument('--prefix', metavar='<prefix>',
                  help='only ids starting with it'),
        _argument('--limit', metavar='<n>', type=int, default=1000,
                  help='at most N (default and cap: the site\'s '
                  'max_page_size)'),
        _argument('--long', action='store_true',
                  help='with each representation (secret hashes as the API '
                  'gives them to system admins)'),
    )

    def sync_action(self, sync, parsed_args):
        _positive_limit(parsed_args)
        if parsed_args.prefix:
            page = sync.listing_prefix(parsed_args.type, parsed_args.prefix,
                                       parsed_args.marker, parsed_args.limit)
        else:
            page = sync.listing(parsed_args.type, parsed_args.marker,
                                parsed_args.limit)
        if page.get('next_marker'):
            self.say(f'more after: --marker {page["next_marker"]}')
        return _rows(RESOURCE_COLUMNS, parsed_args.long, page['items'])


class ShowResource(_SyncCommand, command.ShowOne):
    _description = ('One resource as the site serves it to the agent: its '
                    'representation and content hash (system admin; '
                    'secret hashes as the API gives them)')

    arguments = (
        _argument('type', metavar='<type>', help='its type'),
        _argument('id', metavar='<id>', help='its id'),
    )

    def sync_action(self, sync, parsed_args):
        item = sync.envelope(parsed_args.type, parsed_args.id)
        if item is None:
            raise exceptions.CommandError(
                f'no {parsed_args.type} {parsed_args.id} at the site')
        body = {k: v for k, v in item.items() if k != 'resource'}
        body.update((k, v) for k, v in item['resource'].items()
                    if k not in body)
        return _record(body)


class _DigestCommand(_SyncCommand):
    """A command about one type's digest: the type, ``--bucket``."""

    bucket_help = ''

    @property
    def arguments(self):
        return (_argument('type', metavar='<type>', help='the type'),
                _argument('--bucket', metavar='<prefix>', default='',
                          help=self.bucket_help))


class ShowDigest(_DigestCommand, command.ShowOne):
    _description = ('The digest of a type\'s ids starting with a prefix: '
                    'count, hash, a bucket per next character, the ids '
                    'and hashes once 64 or fewer (system admin)')

    bucket_help = 'the bucket (the ids starting with this prefix; ' \
        'default: all)'

    def sync_action(self, sync, parsed_args):
        return _record(sync.digest(parsed_args.type, parsed_args.bucket))


class ListDigestBuckets(_DigestCommand, command.Lister):
    _description = ('The buckets of a digest, one per next character of '
                    'the ids: prefix, count, hash (system admin)')

    bucket_help = 'the bucket to list the buckets of (default: the top)'

    def sync_action(self, sync, parsed_args):
        digest = sync.digest(parsed_args.type, parsed_args.bucket)
        names = ('prefix', 'count', 'hash')
        return names, [tuple(b[n] for n in names)
                       for b in digest['buckets']]
