"""The agent's choice of sync protocol version from a site's capabilities:
the highest version both sides speak, and a refusal that says why (and is
not worth retrying) when they share none."""

import pytest

from keystone_syncext.agent import client


@pytest.mark.parametrize(('caps', 'speaks', 'chosen'), [
    ({'protocol_versions': [1], 'protocol_version': 1}, (1,), 1),
    # A newer extension that still speaks ours.
    ({'protocol_versions': [1, 2], 'protocol_version': 1}, (1,), 1),
    # A newer agent facing an older extension, and one facing a newer.
    ({'protocol_versions': [1], 'protocol_version': 1}, (1, 2), 1),
    ({'protocol_versions': [1, 2, 3], 'protocol_version': 1}, (1, 2), 2),
    ({'protocol_versions': [2, 3], 'protocol_version': 2}, (1, 2, 3), 3),
    # An extension from before the list: its single version counts.
    ({'protocol_version': 1}, (1,), 1),
])
def test_the_highest_common_version_is_chosen(caps, speaks, chosen):
    assert client.negotiate('s', caps, speaks) == chosen


@pytest.mark.parametrize(('caps', 'theirs'), [
    ({'protocol_versions': [2], 'protocol_version': 2}, '2'),
    ({'protocol_versions': [3, 2], 'protocol_version': 2}, '2, 3'),
    ({}, 'none'),
])
def test_no_common_version_is_a_clear_permanent_refusal(caps, theirs):
    with pytest.raises(client.SiteError) as err:
        client.negotiate('spoke1', caps, (1,), 'this agent and hub hub')
    assert not err.value.transient
    assert str(err.value) == (
        f'spoke1: no sync protocol version in common: the site speaks '
        f'{theirs}, this agent and hub hub 1; upgrade the side that is '
        'behind (extension or agent)')


def test_the_list_wins_over_the_single_value():
    assert client.advertised_versions(
        {'protocol_versions': [2, 1, 2], 'protocol_version': 1}) == [1, 2]
    assert client.advertised_versions({'protocol_version': 1}) == [1]
