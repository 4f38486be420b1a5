"""keystone_syncext: keep many Keystone deployments in sync, same IDs everywhere."""
