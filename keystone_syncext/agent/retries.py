"""When a site's answer is worth sending the request again, and after how
long (tenacity): the 503s and 401s of :meth:`client.Site._answer`.

- a 503 (the site's database is busy; nothing was applied) is sent again
  up to the site's ``busy_retries`` times, after what its ``Retry-After``
  asks (seconds or an HTTP date), capped at ``busy_wait_max``; without
  one, after 1, 2, 4... seconds;
- a 401 once, ``REAUTH_DELAY`` later, with a new token: a token the site
  revoked is refused, and so is one issued in the same second (Keystone's
  revocation has one-second resolution), which is what keystoneauth's own
  immediate re-authentication gets.

Any other answer, or the last of either, is the request's answer; an
exception ends the request as it is. Each retry is logged (on the
client's logger) with the wait and, for a 503, which retry of how many.

Below the answers, the connection: a request sent on a kept connection
the server had closed meanwhile is sent again at once, once
(:class:`ClosedConnectionRetry`); refusals and timeouts are left to
keystoneauth's ``connect_retries`` and their delays.
"""

import email.utils
import http.client
import logging
import time

import tenacity
from urllib3 import exceptions as urllib3_exc
from urllib3.util import retry as urllib3_retry

LOG = logging.getLogger(__name__)

# Seconds before a 401 is retried with a fresh token: past the second in
# which the old one was revoked.
REAUTH_DELAY = 1.0


def retry_after(resp, busy: int, cap: float) -> float:
    """The wait a 503 asks for (``Retry-After``: seconds or a date),
    capped at ``cap``; doubling from a second without it (``busy``: the
    retry it is, from 1)."""
    value = resp.headers.get('Retry-After', '')
    try:
        delay = float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        delay = (when.timestamp() - time.time() if when
                 else 2.0 ** (busy - 1))
    return min(max(delay, 0.0), cap)


class Retries:
    """The retry state of one request to ``site`` (a ``client.Site``:
    ``name``, ``busy_retries``, ``busy_wait_max``, ``adapter``)."""

    def __init__(self, site, method: str, path: str, log):
        self.site, self.method, self.path, self.log = site, method, path, log
        self.busy = 0
        self.reauthed = False
        # What the last answer asked for: 'busy' or 'reauth'.
        self.kind = None
        self.delay = 0.0

    def again(self, resp) -> bool:
        """Whether ``resp`` is worth sending the request again."""
        site = self.site
        if resp.status_code == 503 and self.busy < site.busy_retries:
            self.busy += 1
            self.kind = 'busy'
            self.delay = retry_after(resp, self.busy, site.busy_wait_max)
            return True
        if resp.status_code == 401 and not self.reauthed:
            self.reauthed = True
            self.kind = 'reauth'
            self.delay = REAUTH_DELAY
            return True
        return False

    def wait(self, retry_state) -> float:
        return self.delay

    def before_sleep(self, retry_state) -> None:
        site = self.site
        if self.kind == 'busy':
            self.log.warning('%s: %s %s answered 503 (busy); retrying in '
                             '%.1f s (%d of %d)', site.name, self.method,
                             self.path, self.delay, self.busy,
                             site.busy_retries)
        else:
            self.log.info('%s: %s %s answered 401; retrying in %.0f s '
                          'with a new token', site.name, self.method,
                          self.path, self.delay)
            # The next attempt logs in again (after the wait).
            site.adapter.invalidate()


def answer(site, method: str, path: str, log, send):
    """``send()`` (one request) until its answer is not worth another
    try; that answer."""
    state = Retries(site, method, path, log)
    return tenacity.Retrying(
        retry=tenacity.retry_if_result(state.again), wait=state.wait,
        before_sleep=state.before_sleep, sleep=time.sleep)(send)


# What a request meets on a kept connection the server closed after its
# previous answer: the request is written into a socket whose peer has
# gone, and the answer is a reset (the peer's RST) or nothing at all (its
# FIN), at once. urllib3 checks a kept connection for a close before
# using it, but a server that closes only after its worker finished the
# request (uWSGI's http-socket: logging, the app's clean-up) loses that
# race whenever the client asks again right away, as the agent does.
_CLOSED = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
           http.client.RemoteDisconnected)


def closed_by_server(error) -> bool:
    """Whether urllib3's ``error`` is a connection the server closed
    (:data:`_CLOSED`), not a refusal, a timeout or a TLS failure."""
    return (isinstance(error, urllib3_exc.ProtocolError)
            and any(isinstance(a, _CLOSED) for a in error.args))


class ClosedConnectionRetry(urllib3_retry.Retry):
    """urllib3's retries for the agent's sessions: a request whose
    connection the server had closed (:func:`closed_by_server`) is sent
    again at once, on a new connection, ``total`` times; every other
    error is raised as requests' own default (``Retry(0, read=False)``)
    raises it, for keystoneauth's ``connect_retries`` and their delays.

    Without it keystoneauth waited its first retry delay (0.5 s) for what
    is no outage: against a uWSGI ``--http-socket`` site, every few
    requests, and a spoke's next change waited behind it.

    Sending again is what keystoneauth's own retry does after its delay,
    so no request is repeated that was not before: the sync writes are
    upserts and deletes of explicit ids (a repeated conditional write
    meets its own hash and is settled as done), digests and tombstones
    are reads, and a repeated re-key answers 404, which ``join`` takes
    as done. Responses are never retried (no status, no
    ``Retry-After``): the agent waits out a 503 itself."""

    def is_retry(self, method, status_code, has_retry_after=False):
        return False

    def increment(self, method=None, url=None, response=None, error=None,
                  _pool=None, _stacktrace=None):
        if error is not None and self.total and closed_by_server(error):
            LOG.debug('%s %s: the server had closed the connection (%r); '
                      'sending again on a new one', method, url,
                      error.args[-1])
            return self.new(total=self.total - 1, history=self.history + (
                urllib3_retry.RequestHistory(method, url, error, None,
                                             None),))
        return _NO_RETRY.increment(method, url, response, error, _pool,
                                   _stacktrace)


# requests' default for its adapters: no retry, read errors raised as is.
_NO_RETRY = urllib3_retry.Retry(0, read=False)


def _quiet_resend(record) -> bool:
    """Leave out urllib3's warning about a resend of ours (it is logged
    above, at debug level): one per few requests to a site that closes
    its connections is no news."""
    return not (record.args and isinstance(record.args[0],
                                           ClosedConnectionRetry))


logging.getLogger('urllib3.connectionpool').addFilter(_quiet_resend)


def resend_on_closed(session, connect_retries: int) -> None:
    """Mount :class:`ClosedConnectionRetry` on ``session``'s adapters
    (keystoneauth; their pools and TCP keepalive are kept) when
    ``connect_retries`` allows retrying at all: the first retry of a
    closed connection is then immediate, keystoneauth's follow."""
    if connect_retries > 0:
        for mounted in session.session.adapters.values():
            mounted.max_retries = ClosedConnectionRetry(total=1)
