"""oncall_notify against the sandbox with real ansible-playbook: xMatters and PagerDuty Events v2.

Script per scenario: check mode -> apply -> re-run -> verify in the sandbox state -> error cases.
"""

import json
import threading
import time

from sandbox import credentials

XM_TRIGGER_GLOB = "/xmatters/api/integration/1/functions/*/triggers"
ENQUEUE = "/pagerduty/v2/enqueue"
KEY = "dt-P-4242"

MODULE = "selfheal.devops.oncall_notify"


def xm_task(name, **args):
    params = dict(provider="xmatters", incident_key=KEY, poll_interval=0.2, event_timeout=10)
    params.update(args)
    return {"name": name, MODULE: params}


def pd_task(name, **args):
    params = dict(provider="pagerduty", incident_key=KEY)
    params.update(args)
    return {"name": name, MODULE: params}


def xm_events(state, key=KEY):
    return [e for e in state["xmatters"]["events"] if e["properties"].get("selfheal_incident_key") == key]


def assert_clean(run):
    assert "Traceback" not in run.stdout + run.stderr
    run.assert_no_secret()


TRIGGER = dict(summary="Disk full on web01", severity="critical", groups=["Ops Primary"], people=["dba.one"],
               source="web01", custom_details={"free_percent": 2, "mount": "/var"},
               links=[{"href": "https://dt.example.com/#problems/P-4242", "text": "Dynatrace problem"}],
               response_options=[{"text": "Clean up"}, {"text": "Ignore", "action": "stop_notifying_target"}],
               comment="Paged by selfheal.devops")


def test_xmatters_trigger_check_apply_rerun_one_page(sandbox, sandbox_env, playbook):
    tasks = [
        dict(xm_task("predict", **TRIGGER), check_mode=True),
        xm_task("page", **TRIGGER),
    ]
    first = playbook(tasks, env=sandbox_env)
    assert first.rc == 0, first.stdout
    predicted, paged = first["predict"], first["page"]
    assert predicted["changed"] is True and predicted["event"] is None
    assert predicted["would_send"]["properties"]["selfheal_incident_key"] == KEY
    assert predicted["would_send"]["priority"] == "HIGH"
    assert paged["changed"] is True and paged["annotation_added"] is True
    assert paged["event"]["status"] == "ACTIVE" and paged["event"]["incident_key"] == KEY
    assert paged["request_id"] == paged["event"]["requestId"]
    assert paged["on_call"][0]["group"] == "Ops Primary"
    assert [m["target_name"] for m in paged["on_call"][0]["members"]] == ["oncall.primary", "oncall.secondary"]
    assert sorted(n["recipient"] for n in paged["notified"]) == ["dba.one", "oncall.primary", "oncall.secondary"]
    assert len(sandbox.requests(XM_TRIGGER_GLOB)) == 1  # check mode sent no trigger

    second = playbook(tasks, env=sandbox_env)  # the same playbook again
    assert second.rc == 0, second.stdout
    assert second["predict"]["changed"] is False and second["page"]["changed"] is False
    assert second["page"]["event"]["id"] == paged["event"]["id"]
    assert second["page"]["annotation_added"] is False

    state = sandbox.state()
    events = xm_events(state)
    assert len(events) == 1 and len(sandbox.requests(XM_TRIGGER_GLOB)) == 1
    event = events[0]
    assert event["priority"] == "HIGH" and event["status"] == "ACTIVE"
    assert event["properties"]["summary"] == "Disk full on web01"
    assert event["properties"]["free_percent"] == 2
    assert "https://dt.example.com/#problems/P-4242" in event["properties"]["links"]
    assert [o["text"] for o in event["responseOptions"]] == ["Clean up", "Ignore"]
    assert event["responseOptions"][1]["action"] == "STOP_NOTIFYING_TARGET"
    assert [a["comment"] for a in event["annotations"]] == ["[selfheal.devops] Paged by selfheal.devops"]
    assert_clean(second)


def test_xmatters_resolve_check_apply_rerun(sandbox, sandbox_env, playbook):
    run = playbook([
        xm_task("page", summary="Process crashed", groups=["Database"]),
        dict(xm_task("predict resolve", state="resolved", comment="Fixed"), check_mode=True),
        xm_task("resolve", state="resolved", comment="Fixed"),
        xm_task("resolve again", state="resolved", comment="Fixed"),
    ], env=sandbox_env, diff=True)
    assert run.rc == 0, run.stdout
    predicted, resolved, again = run["predict resolve"], run["resolve"], run["resolve again"]
    assert predicted["changed"] is True and predicted["event"]["status"] == "TERMINATED"
    assert predicted["diff"]["before"]["status"] == ["ACTIVE"]
    assert resolved["changed"] is True and resolved["event"]["status"] == "TERMINATED"
    assert resolved["annotation_added"] is True
    assert again["changed"] is False and again["annotation_added"] is False
    assert again["event"]["status"] == "TERMINATED"
    events = xm_events(sandbox.state())
    assert len(events) == 1 and events[0]["status"] == "TERMINATED" and events[0]["terminated"]
    assert [a["comment"] for a in events[0]["annotations"]] == ["[selfheal.devops] Fixed"]
    # exactly one status change was posted
    assert len([r for r in sandbox.requests("/xmatters/api/xm/1/events") if r["method"] == "POST"]) == 1
    assert_clean(run)


