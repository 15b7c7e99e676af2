"""Real ansible-rulebook, collection installed from its tarball, source by FQCN: a button clicked in the sandbox's
Slack (signed as Slack signs) fires the rule of its action; a slash command by a user not on the allow-list is
refused (ephemeral answer, a `refused` event, no action rule), one by a member of the allowed user group runs."""

import json
import os
import urllib.request

import pytest

from sandbox import credentials
from utils import rulebook_harness

SIGNING_SECRET = "rulebook-test-signing-secret"
BUTTONS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*dt-P-4242* checkout crashed"}},
           {"type": "actions", "block_id": "selfheal_actions", "elements": [
               {"type": "button", "action_id": "selfheal_approve", "value": "dt-P-4242", "style": "primary",
                "text": {"type": "plain_text", "text": "Approve fix"}},
               {"type": "button", "action_id": "selfheal_escalate", "value": "dt-P-4242",
                "text": {"type": "plain_text", "text": "Escalate"}}]}]


def sandbox_post(sandbox, path, body, headers=None):
    send = {"Content-Type": "application/json"}
    send.update(headers or {})
    request = urllib.request.Request(sandbox.url + path, data=json.dumps(body).encode(), method="POST", headers=send)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def copy_rule(name, condition, content, dest):
    return {"name": name, "condition": condition,
            "action": {"run_module": {"name": "ansible.builtin.copy", "module_args": {"content": content, "dest": dest}}}}


@pytest.fixture
def activation(installed_collection, sandbox, tmp_path):
    port = rulebook_harness.free_port()
    out = tmp_path / "fired"
    out.mkdir()
    rulebook = [{
        "name": "incident actions from Slack",
        "hosts": "all",
        "sources": [{"selfheal.devops.slack_actions": {
            "port": port, "signing_secret": SIGNING_SECRET,
            "allowed_users": {"approve": ["U0ONCALL01"], "fix": ["@sre-oncall"], "escalate": ["dba.one@example.com"]},
            "url": sandbox.url + credentials.SLACK_PREFIX, "api_token": credentials.SLACK_TOKEN,
            "response_url_prefix": sandbox.url + "/_sandbox/slack/response/"}}],
        "rules": [
            copy_rule("approved", 'event.slack.action == "approve"',
                      "{{ event.slack.incident_key }} {{ event.slack.user_id }} {{ event.slack.via }}", str(out / "approve")),
            copy_rule("fix", 'event.slack.action == "fix"',
                      "{{ event.slack.incident_key }} {{ event.slack.user_id }}", str(out / "fix")),
            copy_rule("refused", 'event.slack.kind == "refused"',
                      "{{ event.slack.requested_action }} {{ event.slack.user_id }} {{ event.slack.via }}",
                      str(out / "refused-{{ event.slack.requested_action }}-{{ event.slack.via }}")),
        ],
    }]
    running = rulebook_harness.Activation(rulebook, installed_collection, workdir=str(tmp_path / "eda")).start()
    running.port = port
    running.out = out
    try:
        running.wait_for_url("http://127.0.0.1:%d/slack/actions/health" % port, timeout=90)
        # ansible-rulebook blocks its loop for seconds while it starts the rules engine: a click then is answered 503
        # (Slack shows the user an error). Wait until the source's health says the rules engine waits for events
        # (docs/chatops.md: the readiness check).
        rulebook_harness.wait_until(lambda: engine_ready(port), timeout=60, interval=0.2, what="the rules engine loop")
        sandbox_post(sandbox, "/_sandbox/slack/interactivity/config",
                     {"url": "http://127.0.0.1:%d/slack/actions" % port, "signing_secret": SIGNING_SECRET})
        yield running
    finally:
        running.stop()


