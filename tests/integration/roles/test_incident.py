"""The incident role against the sandbox (Dynatrace, xMatters, Jira Cloud, ServiceNow, Slack, Microsoft Teams) through
real ansible-playbook: open -> update -> resolve writes every record once, a second run adds nothing, and a failing
comms system is recorded and caught up at resolve instead of stopping the play; with both desks and both chats, each
desk names the other once and carries both chats' transcripts."""

import json

from sandbox import msgraph as sandbox_graph
import pytest

ROLE = "selfheal.devops.incident"


def open_problem(sandbox):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Process unavailable: web", "severity": "AVAILABILITY",
        "entities": [{"type": "HOST", "name": "web-01"}, {"type": "PROCESS_GROUP_INSTANCE", "name": "web"}]})
    normalised = {"id": problem["problemId"], "display_id": problem["displayId"], "title": problem["title"],
                  "severity": "AVAILABILITY", "impact": "INFRASTRUCTURE", "url": "https://dt.example/p/1",
                  "entities": [{"type": "HOST", "name": "web-01"}, {"type": "PROCESS_GROUP_INSTANCE", "name": "web"}]}
    return problem, normalised


def role(action, name=None, **extra):
    item_vars = {"incident_action": action}
    item_vars.update(extra)
    return {"name": name or action, "ansible.builtin.include_role": {"name": ROLE}, "vars": item_vars}


def show(name, expression):
    return {"name": name, "ansible.builtin.debug": {"var": expression}}


@pytest.fixture
def incident(sandbox, tmp_path):
    problem, normalised = open_problem(sandbox)
    settings = {"incident_key": "dt-" + problem["displayId"], "incident_problem": normalised,
                "incident_timeline_dir": str(tmp_path / "incidents"),
                "incident_oncall_provider": "xmatters", "incident_oncall_groups": ["Ops Primary"],
                "incident_jira_project": "OPS", "incident_jira_priority": "High", "incident_jira_resolution": "Fixed",
                "incident_run_url": "https://awx.example/#/jobs/playbook/42",
                "incident_slack_enabled": True, "incident_slack_users": ["user007@example.com"],
                "incident_slack_oncall_email_domain": "example.com"}
    sandbox.call("POST", "/_sandbox/xmatters/config", {"delay": 0.05})
    return problem, settings


def tickets(sandbox, key):
    issues = sandbox.state()["jira"]["cloud"]["issues"].values()
    return [i for i in issues if key in i["fields"]["labels"]]


def full_cycle():
    return [role("open"), role("update", incident_message="Restarting web on web-01."),
            role("resolve", incident_message="web restarted on web-01, healthy."),
            show("errors", "incident_errors"), show("timeline", "incident_timeline")]


