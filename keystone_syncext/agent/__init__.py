"""keystone-sync: the agent that keeps spokes in step with the hub.

It talks to every Keystone only through the ``/v3/sync`` REST API, with
keystoneauth1 sessions built from the user's ``clouds.yaml``. It does not
import Keystone, so it runs anywhere (``pip install keystone-syncext[agent]``).
"""
