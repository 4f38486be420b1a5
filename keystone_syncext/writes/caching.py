"""Which of Keystone's cache entries a sync write makes stale, and dropping
them once the write has committed.

A write records each resource it touches (``touched``, during the
transaction); the type says which of Keystone's cache entries that makes
stale (``ResourceType.stale_cache``), naming the same memoized methods and
regions Keystone's own managers invalidate for that change. After commit,
``invalidate`` drops those and nothing else, so the caches that every
request leans on (token validation, users, roles, domains) stay warm for
the next request: the agent's next batch at a spoke validates its token
with about a quarter fewer SQL statements than after dropping everything.

A type that does not say (``stale_cache`` returns None), a re-key, or a
write touching more than ``MAX_ENTRIES`` entries drops everything
Keystone may cache about identity data, as every write did before.

Keystone invalidates across processes either way: a memoized method's
entry is deleted from the shared cache backend, and a region is
invalidated by a new region id kept in that backend.
"""

from keystone.assignment import core as assignment_core
from keystone.common import cache
from keystone.common import provider_api
from keystone.identity import core as identity_core
from keystone.revoke import core as revoke_core
from keystone.token import provider as token_provider

PROVIDERS = provider_api.ProviderAPIs

# Above this many entries, one region invalidation is cheaper than
# deleting each (every delete is a round trip to memcached).
MAX_ENTRIES = 100
_SESSION_KEY = 'keystone_syncext.stale_cache'


def memoized(api: str, method: str, *args) -> tuple:
    """The entry of ``PROVIDERS.<api>.<method>(*args)`` (Keystone's
    ``@MEMOIZE``)."""
    return ('memoized', api, method, args)


def computed_assignments() -> tuple:
    """Keystone's computed assignments region (roles of a user on a
    project or domain, effective assignments), which Keystone drops on
    every grant, membership or role-implication change."""
    return ('region', 'computed_assignments')


def revocation_events() -> tuple:
    """Keystone's revocation events region, which its ``revoke_api``
    drops on every new event."""
    return ('region', 'revoke')


def validated_tokens() -> tuple:
    """Keystone's token region: validated tokens and "not revoked"
    answers, which Keystone drops when a revocation must show at once
    (a user disabled, a token chain revoked)."""
    return ('region', 'tokens')


_REGIONS = {
    'computed_assignments': assignment_core.COMPUTED_ASSIGNMENTS_REGION,
    'revoke': revoke_core.REVOKE_REGION,
    'tokens': token_provider.TOKENS_REGION,
}


class Stale:
    """What one write transaction made stale in Keystone's caches."""

    def __init__(self):
        self.entries: set[tuple] = set()
        self.everything = False

    def add(self, rtype, id_, old, new) -> None:
        found = rtype.stale_cache(id_, old, new)
        if found is None:
            self.everything = True
        else:
            self.entries.update(found)

    def invalidate(self) -> None:
        if self.everything or len(self.entries) > MAX_ENTRIES:
            invalidate_all()
            return
        for entry in sorted(self.entries, key=repr):
            if entry[0] == 'region':
                _REGIONS[entry[1]].invalidate()
            else:
                _kind, api_name, method, args = entry
                api = getattr(PROVIDERS, api_name)
                getattr(api, method).invalidate(api, *args)


def begin(session) -> Stale:
    """Start recording for the write transaction of ``session``."""
    stale = session.info[_SESSION_KEY] = Stale()
    return stale


def touched(session, rtype, id_, old, new) -> None:
    """Record, before writing it, that ``id_`` of ``rtype`` goes from
    ``old`` to ``new`` (None: absent). Recorded before the write, so a
    write that fails after a manager cached something is still
    invalidated."""
    session.info[_SESSION_KEY].add(rtype, id_, old, new)


def everything(session) -> None:
    """The write touches more than its types can say (a re-key)."""
    session.info[_SESSION_KEY].everything = True


def invalidate_all() -> None:
    """Drop what Keystone may have cached about identity data."""
    cache.CACHE_REGION.invalidate()
    assignment_core.COMPUTED_ASSIGNMENTS_REGION.invalidate()
    identity_core.ID_MAPPING_REGION.invalidate()
