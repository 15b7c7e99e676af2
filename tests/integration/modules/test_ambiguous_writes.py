"""Ambiguous writes (issue #15 item 5) and strict connection options (issue #20), through real ansible-playbook.

Each test makes the sandbox apply a write and THEN answer 502/504, drop the connection or hang past the client's read
timeout (`after: true` faults), so the module cannot know whether its create was applied. The transport never sends
such a request again blindly; the service layer looks the record up by its idempotency key. Each test proves that
exactly one ticket / channel / message / page / comment / sequence exists afterwards, that the module reported success
(with a warning saying what was lost and found), and that a re-run changes nothing.
"""

import hashlib

from sandbox import credentials

KEY = "dt-P-7001"


def task(name, module, **args):
    return {"name": name, "selfheal.devops." + module: args, "register": "r", "ignore_errors": True}


def after(sandbox, path, method="POST", **how):
    """The next request to path is applied by the sandbox, then answered with how (status=502, drop=True, hang=True)."""
    sandbox.fault(path, method=method, times=1, after=True, **how)


def applied(sandbox, path, method="POST"):
    """Log entries of requests to path that the sandbox applied while the client saw a fault."""
    return [e for e in sandbox.requests(path) if e["method"] == method and e.get("applied_status") is not None]


def assert_recovered(result, count=1):
    """The module succeeded and said, in a warning, that an answer was lost and the record found."""
    assert not result.get("failed"), result.get("msg")
    lost = [w for w in result.get("warnings") or [] if "was lost" in w]
    assert len(lost) >= count, result.get("warnings")
    return lost


def assert_clean(run):
    assert "Traceback" not in run.stdout + run.stderr
    run.assert_no_secret()


# --- Jira ---------------------------------------------------------------------------------------------------

def test_jira_issue_comment_and_attachment_exactly_once(sandbox, sandbox_env, playbook, tmp_path):
    log = tmp_path / "trace.log"
    log.write_bytes(b"x" * 512)
    after(sandbox, "/jira/rest/api/3/issue", status=502, body="<html><h1>502 Bad Gateway</h1></html>")
    after(sandbox, "/jira/rest/api/3/issue/*/comment", drop=True)
    after(sandbox, "/jira/rest/api/3/issue/*/attachments", status=504)
    args = dict(project="OPS", incident_key=KEY, summary="Disk full on web-01", comment="Restarting web",
                attachments=[str(log)])
    run = playbook([task("open", "jira_incident", **args), task("again", "jira_incident", **args)], env=sandbox_env)
    assert_clean(run)
    lost = assert_recovered(run["open"], 3)
    assert any("502" in w and "Jira issue" in w for w in lost) and any("comment" in w for w in lost)
    assert run["open"]["created"] and run["open"]["commented"] and run["open"]["attached"] == ["trace.log"]
    assert run["open"]["changed"] and run["again"]["changed"] is False
    issues = [i for i in sandbox.state()["jira"]["cloud"]["issues"].values() if KEY in i["fields"]["labels"]]
    assert len(issues) == 1 and run["open"]["key"] == run["again"]["key"] == issues[0]["key"]
    assert len(issues[0]["comments"]) == 1
    assert [(a["filename"], a["sha256"]) for a in issues[0]["attachments"]] == [("trace.log", hashlib.sha256(log.read_bytes()).hexdigest())]
    assert len(applied(sandbox, "/jira/rest/api/3/issue")) == 1
    assert len(sandbox.requests("/jira/rest/api/3/issue")) == 1  # the create was sent once


def test_jira_service_management_request_exactly_once(sandbox, sandbox_env, playbook):
    after(sandbox, "/jira/rest/servicedeskapi/request", status=504)
    args = dict(project="OPS", incident_key="dt-P-7002", summary="Checkout is slow (P-7002)", service_desk_id="10",
                request_type_id="25")
    run = playbook([task("open", "jira_incident", **args), task("again", "jira_incident", **args)], env=sandbox_env)
    assert_clean(run)
    assert_recovered(run["open"])
    assert run["open"]["created"] and run["again"]["changed"] is False and run["again"]["key"] == run["open"]["key"]
    issues = [i for i in sandbox.state()["jira"]["cloud"]["issues"].values() if i["fields"]["summary"] == args["summary"]]
    assert len(issues) == 1 and "dt-P-7002" in issues[0]["fields"]["labels"]
    assert len(sandbox.requests("/jira/rest/servicedeskapi/request")) == 1