def _respond_when_paged(sandbox, response, stop):
    """Play the responder: once the module reads deliveries for the event (it is waiting), pick an option."""
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        events = xm_events(sandbox.state())
        if events and sandbox.requests("/xmatters/api/xm/1/events/*/user-deliveries"):
            sandbox.call("POST", "/_sandbox/xmatters/respond",
                         {"event": events[0]["id"], "recipient": "oncall.secondary", "response": response,
                          "annotation": "on it"})
            return
        stop.wait(0.2)


def test_xmatters_waits_for_the_responder(sandbox, sandbox_env, playbook):
    stop = threading.Event()
    responder = threading.Thread(target=_respond_when_paged, args=(sandbox, "Clean up", stop), daemon=True)
    responder.start()
    try:
        run = playbook([xm_task("page and wait", wait_for_response=True, response_timeout=20, **TRIGGER)],
                       env=sandbox_env)
    finally:
        stop.set()
        responder.join(10)
    assert run.rc == 0, run.stdout
    result = run["page and wait"]
    assert result["response"] == "Clean up" and result["responder"] == "oncall.secondary"
    answered = [n for n in result["notified"] if n["response"]]
    assert [n["recipient"] for n in answered] == ["oncall.secondary"]
    # the module was already polling before the answer came: it read the deliveries more than once
    assert len(sandbox.requests("/xmatters/api/xm/1/events/*/user-deliveries")) >= 2
    assert_clean(run)


def test_xmatters_no_response_is_reported_not_failed_unless_asked(sandbox, sandbox_env, playbook):
    run = playbook([
        xm_task("page and wait", summary="Slow checkout", groups=["Ops Primary"], wait_for_response=True,
                response_timeout=1, response_options=[{"text": "Roll back"}]),
        dict(xm_task("wait and fail", summary="Slow checkout", groups=["Ops Primary"], wait_for_response=True,
                     response_timeout=1, fail_on_no_response=True), ignore_errors=True),
    ], env=sandbox_env)
    assert run.rc == 0, run.stdout
    assert run["page and wait"]["response"] == "no_response" and "responder" not in run["page and wait"]
    failed = run["wait and fail"]
    assert failed["failed"] is True and failed["error_kind"] == "no_response"
    assert "Nobody responded" in failed["msg"] and failed["response"] == "no_response"
    assert len(xm_events(sandbox.state())) == 1
    assert_clean(run)


def test_pagerduty_trigger_ack_resolve(sandbox, sandbox_env, playbook):
    trigger = dict(summary="Disk full on web01", source="web01", severity="error", component="disk", group="web",
                   event_class="disk_full", custom_details={"free_percent": 2},
                   links=[{"href": "https://dt.example.com/#problems/P-4242", "text": "Dynatrace problem"}])
    run = playbook([
        dict(pd_task("predict", **trigger), check_mode=True),
        pd_task("trigger", **trigger),
        pd_task("trigger again", **trigger),
        pd_task("ack", state="acknowledged"),
        pd_task("resolve", state="resolved", comment="ignored for PagerDuty"),
        pd_task("resolve again", state="resolved"),
    ], env=sandbox_env, diff=True)
    assert run.rc == 0, run.stdout
    predicted = run["predict"]
    assert predicted["changed"] is True and "routing_key" not in predicted["would_send"]
    assert predicted["would_send"]["payload"]["class"] == "disk_full"
    assert run["trigger"]["api_response"] == {"status": "success", "message": "Event processed", "dedup_key": KEY}
    # Events v2 has no read-back: every event sent is reported as a change, and it is harmless to repeat.
    assert run["trigger again"]["changed"] is True
    assert any("no comments" in w for w in run["resolve"]["warnings"])
    assert len(sandbox.requests(ENQUEUE)) == 5  # check mode sent nothing
    state = sandbox.state()["pagerduty"]
    alerts = [a for a in state["alerts"] if a["dedup_key"] == KEY]
    assert len(alerts) == 1  # the repeated trigger did not open a second alert
    alert = alerts[0]
    assert alert["status"] == "resolved" and alert["acknowledged_at"] and alert["summary"] == "Disk full on web01"
    assert alert["custom_details"] == {"free_percent": 2} and alert["links"][0]["text"] == "Dynatrace problem"
    assert [e["outcome"] for e in state["events"]] == ["created", "deduplicated", "acknowledged", "resolved", "dropped"]
    assert_clean(run)


