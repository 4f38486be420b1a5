"""The enforcement adapter: Keystone's request context in, Keystone's
errors out, and Keystone's "enforcement was called" safety net satisfied.

These tests pin the private Keystone names the adapter relies on, so a
Keystone release that renames them fails here.
"""

import flask
from keystone import exception
from keystone.common import context as ks_context
from keystone.common.rbac_enforcer import enforcer as ks_enforcer
import keystone.conf
from keystone.server.flask import common as ks_flask_common
from oslo_config import cfg
from oslo_policy import opts as policy_opts
import pytest

from keystone_syncext import enforcement

ACTION = 'identity:sync:get_capabilities'


@pytest.fixture(autouse=True, scope='module')
def keystone_options():
    # Keystone's exceptions read CONF.insecure_debug when they are built.
    if 'insecure_debug' not in keystone.conf.CONF:
        keystone.conf.configure()


def _conf(tmp_path, policy_text=None):
    conf = cfg.ConfigOpts()
    conf([], project='keystone_syncext_test', default_config_files=[])
    policy_file = tmp_path / 'policy.yaml'
    if policy_text is not None:
        policy_file.write_text(policy_text)
    policy_opts.set_defaults(conf, policy_file=str(policy_file))
    return conf


@pytest.fixture
def enforcer(tmp_path):
    return enforcement.build_enforcer(_conf(tmp_path))


def _ctx(roles, authenticated=True, **scope):
    ctx = ks_context.RequestContext(user_id='u1', roles=roles,
                                    authenticated=authenticated, **scope)
    ctx.token_reference = {'token': {}}
    return ctx


@pytest.fixture
def app():
    return flask.Flask(__name__)


def _enforce(app, ctx, enforcer, action=ACTION):
    """Run enforce_call in a request; return the flag Keystone checks."""
    environ = {} if ctx is None else {enforcement.REQUEST_CONTEXT_ENV: ctx}
    with app.test_request_context('/v3/sync', environ_overrides=environ):
        ks_flask_common._initialize_rbac_enforcement_check()
        try:
            enforcement.enforce_call(action, enforcer=enforcer)
            return None, getattr(flask.g, enforcement.ENFORCEMENT_CHECK_ATTR)
        except exception.Error as e:
            return e, getattr(flask.g, enforcement.ENFORCEMENT_CHECK_ATTR)


def test_private_keystone_names_are_still_there():
    assert enforcement.ENFORCEMENT_CHECK_ATTR == \
        ks_enforcer._ENFORCEMENT_CHECK_ATTR
    assert enforcement.REQUEST_CONTEXT_ENV == ks_context.REQUEST_CONTEXT_ENV


def test_keystone_safety_net_accepts_our_enforcement(app, enforcer):
    ctx = _ctx(['reader'], system_scope='all')
    environ = {enforcement.REQUEST_CONTEXT_ENV: ctx}
    with app.test_request_context('/v3/sync', environ_overrides=environ):
        ks_flask_common._initialize_rbac_enforcement_check()
        resp = flask.Response(status=200)
        with pytest.raises(AssertionError):
            ks_flask_common._assert_rbac_enforcement_called(resp)
        enforcement.enforce_call(ACTION, enforcer=enforcer)
        ks_flask_common._assert_rbac_enforcement_called(resp)


@pytest.mark.parametrize('roles', [['reader'], ['member', 'reader'],
                                   ['admin', 'member', 'reader']])
def test_system_readers_and_up_pass(app, enforcer, roles):
    error, called = _enforce(app, _ctx(roles, system_scope='all'), enforcer)
    assert error is None
    assert called is True


@pytest.mark.parametrize('scope', [{'project_id': 'p1'},
                                   {'domain_id': 'default'}])
def test_other_scopes_are_forbidden(app, enforcer, scope):
    error, called = _enforce(app, _ctx(['admin', 'member', 'reader'],
                                       **scope), enforcer)
    assert isinstance(error, exception.ForbiddenAction)
    assert error.code == 403
    assert called is True


def test_no_role_is_forbidden(app, enforcer):
    error, _ = _enforce(app, _ctx([], system_scope='all'), enforcer)
    assert isinstance(error, exception.ForbiddenAction)


@pytest.mark.parametrize('ctx', [None, _ctx(['admin'], authenticated=False,
                                            system_scope='all')])
def test_no_valid_token_is_unauthorized(app, enforcer, ctx):
    error, called = _enforce(app, ctx, enforcer)
    assert isinstance(error, exception.Unauthorized)
    assert error.code == 401
    assert called is True  # a 401 is enforcement, not a forgotten check


def test_unknown_rule_is_forbidden_and_not_marked(app, enforcer):
    error, called = _enforce(app, _ctx(['admin'], system_scope='all'),
                             enforcer, action='identity:sync:no_such_rule')
    assert isinstance(error, exception.Forbidden)
    assert called is False


def test_operator_override_in_policy_file(app, tmp_path):
    enforcer = enforcement.build_enforcer(_conf(
        tmp_path, f'"{ACTION}": "role:admin and system_scope:all"\n'))
    reader = _ctx(['reader'], system_scope='all')
    admin = _ctx(['admin', 'member', 'reader'], system_scope='all')
    assert isinstance(_enforce(app, reader, enforcer)[0],
                      exception.ForbiddenAction)
    assert _enforce(app, admin, enforcer)[0] is None


def test_override_may_use_keystone_base_rules(app, tmp_path):
    enforcer = enforcement.build_enforcer(_conf(
        tmp_path, f'"{ACTION}": "rule:admin_required"\n'))
    admin = _ctx(['admin'], system_scope='all')
    assert _enforce(app, admin, enforcer)[0] is None
