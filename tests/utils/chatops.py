"""The chatops activation beside a self-healing loop: the selfheal.devops.chatops rulebook with the pager (xMatters
response callbacks) and Slack (buttons, /selfheal) sources on loopback, wired to the sandbox: its xMatters posts
responses to the callback URL and its Slack delivers signed clicks and commands to the request URL."""

import os

from sandbox import credentials
from utils import rulebook_harness

SLACK_USERS = {  # who may do what from Slack in the tests and the demo (U0ONCALL01/02 are @sre-oncall)
    "approve": ["@sre-oncall"], "ignore": ["@sre-oncall"], "fix": ["U0ONCALL01"], "escalate": ["*"], "note": ["*"],
}
CALLBACK_PATH = "/oncall/callback"
SLACK_PATH = "/slack/actions"


def start(collections_path, sandbox, workdir, inventory, decision_dir, allowed_users=None):
    """Start the chatops activation and point the sandbox's xMatters and Slack at it; returns the Activation."""
    callback_port, slack_port = rulebook_harness.free_port(), rulebook_harness.free_port()
    variables = {"selfheal_callback_port": callback_port, "selfheal_slack_port": slack_port,
                 "selfheal_slack_allowed_users": allowed_users or SLACK_USERS, "selfheal_decision_dir": decision_dir,
                 "selfheal_slack_response_url_prefix": sandbox.url + "/"}
    activation = rulebook_harness.Activation("selfheal.devops.chatops", collections_path, variables=variables,
                                             inventory=inventory, env=credentials.environment(sandbox.url),
                                             workdir=os.path.join(str(workdir), "chatops"), print_events=False,
                                             env_vars=["ONCALL_CALLBACK_TOKEN"])
    activation.start()
    try:
        activation.wait_for_url("http://127.0.0.1:%d%s/health" % (slack_port, SLACK_PATH), timeout=90)
        activation.wait_for_url("http://127.0.0.1:%d%s/health" % (callback_port, CALLBACK_PATH), timeout=30)
        sandbox.call("POST", "/_sandbox/xmatters/config", {
            "callback_url": "http://127.0.0.1:%d%s" % (callback_port, CALLBACK_PATH),
            "callback_headers": {"Authorization": "Bearer " + credentials.ONCALL_CALLBACK_TOKEN}})
        sandbox.call("POST", "/_sandbox/slack/interactivity/config", {
            "url": "http://127.0.0.1:%d%s" % (slack_port, SLACK_PATH), "signing_secret": credentials.SLACK_SIGNING_SECRET})
    except BaseException:
        activation.stop()
        raise
    activation.callback_port, activation.slack_port = callback_port, slack_port
    return activation


def stop(sandbox, activation):
    """Unhook the sandbox and stop the activation (after its playbooks ended)."""
    try:
        sandbox.call("POST", "/_sandbox/xmatters/config", {"callback_url": None, "callback_headers": {}})
    except Exception:  # noqa: BLE001 - the sandbox may be gone already
        pass
    try:
        activation.wait_idle(timeout=60)
    except AssertionError:
        pass
    activation.stop()