def test_module_defaults_group_and_retries_after_429_and_503(sandbox, sandbox_env, playbook):
    env = {k: v for k, v in sandbox_env.items() if not k.startswith("PAGERDUTY")}
    sandbox.fault(ENQUEUE, method="POST", times=2, status=429, body={"status": "throttle event"},
                  headers={"Retry-After": "0"})
    sandbox.fault(XM_TRIGGER_GLOB, method="POST", times=1, status=503, body={"code": 503, "reason": "Unavailable"})
    sandbox.fault("/xmatters/api/xm/1/on-call", method="GET", times=1, status=502)
    tasks = [{
        "name": "both providers",
        "module_defaults": {"group/selfheal.devops.oncall": {
            "routing_key": "{{ pd_key }}", "pagerduty_url": "{{ pd_url }}", "summary": "Checkout slow",
            "source": "shop01", "groups": ["Ops Primary"], "poll_interval": 0.2}},
        "block": [pd_task("pagerduty"), xm_task("xmatters")],
    }]
    run = playbook(tasks, env=env, extra_vars={"pd_key": credentials.PAGERDUTY_ROUTING_KEY,
                                               "pd_url": sandbox.url + credentials.PAGERDUTY_PREFIX})
    assert run.rc == 0, run.stdout
    assert run["pagerduty"]["changed"] is True
    assert any("HTTP 429" in w and "retrying" in w for w in run["pagerduty"]["warnings"])
    assert any("HTTP 503" in w for w in run["xmatters"]["warnings"])
    assert any("HTTP 502" in w for w in run["xmatters"]["warnings"])
    state = sandbox.state()
    assert len([a for a in state["pagerduty"]["alerts"] if a["dedup_key"] == KEY]) == 1
    assert len(xm_events(state)) == 1
    assert len(sandbox.requests(ENQUEUE)) == 3
    assert_clean(run)


WRONG_PASSWORD = "not-the-password-777"
UNKNOWN_KEY = "ABCDEF0123456789ABCDEF0123456789"


ERRORS = {
    "bad password": (xm_task("bad password", summary="x", xmatters_password="{{ wrong_password }}"), "HTTP 401", "auth"),
    "no REST role": (xm_task("no REST role", summary="x", xmatters_user="no-rest-role",
                             xmatters_password="{{ norole_password }}"), "HTTP 403", "auth"),
    "xMatters ack": (xm_task("xMatters ack", state="acknowledged"), "no acknowledge", "invalid_input"),
    "unknown routing key": (pd_task("unknown routing key", summary="x", source="h", routing_key="{{ unknown_key }}"),
                            "Invalid routing key", "unexpected_response"),
    "short routing key": (pd_task("short routing key", summary="x", source="h", routing_key="{{ short_key }}"),
                          "should be 32 characters", "unexpected_response"),
    "no summary": (pd_task("no summary", source="h"), "need summary", "invalid_input"),
}


def test_clear_errors_without_secrets(sandbox, sandbox_env, playbook):
    # Secrets come from variables (as from a vault): ansible prints the task's source lines on errors.
    secrets = dict(wrong_password=WRONG_PASSWORD, norole_password="xm-sandbox-norole-0001", unknown_key=UNKNOWN_KEY,
                   short_key="short-key-12345")
    run = playbook([dict(task, ignore_errors=True) for task, text, kind in ERRORS.values()], env=sandbox_env,
                   extra_vars=secrets)
    assert run.rc == 0, run.stdout
    for name, (task, text, kind) in ERRORS.items():
        result = run[name]
        assert result["failed"] is True, name
        assert text in result["msg"] and result["error_kind"] == kind, (name, result["msg"])
    assert_clean(run)
    output = run.stdout + run.stderr
    for secret in secrets.values():
        assert secret not in output
    state = sandbox.state()
    assert not state["pagerduty"]["alerts"] and not state["xmatters"]["events"]


# --- strict inputs and honest results (issue 20) -------------------------------------------------------------

def xm_requests(sandbox):
    return sandbox.requests(credentials.XMATTERS_PREFIX + "/*")


