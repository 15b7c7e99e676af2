"""End to end with both service desks and both chats at once: one real ansible-rulebook activation of the
self_healing rulebook (the collection installed from its tarball) whose inventory turns on Jira and ServiceNow,
Slack and Microsoft Teams. A crashed process is restarted, and the incident is written exactly once everywhere:
one page, one Jira ticket and one ServiceNow incident (each naming the other once, both resolved, ServiceNow with
its close notes, both carrying the timeline and both chats' transcripts), one Slack and one Teams channel (each
with the opening, the outcome, archived)."""

import json

import pytest

from utils import estate
from sandbox import msgraph as sandbox_graph
from utils.loops import (channel_texts, channels_for, crash_and_report, incident_attachments, pages_for, problem_state,
                         self_healing_loop, tickets_for, timeline, wait_for_step)

SETTINGS = {"incident_service_desks": ["jira", "servicenow"], "incident_chats": ["slack", "teams"],
            "incident_servicenow_assignment_group": "Linux Operations", "incident_teams_team": "Operations",
            "incident_teams_oncall_email_domain": "example.com"}


@pytest.fixture(scope="module")
def loop(installed_collection, sandbox_session, tmp_path_factory):
    with self_healing_loop(installed_collection, sandbox_session, tmp_path_factory.mktemp("e2e-four"),
                           settings=SETTINGS) as activation:
        yield activation


def servicenow_incidents(sandbox, key):
    return [r for r in sandbox.state()["servicenow"]["tables"]["incident"].values() if r["correlation_id"] == key]


def teams_channels(sandbox, key):
    channels = sandbox.state()["msgraph"]["teams"][sandbox_graph.OPS_TEAM]["channels"].values()
    return [c for c in channels if c["displayName"] == "inc-" + key]


def test_a_crash_is_healed_with_every_record_once_in_jira_servicenow_slack_and_teams(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    wait_for_step(loop, problem, "archive channel", timeout=180)
    new = loop.supervisor.pid()
    assert new and new != old and estate.alive(new) and estate.healthy(loop.supervisor.port)
    assert problem_state(sandbox, problem)["status"] == "CLOSED"

    records = timeline(loop, key)["records"]
    steps = [(r["action"], r["step"], r["system"], r["result"]) for r in records]
    assert [s for s in steps if s[3] == "failed"] == [], steps
    for system in ("jira", "servicenow"):
        assert steps.count(("resolve", "resolve ticket", system, "changed")) == 1, steps
    for system in ("slack", "teams"):
        assert steps.count(("open", "open channel", system, "changed")) == 1, steps
        assert steps.count(("resolve", "archive channel", system, "changed")) == 1, steps
    assert sum(1 for s in steps if s[1] in ("link jira", "link servicenow")) == 2, steps

    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    assert sum(c.startswith("[selfheal.devops] Remediation started for %s" % problem["displayId"]) for c in comments) == 1
    [page] = pages_for(sandbox, key)
    assert page["status"] == "TERMINATED"

    names = sorted([key + ".json", key + "-slack.md", key + "-teams.md"])
    [ticket] = tickets_for(sandbox, key)
    [incident] = servicenow_incidents(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved" and ticket["fields"]["resolution"] == "Fixed"
    assert incident_attachments(ticket) == names
    bodies = [json.dumps(c["body"]) for c in ticket["comments"]]
    assert sum(("ServiceNow incident %s" % incident["number"]) in b for b in bodies) == 1
    assert sum("web restarted on web-01" in b for b in bodies) == 1

    assert incident["state"] == "6" and incident["close_code"] == "Solution provided"
    assert incident["close_notes"].startswith("Resolved by selfheal.devops: web restarted on web-01")
    journal = sandbox.state()["servicenow"]["journal"][incident["sys_id"]]
    notes = [e["value"] for e in journal if e["element"] == "work_notes"]
    assert sum(("Jira ticket %s" % ticket["key"]) in n for n in notes) == 1
    assert sum(n.startswith("Remediation started by selfheal.devops") for n in notes) == 1
    attached = dict((a["file_name"], a) for a in sandbox.state()["servicenow"]["attachments"].values()
                    if a["table_sys_id"] == incident["sys_id"])
    assert sorted(attached) == names
    for chat in ("slack", "teams"):
        name = "%s-%s.md" % (key, chat)
        on_jira = sandbox.call_raw("GET", "/_sandbox/jira/cloud/attachments/" + [
            a for a in ticket["attachments"] if a["filename"] == name][0]["id"])
        on_servicenow = sandbox.call_raw("GET", "/_sandbox/servicenow/attachments/" + attached[name]["sys_id"])
        assert on_jira == on_servicenow and "web restarted on web-01" in on_servicenow, (chat, on_servicenow)

    [slack] = channels_for(sandbox, key)
    texts = channel_texts(sandbox, slack)
    assert slack["is_archived"] and ticket["key"] in texts[0] and incident["number"] in texts[0]
    assert texts[-1].startswith(":white_check_mark: Resolved: web restarted")
    [teams] = teams_channels(sandbox, key)
    messages = [m["body"]["content"] for m in sandbox.state()["msgraph"]["messages"][teams["id"]]]
    assert teams["isArchived"] and len(messages) == 2, messages
    assert ticket["key"] in messages[0] and incident["number"] in messages[0] and "web restarted on web-01" in messages[1]
