"""Seeds under way at once share the hub's listing pages, but never one
read before a seed took its position (it could miss a change the seed
counts as covered); nothing is kept once no seed may take it."""

import threading

import pytest

from keystone_syncext.agent import client
from keystone_syncext.agent import seed_pages


class Hub:
    """A listing whose every read is told apart: the answer carries the
    read's number, so a test sees which read a seed got."""

    def __init__(self, gate=None, fail=()):
        self.reads, self.gate, self.fail = [], gate, set(fail)
        self.lock = threading.Lock()

    def listing(self, type_name, marker):
        with self.lock:
            self.reads.append((type_name, marker))
            n = len(self.reads)
        if self.gate is not None:
            self.gate.wait(10)
        if n in self.fail:
            raise client.SiteError('hub', f'read {n} failed', status=503)
        return {'read': n, 'items': [f'{type_name}-{marker}']}


def _until_a_read_began(hub):
    """Wait (10 s at most) until the hub's first read has begun."""
    for _ in range(1000):
        if hub.reads:
            return
        threading.Event().wait(0.01)
    raise AssertionError('the first read never began')


def _shared(hub):
    return seed_pages.SharedPages(hub.listing)


def test_seeds_started_before_a_read_share_it():
    hub = Hub()
    pages = _shared(hub)
    a, b, c = pages.begin(), pages.begin(), pages.begin()
    for marker in (None, '1', '2'):
        got = {pages.page(t, 'role', marker)['read'] for t in (a, b, c)}
        assert len(got) == 1
    assert hub.reads == [('role', None), ('role', '1'), ('role', '2')]
    # Every seed took every page: none is kept.
    assert not pages._pages


def test_a_page_read_before_a_seed_started_is_never_served_to_it():
    """Seed b starts after a's read of the first page: b reads that page
    again; a's next read, begun after b started, serves b; a seed c that
    starts after both reads gets neither."""
    hub = Hub()
    pages = _shared(hub)
    a = pages.begin()
    first = pages.page(a, 'role', None)
    b = pages.begin()
    again = pages.page(b, 'role', None)
    assert (first['read'], again['read']) == (1, 2)
    # a's next page, read after b started, serves b.
    assert pages.page(a, 'role', '1') == pages.page(b, 'role', '1')
    assert len(hub.reads) == 3
    # A seed that started after both reads gets neither.
    c = pages.begin()
    assert pages.page(c, 'role', '1')['read'] == 4


def test_a_seed_waits_for_the_read_in_flight_of_its_page():
    gate = threading.Event()
    hub = Hub(gate=gate)
    pages = _shared(hub)
    a, b = pages.begin(), pages.begin()
    got = {}

    def seed(token, name):
        got[name] = pages.page(token, 'user', None)

    threads = [threading.Thread(target=seed, args=(a, 'a'))]
    threads[0].start()
    _until_a_read_began(hub)
    threads.append(threading.Thread(target=seed, args=(b, 'b')))
    threads[1].start()
    gate.set()
    for t in threads:
        t.join(10)
    assert got['a'] is got['b']
    assert hub.reads == [('user', None)]


def test_a_seed_that_starts_while_a_read_is_in_flight_does_not_take_it():
    """The read began before seed b took its position: b waits for
    nothing and reads the page itself."""
    gate = threading.Event()
    hub = Hub(gate=gate)
    pages = _shared(hub)
    a = pages.begin()
    got = {}
    reader = threading.Thread(
        target=lambda: got.update(a=pages.page(a, 'role', None)))
    reader.start()
    _until_a_read_began(hub)
    b = pages.begin()
    gate.set()
    got['b'] = pages.page(b, 'role', None)
    reader.join(10)
    assert (got['a']['read'], got['b']['read']) == (1, 2)


def test_a_failed_read_reaches_its_waiters_and_is_read_again_later():
    hub = Hub(fail={1})
    pages = _shared(hub)
    a, b = pages.begin(), pages.begin()
    with pytest.raises(client.SiteError, match='read 1 failed'):
        pages.page(a, 'group', None)
    # The failure is not kept: the next ask reads again.
    assert pages.page(b, 'group', None)['read'] == 2
    assert pages.page(a, 'group', None)['read'] == 2


def test_nothing_is_kept_for_a_seed_that_ended_or_past_the_bound():
    hub = Hub()
    pages = _shared(hub)
    a, b = pages.begin(), pages.begin()
    pages.page(a, 'role', None)
    assert list(pages._pages) == [('role', None)]   # b may take it
    pages.end(b)
    assert not pages._pages
    # A seed far behind: at most KEEP pages wait for it.
    c = pages.begin()
    for n in range(seed_pages.KEEP + 5):
        pages.page(a, 'project', str(n))
    assert len(pages._pages) == seed_pages.KEEP
    assert pages.page(c, 'project', '0')['read'] > seed_pages.KEEP + 5
    pages.end(a)
    pages.end(c)
    assert not pages._pages


def test_every_seed_waiting_for_a_failed_read_gets_the_error():
    gate = threading.Event()
    hub = Hub(gate=gate, fail={1})
    pages = _shared(hub)
    a, b = pages.begin(), pages.begin()
    errors = {}

    def seed(token, name):
        try:
            pages.page(token, 'user', None)
        except client.SiteError as e:
            errors[name] = e

    threads = [threading.Thread(target=seed, args=(a, 'a'))]
    threads[0].start()
    _until_a_read_began(hub)
    threads.append(threading.Thread(target=seed, args=(b, 'b')))
    threads[1].start()
    threading.Event().wait(0.2)   # b is waiting for a's read
    gate.set()
    for t in threads:
        t.join(10)
    assert str(errors['a']) == str(errors['b']) == 'hub: read 1 failed'
    assert type(errors['b']) is client.SiteError
    assert (errors['b'].site, errors['b'].status) == ('hub', 503)
    # Each its own: one object raised in two threads would carry both
    # tracebacks.
    assert errors['a'] is not errors['b']
    assert hub.reads == [('user', None)]