def test_unknown_group_or_person_fails_naming_it_before_any_page(sandbox, sandbox_env, playbook):
    """Used to page (an active event left behind), then fail on the on-call read without saying which group."""
    run = playbook([
        dict(xm_task("unknown group", summary="Disk full", groups=["Ops Primary", "Nobody Home"]), ignore_errors=True),
        dict(xm_task("unknown person", summary="Disk full", groups=["Ops Primary"], people=["dba.one", "ghost.user"]),
             ignore_errors=True),
        dict(xm_task("predicted", summary="Disk full", people=["ghost.user"]), ignore_errors=True, check_mode=True),
    ], env=sandbox_env)
    group, person, predicted = run["unknown group"], run["unknown person"], run["predicted"]
    assert group["failed"] and group["error_kind"] == "invalid_input" and group["changed"] is False
    assert "unknown xMatters group(s): Nobody Home; nothing was sent" in group["msg"]
    assert person["failed"] and "unknown xMatters people: ghost.user" in person["msg"] and person["changed"] is False
    assert predicted["failed"] and "ghost.user" in predicted["msg"]
    assert sandbox.requests(XM_TRIGGER_GLOB) == [] and sandbox.state()["xmatters"]["events"] == []
    assert_clean(run)


def test_approving_answer_missing_from_the_options_is_refused_before_any_request(sandbox, sandbox_env, playbook):
    """Approve mode offered Restart/Ignore while only 'Approve' approves: a responder's Restart escalated."""
    run = playbook([dict(xm_task("mismatch", summary="Crash", groups=["Ops Primary"], wait_for_response=True,
                                 response_timeout=5, approve_response="Approve",
                                 response_options=[{"text": "Restart"}, {"text": "Ignore"}]), ignore_errors=True)],
                   env=sandbox_env)
    result = run["mismatch"]
    assert result["failed"] and result["error_kind"] == "invalid_input" and result["changed"] is False
    assert "approve_response 'Approve' is not one of the response_options (Restart, Ignore)" in result["msg"]
    assert xm_requests(sandbox) == []
    assert_clean(run)


def test_approve_response_reports_approved(sandbox, sandbox_env, playbook):
    stop = threading.Event()
    responder = threading.Thread(target=_respond_when_paged, args=(sandbox, "Clean up", stop), daemon=True)
    responder.start()
    try:
        run = playbook([xm_task("approve", wait_for_response=True, response_timeout=20, approve_response="Clean up",
                                **TRIGGER)], env=sandbox_env)
    finally:
        stop.set()
        responder.join(10)
    assert run.rc == 0, run.stdout
    assert run["approve"]["approved"] is True and run["approve"]["response"] == "Clean up"


def test_a_page_whose_event_never_appears_is_reported_as_a_change(sandbox, sandbox_env, playbook):
    """The trigger was accepted (xMatters will page), then the event did not show in time: changed=true, and what."""
    sandbox.call("POST", "/_sandbox/xmatters/config", {"delay": 30})
    run = playbook([dict(xm_task("slow workflow", summary="Disk full", groups=["Ops Primary"], event_timeout=1),
                         ignore_errors=True)], env=sandbox_env)
    result = run["slow workflow"]
    assert result["failed"] and result["changed"] is True, result
    assert result["request_id"] and result["written"] == ["triggered an xMatters event (requestId %s)" % result["request_id"]]
    assert "no event appeared" in result["msg"] and "this run had already triggered an xMatters event" in result["msg"]
    assert len(sandbox.requests(XM_TRIGGER_GLOB)) == 1
    assert_clean(run)


def test_trigger_url_with_api_key_never_shows(sandbox, sandbox_env, playbook):
    """An ?apiKey= trigger URL showed in -vvv output (module arguments) and in results; now it never does."""
    api_key = sandbox.state()["xmatters"]["config"]["api_key"]
    env = dict(sandbox_env, XMATTERS_TRIGGER_URL=sandbox_env["XMATTERS_TRIGGER_URL"] + "?apiKey=" + api_key)
    wrong = dict(sandbox_env, XMATTERS_TRIGGER_URL=sandbox_env["XMATTERS_TRIGGER_URL"] + "?apiKey=wrong-" + api_key)
    sandbox.fault(XM_TRIGGER_GLOB, method="POST", times=1, status=503, body={"code": 503, "reason": "Unavailable"})
    run = playbook([xm_task("page", summary="Disk full", groups=["Ops Primary"])], env=env, extra_args=("-vvv",))
    assert run.rc == 0, run.stdout
    result = run["page"]
    assert result["changed"] is True and any("HTTP 503" in w for w in result["warnings"])
    assert xm_events(sandbox.state())[0]["requestId"] == result["request_id"]
    assert api_key not in run.stdout + run.stderr and api_key not in json.dumps(run.results)
    assert "xmatters_trigger_url" in run.stdout  # -vvv did print the module arguments, masked
    failed = playbook([dict(xm_task("wrong key", summary="Other", incident_key="dt-P-4343"), ignore_errors=True)],
                      env=wrong, extra_args=("-vvv",))
    assert failed["wrong key"]["failed"] and "HTTP 401" in failed["wrong key"]["msg"]
    assert api_key not in failed.stdout + failed.stderr and api_key not in json.dumps(failed.results)
    assert_clean(failed)
