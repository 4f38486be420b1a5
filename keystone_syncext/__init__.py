"""keystone_syncext: many Keystones in sync, same IDs everywhere."""
