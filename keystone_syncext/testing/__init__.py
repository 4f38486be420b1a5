"""The test harness: NOT part of the runtime, never imported by the product.

Real Keystone sites (``sites``), database backends (``backends``), fake
sites, load generators and the Tempest driver used by the tests under
``keystone_syncext/tests``, the benchmarks (``bench/``) and the demo
(``tools/demo.py``). Neither the extension nor ``keystone-sync`` imports
anything from here, and nothing here is a supported interface: it changes
with the tests. It still ships inside the package for now because every
test module imports it; an operator can ignore (or delete) it.
"""
