"""The watch page at / and the summary it polls (state created through the real service APIs only), and the
admin routes the other contract tests do not pin down (fault listing and matching, latency, log filter, reset)."""

import base64
import hashlib
import os
import re
import time
import urllib.error
import urllib.request

import pytest
import requests

import credentials

SLACK_PRESENT = os.path.exists(os.path.join(os.path.dirname(credentials.__file__), "slack.py"))
MARKUP = "<script>alert(1)</script> & <b>Process</b> unavailable"
DYN = {"Authorization": "Api-Token " + credentials.DYNATRACE_TOKEN}
CLOUD = (credentials.JIRA_USER, credentials.JIRA_TOKEN)
DC = {"Authorization": "Bearer " + credentials.JIRA_PAT}
SLACK = {"Authorization": "Bearer " + credentials.SLACK_TOKEN}
KEPTN = {"x-token": credentials.KEPTN_TOKEN}


def view(sandbox):
    return sandbox.call("GET", "/_sandbox/view")


def post(sandbox, path, expect=(200, 201, 202, 204), **kwargs):
    response = requests.post(sandbox.url + path, timeout=10, **kwargs)
    assert response.status_code in expect, (path, response.status_code, response.text)
    return response.json() if response.content else None


def slack(sandbox, method, **params):
    answer = post(sandbox, credentials.SLACK_PREFIX + "/" + method, json=params, headers=SLACK)
    assert answer["ok"], answer
    return answer


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


# --- the page --------------------------------------------------------------------------------------------------

def test_the_page_is_static_html_whose_csp_admits_only_its_own_script(sandbox):
    post(sandbox, "/_sandbox/dynatrace/problems", json={"title": MARKUP})
    with urllib.request.urlopen(sandbox.url + "/", timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
        headers, html = response.headers, response.read().decode()
    # No data in the page itself: it fetches the summary and inserts it with textContent only.
    assert "/_sandbox/view" in html and "textContent" in html
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html
    assert "alert(1)" not in html and "http" not in html.split("<script>")[1]  # no CDN, no external URL
    [script] = re.findall(r"<script>(.*?)</script>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'sha256-%s'" % digest in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"


def test_an_empty_sandbox_has_an_empty_summary(sandbox):
    assert view(sandbox) == {"problems": [], "pages": [], "tickets": [], "channels": [], "sequences": [],
                             "slack_present": SLACK_PRESENT}


# --- the summary follows each service ---------------------------------------------------------------------------

def test_problems_with_comments_and_their_closing(sandbox):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {"title": MARKUP, "entities": [{"type": "HOST", "name": "web-01"}]})
    post(sandbox, credentials.DYNATRACE_PREFIX + "/api/v2/problems/%s/comments" % problem["problemId"], headers=DYN,
         json={"message": "Remediation <started>", "context": "selfheal.devops"})
    [shown] = view(sandbox)["problems"]
    assert shown == {"display_id": problem["displayId"], "title": MARKUP, "status": "OPEN", "comments": ["Remediation <started>"]}
    post(sandbox, credentials.DYNATRACE_PREFIX + "/api/v2/problems/%s/close" % problem["problemId"], headers=DYN,
         json={"message": "healed", "context": "selfheal.devops"})
    [shown] = view(sandbox)["problems"]
    assert shown["status"] == "CLOSED" and shown["comments"][-1] == "healed"


def test_pages_show_xmatters_responses_and_pagerduty_alerts_by_dedup_key(sandbox):
    sandbox.call("POST", "/_sandbox/xmatters/config", {"delay": 0})
    trigger = "%s/api/integration/1/functions/%s/triggers" % (credentials.XMATTERS_PREFIX, credentials.XMATTERS_TRIGGER_ID)
    request = post(sandbox, trigger, auth=(credentials.XMATTERS_USER, credentials.XMATTERS_PASSWORD),
                   json={"properties": {"summary": MARKUP}, "recipients": ["Database"], "responseOptions": ["Restart", "Ignore"]})
    pages = wait_for(lambda: view(sandbox)["pages"])
    assert pages == [{"system": "xMatters", "id": pages[0]["id"], "summary": MARKUP, "status": "ACTIVE", "responses": []}]
    sandbox.call("POST", "/_sandbox/xmatters/respond", {"requestId": request["requestId"], "recipient": "dba.two", "response": "restart"})
    assert view(sandbox)["pages"][0]["responses"] == ["dba.two: Restart"]

    enqueue = credentials.PAGERDUTY_PREFIX + "/v2/enqueue"
    post(sandbox, enqueue, json={"routing_key": credentials.PAGERDUTY_ROUTING_KEY, "event_action": "trigger", "dedup_key": "dt-P-7",
                                 "payload": {"summary": "Disk full", "source": "web-01", "severity": "error"}})
    post(sandbox, enqueue, json={"routing_key": credentials.PAGERDUTY_ROUTING_KEY, "event_action": "acknowledge", "dedup_key": "dt-P-7"})
    assert view(sandbox)["pages"][1] == {"system": "PagerDuty", "id": "dt-P-7", "summary": "Disk full", "status": "acknowledged",
                                         "responses": []}


def test_tickets_of_cloud_and_data_center_with_comments_and_attachments(sandbox):
    cloud = credentials.JIRA_PREFIX + "/rest/api/3"
    created = post(sandbox, cloud + "/issue", auth=CLOUD,
                   json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": MARKUP}})
    adf = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Restarted <web-01>"}]}]}
    post(sandbox, cloud + "/issue/%s/comment" % created["key"], auth=CLOUD, json={"body": adf})
    post(sandbox, cloud + "/issue/%s/attachments" % created["key"], auth=CLOUD, headers={"X-Atlassian-Token": "no-check"},
         files={"file": ("<transcript>.txt", b"0123456789", "text/plain")})
    dc = credentials.JIRA_DC_PREFIX + "/rest/api/2"
    other = post(sandbox, dc + "/issue", headers=DC,
                 json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "Disk full"}})
    post(sandbox, dc + "/issue/%s/transitions" % other["key"], headers=DC, json={"transition": {"id": "21"}})

    cloud_ticket, dc_ticket = view(sandbox)["tickets"]
    assert cloud_ticket == {"instance": "Cloud", "key": created["key"], "summary": MARKUP, "status": "Open",
                            "comments": ["Restarted <web-01>"], "attachments": [{"filename": "<transcript>.txt", "size": 10}]}
    assert dc_ticket == {"instance": "Data Center", "key": other["key"], "summary": "Disk full", "status": "Resolved",
                         "comments": [], "attachments": []}
    assert created["key"] == other["key"]  # same key on both instances: the instance tells them apart