def engine_ready(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/slack/actions/health" % port, timeout=5) as response:
        health = json.loads(response.read())
    return health["engine_waiting"] and health["engine_lag"] is not None and health["engine_lag"] < 0.5


def incident_channel(sandbox):
    auth = {"Authorization": "Bearer " + credentials.SLACK_TOKEN}
    channel = sandbox_post(sandbox, credentials.SLACK_PREFIX + "/conversations.create", {"name": "inc-dt-p-4242"}, auth)
    sandbox_post(sandbox, credentials.SLACK_PREFIX + "/chat.postMessage",
                 {"channel": channel["channel"]["id"], "text": "checkout crashed", "blocks": BUTTONS}, auth)
    return channel["channel"]["id"]


def test_a_signed_click_in_slack_fires_its_rule(sandbox, activation):
    channel = incident_channel(sandbox)
    clicked = sandbox_post(sandbox, "/_sandbox/slack/click",
                           {"channel": channel, "user": "oncall.primary@example.com", "action_id": "selfheal_approve"})
    assert clicked["ok"] and clicked["delivery"]["status"] == 200 and clicked["delivery"]["elapsed"] < 3, clicked
    rulebook_harness.wait_until((activation.out / "approve").exists, timeout=60, what="the approve rule to fire")
    assert (activation.out / "approve").read_text() == "dt-P-4242 U0ONCALL01 button"
    # The same button clicked by someone not on the approve list: refused, told through response_url, recorded.
    refused = sandbox_post(sandbox, "/_sandbox/slack/click",
                           {"channel": channel, "user": "U10000007", "action_id": "selfheal_approve"})
    assert refused["ok"]
    marker = activation.out / "refused-approve-button"
    rulebook_harness.wait_until(marker.exists, timeout=60, what="the refusal rule to fire")
    assert marker.read_text() == "approve U10000007 button"
    interactions = rulebook_harness.wait_until(
        lambda: [i for i in sandbox.call("GET", "/_sandbox/slack/interactions") if i["responses"]], timeout=15,
        what="the refusal to be shown to the user")
    response = interactions[0]["responses"][0]
    assert response["response_type"] == "ephemeral" and response["text"].startswith("Refused: you may not approve dt-P-4242")
    assert interactions[0]["user"] == "U10000007"


def test_slash_command_refused_for_a_user_not_allowed_and_run_for_a_group_member(sandbox, activation):
    channel = incident_channel(sandbox)
    refused = sandbox_post(sandbox, "/_sandbox/slack/command",
                           {"channel": channel, "user": "U10000001", "command": "/selfheal", "text": "fix"})
    assert refused["delivery"]["status"] == 200
    answer = refused["delivery"]["body"]
    assert answer["response_type"] == "ephemeral" and answer["text"].startswith("Refused: you may not fix dt-P-4242")
    marker = activation.out / "refused-fix-command"
    rulebook_harness.wait_until(marker.exists, timeout=60, what="the refusal rule to fire")
    assert marker.read_text() == "fix U10000001 command"

    allowed = sandbox_post(sandbox, "/_sandbox/slack/command",
                           {"channel": channel, "user": "oncall.secondary@example.com", "command": "/selfheal",
                            "text": "fix dt-P-4242"})
    assert allowed["delivery"]["body"] == {"response_type": "ephemeral", "text": "Received: fix for dt-P-4242."}
    rulebook_harness.wait_until((activation.out / "fix").exists, timeout=60, what="the fix rule to fire")
    assert (activation.out / "fix").read_text() == "dt-P-4242 U0ONCALL02"  # a member of @sre-oncall
    assert sorted(os.listdir(str(activation.out))) == ["fix", "refused-fix-command"]
    output = activation.output()
    assert SIGNING_SECRET not in output and credentials.SLACK_TOKEN not in output


def test_example_rulebook_slash_note_becomes_one_ticket_comment(sandbox, sandbox_env, playbook, installed_collection, tmp_path):
    """selfheal.devops.slack_actions_example as shipped: /selfheal note in the incident channel -> one Jira comment
    attributed to the Slack user; the same interaction delivered again adds nothing; a user outside the allow-list
    gets a refusal and no comment."""
    opened = playbook([{"name": "open", "selfheal.devops.jira_incident": {
        "project": "OPS", "incident_key": "dt-P-4242", "summary": "checkout crashed"}}], env=sandbox_env)
    assert opened["open"]["created"], opened.stdout[-2000:]
    port = rulebook_harness.free_port()
    env = dict(sandbox_env, SLACK_SIGNING_SECRET=SIGNING_SECRET)
    running = rulebook_harness.Activation(
        "selfheal.devops.slack_actions_example", installed_collection, env=env, workdir=str(tmp_path / "eda"),
        variables={"selfheal_slack_port": port, "selfheal_slack_allowed_users": {"note": ["@sre-oncall"]},
                   "SLACK_SIGNING_SECRET": SIGNING_SECRET}).start()
    try:
        running.wait_for_url("http://127.0.0.1:%d/slack/actions/health" % port, timeout=90)
        rulebook_harness.wait_until(lambda: engine_ready(port), timeout=60, interval=0.2, what="the rules engine loop")
        sandbox_post(sandbox, "/_sandbox/slack/interactivity/config",
                     {"url": "http://127.0.0.1:%d/slack/actions" % port, "signing_secret": SIGNING_SECRET})
        channel = incident_channel(sandbox)
        noted = sandbox_post(sandbox, "/_sandbox/slack/command", {
            "channel": channel, "user": "U0ONCALL01", "command": "/selfheal", "text": "note the pool ran dry at 14:02"})
        assert noted["delivery"]["body"]["text"] == "Received: note for dt-P-4242."
        refused = sandbox_post(sandbox, "/_sandbox/slack/command", {
            "channel": channel, "user": "U10000002", "command": "/selfheal", "text": "note not mine to say"})
        assert refused["delivery"]["body"]["text"].startswith("Refused: you may not note dt-P-4242")

        def comments():
            issue = sandbox.state()["jira"]["cloud"]["issues"]["OPS-1"]
            return [json.dumps(c["body"]) for c in issue["comments"]]

        rulebook_harness.wait_until(comments, timeout=90, what="the ticket comment")
        running.wait_for_output("Refused: U10000002 may not note dt-P-4242", timeout=60)
        assert len(comments()) == 1
        assert "Note from oncall-primary (U0ONCALL01) in Slack: the pool ran dry at 14:02" in comments()[0]
        output = running.output()
        assert SIGNING_SECRET not in output and credentials.JIRA_TOKEN not in output
    finally:
        running.stop()
