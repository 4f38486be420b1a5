"""Connecting to a spoke: its capabilities, and a check of its history.

A spoke is connected when the agent first writes to it, after an error,
and its feed history is checked again every ``HISTORY_CHECK_SECONDS``
while connected: a spoke whose history id changed, or that refuses the
cursor recorded at the last check (its database went back in time: it
was restored from a backup), may have lost what the agent wrote there,
and is marked for a reconcile by digest.
"""

import logging
import threading
import time

from keystone_syncext.agent import client

LOG = logging.getLogger(__name__)

# How often a connected spoke's feed history is checked again (one
# capabilities read and a one-change feed read): a spoke restored from a
# backup while the agent was idle shows it at the next check.
HISTORY_CHECK_SECONDS = 60


class Connector:
    """Connections to the spokes of one run (a :class:`keystone_syncext.
    agent.context.Context`)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._checked: dict[str, float] = {}  # spoke -> when
        # One history check of a spoke at a time: its spoke and upward
        # threads both connect, and two checks presenting the same old
        # marker would each make a rewound spoke renew its history, and
        # the second renewal look like another restore.
        # The same lock makes a spoke's connects one at a time (it is
        # reentrant: a connect checks the history under it): a thread
        # that finds the spoke's site id set (by the other's capabilities
        # read) must also find what that connect records after it (the
        # spoke's types); otherwise a seed started then sees no type to
        # copy, and marks the spoke seeded with nothing.
        self._locks = {s.name: threading.RLock() for s in ctx.spokes}
        # Spokes whose last history check refused the marker: a second
        # refusal in a row (of the marker taken after the reconcile the
        # first one caused) is a feed that refuses its own head, not
        # another restore; reconciling again would never end.
        self._refused_marker: set[str] = set()

    def connect(self, site: client.Site) -> None:
        """Read spoke ``site``'s capabilities if not known (after an
        error: ``site.site_id`` is None), or check its history if the
        last check is old; :class:`client.SiteError` if it is the hub."""
        with self._locks.setdefault(site.name, threading.RLock()):
            self._connect_locked(site)

    def _connect_locked(self, site: client.Site) -> None:
        if site.site_id is not None and time.monotonic() - \
                self._checked.get(site.name, 0) > HISTORY_CHECK_SECONDS:
            self.check_history(site)
        if site.site_id is None:
            try:
                self._first_connect(site)
            except BaseException:
                # The capabilities read set the site id; a connect cut
                # short after it (its claim lost while recording the
                # history, the hub itself) must not leave the spoke
                # looking connected without its types: the next pass
                # would refuse every change as a type it does not sync.
                site.site_id = None
                raise

    def _first_connect(self, site: client.Site) -> None:
        """Read the capabilities of spoke ``site`` (not connected yet)
        and record what this run needs of them."""
        ctx = self.ctx
        caps = self.check_history(site)
        LOG.info('spoke %(spoke)s (Keystone %(version)s): sync protocol '
                 '%(protocol)d', {'spoke': site.name,
                                  'version': caps['keystone_version'],
                                  'protocol': site.protocol_version})
        ctx.spoke_types[site.name] = caps['resource_types']
        ctx.spoke_max_items[site.name] = caps.get('max_page_size')
        ctx.state.set_site_id(site.name, caps['site_id'])
        if caps['site_id'] == ctx.state.hub().site_id:
            raise client.SiteError(site.name, 'is the hub itself '
                                   f'(site {caps["site_id"]})',
                                   transient=False)

    def check_history(self, site: client.Site) -> dict:
        """Read spoke ``site``'s capabilities and check its feed history:
        a spoke whose history id changed, or that refuses the cursor
        recorded at the last check (its database went back in time), may
        have lost what the agent wrote there, and is marked for a
        reconcile. Returns the capabilities."""
        with self._locks.setdefault(site.name, threading.RLock()):
            return self._check_history_locked(site)

    def _check_history_locked(self, site: client.Site) -> dict:
        state = self.ctx.state
        row = state.spoke(site.name)
        rewound = False
        if row.history_marker:
            try:
                site.changes(since=row.history_marker, limit=1)
            except client.Gone as e:
                # Its database went back in time (restored). A marker
                # merely purged (an idle spoke past its change retention)
                # or of another history (told by the history id below) is
                # no restore.
                rewound = bool(e.body.get('rewound'))
            except client.CaptureIncomplete as e:
                # Its own changes go unrecorded; what the agent writes
                # there still lands. db_sync renews its history later.
                LOG.error('spoke %(spoke)s: %(err)s', {'spoke': site.name,
                                                       'err': e})
        if not rewound:
            self._refused_marker.discard(site.name)
        elif site.name in self._refused_marker:
            raise client.SiteError(
                site.name, 'its feed refused the cursor of its own head '
                'twice in a row (410 Gone again at the head it gave): it '
                'cannot be followed; run "keystone-syncext-manage check" '
                'there', transient=False)
        else:
            self._refused_marker.add(site.name)
        caps = site.capabilities(
            speaks=self.ctx.hub_versions,
            speaker=f'this agent and hub {self.ctx.hub.name}')
        if state.note_history(site.name, caps.get('history_id'),
                              caps.get('head_cursor'), rewound):
            LOG.error('spoke %(spoke)s lost history (restored from a '
                      'backup, or its change capture had a gap): '
                      'reconciling it by digest', {'spoke': site.name})
        self._checked[site.name] = time.monotonic()
        return caps
