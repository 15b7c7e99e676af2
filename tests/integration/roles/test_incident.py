"""The incident role against the sandbox (Dynatrace, xMatters, Jira Cloud) through real ansible-playbook:
open -> update -> resolve writes every record once, a second run adds nothing, and a failing comms system is
recorded and caught up at resolve instead of stopping the play."""

import json

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

    import estate

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
