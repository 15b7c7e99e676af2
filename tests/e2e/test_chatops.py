"""End to end from chat: the self_healing activation (crashes in approve mode) beside the chatops activation (the
pager and Slack sources writing answers into the decision folder, /selfheal commands running chat_action), both real
ansible-rulebook processes, the sandbox's xMatters and Slack delivering signed callbacks, clicks and commands."""

import json

import pytest

from utils import chatops
from utils import estate
from utils.loops import (channels_for, crash_and_report, pages_for, problem_state, self_healing_loop,
                         tickets_for, timeline, wait_for_step)

SETTINGS = {"incident_oncall_response_options": [{"text": "Restart"}, {"text": "Ignore"}],
            "incident_approve_response": "Restart", "incident_approval_timeout": 60, "incident_slack_buttons": True,
            # xMatters is polled rarely here: an answer that works fast came through the callback or Slack.
            "incident_approval_poll_interval": 30,
            "process_restart_max_attempts": 20}  # every test here restarts web-01: the crash-loop guard is tested elsewhere


@pytest.fixture(scope="module")
def loop(installed_collection, sandbox_session, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e-chatops")
    with self_healing_loop(installed_collection, sandbox_session, workdir,
                           variables={"selfheal_process_crash_mode": "approve"}, settings=SETTINGS) as activation:
        with open(activation.inventory_path) as handle:
            inventory = handle.read()
        activation.chat = chatops.start(installed_collection, sandbox_session, workdir, inventory,
                                        str(workdir / "decisions"))
        try:
            yield activation
        finally:
            chatops.stop(sandbox_session, activation.chat)


def channel_of(sandbox, key):
    estate.wait_until(lambda: channels_for(sandbox, key), timeout=60, what="the incident channel")
    return channels_for(sandbox, key)[0]


def buttons_shown(sandbox, key):
    channel = channels_for(sandbox, key)
    return channel and any("selfheal_approve" in json.dumps(m.get("blocks") or [])
                           for m in sandbox.state()["slack"]["messages"][channel[0]["id"]])


def click(sandbox, key, user, action="approve"):
    body = {"channel": "inc-" + key.lower(), "user": user, "action_id": "selfheal_" + action}
    return sandbox.call("POST", "/_sandbox/slack/click", body)


def command(sandbox, key, user, text):
    body = {"channel": "inc-" + key.lower(), "user": user, "command": "/selfheal", "text": text}
    return sandbox.call("POST", "/_sandbox/slack/command", body)


def ticket_comments(sandbox, key):
    [ticket] = tickets_for(sandbox, key)
    return [json.dumps(c["body"]) for c in ticket["comments"]]


def test_an_approve_button_click_in_slack_runs_the_fix_and_says_who_approved(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    estate.wait_until(lambda: buttons_shown(sandbox, key), timeout=60, what="the Approve button in the channel")
    assert loop.supervisor.pid() == 0  # nothing restarted before the answer
    answer = click(sandbox, key, "U0ONCALL01")
    assert answer["delivery"]["status"] == 200, answer
    wait_for_step(loop, problem, "archive channel")
    assert loop.supervisor.pid() not in (0, old) and estate.healthy(loop.supervisor.port)
    assert problem_state(sandbox, problem)["status"] == "CLOSED"
    decided = [r for r in timeline(loop, key)["records"] if r["step"] == "approval"]
    assert any("oncall-primary" in str(r["detail"]) and "slack" in str(r["detail"]) for r in decided), decided
    assert any("Approved by oncall-primary" in c and "slack" in c for c in ticket_comments(sandbox, key))


def test_xmatters_and_slack_answering_at_once_make_one_decision(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    estate.wait_until(lambda: buttons_shown(sandbox, key), timeout=60, what="the Approve button in the channel")
    [page] = pages_for(sandbox, key)
    # Ignore from Slack and Restart from xMatters, as close together as two people can answer.
    sandbox.call("POST", "/_sandbox/xmatters/respond", {"event": page["id"], "response": "Restart",
                                                        "recipient": "oncall.primary"})
    click(sandbox, key, "U0ONCALL02", action="ignore")
    estate.wait_until(lambda: any(r["step"] in ("archive channel", "escalated") for r in timeline(loop, key)["records"]),
                      timeout=90, what="the incident to end one way")
    records = timeline(loop, key)["records"]
    approvals = [r for r in records if r["step"] == "approval" and r["system"] == "xmatters"]
    assert len(approvals) == 1, records  # one decision, the first answer's
    restarted = loop.supervisor.pid() not in (0, old)
    # The approval comment (not the escalation's "Not approved ...: nothing was changed" when Ignore won)
    comments = [c for c in ticket_comments(sandbox, key) if "running the fix." in c or "no automatic fix." in c]
    assert len(comments) == 1, comments
    assert restarted == ("Approved by oncall.primary" in comments[0]), (restarted, comments)
    if not restarted:
        loop.supervisor.ctl("start", "web")
        estate.wait_until(lambda: estate.healthy(loop.supervisor.port), what="web started again")


def test_a_note_from_slack_becomes_one_ticket_comment(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    channel_of(sandbox, key)
    estate.wait_until(lambda: tickets_for(sandbox, key), timeout=60, what="the ticket")
    answer = command(sandbox, key, "U0ONCALL02", "note the pool ran dry at 14:02")
    assert answer["delivery"]["status"] == 200, answer
    note = "Note from oncall-secondary (U0ONCALL02) in Slack: the pool ran dry at 14:02"
    estate.wait_until(lambda: any(note in c for c in ticket_comments(sandbox, key)), timeout=60,
                      what="the note on the ticket")
    loop.chat.wait_idle(timeout=60)
    assert sum(note in c for c in ticket_comments(sandbox, key)) == 1
    click(sandbox, key, "U0ONCALL01")  # let the incident finish
    wait_for_step(loop, problem, "archive channel")


def test_a_fix_from_a_user_not_on_the_allow_list_is_refused_and_nothing_runs(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    channel_of(sandbox, key)
    answer = command(sandbox, key, "U0ONCALL03", "fix")  # dba-one may note and escalate, not fix
    assert answer["delivery"]["status"] == 200 and "Refused" in json.dumps(answer["delivery"]["body"]), answer
    estate.wait_until(lambda: any(r["step"] == "refused" for r in timeline(loop, key)["records"]), timeout=60,
                      what="the refusal in the timeline")
    loop.chat.wait_idle(timeout=60)
    assert loop.supervisor.pid() == 0  # still waiting for an approval; nothing ran
    [refused] = [r for r in timeline(loop, key)["records"] if r["step"] == "refused"]
    assert "U0ONCALL03" in refused["detail"] and "fix" in refused["detail"]
    # Ignored: the waiting run hands the incident to a human and ends; then someone allowed asks for the fix after all.
    click(sandbox, key, "U0ONCALL01", action="ignore")
    wait_for_step(loop, problem, "escalated")
    loop.wait_idle(timeout=60)
    assert loop.supervisor.pid() == 0
    answer = command(sandbox, key, "U0ONCALL01", "fix")
    assert answer["delivery"]["status"] == 200, answer
    estate.wait_until(lambda: loop.supervisor.pid() not in (0, old) and estate.healthy(loop.supervisor.port),
                      timeout=90, what="the fix asked for from Slack")
    wait_for_step(loop, problem, "archive channel")
    assert problem_state(sandbox, problem)["status"] == "CLOSED"
    steps = [r["step"] for r in timeline(loop, key)["records"]]
    assert steps.index("restart process") > steps.index("escalated") and steps.count("restart process") == 1, steps
