"""The ``openstack.cli.extension`` entry point ``sync``: how
python-openstackclient finds the ``openstack sync`` commands (entry point
group ``openstack.sync.v1``) and makes their client."""

import logging

from osc_lib import utils

from keystone_syncext.common import protocol
from keystone_syncext.osc.v1 import client as sync_client

LOG = logging.getLogger(__name__)

API_NAME = 'sync'
API_VERSION_OPTION = 'os_sync_api_version'
# The wire protocol versions the plugin speaks (GET /v3/sync lists the
# site's); the command group is openstack.sync.v<major>.
API_VERSIONS = tuple(str(v) for v in protocol.PROTOCOL_VERSIONS)
DEFAULT_API_VERSION = API_VERSIONS[-1]


def make_client(instance):
    """The client of the site's ``/v3/sync`` API, over the keystoneauth
    session of OSC's client manager (found in its catalog as the Identity
    v3 endpoint, for the interface and region asked)."""
    instance.setup_auth()
    # Errors name the cloud (--os-cloud) they came from.
    name = instance.get_configuration().get('cloud') or 'site'
    LOG.debug('sync API client for %s', name)
    return sync_client.SyncClient.for_session(
        name, instance.session, interface=instance.interface,
        region_name=instance.region_name)


def build_option_parser(parser):
    """The global option choosing the sync protocol version."""
    parser.add_argument(
        '--os-sync-api-version', metavar='<sync-api-version>',
        default=utils.env('OS_SYNC_API_VERSION'),
        help=f'sync API protocol version, default={DEFAULT_API_VERSION} '
        '(Env: OS_SYNC_API_VERSION)')
    return parser