def test_open_update_resolve_writes_every_record_once(sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    key = settings["incident_key"]
    run = playbook(full_cycle(), extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    run.assert_no_secret()
    assert run["errors"]["incident_errors"] == []

    [ticket] = tickets(sandbox, key)
    fields = ticket["fields"]
    assert fields["summary"] == "%s: Process unavailable: web on web-01" % problem["displayId"]
    assert fields["status"] == "Resolved" and fields["resolution"] == "Fixed" and fields["priority"] == "High"
    text = json.dumps(fields["description"])
    assert "https://dt.example/p/1" in text and "awx.example" in text
    bodies = [json.dumps(c["body"]) for c in ticket["comments"]]
    assert sum("Restarting web on web-01." in b for b in bodies) == 1
    [resolved] = [b for b in bodies if "Resolved by selfheal.devops" in b]
    assert "open ticket" in resolved and "resolve page" in resolved  # the timeline, in the comment
    assert sorted(a["filename"] for a in ticket["attachments"]) == [key + "-slack.md", key + ".json"]
    attachment = [a for a in ticket["attachments"] if a["filename"] == key + ".json"][0]
    saved = sandbox.call("GET", "/_sandbox/jira/cloud/attachments/" + attachment["id"])
    assert [r["step"] for r in saved["records"]][:4] == ["remediation started", "page on-call", "open ticket", "open channel"]

    [channel] = sandbox.state()["slack"]["channels"].values()
    assert channel["name"] == "inc-" + key.lower() and channel["is_archived"]
    assert set(channel["members"]) == {"U0SELFHEAL", "U10000007", "U0ONCALL01", "U0ONCALL02"}  # + the on-call people
    assert channel["topic"]["value"].endswith("| " + ticket["key"])
    texts = [m["text"] for m in sandbox.state()["slack"]["messages"][channel["id"]]]
    assert len(texts) == 3 and "Remediation started" in texts[0] and ticket["key"] in texts[0]
    assert texts[1] == "Restarting web on web-01." and texts[2].startswith(":white_check_mark: Resolved: web restarted")
    transcript = [a for a in ticket["attachments"] if a["filename"] == key + "-slack.md"][0]
    markdown = sandbox.call_raw("GET", "/_sandbox/jira/cloud/attachments/" + transcript["id"])
    assert "Restarting web on web-01." in markdown and "# Slack transcript of #inc-" in markdown

    assert sandbox.state()["dynatrace"]["problems"][problem["problemId"]]["status"] == "CLOSED"
    pages = [e for e in sandbox.state()["xmatters"]["events"] if e["status"] == "TERMINATED"]
    assert len(pages) == 1

    steps = [(r["action"], r["step"], r["system"], r["result"]) for r in run["timeline"]["incident_timeline"]]
    assert ("open", "open ticket", "jira", "changed") in steps
    assert ("resolve", "resolve ticket", "jira", "changed") in steps

    again = playbook(full_cycle(), extra_vars=settings, env=sandbox_env)
    assert again.rc == 0, again.stdout[-3000:]
    [ticket] = tickets(sandbox, key)
    assert len(ticket["comments"]) == len(bodies) and len(ticket["attachments"]) == 2
    assert len(sandbox.state()["xmatters"]["events"]) == 1
    assert len(sandbox.state()["slack"]["channels"]) == 1 and len(sandbox.state()["slack"]["messages"][channel["id"]]) == 3
    first = len(run["timeline"]["incident_timeline"])
    second = [(r["action"], r["step"], r["system"], r["result"]) for r in again["timeline"]["incident_timeline"][first:]]
    assert [s for s in second if s[3] != "ok"] == [], second


def test_jira_down_during_the_fix_is_recorded_and_caught_up_at_resolve(sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    key = settings["incident_key"]
    settings.update(incident_max_retries=1, incident_max_retry_wait=5)
    sandbox.fault("/jira/rest/api/3/*", times=4, status=503, headers={"Retry-After": "0"})
    run = playbook(full_cycle(), extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    run.assert_no_secret()

    errors = run["errors"]["incident_errors"]
    assert [(e["step"], e["system"]) for e in errors] == [("open ticket", "jira"), ("progress", "jira")]
    assert [m["text"] for m in sandbox.state()["slack"]["messages"].popitem()[1]][1] == "Restarting web on web-01."
    assert "503" in errors[0]["error"] and "Traceback" not in errors[0]["error"]
    # The fix's other records went on; resolve created the ticket it could not open, and resolved it.
    [ticket] = tickets(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved"
    assert sandbox.state()["dynatrace"]["problems"][problem["problemId"]]["status"] == "CLOSED"
    results = [(r["step"], r["system"], r["result"]) for r in run["timeline"]["incident_timeline"]]
    assert ("open ticket", "jira", "failed") in results and ("open ticket", "jira", "changed") in results


def test_escalate_repages_and_comments_keeping_the_ticket_open(sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    key = settings["incident_key"]
    settings["incident_oncall_escalation_groups"] = ["Database"]
    tasks = [role("open"), role("escalate", incident_message="crash loop: 3 restarts in 300 s"),
             show("errors", "incident_errors")]
    run = playbook(tasks, extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    assert run["errors"]["incident_errors"] == []
    [ticket] = tickets(sandbox, key)
    assert ticket["fields"]["status"] == "Open"
    assert any("crash loop: 3 restarts" in json.dumps(c["body"]) for c in ticket["comments"])
    events = sandbox.state()["xmatters"]["events"]
    assert len(events) == 2 and all(e["status"] == "ACTIVE" for e in events)
    assert sandbox.state()["dynatrace"]["problems"][problem["problemId"]]["status"] == "OPEN"
    [channel] = sandbox.state()["slack"]["channels"].values()
    assert not channel["is_archived"] and {"U0ONCALL01", "U0ONCALL02"} <= set(channel["members"])
    assert any("escalated to a human" in m["text"] for m in sandbox.state()["slack"]["messages"][channel["id"]])


def test_page_only_on_failure_wakes_nobody_for_a_fix_and_pages_an_escalation(sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    key = settings["incident_key"]
    settings["incident_page_policy"] = "on_failure"
    run = playbook(full_cycle(), extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    assert run["errors"]["incident_errors"] == []
    assert sandbox.state()["xmatters"]["events"] == []  # fixed by itself: nobody paged
    steps = [r["step"] for r in run["timeline"]["incident_timeline"]]
    assert "page on-call" not in steps and "resolve page" not in steps
    [ticket] = tickets(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved"
    # Another incident the fix does not heal: the escalation pages.
    other, normalised = open_problem(sandbox)
    settings.update(incident_key="dt-" + other["displayId"], incident_problem=normalised)
    run = playbook([role("open"), role("escalate", incident_message="still down after the restart")],
                   extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    [page] = sandbox.state()["xmatters"]["events"]
    assert page["status"] == "ACTIVE"


def test_no_system_configured_only_keeps_the_timeline(sandbox, sandbox_env, playbook, tmp_path):
    settings = {"incident_key": "dt-P-9", "incident_dynatrace_enabled": False,
                "incident_timeline_dir": str(tmp_path / "incidents")}
    run = playbook(full_cycle(), extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    assert run["timeline"]["incident_timeline"] == []
    assert json.loads((tmp_path / "incidents" / "dt-P-9.json").read_text())["records"] == []
    assert [e for e in sandbox.requests() if not e["path"].startswith("/_sandbox")] == []


def approval_play(settings):
    settings.update(incident_oncall_response_options=[{"text": "Approve"}, {"text": "Ignore"}],
                    incident_approval_timeout=20, incident_approval_poll_interval=0.2)
    return [role("open"), role("approve"), show("approval", "incident_approval"), show("errors", "incident_errors")]


def test_approve_returns_the_responders_answer(sandbox, sandbox_env, playbook, incident):
    import threading

    from utils import estate

    problem, settings = incident
    tasks = approval_play(settings)

    def respond():
        estate.wait_until(lambda: sandbox.state()["xmatters"]["events"], timeout=30, what="the page")
        event = sandbox.state()["xmatters"]["events"][0]
        sandbox.call("POST", "/_sandbox/xmatters/respond", {"event": event["id"], "response": "Approve",
                                                            "recipient": "oncall.primary"})

    responder = threading.Thread(target=respond)
    responder.start()
    run = playbook(tasks, extra_vars=settings, env=sandbox_env)
    responder.join()
    assert run.rc == 0, run.stdout[-3000:]
    approval = run["approval"]["incident_approval"]
    assert approval["approved"] is True and approval["response"] == "Approve"
    assert approval["responder"] == "oncall.primary"
    [ticket] = tickets(sandbox, settings["incident_key"])
    assert any("Approved by oncall.primary" in json.dumps(c["body"]) for c in ticket["comments"])


def test_no_answer_is_not_an_approval(sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    tasks = approval_play(settings)
    settings["incident_approval_timeout"] = 1
    run = playbook(tasks, extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    approval = run["approval"]["incident_approval"]
    assert approval["approved"] is False and approval["response"] == "no_response"
    [ticket] = tickets(sandbox, settings["incident_key"])
    assert any("Not approved (no_response)" in json.dumps(c["body"]) for c in ticket["comments"])


def test_record_appends_the_fix_to_the_timeline_without_calling_any_api(sandbox, sandbox_env, playbook, tmp_path):
    settings = {"incident_key": "dt-P-8", "incident_dynatrace_enabled": False, "incident_timeline_dir": str(tmp_path)}
    tasks = [role("record", incident_step="restart process", incident_message="web restarted", incident_result="changed",
                  incident_started_at="{{ (now(utc=true).timestamp() - 2.5) | string }}"),
             show("timeline", "incident_timeline")]
    run = playbook(tasks, extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    [record] = run["timeline"]["incident_timeline"]
    assert (record["step"], record["system"], record["result"], record["detail"]) == (
        "restart process", "localhost", "changed", "web restarted")
    assert 2.4 < record["duration"] < 30
    assert [e for e in sandbox.requests() if not e["path"].startswith("/_sandbox")] == []


def test_approve_without_anyone_to_answer_approves_nothing_and_says_why(sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    settings.update(incident_oncall_provider="", incident_slack_enabled=False, incident_decision_dir="")
    run = playbook([role("open"), role("approve"), show("approval", "incident_approval"), show("errors", "incident_errors")],
                   extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    assert run["approval"]["incident_approval"]["approved"] is False
    assert run["approval"]["incident_approval"]["response"] == "failed"
    [error] = run["errors"]["incident_errors"]
    assert error["step"] == "approval" and "set incident_oncall_provider to xmatters" in error["error"]
    assert sandbox.state()["xmatters"]["events"] == []


def test_the_first_answer_wins_whoever_gives_it(sandbox, sandbox_env, playbook, incident, tmp_path):
    """A decision an event source wrote (a Slack button here) counts at once; the xMatters answer after it is too late."""
    import json
    import threading
    import time

    problem, settings = incident
    decisions = tmp_path / "decisions"
    settings.update(incident_decision_dir=str(decisions), incident_approval_timeout=60, incident_approval_poll_interval=0.5,
                    incident_oncall_response_options=[{"text": "Restart"}, {"text": "Ignore"}],
                    incident_approve_response="Restart")
    key = settings["incident_key"]

    def click_then_answer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sandbox.state()["xmatters"]["events"]:
            time.sleep(0.1)
        time.sleep(1.0)
        decisions.mkdir(exist_ok=True)
        with open(str(decisions / (key + ".decision.json")), "x") as handle:  # what slack_actions writes
            json.dump({"source": "slack", "action": "approve", "responder": "U0ONCALL02", "time": time.time()}, handle)
        event = sandbox.state()["xmatters"]["events"][0]
        sandbox.call("POST", "/_sandbox/xmatters/respond", {"event": event["id"], "response": "Ignore",
                                                            "recipient": "oncall.primary"})

    answering = threading.Thread(target=click_then_answer)
    answering.start()
    run = playbook([role("open"), role("approve"), show("approval", "incident_approval")], extra_vars=settings, env=sandbox_env)
    answering.join(60)
    assert run.rc == 0, run.stdout[-3000:]
    approval = run["approval"]["incident_approval"]
    assert (approval["approved"], approval["source"], approval["responder"]) == (True, "slack", "U0ONCALL02")
    [ticket] = tickets(sandbox, key)
    assert any("Approved by U0ONCALL02" in json.dumps(c["body"]) for c in ticket["comments"])
    assert [p.name for p in decisions.iterdir() if p.name.endswith(".decision.json")] == []  # used up, kept under another name


# --- service desks and chats in any combination: Jira + ServiceNow + Slack + Teams -------------------------------

def four_systems(settings):
    settings.update(incident_service_desks=["jira", "servicenow"], incident_chats=["slack", "teams"],
                    incident_servicenow_assignment_group="Linux Operations", incident_teams_team="Operations",
                    incident_teams_oncall_email_domain="example.com")
    return settings


def sn_incidents(sandbox, key):
    return [r for r in sandbox.state()["servicenow"]["tables"]["incident"].values() if r["correlation_id"] == key]


def sn_journal(sandbox, record, element="work_notes"):
    return [e["value"] for e in sandbox.state()["servicenow"]["journal"].get(record["sys_id"], []) if e["element"] == element]


def sn_attachments(sandbox, record):
    return dict((a["file_name"], a) for a in sandbox.state()["servicenow"]["attachments"].values()
                if a["table_sys_id"] == record["sys_id"])


def teams_channels(sandbox, key):
    team = sandbox.state()["msgraph"]["teams"][sandbox_graph.OPS_TEAM]
    return [c for c in team["channels"].values() if c["displayName"] in ("inc-" + key, "closed-inc-" + key)]


def writes(sandbox, since=0):
    """The requests after the first `since` that wrote to a desk or a chat (token requests are not writes)."""
    entries = sandbox.requests()[since:]
    desks = [e for e in entries if e["method"] != "GET" and e["path"].startswith(("/jira", "/servicenow/api", "/msgraph"))]
    return desks + [e for e in entries if e["path"].startswith("/botframework")]


def test_four_systems_open_update_resolve_each_record_once_linked_with_every_transcript(
        sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    key = four_systems(settings)["incident_key"]
    opened = playbook([role("open"), role("update", incident_message="Restarting web on web-01."),
                       show("errors", "incident_errors")], extra_vars=settings, env=sandbox_env)
    assert opened.rc == 0, opened.stdout[-3000:]
    assert opened["errors"]["incident_errors"] == []
    # Open and update again: every record is found in place, nothing is written to any desk or chat.
    before = len(sandbox.requests())
    again = playbook([role("open"), role("update", incident_message="Restarting web on web-01."),
                      show("errors", "incident_errors")], extra_vars=settings, env=sandbox_env)
    assert again.rc == 0 and again["errors"]["incident_errors"] == [], again.stdout[-3000:]
    assert writes(sandbox, before) == []
    run = playbook([role("resolve", incident_message="web restarted on web-01, healthy."), show("errors", "incident_errors"),
                    show("timeline", "incident_timeline"), show("sn", "incident_servicenow_record"),
                    show("teams", "incident_teams_channel")], extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    for played in (opened, again, run):
        played.assert_no_secret()
    assert run["errors"]["incident_errors"] == []

    names = sorted([key + ".json", key + "-slack.md", key + "-teams.md"])
    [ticket] = tickets(sandbox, key)
    [record] = sn_incidents(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved" and sorted(a["filename"] for a in ticket["attachments"]) == names
    bodies = [json.dumps(c["body"]) for c in ticket["comments"]]
    assert sum("Restarting web on web-01." in b for b in bodies) == 1
    assert sum(("ServiceNow incident %s" % record["number"]) in b for b in bodies) == 1

    assert record["state"] == "6" and record["close_code"] == "Solution provided"
    assert record["close_notes"] == "Resolved by selfheal.devops: web restarted on web-01, healthy."
    assert (record["urgency"], record["impact"], record["correlation_display"]) == ("1", "1", "selfheal.devops")
    groups = sandbox.state()["servicenow"]["tables"]["sys_user_group"]
    cis = sandbox.state()["servicenow"]["tables"]["cmdb_ci"]
    assert groups[record["assignment_group"]]["name"] == "Linux Operations" and cis[record["cmdb_ci"]]["name"] == "web-01"
    notes = sn_journal(sandbox, record)
    assert sum(("Jira ticket %s" % ticket["key"]) in n for n in notes) == 1
    assert sum(n.startswith("Restarting web on web-01.") for n in notes) == 1
    assert sum(n.startswith("Remediation started by selfheal.devops") for n in notes) == 1
    assert sum(n.startswith("Timeline (%s)" % key) for n in notes) == 1 and len(notes) == 4
    attached = sn_attachments(sandbox, record)
    assert sorted(attached) == names

    # Both transcripts, on both tickets, each with the progress posted in its chat.
    for chat, heading in (("slack", "# Slack transcript of #inc-"), ("teams", "# Microsoft Teams transcript of Operations / inc-")):
        name = "%s-%s.md" % (key, chat)
        on_jira = sandbox.call_raw("GET", "/_sandbox/jira/cloud/attachments/" + [
            a for a in ticket["attachments"] if a["filename"] == name][0]["id"])
        on_sn = sandbox.call_raw("GET", "/_sandbox/servicenow/attachments/" + attached[name]["sys_id"])
        assert on_jira == on_sn and heading in on_sn and "Restarting web on web-01." in on_sn, (chat, on_sn)
        assert "web restarted on web-01, healthy." in on_sn  # the outcome, posted before the export

    [channel] = teams_channels(sandbox, key)
    assert channel["isArchived"] and channel["displayName"] == "inc-" + key
    messages = [m["body"]["content"] for m in sandbox.state()["msgraph"]["messages"][channel["id"]]]
    assert len(messages) == 3, messages
    assert ticket["key"] in messages[0] and record["number"] in messages[0] and "Remediation started" in messages[0]
    assert "Restarting web on web-01." in messages[1] and "Resolved" in messages[2]
    users = sandbox.state()["msgraph"]["users"]
    team = sandbox.state()["msgraph"]["teams"][sandbox_graph.OPS_TEAM]
    in_team = set(users[m["userId"]]["userPrincipalName"] for m in team["members"])
    assert {"oncall.primary@example.com", "oncall.secondary@example.com"} <= in_team  # the paged people
    [slack_channel] = sandbox.state()["slack"]["channels"].values()
    slack_texts = [m["text"] for m in sandbox.state()["slack"]["messages"][slack_channel["id"]]]
    assert len(slack_texts) == 3 and ticket["key"] in slack_texts[0] and record["number"] in slack_texts[0]
    assert slack_channel["topic"]["value"].endswith("| %s | %s" % (ticket["key"], record["number"]))

    steps = [(r["action"], r["step"], r["system"], r["result"]) for r in run["timeline"]["incident_timeline"]]
    for expected in [("open", "open ticket", "servicenow", "changed"), ("open", "open channel", "teams", "changed"),
                     ("open", "link servicenow", "jira", "changed"), ("open", "link jira", "servicenow", "changed"),
                     ("update", "progress", "servicenow", "changed"), ("update", "progress", "teams", "changed"),
                     ("resolve", "transcript", "teams", "changed"), ("resolve", "resolve ticket", "servicenow", "changed"),
                     ("resolve", "archive channel", "teams", "changed")]:
        assert steps.count(expected) == 1, (expected, steps)
    assert [s for s in steps if s[1].startswith("link")] == [("open", "link servicenow", "jira", "changed"),
                                                             ("open", "link jira", "servicenow", "changed")]
    assert run["sn"]["incident_servicenow_record"]["number"] == record["number"]
    assert run["teams"]["incident_teams_channel"]["id"] == channel["id"]

    # The whole incident again: it was resolved, so nothing is read or written anywhere.
    before = len(sandbox.requests())
    rerun = playbook(full_cycle(), extra_vars=settings, env=sandbox_env)
    assert rerun.rc == 0, rerun.stdout[-3000:]
    assert [e for e in sandbox.requests()[before:] if not e["path"].startswith("/_sandbox")] == []
    assert len(sn_incidents(sandbox, key)) == 1 and len(teams_channels(sandbox, key)) == 1


def test_servicenow_down_throughout_the_fix_does_not_stop_the_others_and_is_caught_up_at_resolve(
        sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    key = four_systems(settings)["incident_key"]
    settings.update(incident_max_retries=1, incident_max_retry_wait=5)
    sandbox.fault("/servicenow/api/now/*", times=-1, status=503, headers={"Retry-After": "0"})
    during = playbook([role("open"), role("update", incident_message="Restarting web on web-01."),
                       show("errors", "incident_errors")], extra_vars=settings, env=sandbox_env)
    assert during.rc == 0, during.stdout[-3000:]
    errors = during["errors"]["incident_errors"]
    assert [(e["step"], e["system"]) for e in errors] == [("open ticket", "servicenow"), ("progress", "servicenow")]
    assert all("ServiceNow" in e["error"] and "503" in e["error"] and "Traceback" not in e["error"] for e in errors)
    assert sn_incidents(sandbox, key) == []
    [ticket] = tickets(sandbox, key)
    assert len(teams_channels(sandbox, key)) == 1 and len(sandbox.state()["slack"]["channels"]) == 1
    assert sum("Restarting web on web-01." in json.dumps(c["body"]) for c in ticket["comments"]) == 1

    sandbox.call("DELETE", "/_sandbox/faults")  # ServiceNow is back for the resolution
    run = playbook([role("resolve", incident_message="web restarted on web-01, healthy."),
                    show("errors", "incident_errors"), show("timeline", "incident_timeline")], extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    run.assert_no_secret()
    assert run["errors"]["incident_errors"] == []
    [record] = sn_incidents(sandbox, key)
    assert record["state"] == "6" and record["close_notes"].startswith("Resolved by selfheal.devops: web restarted")
    assert sorted(sn_attachments(sandbox, record)) == sorted([key + ".json", key + "-slack.md", key + "-teams.md"])
    notes = sn_journal(sandbox, record)
    assert sum(("Jira ticket %s" % ticket["key"]) in n for n in notes) == 1
    [ticket] = tickets(sandbox, key)
    assert sum(("ServiceNow incident %s" % record["number"]) in json.dumps(c["body"]) for c in ticket["comments"]) == 1
    assert ticket["fields"]["status"] == "Resolved" and len(ticket["attachments"]) == 3
    steps = [(r["action"], r["step"], r["system"], r["result"]) for r in run["timeline"]["incident_timeline"]]
    assert ("open", "open ticket", "servicenow", "failed") in steps and ("update", "progress", "servicenow", "failed") in steps
    assert ("resolve", "open ticket", "servicenow", "changed") in steps
    assert ("resolve", "link jira", "servicenow", "changed") in steps and ("resolve", "link servicenow", "jira", "changed") in steps


def test_an_unknown_assignment_group_and_team_fail_their_own_step_clearly_and_create_nothing(
        sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    key = four_systems(settings)["incident_key"]
    settings.update(incident_servicenow_assignment_group="No Such Group", incident_teams_team="No Such Team")
    run = playbook([role("open"), show("errors", "incident_errors")], extra_vars=settings, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    run.assert_no_secret()
    errors = dict((e["system"], e["error"]) for e in run["errors"]["incident_errors"])
    assert sorted(errors) == ["servicenow", "teams"], errors
    assert "ServiceNow" in errors["servicenow"] and "No Such Group" in errors["servicenow"]
    assert "No Such Team" in errors["teams"] and "Traceback" not in json.dumps(errors)
    assert sn_incidents(sandbox, key) == [] and teams_channels(sandbox, key) == []
    assert len(tickets(sandbox, key)) == 1 and len(sandbox.state()["slack"]["channels"]) == 1


def test_a_listed_desk_or_chat_without_its_setting_is_refused_before_anything_is_written(sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    settings.update(incident_jira_project="", incident_service_desks=["jira"], incident_chats=["teams"])
    run = playbook([role("open")], extra_vars=settings, env=sandbox_env)
    assert run.rc != 0 and "listing jira needs incident_jira_project" in run.stdout
    assert [e for e in sandbox.requests() if not e["path"].startswith("/_sandbox")] == []


def test_four_systems_approve_and_escalate_reach_every_desk_and_chat(sandbox, sandbox_env, playbook, incident):
    import threading

    from utils import estate

    problem, settings = incident
    key = four_systems(settings)["incident_key"]
    settings.update(incident_servicenow_severity_map={"AVAILABILITY": {"urgency": 3, "impact": 2}},
                    incident_oncall_escalation_groups=["Database"])
    tasks = approval_play(settings)[:2] + [role("escalate", incident_message="crash loop: 3 restarts in 300 s"),
                                           show("approval", "incident_approval"), show("errors", "incident_errors")]

    def respond():
        estate.wait_until(lambda: sandbox.state()["xmatters"]["events"], timeout=30, what="the page")
        event = sandbox.state()["xmatters"]["events"][0]
        sandbox.call("POST", "/_sandbox/xmatters/respond", {"event": event["id"], "response": "Approve",
                                                            "recipient": "oncall.primary"})

    responder = threading.Thread(target=respond)
    responder.start()
    run = playbook(tasks, extra_vars=settings, env=sandbox_env)
    responder.join()
    assert run.rc == 0, run.stdout[-3000:]
    assert run["errors"]["incident_errors"] == [] and run["approval"]["incident_approval"]["approved"] is True

    [ticket] = tickets(sandbox, key)
    bodies = [json.dumps(c["body"]) for c in ticket["comments"]]
    assert sum("Approved by oncall.primary" in b for b in bodies) == 1 and sum("crash loop: 3 restarts" in b for b in bodies) == 1
    [record] = sn_incidents(sandbox, key)
    notes = sn_journal(sandbox, record)
    assert sum(n.startswith("Approved by oncall.primary") for n in notes) == 1
    assert sum("escalated to a human. crash loop: 3 restarts" in n for n in notes) == 1
    assert (record["urgency"], record["impact"], record["state"]) == ("1", "2", "1")  # 3/2 from the map, then escalated
    [channel] = teams_channels(sandbox, key)
    messages = [m["body"]["content"] for m in sandbox.state()["msgraph"]["messages"][channel["id"]]]
    assert len(messages) == 3 and "Approved by oncall.primary" in messages[1] and "Escalated" in messages[2]
    assert not channel["isArchived"]
    [slack_channel] = sandbox.state()["slack"]["channels"].values()
    slack_texts = [m["text"] for m in sandbox.state()["slack"]["messages"][slack_channel["id"]]]
    assert len(slack_texts) == 3 and slack_texts[2].startswith(":warning: Automatic remediation did not fix it")

    # An update after the escalation keeps the urgency the escalation set.
    after = playbook([role("update", incident_message="Looking at the core dump."), show("errors", "incident_errors")],
                     extra_vars=settings, env=sandbox_env)
    assert after.rc == 0 and after["errors"]["incident_errors"] == [], after.stdout[-3000:]
    [record] = sn_incidents(sandbox, key)
    assert record["urgency"] == "1" and sum(n.startswith("Looking at the core dump.") for n in sn_journal(sandbox, record)) == 1


def test_four_systems_in_check_mode_write_nothing(sandbox, sandbox_env, playbook, incident):
    problem, settings = incident
    key = four_systems(settings)["incident_key"]
    run = playbook([role("open"), role("update", incident_message="Restarting web on web-01."), show("errors", "incident_errors")],
                   extra_vars=settings, env=sandbox_env, check=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert run["errors"]["incident_errors"] == []
    assert writes(sandbox) == [] and sn_incidents(sandbox, key) == [] and teams_channels(sandbox, key) == []
    assert tickets(sandbox, key) == [] and sandbox.state()["slack"]["channels"] == {}
    assert any(e["path"].startswith("/servicenow/api") for e in sandbox.requests())  # it did look