# --- Slack ----------------------------------------------------------------------------------------------------

def test_slack_channel_topic_invite_and_message_exactly_once(sandbox, sandbox_env, playbook):
    slack = credentials.SLACK_PREFIX
    after(sandbox, slack + "/conversations.create", status=502)
    after(sandbox, slack + "/conversations.setTopic", status=504)
    after(sandbox, slack + "/conversations.invite", drop=True)
    after(sandbox, slack + "/chat.postMessage", status=502)
    args = dict(incident_key=KEY, topic="P-7001: web crashed", users=["oncall.primary@example.com"], text="Incident opened")
    run = playbook([task("open", "slack_channel", **args), task("again", "slack_channel", **args)], env=sandbox_env)
    assert_clean(run)
    assert_recovered(run["open"], 4)
    opened = run["open"]
    assert opened["created"] and opened["posted"] and opened["invited"] == ["U0ONCALL01"] and opened["ts"]
    assert run["again"]["changed"] is False and run["again"]["ts"] == opened["ts"]
    state = sandbox.state()["slack"]
    channels = [c for c in state["channels"].values() if c["name"] == "inc-dt-p-7001"]
    assert len(channels) == 1
    assert channels[0]["topic"]["value"] == "P-7001: web crashed" and "U0ONCALL01" in channels[0]["members"]
    messages = state["messages"][channels[0]["id"]]
    assert len(messages) == 1 and messages[0]["ts"] == opened["ts"]
    assert len(sandbox.requests(slack + "/conversations.create")) == 1
    assert len(sandbox.requests(slack + "/chat.postMessage")) == 1


def test_slack_message_after_a_read_timeout_exactly_once(sandbox, sandbox_env, playbook):
    """The answer never comes: the module's read timeout (2 s) ends the wait, the message is found, not re-posted."""
    after(sandbox, credentials.SLACK_PREFIX + "/chat.postMessage", hang=True)
    args = dict(incident_key="dt-P-7003", text="Incident opened", timeout=2)
    run = playbook([task("open", "slack_channel", **args), task("again", "slack_channel", **args)], env=sandbox_env)
    assert_clean(run)
    lost = assert_recovered(run["open"])
    assert "read timeout" in lost[0]
    assert run["open"]["posted"] and run["again"]["changed"] is False and run["again"]["ts"] == run["open"]["ts"]
    [channel] = [c for c in sandbox.state()["slack"]["channels"].values() if c["name"] == "inc-dt-p-7003"]
    assert len(sandbox.state()["slack"]["messages"][channel["id"]]) == 1


# --- on-call ----------------------------------------------------------------------------------------------------

def test_xmatters_page_and_annotation_exactly_once(sandbox, sandbox_env, playbook):
    after(sandbox, "/xmatters/api/integration/1/functions/*/triggers", status=502)
    after(sandbox, "/xmatters/api/xm/1/events/*/annotations", drop=True)
    args = dict(provider="xmatters", incident_key=KEY, summary="web crashed on web-01", severity="critical",
                groups=["Ops Primary"], comment="Paged by selfheal.devops", poll_interval=0.2, event_timeout=10)
    run = playbook([task("page", "oncall_notify", **args), task("again", "oncall_notify", **args)], env=sandbox_env)
    assert_clean(run)
    assert_recovered(run["page"], 2)
    assert run["page"]["changed"] and run["page"]["event"]["status"] == "ACTIVE"
    assert run["again"]["changed"] is False and run["again"]["event"]["id"] == run["page"]["event"]["id"]
    events = [e for e in sandbox.state()["xmatters"]["events"] if e["properties"].get("selfheal_incident_key") == KEY]
    assert len(events) == 1 and run["page"]["request_id"] == events[0]["requestId"]
    assert [a["comment"] for a in events[0]["annotations"]] == ["[selfheal.devops] Paged by selfheal.devops"]
    assert len(sandbox.requests("/xmatters/api/integration/1/functions/*/triggers")) == 1


