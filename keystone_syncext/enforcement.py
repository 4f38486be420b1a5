"""Enforce our policy rules inside Keystone's request handling.

Keystone's ``RBACEnforcer.enforce_call`` only accepts the rule names
Keystone itself registered at import, so the sync routes bring their own
``oslo_policy.Enforcer``. It reads Keystone's CONF, hence the same
``[oslo_policy] policy_file``: operators override our rules in Keystone's
policy.yaml. Enforcement follows ``enforce_call``: the same request
context as credentials, the same exceptions (401, 403), and the same
"enforcement was called" flag that Keystone's after-request safety net
asserts on every route.

This module touches two private names of Keystone (30.0); the unit tests
in ``tests/unit/api/test_enforcement.py`` pin them, so a Keystone release that
renames them fails there instead of in production.
"""

import flask
from keystone import exception
from keystone.common import context as ks_context
from keystone.common import utils as ks_utils
from keystone.common.policies import base as ks_base_policies
from keystone.common.rbac_enforcer import enforcer as ks_enforcer
import keystone.conf
from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from keystone_syncext import policies

# Private names of Keystone's enforcer and auth middleware.
ENFORCEMENT_CHECK_ATTR = ks_enforcer._ENFORCEMENT_CHECK_ATTR
REQUEST_CONTEXT_ENV = ks_context.REQUEST_CONTEXT_ENV

_enforcer: oslo_policy.Enforcer | None = None


def build_enforcer(conf: cfg.ConfigOpts) -> oslo_policy.Enforcer:
    """An Enforcer with our rules, plus Keystone's base rules
    (``admin_required``, ``owner``...) so that operator overrides may
    refer to them as in Keystone's own policy.yaml."""
    enforcer = oslo_policy.Enforcer(conf)
    enforcer.register_defaults(ks_base_policies.list_rules())
    enforcer.register_defaults(policies.list_rules())
    return enforcer


def get_enforcer() -> oslo_policy.Enforcer:
    """The process-wide Enforcer, built on first use (after Keystone has
    parsed its configuration)."""
    global _enforcer
    if _enforcer is None:
        _enforcer = build_enforcer(keystone.conf.CONF)
        # As Keystone does in a server: one warning, not one per rule.
        _enforcer.suppress_deprecation_warnings = True
    return _enforcer


def get_tool_enforcer() -> oslo_policy.Enforcer:
    """Entry point ``oslo.policy.enforcer`` (namespace
    ``keystone_syncext``): the Enforcer the sync routes use, for
    ``oslopolicy-policy-generator``, ``oslopolicy-list-redundant`` and
    ``oslopolicy-validator``.

    As Keystone's own entry point does, it (re)parses the tool's command
    line into Keystone's CONF, so ``--config-file keystone.conf`` (and its
    ``[oslo_policy] policy_file``) reaches the Enforcer exactly as it
    reaches Keystone.
    """
    keystone.conf.CONF(project='keystone')
    return build_enforcer(keystone.conf.CONF)


def enforce_call(action: str, target: dict | None = None,
                 enforcer: oslo_policy.Enforcer | None = None) -> None:
    """Authorize the current Flask request for ``action`` or raise.

    ``target`` adds to the request's view args (as Keystone's
    ``target_attr``), flattened the same way for ``%(...)s`` checks.

    :raises keystone.exception.Unauthorized: no valid token (401).
    :raises keystone.exception.ForbiddenAction: the policy says no, or the
        token has the wrong scope (403).
    """
    enforcer = enforcer or get_enforcer()
    if action not in enforcer.registered_rules:
        # A programming error; Keystone answers it with a 403, not a 500.
        raise exception.Forbidden(
            message='Internal RBAC enforcement error, invalid rule (action) '
            'name.')
    # Set before anything can fail, as Keystone does: the safety net then
    # only ever catches routes that forgot to enforce.
    setattr(flask.g, ENFORCEMENT_CHECK_ATTR, True)
    ctx = flask.request.environ.get(REQUEST_CONTEXT_ENV)
    if ctx is None or not ctx.authenticated:
        raise exception.Unauthorized(
            'The request you have made requires authentication.')
    policy_dict = dict(flask.request.view_args or {})
    if target:
        policy_dict['target'] = target
    try:
        enforcer.enforce(action, ks_utils.flatten_dict(policy_dict), ctx,
                         do_raise=True, exc=exception.ForbiddenAction,
                         action=action)
    except oslo_policy.InvalidScope:
        raise exception.ForbiddenAction(action=action) from None
