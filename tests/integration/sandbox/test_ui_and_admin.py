"""The watch page at / and the summary it polls (state created through the real service APIs only: Dynatrace, xMatters,
PagerDuty, Jira, ServiceNow, Slack, Microsoft Graph and the Bot Framework, Keptn), and the admin routes the other
contract tests do not pin down (fault listing and matching, latency, log filter, reset)."""

import base64
import hashlib
import os
import re
import time
import urllib.error
import urllib.request

import pytest
import requests

from sandbox import credentials

SLACK_PRESENT = os.path.exists(os.path.join(os.path.dirname(credentials.__file__), "slack.py"))
MARKUP = "<script>alert(1)</script> & <b>Process</b> unavailable"
DYN = {"Authorization": "Api-Token " + credentials.DYNATRACE_TOKEN}
CLOUD = (credentials.JIRA_USER, credentials.JIRA_TOKEN)
DC = {"Authorization": "Bearer " + credentials.JIRA_PAT}
SLACK = {"Authorization": "Bearer " + credentials.SLACK_TOKEN}
KEPTN = {"x-token": credentials.KEPTN_TOKEN}
SERVICENOW = (credentials.SERVICENOW_USER, credentials.SERVICENOW_PASSWORD)
SN_API = credentials.SERVICENOW_PREFIX + "/api/now"
GRAPH = credentials.MSGRAPH_PREFIX + "/v1.0"
OPS_TEAM = "0a6f3e2b-1c4d-4e5f-8a9b-0c1d2e3f4a5b"  # the seeded team "Operations" (ops.lead, oncall.secondary, selfheal.bot)


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


def app_token(sandbox, resource):
    """An access token for the app registration (client credentials), as the Microsoft identity platform hands it."""
    answer = post(sandbox, "%s/%s/oauth2/v2.0/token" % (credentials.MSGRAPH_LOGIN_PREFIX, credentials.MSGRAPH_TENANT_ID),
                  data={"grant_type": "client_credentials", "client_id": credentials.MSGRAPH_CLIENT_ID,
                        "client_secret": credentials.MSGRAPH_CLIENT_SECRET, "scope": resource + "/.default"})
    return {"Authorization": "Bearer " + answer["access_token"]}


def teams_channel(sandbox, name, description, text):
    """A Teams channel made through Graph, with a message the app's bot starts a thread with; (channel, message id)."""
    graph = app_token(sandbox, "https://graph.microsoft.com")
    channel = post(sandbox, GRAPH + "/teams/%s/channels" % OPS_TEAM, headers=graph,
                   json={"displayName": name, "description": description, "membershipType": "standard"})
    sent = post(sandbox, credentials.MSGRAPH_BOT_PREFIX + "/v3/conversations", headers=app_token(sandbox, "https://api.botframework.com"),
                json={"isGroup": True, "activity": {"type": "message", "text": text},
                      "channelData": {"channel": {"id": channel["id"]}, "tenant": {"id": credentials.MSGRAPH_TENANT_ID}}})
    return channel, sent["activityId"]


def servicenow_incident(sandbox, short_description):
    return post(sandbox, SN_API + "/table/incident", auth=SERVICENOW,
                json={"short_description": short_description, "urgency": "1", "impact": "1"})["result"]


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
    # One section for every ticket system, one for every chat system.
    assert "<h2>Tickets (Jira, ServiceNow)</h2>" in html and "<h2>Chat channels (Slack, Teams)</h2>" in html


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
    assert cloud_ticket == {"instance": "Jira Cloud", "key": created["key"], "summary": MARKUP, "status": "Open",
                            "comments": ["Restarted <web-01>"], "attachments": [{"filename": "<transcript>.txt", "size": 10}]}
    assert dc_ticket == {"instance": "Jira Data Center", "key": other["key"], "summary": "Disk full", "status": "Resolved",
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
    assert room == {"system": "Slack", "id": channel["id"], "name": "inc-ui", "archived": False, "topic": MARKUP, "members": 2,
                    "messages": [{"text": "selfheal: web is <down>", "replies": ["oncall-primary: on it"]},
                                 {"text": "selfheal: healed", "replies": []}]}
    slack(sandbox, "conversations.archive", channel=channel["id"])
    assert view(sandbox)["channels"][0]["archived"] is True


def test_servicenow_incidents_are_tickets_next_to_jira_with_journal_and_attachments(sandbox):
    post(sandbox, credentials.JIRA_PREFIX + "/rest/api/2/issue", auth=CLOUD,
         json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "Disk full"}})
    incident = servicenow_incident(sandbox, MARKUP)
    record = SN_API + "/table/incident/" + incident["sys_id"]
    requests.patch(sandbox.url + record, auth=SERVICENOW, json={"work_notes": "Restarted <web-01>"}, timeout=10).raise_for_status()
    post(sandbox, SN_API + "/attachment/file", auth=SERVICENOW, headers={"Content-Type": "text/markdown"},
         params={"table_name": "incident", "table_sys_id": incident["sys_id"], "file_name": "<transcript>.md"}, data=b"0123456789")

    jira_ticket, ticket = view(sandbox)["tickets"]
    assert jira_ticket["instance"] == "Jira Cloud"  # Jira first, then ServiceNow
    assert ticket == {"instance": "ServiceNow", "key": incident["number"], "summary": MARKUP, "status": "New",
                      "comments": ["Selfheal Integration (Work notes): Restarted <web-01>"],
                      "attachments": [{"filename": "<transcript>.md", "size": 10}]}
    # Resolving needs the close information (the base system's data policy); the view follows the state.
    requests.patch(sandbox.url + record, auth=SERVICENOW, timeout=10, json={
        "state": "6", "close_code": "Solved (Permanently)", "close_notes": "healed", "comments": "Fixed by selfheal.devops"}
    ).raise_for_status()
    ticket = view(sandbox)["tickets"][1]
    assert ticket["status"] == "Resolved"
    assert ticket["comments"] == ["Selfheal Integration (Work notes): Restarted <web-01>",
                                  "Selfheal Integration (Additional comments): Fixed by selfheal.devops"]


