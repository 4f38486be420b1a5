"""Seeding a spoke from the hub's listings, with read-ahead.

A spoke seen for the first time gets every resource of the types both
sync, type by type in dependency order, read from the hub's listings a
page ahead by a thread of its own while the spoke writes the current
one; spokes seeding at once share the pages they may
(:mod:`keystone_syncext.agent.seed_pages`). Projects are written whole
at the end of their type (parents before children). A seed copies the
hub's version whatever the spoke holds (no guard); what the spoke
refuses waits in pending.
"""

from concurrent import futures
import logging
import sys

import tqdm

from keystone_syncext.agent import context as context_mod
from keystone_syncext.agent import passes
from keystone_syncext.agent import seed_pages
from keystone_syncext.agent import state as state_mod
from keystone_syncext.agent import writer as writer_mod

LOG = logging.getLogger(__name__)


class Seeder:
    """Seeds for one run (a :class:`context.Context`), written through
    ``writer`` (a :class:`writer.Writer`)."""

    def __init__(self, ctx: context_mod.Context, writer: writer_mod.Writer):
        self.ctx, self.writer = ctx, writer
        # Pages read for one seed serve the others under way.
        self.shared = seed_pages.SharedPages(
            lambda type_name, marker: ctx.hub.listing(type_name,
                                                      marker=marker))

    def seed(self, site) -> None:
        """Seed spoke ``site`` (the state records its start and end)."""
        ctx = self.ctx
        seq = ctx.state.start_seed(site.name)
        token = self.shared.begin()   # after the seed's position
        try:
            self._seed(site, seq, token)
        finally:
            self.shared.end(token)

    def _seed(self, site, seq, token) -> None:
        ctx = self.ctx
        types = [t for t in sorted(ctx.hub_types, key=writer_mod.rank)
                 if t in ctx.spoke_types.get(site.name, ())]
        bar = None
        if ctx.conf.progress and sys.stderr.isatty():
            total = sum(ctx.hub.digest(t)['count'] for t in types)
            bar = tqdm.tqdm(total=total, desc=f'seeding {site.name}',
                            unit=' resources', mininterval=0.2)
        LOG.info('seeding spoke %(spoke)s from hub %(hub)s',
                 {'spoke': site.name, 'hub': ctx.hub.name})
        count = refused = 0
        held = []
        # The hub's next page is read while the spoke writes this one.
        for type_name, page in self.prefetched(types, token):
            changes = [state_mod.Change(seq, type_name, i['id'], 'upsert',
                                        None, i['resource'],
                                        hash_=i.get('hash'))
                       for i in page or ()]
            if type_name == 'project' and page is not None:
                held += changes   # parents first: order them whole
                continue
            if type_name == 'project':
                changes, held = held, []   # the last project page
            count += len(changes)
            refused += self._apply(site, changes) if changes else 0
            if bar:
                bar.update(len(changes))
        if bar:
            bar.close()
        ctx.state.finish_seed(site.name)
        LOG.info('seeded spoke %(spoke)s: %(n)d resources, %(bad)d refused '
                 '(pending)', {'spoke': site.name, 'n': count,
                               'bad': refused})

    def prefetched(self, types, token):
        """(type, page) for every page of the hub's listings of ``types``,
        read one page ahead by a worker of its own (an executor of one);
        after a type's pages, (type, None) ends it. An error or a stop in
        the reader is raised here; leaving early waits for the one read
        in flight, so no reader is left behind. ``token``: the seed's,
        from :meth:`SharedPages.begin`."""
        items = self.listings(types, token)
        with futures.ThreadPoolExecutor(
                1, thread_name_prefix='seed-read') as pool:
            read = passes.carry_pass(next)
            ahead = pool.submit(read, items, None)
            while True:
                item = ahead.result()
                if item is None:
                    return
                ahead = pool.submit(read, items, None)
                yield item

    def listings(self, types, token):
        """(type, page) for every page of ``types``, (type, None) after
        each type."""
        for type_name in types:
            for page in self.pages(type_name, token):
                yield type_name, page
            yield type_name, None

    def pages(self, type_name, token):
        """The non-empty pages of the hub's listing of ``type_name``."""
        marker = None
        while True:
            self.ctx.check_stop()
            page = self.shared.page(token, type_name, marker)
            if page['items']:
                yield page['items']
            marker = page.get('next_marker')
            if not marker:
                return

    def _apply(self, site, changes) -> int:
        # A seed copies the hub's version whatever the spoke holds.
        done, failed, written = self.writer.apply(site, changes, guard=False)
        self.ctx.state.record(site.name, None, done, failed, written)
        return len(failed)
