"""Sphinx configuration: the docs build from doc/ itself (tox -e docs).

The guides are the Markdown files beside this one (myst-parser); the API
reference is rendered from openapi.json at build time (_ext/
openapi_reference.py), the configuration reference from the options'
code (oslo_config.sphinxext) and the policy reference from the rules'
code (oslo_policy.sphinxext).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '_ext'))
# The package itself, for the option and policy entry points' modules.
sys.path.insert(0, os.path.dirname(HERE))

project = 'keystone_syncext'
copyright = 'keystone_syncext developers'

extensions = [
    'myst_parser',
    'oslo_config.sphinxext',
    'oslo_policy.sphinxext',
    'openapi_reference',
]
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', '_ext', 'README.md']
# Links to #anchors inside and between the guides, as GitHub makes them.
myst_heading_anchors = 4
# A Markdown link that is not a file or a heading is looked up as a label
# (std) only: oslo.config's domain raises on unknown names.
myst_ref_domains = ['std']
# Every cross-reference must resolve: a broken one fails the build (-W).
nitpicky = True
# The guides' JSON examples elide with "..." on purpose; Pygments then
# falls back to plain text, which is what they should look like.
suppress_warnings = ['misc.highlighting_failure']

html_theme = 'alabaster'
html_static_path = []