@pytest.mark.skipif(not SLACK_PRESENT, reason="tests/sandbox/slack.py is not there")
def test_channels_with_topic_members_messages_and_thread_replies(sandbox):
    channel = slack(sandbox, "conversations.create", name="inc-ui")["channel"]
    slack(sandbox, "conversations.setTopic", channel=channel["id"], topic=MARKUP)
    slack(sandbox, "conversations.invite", channel=channel["id"], users="U0ONCALL01")
    parent = slack(sandbox, "chat.postMessage", channel=channel["id"], text="web is <down>")
    sandbox.call("POST", "/_sandbox/slack/messages", {"channel": "inc-ui", "user": "oncall.primary@example.com",
                                                      "text": "on it", "thread_ts": parent["ts"]})
    slack(sandbox, "chat.postMessage", channel=channel["id"], text="healed")
    [room] = view(sandbox)["channels"]
    assert room == {"id": channel["id"], "name": "inc-ui", "archived": False, "topic": MARKUP, "members": 2,
                    "messages": [{"text": "selfheal: web is <down>", "replies": ["oncall-primary: on it"]},
                                 {"text": "selfheal: healed", "replies": []}]}
    slack(sandbox, "conversations.archive", channel=channel["id"])
    assert view(sandbox)["channels"][0]["archived"] is True


def test_keptn_sequences_progress_without_the_view_touching_the_state(sandbox):
    sandbox.call("POST", "/_sandbox/keptn/config", {"appear_delay": 0, "finish_delay": 0, "result": "pass"})
    post(sandbox, credentials.KEPTN_PREFIX + "/api/v1/event", headers=KEPTN, json={
        "specversion": "1.0", "type": "sh.keptn.event.production.rollback.triggered", "source": "test",
        "data": {"project": "sockshop", "stage": "production", "service": "carts"}})
    before = sandbox.state()
    [sequence] = view(sandbox)["sequences"]
    assert sequence["name"] == "rollback" and sequence["service"] == "sockshop/production/carts"
    assert (sequence["state"], sequence["result"]) == ("finished", "pass")
    assert sandbox.state() == before  # the shipyard API records the finished events on read; the view does not

    sandbox.call("POST", "/_sandbox/keptn/config", {"manual": True})
    post(sandbox, credentials.KEPTN_PREFIX + "/api/v1/event", headers=KEPTN, json={
        "specversion": "1.0", "type": "sh.keptn.event.production.rollback.triggered", "source": "test",
        "data": {"project": "sockshop", "stage": "production", "service": "orders"}})
    assert [s["state"] for s in view(sandbox)["sequences"]] == ["finished", "started"]


# --- admin routes -----------------------------------------------------------------------------------------------

