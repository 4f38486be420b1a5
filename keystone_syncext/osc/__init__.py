"""``openstack sync ...``: the python-openstackclient plugin for the
``/v3/sync`` API of one site (installed with the agent; never imports
Keystone)."""