def test_pagerduty_page_exactly_once(sandbox, sandbox_env, playbook):
    """Events v2 dedups by dedup_key, so the transport may send the event again: still one alert."""
    after(sandbox, "/pagerduty/v2/enqueue", status=504)
    args = dict(provider="pagerduty", incident_key=KEY, summary="web crashed on web-01", source="web-01", severity="critical")
    run = playbook([task("page", "oncall_notify", **args)], env=sandbox_env)
    assert_clean(run)
    assert not run["page"].get("failed"), run["page"].get("msg")
    assert any("HTTP 504" in w and "retrying" in w for w in run["page"]["warnings"])
    state = sandbox.state()["pagerduty"]
    assert len([a for a in state["alerts"] if a["dedup_key"] == KEY]) == 1
    assert [e["outcome"] for e in state["events"]] == ["created", "deduplicated"]


# --- Dynatrace ---------------------------------------------------------------------------------------------------

def test_dynatrace_comment_event_and_close_exactly_once(sandbox, sandbox_env, playbook):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Process unavailable", "entities": [{"type": "HOST", "name": "web-01"}, {"type": "SERVICE", "name": "checkout"}]})
    pid, display = problem["problemId"], problem["displayId"]
    api = credentials.DYNATRACE_PREFIX + "/api/v2"
    after(sandbox, api + "/problems/*/comments", status=502)
    after(sandbox, api + "/events/ingest", drop=True)
    after(sandbox, api + "/problems/*/close", status=504)
    event = {"event_type": "CUSTOM_INFO", "title": "[selfheal.devops] restart of checkout", "target": "host"}
    steps = [task("comment", "dynatrace_problem", problem_id=display, comment="[selfheal.devops] Restarting checkout"),
             task("event", "dynatrace_problem", problem_id=display, event=event, incident_key="dt-" + display),
             task("close", "dynatrace_problem", problem_id=display, state="closed", close_message="verified fix"),
             task("comment again", "dynatrace_problem", problem_id=display, comment="[selfheal.devops] Restarting checkout")]
    run = playbook(steps, env=sandbox_env)
    assert_clean(run)
    for name in ("comment", "event", "close"):
        assert_recovered(run[name])
        assert run[name]["changed"], name
    assert run["event"]["event"]["eventIngestResults"][0]["status"] == "OK"
    assert run["close"]["closed"] and run["close"]["problem"]["status"] == "CLOSED"
    assert run["comment again"]["changed"] is False
    state = sandbox.state()["dynatrace"]
    contents = [c["content"] for c in state["comments"][pid]]
    assert sorted(contents) == sorted(["[selfheal.devops] Restarting checkout", "verified fix"])
    evidence = [d for d in state["problems"][pid]["evidenceDetails"]["details"] if d["displayName"] == event["title"]]
    assert len(evidence) == 1
    assert len(sandbox.requests(api + "/events/ingest")) == 1


# --- ServiceNow ----------------------------------------------------------------------------------------------------

def test_servicenow_incident_journal_and_attachment_exactly_once(sandbox, sandbox_env, playbook, tmp_path):
    table = credentials.SERVICENOW_PREFIX + "/api/now/table/incident"
    notes = tmp_path / "notes.md"
    notes.write_text("# what happened\n")
    after(sandbox, table, status=502)
    after(sandbox, table + "/*", method="PATCH", drop=True)
    after(sandbox, credentials.SERVICENOW_PREFIX + "/api/now/attachment/file", status=504)
    opened = dict(incident_key=KEY, short_description="Dynatrace P-7001: web crashed", work_note="Restarting web.")
    noted = dict(incident_key=KEY, state="updated", work_note="Healthy again.", attachments=[str(notes)])
    run = playbook([task("open", "servicenow_incident", **opened), task("note", "servicenow_incident", **noted),
                    task("again", "servicenow_incident", **noted)], env=sandbox_env)
    assert_clean(run)
    for name in ("open", "note"):
        assert_recovered(run[name])
    assert run["open"]["created"] and run["note"]["work_note_added"] and run["note"]["attached"] == ["notes.md"]
    assert run["again"]["changed"] is False
    state = sandbox.state()["servicenow"]
    incidents = [i for i in state["tables"]["incident"].values() if i["correlation_id"] == KEY]
    assert len(incidents) == 1 and run["open"]["sys_id"] == incidents[0]["sys_id"]
    journal = [e["value"].splitlines()[0] for e in state["journal"][incidents[0]["sys_id"]]]
    assert journal == ["Restarting web.", "Healthy again."]
    assert [a["file_name"] for a in state["attachments"].values()] == ["notes.md"]
    assert len([e for e in sandbox.requests(table) if e["method"] == "POST"]) == 1


# --- Teams -------------------------------------------------------------------------------------------------------

