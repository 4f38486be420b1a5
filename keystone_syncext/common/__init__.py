"""What the extension and the agent share: the resource type table
(:mod:`.types`) and the wire protocol's constants (:mod:`.protocol`).

Pure Python: nothing here imports Keystone, Flask, oslo.db or the
extension's server side, so the agent, installed without Keystone, reads
the same table the extension does.
"""
