"""The plugin's client: the agent's own ``client.Site`` (the same
requests, retries and error messages as ``keystone-sync``) over the
keystoneauth session of OSC's client manager."""

from keystone_syncext.agent import client


class _Session:
    """What ``client.Site`` reads of a cloud (an openstacksdk
    CloudRegion), given by a session already made: the Identity v3
    endpoint in its catalog for the interface and region asked."""

    def __init__(self, session, interface, region_name):
        self.session = session
        self.interface = interface
        self.region_name = region_name

    def get_session(self):
        return self.session

    def get_interface(self, _service):
        return self.interface

    def get_region_name(self, _service):
        return self.region_name

    def get_endpoint(self, _service):
        return None


# A request whose connection failed (a server that closes connections
# between requests, as uWSGI with --http-socket) is sent again on a fresh
# one, as often as the agent does by default ([DEFAULT] connect_retries).
CONNECT_RETRIES = 2


class SyncClient(client.Site):
    """``client.Site`` and the reads only an operator asks for."""

    @classmethod
    def for_session(cls, name, session, interface=None, region_name=None):
        """The site ``name`` (what its errors are prefixed with)."""
        return cls(name, cloud=_Session(session, interface, region_name),
                   connect_retries=CONNECT_RETRIES)

    def about(self) -> dict:
        """``GET /v3/sync`` as the site says it (no version chosen)."""
        return self._request('GET', '/sync')['sync']

    def status(self) -> dict:
        """``GET /v3/sync/status``: the health of change capture."""
        return self._request('GET', '/sync/status')['status']