def test_teams_channel_member_and_bot_message_exactly_once(sandbox, sandbox_env, playbook):
    graph = credentials.MSGRAPH_PREFIX + "/v1.0"
    after(sandbox, graph + "/teams/*/channels", status=502)
    after(sandbox, graph + "/teams/*/members", drop=True)
    after(sandbox, credentials.MSGRAPH_BOT_PREFIX + "/v3/conversations", status=504)
    args = dict(team="Operations", incident_key=KEY, members=["dba.one@example.com"], text="**P-7001** web crashed.")
    run = playbook([task("open", "teams_channel", **args), task("again", "teams_channel", **args)], env=sandbox_env)
    assert_clean(run)
    assert_recovered(run["open"], 3)
    assert run["open"]["created"] and run["open"]["posted"] and len(run["open"]["added"]) == 1
    assert run["again"]["changed"] is False and run["again"]["message"] == run["open"]["message"]
    state = sandbox.state()["msgraph"]
    team = next(t for t in state["teams"].values() if t["displayName"] == "Operations")
    channels = [c for c in team["channels"].values() if c["displayName"] == "inc-dt-P-7001"]
    assert len(channels) == 1
    assert len(state["messages"][channels[0]["id"]]) == 1
    member_ids = [m["userId"] for m in team["members"]]
    assert len(member_ids) == len(set(member_ids))
    assert len([e for e in sandbox.requests(graph + "/teams/*/channels") if e["method"] == "POST"]) == 1


# --- Keptn --------------------------------------------------------------------------------------------------------

def test_keptn_rollback_triggered_exactly_once(sandbox, sandbox_env, playbook):
    sandbox.call("POST", "/_sandbox/keptn/config", {"appear_delay": 0.1, "finish_delay": 0.3, "result": "pass"})
    after(sandbox, credentials.KEPTN_PREFIX + "/api/v1/event", status=502)
    args = dict(project="sockshop", stage="production", service="carts", incident_key=KEY, poll_interval=0.5, wait_timeout=20)
    run = playbook([task("rollback", "keptn_rollback", **args), task("again", "keptn_rollback", **args)], env=sandbox_env)
    assert_clean(run)
    assert_recovered(run["rollback"])
    assert run["rollback"]["changed"] and run["rollback"]["state"] == "finished"
    assert run["again"]["changed"] is False and run["again"]["keptn_context"] == run["rollback"]["keptn_context"]
    state = sandbox.state()["keptn"]
    assert len(state["sequences"]) == 1
    triggered = [e for e in state["events"] if e["type"] == "sh.keptn.event.production.rollback.triggered"]
    assert len(triggered) == 1
    assert len(sandbox.requests(credentials.KEPTN_PREFIX + "/api/v1/event")) == 1


# --- strict connection options --------------------------------------------------------------------------------------

def test_bad_connection_options_fail_clearly_before_any_request(sandbox, sandbox_env, playbook, tmp_path):
    base = dict(incident_key=KEY, text="x")
    run = playbook([
        task("zero timeout", "slack_channel", timeout=0, **base),
        task("missing ca", "slack_channel", ca_path=str(tmp_path / "missing-ca.pem"), **base),
        task("negative retries", "slack_channel", max_retries=-1, **base),
        task("negative wait", "slack_channel", max_retry_wait=-5, **base),
        task("no scheme", "jira_incident", url="jira.example.com", project="OPS", incident_key=KEY, summary="x"),
    ], env=sandbox_env)
    assert_clean(run)
    expected = {
        "zero timeout": "Slack: timeout must be a number of seconds greater than 0 (got 0.0); nothing was sent",
        "missing ca": "Slack: ca_path %s does not exist; nothing was sent" % (tmp_path / "missing-ca.pem"),
        "negative retries": "Slack: max_retries must be 0 or more (got -1); nothing was sent",
        "negative wait": "Slack: max_retry_wait must be 0 or more seconds (got -5.0); nothing was sent",
        "no scheme": "Jira: the URL must start with http:// or https:// and name a host; got jira.example.com "
                     "(write it with https://, for example https://jira.example.com); nothing was sent",
    }
    for name, message in expected.items():
        assert run[name]["failed"] and run[name]["msg"] == message, (name, run[name].get("msg"))
        assert run[name]["error_kind"] == "invalid_input" and run[name]["changed"] is False, name
    assert sandbox.requests("/slack/*") == [] and sandbox.requests("/jira/*") == []