def test_faults_are_listed_match_method_and_path_and_are_cleared(sandbox):
    problems = sandbox.url + credentials.DYNATRACE_PREFIX + "/api/v2/problems"
    sandbox.fault("/dynatrace/api/v2/problems", method="POST", times=1, status=500)
    sandbox.fault("/dynatrace/api/*", method="get", times=2, status=503, headers={"Retry-After": "7"}, body={"error": "busy"})
    listed = sandbox.call("GET", "/_sandbox/faults")
    assert [(f["path"], f["method"], f["remaining"], f["status"]) for f in listed] == [
        ("/dynatrace/api/v2/problems", "POST", 1, 500), ("/dynatrace/api/*", "GET", 2, 503)]
    first = requests.get(problems, headers=DYN, timeout=10)
    assert first.status_code == 503 and first.headers["Retry-After"] == "7" and first.json() == {"error": "busy"}
    assert requests.get(problems, headers=DYN, timeout=10).status_code == 503
    assert requests.get(problems, headers=DYN, timeout=10).status_code == 200  # used up
    assert [f["remaining"] for f in sandbox.call("GET", "/_sandbox/faults")] == [1, 0]
    assert requests.get(sandbox.url + "/jira/rest/api/2/serverInfo", timeout=10).status_code == 200  # other paths untouched
    sandbox.call("DELETE", "/_sandbox/faults")
    assert sandbox.call("GET", "/_sandbox/faults") == []


def test_a_latency_fault_without_a_status_delays_the_real_answer(sandbox):
    sandbox.fault("/jira/rest/api/2/serverInfo", latency=0.3)
    began = time.monotonic()
    slow = requests.get(sandbox.url + "/jira/rest/api/2/serverInfo", timeout=10)
    assert time.monotonic() - began >= 0.3 and slow.status_code == 200 and slow.json()["deploymentType"] == "Cloud"


def test_the_log_records_every_request_with_its_status_and_filters_by_glob(sandbox):
    sandbox.fault("/pagerduty/v2/enqueue", status=502)
    requests.get(sandbox.url + credentials.DYNATRACE_PREFIX + "/api/v2/problems?pageSize=5", timeout=10)  # no token
    requests.post(sandbox.url + "/pagerduty/v2/enqueue", json={}, timeout=10)
    entries = sandbox.requests("/dynatrace/*")
    assert [(e["method"], e["path"], e["query"], e["status"]) for e in entries] == [
        ("GET", "/dynatrace/api/v2/problems", {"pageSize": "5"}, 401)]
    assert [e["status"] for e in sandbox.requests("/pagerduty/*")] == [502]
    sandbox.call("DELETE", "/_sandbox/log")
    assert sandbox.requests("/dynatrace/*") == []


def test_reset_restores_the_seed_and_clears_faults_log_and_outbound(sandbox):
    seed = sandbox.state()
    sandbox.call("POST", "/_sandbox/dynatrace/webhook", {"url": "http://127.0.0.1:9/unreachable"})
    sandbox.call("POST", "/_sandbox/dynatrace/problems", {"title": "Disk full"})
    post(sandbox, credentials.JIRA_PREFIX + "/rest/api/2/issue", auth=CLOUD,
         json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "x"}})
    sandbox.fault("/jira/*", times=-1, status=503)
    assert wait_for(sandbox.outbound)[0]["error"]  # the notification was attempted (and failed)
    assert view(sandbox)["problems"] and view(sandbox)["tickets"]

    sandbox.reset()
    assert sandbox.call("GET", "/_sandbox/faults") == [] and sandbox.outbound() == []
    assert [e["path"] for e in sandbox.requests()] == ["/_sandbox/faults", "/_sandbox/outbound", "/_sandbox/log"]
    after = sandbox.state()
    for service in ("dynatrace", "jira", "keptn", "pagerduty") + (("slack",) if SLACK_PRESENT else ()):
        assert after[service] == seed[service], service
    assert after["xmatters"]["events"] == [] and view(sandbox)["problems"] == [] and view(sandbox)["tickets"] == []
    assert requests.get(sandbox.url + "/jira/rest/api/2/serverInfo", timeout=10).status_code == 200


def test_unknown_routes_still_404_next_to_the_page(sandbox):
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(sandbox.url + "/nothing-here", timeout=10)
    assert error.value.code == 404


def test_the_summary_copes_with_services_that_are_not_loaded():
    import ui  # tests/sandbox/ui.py, as server.py loads it

    assert ui.view({}) == {"problems": [], "pages": [], "tickets": [], "channels": [], "sequences": [], "slack_present": False}
    partial = {"jira": {"dc": {"issues": {}}}, "slack": {"channels": {"C1": {"name": "inc-1"}}}}
    assert ui.view(partial)["channels"] == [{"id": "C1", "name": "inc-1", "archived": False, "topic": "", "members": 0,
                                             "messages": []}]
