"""Sphinx configuration of the release notes (tox -e releasenotes): reno
collects releasenotes/notes/*.yaml from the git history."""

project = 'keystone_syncext release notes'
copyright = 'keystone_syncext developers'
extensions = ['reno.sphinxext']
root_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'
