"""What the agent's parts share (:mod:`keystone_syncext.agent.context`):
a wait that a stop ends, a backoff that doubles up to its cap, and news
that wakes a waiting spoke only if it came after what the spoke saw."""

import threading
import time
import types

import pytest

from keystone_syncext.agent import context


def _ctx(**conf):
    settings = dict(retry_initial=1.0, retry_max=8.0)
    settings.update(conf)
    return context.Context(types.SimpleNamespace(**settings), hub=None,
                           spokes=[], state=None)


def test_a_stop_ends_a_wait():
    ctx = _ctx()
    threading.Timer(0.1, ctx.stop.set).start()
    start = time.monotonic()
    with pytest.raises(context.Stopped):
        ctx.sleep(30)
    assert time.monotonic() - start < 5
    with pytest.raises(context.Stopped):
        ctx.check_stop()


def test_the_backoff_doubles_up_to_its_cap_with_jitter():
    ctx = _ctx()
    for failures, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0),
                           (9, 8.0)):
        assert 0.8 * base <= ctx.backoff(failures) <= 1.2 * base


def test_news_wakes_only_who_has_not_seen_it():
    ctx = _ctx()
    seen = ctx.news()
    ctx.announce()
    start = time.monotonic()
    ctx.wait_for_news(seen, timeout=30)        # came after: no wait
    assert time.monotonic() - start < 1
    start = time.monotonic()
    ctx.wait_for_news(ctx.news(), timeout=0.2)  # nothing new: the timeout
    assert time.monotonic() - start >= 0.2
    threading.Timer(0.1, ctx.announce).start()
    start = time.monotonic()
    ctx.wait_for_news(ctx.news(), timeout=30)
    assert time.monotonic() - start < 5
