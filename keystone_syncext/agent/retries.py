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
"""

import email.utils
import time

import tenacity

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
