"""Every request of the agent outlives what real sites did to it: a 503
(database busy) is waited out as Retry-After says, capped; a 401 is
retried once a second later with a new token (a token revoked by writing
the agent's own user, and the one keystoneauth gets in the same second,
are both refused); a connection the server closed between requests is
retried on a fresh one. Join stops cleanly and resumes."""

import time

import pytest

from keystone_syncext.agent import client
from keystone_syncext.agent import join as join_mod
from keystone_syncext.tests.unit.agent import fakeworld

# Sites serving HTTP on loopback, the agent's own client.
world = fakeworld.served_world


def _sites(world, conf):
    hub, [spoke] = world.http_sites(conf)
    return hub, spoke


def test_rekey_waits_out_a_busy_database(world):
    conf = fakeworld.make_conf(busy_wait_max=0.3)
    spoke = world.spokes[0]
    fakeworld.own_admin(spoke)
    # Retry-After far beyond the cap: the wait is capped.
    spoke.fail('rekey', 503, times=2, retry_after='3600')
    hub, spoke_site = _sites(world, conf)
    start = time.monotonic()
    error = join_mod.execute(spoke_site, join_mod.plan(hub, spoke_site),
                             world.hub.site_id)
    assert error is None
    assert 0.6 <= time.monotonic() - start < 5
    assert set(spoke.data['role']) == {'r-admin'}
    assert 'p0' in spoke.data['project']


def test_busy_retries_are_bounded(world):
    conf = fakeworld.make_conf(busy_retries=2, busy_wait_max=0.1)
    world.hub.fail('capabilities', 503, retry_after='1')
    hub, _ = _sites(world, conf)
    with pytest.raises(client.SiteError, match='503'):
        hub.capabilities()
    assert world.hub.calls['capabilities'] == 3


def test_retry_after_is_honoured_and_each_wait_logged(world, caplog):
    """The wait a 503 asks for is taken as it is (under the cap), and
    every retry is logged, as operators grep for these lines."""
    conf = fakeworld.make_conf(busy_retries=3, busy_wait_max=5)
    world.hub.fail('capabilities', 503, times=2, retry_after='0.4')
    hub, _ = _sites(world, conf)
    start = time.monotonic()
    with caplog.at_level('INFO', logger=client.__name__):
        assert hub.capabilities()['site_id'] == world.hub.site_id
    assert 0.8 <= time.monotonic() - start < 4
    assert world.hub.calls['capabilities'] == 3
    assert [r.getMessage() for r in caplog.records
            if r.name == client.__name__] == [
        'hub: GET /sync answered 503 (busy); retrying in 0.4 s (1 of 3)',
        'hub: GET /sync answered 503 (busy); retrying in 0.4 s (2 of 3)']


def test_a_401_retry_is_logged(world, caplog):
    conf = fakeworld.make_conf()
    world.hub.fail('capabilities', 401, times=2)
    hub, _ = _sites(world, conf)
    with caplog.at_level('INFO', logger=client.__name__):
        hub.capabilities()
    assert [r.getMessage() for r in caplog.records
            if r.name == client.__name__] == [
        'hub: GET /sync answered 401; retrying in 1 s with a new token']


def test_a_revoked_token_is_retried_once_a_second_later(world):
    conf = fakeworld.make_conf()
    # Refused, and so is keystoneauth's immediate new token.
    world.hub.fail('capabilities', 401, times=2)
    hub, _ = _sites(world, conf)
    start = time.monotonic()
    assert hub.capabilities()['site_id'] == world.hub.site_id
    assert time.monotonic() - start >= client.REAUTH_DELAY
    assert world.hub.calls['capabilities'] == 3
    assert world.hub.tokens == 3


def test_a_401_after_the_retry_fails(world):
    conf = fakeworld.make_conf()
    world.hub.fail('capabilities', 401)
    hub, _ = _sites(world, conf)
    with pytest.raises(client.SiteError) as e:
        hub.capabilities()
    assert e.value.status == 401 and not e.value.transient
    # Sent, re-sent by keystoneauth, and the same once more a second on.
    assert world.hub.calls['capabilities'] == 4


@pytest.mark.parametrize('route', ['capabilities', 'batch', 'digests'])
def test_a_closed_connection_is_retried_on_a_fresh_one(world, route):
    conf = fakeworld.make_conf(connect_retries=2)
    world.hub.fail(route, 'drop', times=2)
    hub, _ = _sites(world, conf)
    call = {'capabilities': hub.capabilities,
            'batch': lambda: hub.batch([{'op': 'delete', 'type': 'role',
                                         'id': 'none'}]),
            'digests': lambda: hub.digest_many([('role', '')])}[route]
    assert call()
    assert world.hub.calls[route] == 3


def test_a_rekey_is_sent_again_on_a_fresh_connection(world):
    """A site that closes each connection after its answer resets a
    reused one: join must not stop there (it did, every few re-keys)."""
    conf = fakeworld.make_conf(connect_retries=2)
    fakeworld.own_admin(world.spokes[0])
    world.spokes[0].fail('rekey', 'drop', times=1)
    hub, spoke_site = _sites(world, conf)
    the_plan = join_mod.plan(hub, spoke_site)
    assert join_mod.execute(spoke_site, the_plan, world.hub.site_id) is None
    assert world.spokes[0].calls['rekey'] == len(the_plan['rekey']) + 1


def test_join_resumes_where_it_stopped(world):
    conf = fakeworld.make_conf(busy_retries=0)
    spoke = world.spokes[0]
    fakeworld.own_admin(spoke)
    hub, spoke_site = _sites(world, conf)
    first = join_mod.plan(hub, spoke_site)
    # The first re-key applied, then the site broke.
    rekey = spoke_site.rekey
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise client.SiteError('spoke1', 'POST /sync/rekey: 503 busy',
                                   status=503)
        return rekey(*args, **kwargs)
    spoke_site.rekey = flaky
    done = []
    error = join_mod.execute(spoke_site, first, world.hub.site_id,
                             done.append)
    assert error is not None and len(done) == 1
    # Join again: the plan holds only what is left, and it finishes.
    again = join_mod.plan(hub, spoke_site)
    assert [e['spoke_id'] for e in again['rekey']] == \
        [e['spoke_id'] for e in first['rekey'][1:]]
    assert join_mod.execute(spoke_site, again, world.hub.site_id) is None
    assert join_mod.plan(hub, spoke_site)['rekey'] == []


def test_a_rekey_whose_answer_was_lost_counts_as_done(world):
    conf = fakeworld.make_conf()
    spoke = world.spokes[0]
    fakeworld.own_admin(spoke)
    hub, spoke_site = _sites(world, conf)
    the_plan = join_mod.plan(hub, spoke_site)
    # Applied by an attempt whose answer never came back.
    spoke_site.rekey(the_plan['rekey'][0]['type'],
                     the_plan['rekey'][0]['spoke_id'],
                     the_plan['rekey'][0]['hub_id'])
    done = []
    assert join_mod.execute(spoke_site, the_plan, world.hub.site_id,
                            done.append) is None
    assert len(done) == 2 and done[0]['references'] == {}