def test_teams_channels_are_chat_channels_next_to_slack_with_thread_replies(sandbox):
    if SLACK_PRESENT:
        slack(sandbox, "conversations.create", name="inc-dt-p-9")
    channel, message_id = teams_channel(sandbox, "inc-dt-P-9", MARKUP, "web is <down>")
    sandbox.call("POST", "/_sandbox/msgraph/messages", {"team": "Operations", "channel": channel["id"],
                                                        "user": "oncall.primary@example.com", "text": "on it", "reply_to": message_id})
    channels = view(sandbox)["channels"]
    assert [c["system"] for c in channels] == (["Slack"] if SLACK_PRESENT else []) + ["Teams"]  # General is left out
    room = channels[-1]
    assert room == {"system": "Teams", "id": channel["id"], "name": "Operations / inc-dt-P-9", "archived": False,
                    "topic": MARKUP, "members": 3,
                    "messages": [{"text": "Selfheal: web is <down>", "replies": ["Oncall Primary: on it"]}]}
    graph = app_token(sandbox, "https://graph.microsoft.com")
    post(sandbox, GRAPH + "/teams/%s/channels/%s/archive" % (OPS_TEAM, channel["id"]), headers=graph, json={})
    assert view(sandbox)["channels"][-1]["archived"] is True


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
    servicenow_incident(sandbox, "Disk full")
    teams_channel(sandbox, "inc-reset", "", "opened")
    sandbox.fault("/jira/*", times=-1, status=503)
    assert wait_for(sandbox.outbound)[0]["error"]  # the notification was attempted (and failed)
    summary = view(sandbox)
    assert summary["problems"] and [t["instance"] for t in summary["tickets"]] == ["Jira Cloud", "ServiceNow"]
    assert [c["system"] for c in summary["channels"]] == ["Teams"]

    sandbox.reset()
    assert sandbox.call("GET", "/_sandbox/faults") == [] and sandbox.outbound() == []
    assert [e["path"] for e in sandbox.requests()] == ["/_sandbox/faults", "/_sandbox/outbound", "/_sandbox/log"]
    after = sandbox.state()
    for service in ("dynatrace", "jira", "keptn", "pagerduty") + (("slack",) if SLACK_PRESENT else ()):
        assert after[service] == seed[service], service
    assert after["xmatters"]["events"] == [] and view(sandbox)["problems"] == [] and view(sandbox)["tickets"] == []
    assert view(sandbox)["channels"] == [] and after["servicenow"]["tables"]["incident"] == {}
    assert requests.get(sandbox.url + "/jira/rest/api/2/serverInfo", timeout=10).status_code == 200


def test_unknown_routes_still_404_next_to_the_page(sandbox):
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(sandbox.url + "/nothing-here", timeout=10)
    assert error.value.code == 404


def test_the_summary_copes_with_services_that_are_not_loaded():
    from sandbox import ui  # tests/sandbox/ui.py, as server.py loads it

    assert ui.view({}) == {"problems": [], "pages": [], "tickets": [], "channels": [], "sequences": [], "slack_present": False}
    partial = {"jira": {"dc": {"issues": {}}}, "slack": {"channels": {"C1": {"name": "inc-1"}}}}
    assert ui.view(partial)["channels"] == [{"system": "Slack", "id": "C1", "name": "inc-1", "archived": False, "topic": "",
                                             "members": 0, "messages": []}]
    # ServiceNow and Teams rows come from their own service files, from the state alone.
    incident = {"sys_id": "a1", "number": "INC0010001", "short_description": "x", "state": "2"}
    other = {"servicenow": {"tables": {"incident": {"a1": incident}}},
             "msgraph": {"teams": {"T1": {"displayName": "Ops", "members": [{}], "channels": {
                 "19:g": {"displayName": "General", "membershipType": "standard"},
                 "19:c": {"displayName": "inc-1", "membershipType": "private", "members": [{}, {}], "isArchived": True}}}}}}
    summary = ui.view(other)
    assert summary["tickets"] == [{"instance": "ServiceNow", "key": "INC0010001", "summary": "x", "status": "In Progress",
                                   "comments": [], "attachments": []}]
    assert summary["channels"] == [{"system": "Teams", "id": "19:c", "name": "Ops / inc-1", "archived": True, "topic": "",
                                    "members": 2, "messages": []}]
