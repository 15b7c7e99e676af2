"""Contract of the sandbox's xMatters and PagerDuty Events v2 services (see tests/sandbox/README.md)."""

import http.server
import json
import re
import threading
import time

import pytest
import requests

from sandbox import credentials

TRIGGER_PATH = "/xmatters/api/integration/1/functions/%s/triggers" % credentials.XMATTERS_TRIGGER_ID
AUTH = (credentials.XMATTERS_USER, credentials.XMATTERS_PASSWORD)
KEY = credentials.PAGERDUTY_ROUTING_KEY
OTHER_KEY = "R0UT1NGK3Y5ANDB0X000000000000002"


@pytest.fixture
def xm(sandbox):
    """Helpers bound to the (reset) sandbox's xMatters."""
    class XM(object):
        url = sandbox.url + "/xmatters"
        rest = sandbox.url + "/xmatters/api/xm/1"

        def get(self, path, auth=AUTH, **params):
            return requests.get(self.rest + path, params=params, auth=auth, timeout=10)

        def post(self, path, body, auth=AUTH):
            return requests.post(self.rest + path, json=body, auth=auth, timeout=10)

        def trigger(self, body, auth=AUTH, params=None):
            return requests.post(sandbox.url + TRIGGER_PATH, json=body, auth=auth, params=params, timeout=10)

        def wait_event(self, request_id, timeout=5.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = self.get("/events", requestId=request_id, embed="properties").json()["data"]
                if data:
                    return data[0]
                time.sleep(0.05)
            raise AssertionError("event for request %s did not appear" % request_id)

        def page(self, key="dt-P-1", **body):
            body.setdefault("properties", {})["selfheal_incident_key"] = key
            response = self.trigger(body)
            assert response.status_code == 202
            return self.wait_event(response.json()["requestId"])

        def config(self, **settings):
            return sandbox.call("POST", "/_sandbox/xmatters/config", settings)
    return XM()


def pd(sandbox, body, raw=None):
    if raw is not None:
        return requests.post(sandbox.url + "/pagerduty/v2/enqueue", data=raw, timeout=10)
    return requests.post(sandbox.url + "/pagerduty/v2/enqueue", json=body, timeout=10)


def pd_event(action, dedup_key=None, routing_key=KEY, **payload):
    body = {"routing_key": routing_key, "event_action": action}
    if dedup_key:
        body["dedup_key"] = dedup_key
    if action == "trigger":
        body["payload"] = dict({"summary": "Disk full", "source": "web01", "severity": "error"}, **payload)
    return body


# --- xMatters --------------------------------------------------------------------------------------

@pytest.mark.parametrize("auth, status", [(None, 401), (("selfheal-automation", "wrong"), 401),
                                          (("no-rest-role", "xm-sandbox-norole-0001"), 403)])
def test_xmatters_rest_auth_errors_use_code_reason_message(xm, auth, status):
    response = xm.get("/events", auth=auth)
    assert response.status_code == status
    body = response.json()
    assert body["code"] == status and body["reason"] in ("Unauthorized", "Forbidden") and body["message"]


def test_trigger_answers_202_request_id_and_creates_the_event_asynchronously(xm):
    xm.config(delay=0.5)
    response = xm.trigger({"priority": "HIGH", "properties": {"selfheal_incident_key": "dt-P-9", "Country#en": "USA"},
                           "recipients": [{"id": "Ops Primary", "recipientType": "GROUP"}, "dba.one"],
                           "responseOptions": [{"text": "Restart"}, "Ignore"]})
    assert response.status_code == 202
    request_id = response.json()["requestId"]
    assert re.match(r"^[0-9a-f-]{36}$", request_id)
    assert xm.get("/events", requestId=request_id).json()["total"] == 0  # not yet
    event = xm.wait_event(request_id)
    assert event["status"] == "ACTIVE" and event["priority"] == "HIGH" and event["eventId"].isdigit()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$", event["created"])
    full = xm.get("/events/%s" % event["eventId"], embed="properties,recipients,responseOptions,annotations").json()
    assert full["id"] == event["id"] and full["properties"]["Country#en"] == "USA"
    assert [r["targetName"] for r in full["recipients"]["data"]] == ["Ops Primary", "dba.one"]
    assert [o["text"] for o in full["responseOptions"]["data"]] == ["Restart", "Ignore"]
    assert full["annotations"]["total"] == 0
    assert "properties" not in xm.get("/events/%s" % event["id"]).json()


def test_trigger_auth_and_validation(xm, sandbox):
    assert xm.trigger({}, auth=None).status_code == 401
    assert xm.trigger({}, auth=("selfheal-automation", "nope")).status_code == 401
    by_key = xm.trigger({}, auth=None, params={"apiKey": "xm-sandbox-trigger-apikey-0001"})
    assert by_key.status_code == 202
    assert xm.trigger({}, auth=None, params={"apiKey": "wrong"}).status_code == 401
    wrong_id = requests.post(sandbox.url + "/xmatters/api/integration/1/functions/nope/triggers", json={}, auth=AUTH,
                             timeout=10)
    assert wrong_id.status_code == 404 and wrong_id.json()["reason"] == "Not Found"
    assert xm.trigger(["not", "an", "object"]).status_code == 400
    # no recipients: the form's default recipients (Ops Primary) are notified
    event = xm.wait_event(by_key.json()["requestId"])
    deliveries = xm.get("/events/%s/user-deliveries" % event["id"], at="2100-01-01T00:00:00Z").json()["data"]
    assert [d["person"]["targetName"] for d in deliveries] == ["oncall.primary", "oncall.secondary"]


def test_events_filters_and_pagination(xm):
    first = xm.page("dt-P-1", priority="LOW", properties={"Service#en": "checkout"})
    second = xm.page("dt-P-2", priority="HIGH")
    xm.page("dt-P-3", priority="HIGH")
    assert xm.post("/events", {"id": second["id"], "status": "TERMINATED"}).status_code == 200
    by_key = xm.get("/events", propertyName="selfheal_incident_key", propertyValue="dt-P-1", status="ACTIVE").json()
    assert [e["id"] for e in by_key["data"]] == [first["id"]]
    assert xm.get("/events", propertyName="Service", propertyValue="checkout").json()["total"] == 1  # #en suffix
    assert xm.get("/events", propertyName="Service#en", propertyValue="checkout").json()["total"] == 1
    assert xm.get("/events", propertyName="selfheal_incident_key", propertyValue="dt-P").json()["total"] == 0
    assert xm.get("/events", propertyName="selfheal_incident_key", propertyValue="dt-P",
                  propertyValueOperator="CONTAINS").json()["total"] == 3
    assert xm.get("/events", status="TERMINATED").json()["data"][0]["id"] == second["id"]
    assert xm.get("/events", priority="HIGH", status="ACTIVE").json()["total"] == 1
    assert xm.get("/events", propertyName="x").status_code == 400
    page = xm.get("/events", limit=2).json()
    assert page["count"] == 2 and page["total"] == 3 and page["links"]["next"].startswith("/api/xm/1/events?")
    rest = requests.get(xm.url + page["links"]["next"], auth=AUTH, timeout=10).json()
    assert rest["count"] == 1 and "next" not in rest["links"]
    assert len({e["id"] for e in page["data"] + rest["data"]}) == 3
    missing = xm.get("/events/does-not-exist")
    assert missing.status_code == 404 and set(missing.json()) == {"code", "reason", "message"}


def test_status_changes_and_annotations(xm):
    event = xm.page()
    suspended = xm.post("/events", {"id": event["id"], "status": "SUSPENDED"})
    assert suspended.status_code == 200 and suspended.json()["status"] == "SUSPENDED"
    assert xm.post("/events", {"id": event["id"], "status": "ACTIVE"}).json()["status"] == "ACTIVE"
    terminated = xm.post("/events", {"id": event["eventId"], "status": "TERMINATED"}).json()
    assert terminated["status"] == "TERMINATED" and terminated["terminated"]
    assert xm.post("/events", {"id": event["id"], "status": "ACTIVE"}).status_code == 409
    assert xm.post("/events", {"id": event["id"], "status": "CLOSED"}).status_code == 400
    assert xm.post("/events", {"id": "nope", "status": "TERMINATED"}).status_code == 404
    note = xm.post("/events/%s/annotations" % event["id"], {"comment": "restarted nginx"})
    assert note.status_code == 201 and note.json()["author"]["targetName"] == credentials.XMATTERS_USER
    assert xm.post("/events/%s/annotations" % event["id"], {}).status_code == 400
    listed = xm.get("/events/%s/annotations" % event["id"]).json()
    assert [a["comment"] for a in listed["data"]] == ["restarted nginx"]


def test_on_call_and_people(xm, sandbox):
    assert xm.get("/on-call").status_code == 400
    assert xm.get("/on-call", groups="Nobody").status_code == 404
    items = xm.get("/on-call", groups="Ops Primary,Database").json()["data"]
    assert [i["group"]["targetName"] for i in items] == ["Ops Primary", "Database"]
    assert [m["member"]["targetName"] for m in items[0]["members"]["data"]] == ["oncall.primary", "oncall.secondary"]
    assert [m["position"] for m in items[0]["members"]["data"]] == [1, 2]
    sandbox.call("POST", "/_sandbox/xmatters/on-call", {"group": "Ops Primary", "members": ["oncall.secondary"]})
    items = xm.get("/on-call", groups="Ops Primary").json()["data"]
    assert [m["member"]["targetName"] for m in items[0]["members"]["data"]] == ["oncall.secondary"]
    event = xm.page(recipients=[{"id": "Ops Primary", "recipientType": "GROUP"}])
    deliveries = xm.get("/events/%s/user-deliveries" % event["id"], at="2100-01-01T00:00:00Z").json()["data"]
    assert [d["person"]["targetName"] for d in deliveries] == ["oncall.secondary"]
    person = xm.get("/people", targetName="oncall.primary").json()["data"][0]
    assert person["firstName"] == "Pat" and xm.get("/people/%s" % person["id"]).json()["targetName"] == "oncall.primary"
    assert xm.get("/people/nobody").status_code == 404


class _Receiver(object):
    """A loopback HTTP server standing in for the response callback endpoint."""

    def __init__(self):
        self.received = []
        self.arrived = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", 0))
                owner.received.append((dict(self.headers), json.loads(self.rfile.read(length))))
                self.send_response(204)
                self.end_headers()
                owner.arrived.set()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/xmatters-callback" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_user_deliveries_and_response_callback(xm, sandbox):
    receiver = _Receiver()
    try:
        xm.config(callback_url=receiver.url, callback_headers={"Authorization": "Bearer callback-secret-1"})
        event = xm.page("dt-P-77", recipients=["Database"], responseOptions=[{"text": "Restart"}, {"text": "Ignore"}])
        path = "/events/%s/user-deliveries" % event["id"]
        assert xm.get(path).status_code == 400  # `at` is required
        assert xm.get(path, at="yesterday").status_code == 400
        assert xm.get(path, at="2000-01-01T00:00:00Z").json()["total"] == 0
        before = xm.get(path, at="2100-01-01T00:00:00+0000").json()["data"]
        pairs = [(d["person"]["targetName"], d["deliveryStatus"]) for d in before]
        assert pairs == [("dba.one", "DELIVERED"), ("dba.two", "DELIVERED")]
        assert all("response" not in d for d in before)
        admin = "/_sandbox/xmatters/respond"
        for bad in ({"event": "nope", "response": "Restart"}, {"event": event["id"], "response": "Reboot"},
                    {"event": event["id"], "response": "Restart", "recipient": "oncall.primary"}):
            with pytest.raises(Exception):
                sandbox.call("POST", admin, bad)
        answer = sandbox.call("POST", admin, {"event": event["eventId"], "recipient": "dba.two", "response": "restart",
                                              "annotation": "doing it"})
        assert answer["delivered_to"] == receiver.url
        after = xm.get(path, at="2100-01-01T00:00:00Z").json()["data"]
        assert after[1]["response"]["text"] == "Restart" and after[1]["response"]["received"]
        assert "response" not in after[0]
        assert receiver.arrived.wait(10)
        headers, payload = receiver.received[0]
        assert headers["Authorization"] == "Bearer callback-secret-1"
        assert payload["eventIdentifier"] == int(event["eventId"]) and payload["id"] == event["id"]
        assert payload["recipient"] == "dba.two" and payload["response"] == "Restart"
        assert payload["annotation"] == "doing it" and payload["device"] == "Work Email" and payload["date"]
        assert {"selfheal_incident_key": "dt-P-77"} in payload["eventProperties"]
        assert sandbox.outbound()[0]["status"] == 204
        terminated = xm.post("/events", {"id": event["id"], "status": "TERMINATED"})
        assert terminated.status_code == 200
        with pytest.raises(Exception):  # a terminated event takes no more responses
            sandbox.call("POST", admin, {"event": event["id"], "response": "Ignore"})
    finally:
        receiver.close()


def test_xmatters_fault_injection(xm, sandbox):
    sandbox.fault("/xmatters/api/xm/1/events", method="GET", times=1, status=503, headers={"Retry-After": "1"},
                  body={"code": 503, "reason": "Service Unavailable", "message": "maintenance"})
    first = xm.get("/events")
    assert first.status_code == 503 and first.headers["Retry-After"] == "1"
    assert xm.get("/events").status_code == 200
    sandbox.fault(TRIGGER_PATH, method="POST", times=1, drop=True)
    with pytest.raises(requests.ConnectionError):
        xm.trigger({})
    assert xm.trigger({}).status_code == 202


# --- PagerDuty Events v2 -----------------------------------------------------------------------------

def pd_state(sandbox):
    return sandbox.state()["pagerduty"]


def test_pagerduty_trigger_answers_202_and_generates_a_dedup_key(sandbox):
    response = pd(sandbox, pd_event("trigger"))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "success" and body["message"] == "Event processed"
    assert re.match(r"^[0-9a-f]{32}$", body["dedup_key"])
    keyed = pd(sandbox, pd_event("trigger", "srv01/HTTP")).json()
    assert keyed["dedup_key"] == "srv01/HTTP"
    state = pd_state(sandbox)
    assert [a["dedup_key"] for a in state["alerts"]] == [body["dedup_key"], "srv01/HTTP"]
    assert KEY not in json.dumps(sandbox.state())  # routing keys are not kept in the state


def test_pagerduty_dedup_semantics(sandbox):
    assert pd(sandbox, pd_event("acknowledge", "k1")).status_code == 202  # unknown: dropped
    assert pd(sandbox, pd_event("resolve", "k1")).status_code == 202
    assert pd(sandbox, pd_event("trigger", "k1", summary="first")).status_code == 202
    assert pd(sandbox, pd_event("trigger", "k1", summary="second")).status_code == 202  # adds to the open alert
    assert pd(sandbox, pd_event("acknowledge", "k1", routing_key=OTHER_KEY)).status_code == 202  # other key: dropped
    assert pd(sandbox, pd_event("acknowledge", "k1")).status_code == 202
    assert pd(sandbox, pd_event("trigger", "k1")).status_code == 202  # stays acknowledged
    assert pd(sandbox, pd_event("resolve", "k1")).status_code == 202
    assert pd(sandbox, pd_event("acknowledge", "k1")).status_code == 202  # resolved: dropped
    assert pd(sandbox, pd_event("trigger", "k1", summary="again")).status_code == 202  # opens a NEW alert
    state = pd_state(sandbox)
    alerts = [a for a in state["alerts"] if a["dedup_key"] == "k1"]
    assert [a["status"] for a in alerts] == ["resolved", "triggered"]
    assert alerts[0]["summary"] == "first" and alerts[1]["summary"] == "again"  # details of the opening trigger
    summaries = [e.get("summary") for e in state["events"] if e["event_action"] == "trigger"]
    assert summaries == ["first", "second", "Disk full", "again"]
    assert [e["event_action"] for e in alerts[0]["log"]] == ["trigger", "trigger", "acknowledge", "trigger", "resolve"]
    assert [e["outcome"] for e in state["events"]] == ["dropped", "dropped", "created", "deduplicated", "dropped",
                                                       "acknowledged", "deduplicated", "resolved", "dropped", "created"]


@pytest.mark.parametrize("change, error", [
    (lambda b: b.update(routing_key="short"), "Length of 'routing_key' is incorrect (should be 32 characters)"),
    (lambda b: b.update(routing_key="R0UT1NGK3Y5ANDB0X00000000000000!"), "'routing_key' cannot contain non-alphanumeric"),
    (lambda b: b.update(routing_key="ABCDEF0123456789ABCDEF0123456789"), "Invalid routing key"),
    (lambda b: b.pop("routing_key"), "'routing_key' is missing or blank"),
    (lambda b: b.update(event_action="escalate"), "'event_action'"),
    (lambda b: b["payload"].pop("summary"), "'payload.summary' is missing"),
    (lambda b: b["payload"].update(summary="x" * 1025), "'payload.summary' is too long"),
    (lambda b: b["payload"].pop("source"), "'payload.source' is missing"),
    (lambda b: b["payload"].update(severity="fatal"), "'payload.severity' is invalid"),
    (lambda b: b.pop("payload"), "'payload' is missing"),
    (lambda b: b.update(dedup_key="k" * 256), "'dedup_key' must be a string of at most 255"),
    (lambda b: b.update(images=[{"src": "http://insecure/x.png"}]), "HTTPS"),
    (lambda b: b.update(event_action="resolve", dedup_key=None), "'dedup_key' is required for resolve"),
])
def test_pagerduty_invalid_events_get_400(sandbox, change, error):
    body = pd_event("trigger", "k")
    change(body)
    body = {k: v for k, v in body.items() if v is not None}
    response = pd(sandbox, body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["status"] == "invalid event" and answer["message"] == "Event object is invalid"
    assert any(error in item for item in answer["errors"]), answer["errors"]
    assert not pd_state(sandbox)["alerts"]


def test_pagerduty_summary_of_exactly_1024_is_accepted_and_bad_json_is_unrecognized(sandbox):
    assert pd(sandbox, pd_event("trigger", "k", summary="x" * 1024)).status_code == 202
    bad = pd(sandbox, None, raw=b"{not json")
    assert bad.status_code == 400 and bad.json()["status"] == "Unrecognized object"
    assert pd(sandbox, None, raw=b"[1, 2]").status_code == 400


def test_pagerduty_rate_limit_per_routing_key(sandbox):
    assert sandbox.call("GET", "/_sandbox/pagerduty/config")["rate_limit"] == 120
    sandbox.call("POST", "/_sandbox/pagerduty/config", {"rate_limit": 3})
    statuses = [pd(sandbox, pd_event("trigger", "k%d" % i)).status_code for i in range(4)]
    assert statuses == [202, 202, 202, 429]
    assert pd(sandbox, pd_event("trigger", "other", routing_key=OTHER_KEY)).status_code == 202  # per key
    throttled = pd(sandbox, pd_event("trigger", "k9"))
    assert throttled.status_code == 429 and throttled.json()["status"] == "throttle event"
    sandbox.call("POST", "/_sandbox/pagerduty/config", {"rate_limit": 3, "window": 0.2})
    time.sleep(0.25)  # the window itself is time: nothing to await
    assert pd(sandbox, pd_event("trigger", "k10")).status_code == 202
    assert len(pd_state(sandbox)["alerts"]) == 5


def test_pagerduty_fault_injection(sandbox):
    sandbox.fault("/pagerduty/v2/enqueue", times=2, status=502, body={"status": "error"})
    assert [pd(sandbox, pd_event("trigger", "k")).status_code for dummy in range(3)] == [502, 502, 202]
    assert len(pd_state(sandbox)["alerts"]) == 1


# --- xMatters: encoded paging links, every events filter, who responded what and when -----------------------

def test_links_next_is_url_encoded_so_a_filter_value_with_an_ampersand_survives_page_two(xm):
    key = "dt-P 9&status=TERMINATED#x"
    created = [xm.page(key) for dummy in range(3)]
    xm.page("dt-P-other")
    first = xm.get("/events", propertyName="selfheal_incident_key", propertyValue=key, limit=2).json()
    assert first["total"] == 3 and first["count"] == 2
    assert "&status=" not in first["links"]["next"] and "%26status%3DTERMINATED%23x" in first["links"]["next"]
    assert "%26" in first["links"]["self"]
    second = requests.get(xm.url + first["links"]["next"], auth=AUTH, timeout=10).json()
    assert second["total"] == 3 and second["count"] == 1 and "next" not in second["links"]
    assert {e["id"] for e in first["data"] + second["data"]} == {e["id"] for e in created}


def test_the_collections_xmatters_client_follows_the_encoded_links(xm, sandbox):
    from ansible_collections.selfheal.devops.plugins.module_utils import _http, oncall

    key = "dt-P 7&a=b"
    ids = {xm.page(key)["id"] for dummy in range(3)}
    client = _http.Client(xm.url, service="xMatters", auth=_http.basic_auth(*AUTH))
    service = oncall.XMatters(client, sandbox.url + TRIGGER_PATH)
    query = {"propertyName": "selfheal_incident_key", "propertyValue": key, "limit": 1, "embed": "properties"}
    found = service._collect("/api/xm/1/events", query)  # limit 1: every event on its own page
    assert {e["id"] for e in found} == ids and all(e["properties"]["selfheal_incident_key"] == key for e in found)


def test_events_filters_beyond_status_and_properties(xm, sandbox):
    low = xm.page("dt-P-1", priority="LOW", recipients=[{"id": "Database", "recipientType": "GROUP"}],
                  properties={"summary": "Disk full on db-01", "service": "orders"})
    middle = xm.page("dt-P-2", priority="MEDIUM", recipients=["oncall.secondary"], properties={"summary": "Checkout slow"})
    high = xm.page("dt-P-3", priority="HIGH", properties={"summary": "Disk latency", "service": "checkout"})

    def ids(**params):
        response = xm.get("/events", **params)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["data"]]

    assert ids() == [high["id"], middle["id"], low["id"]]  # newest first by default
    assert ids(sortBy="START_TIME", sortOrder="ASCENDING") == [low["id"], middle["id"], high["id"]]
    assert ids(sortBy="PRIORITY", sortOrder="DESCENDING") == [high["id"], middle["id"], low["id"]]
    assert ids(targetedRecipients="Database") == [low["id"]]
    assert ids(resolvedUsers="dba.two") == [low["id"]]  # notified through the group
    assert ids(resolvedUsers="oncall.secondary") == [high["id"], middle["id"]]  # directly, and through Ops Primary
    assert ids(submitter=credentials.XMATTERS_USER) == [high["id"], middle["id"], low["id"]]
    assert ids(submitter="oncall.primary") == []
    assert ids(search="disk") == [high["id"], low["id"]]
    assert ids(search="disk db-01") == [low["id"]]  # every term
    assert ids(search="orders", fields="NAME") == [] and ids(search="orders", fields="PROPERTIES") == [low["id"]]
    assert ids(incidentId=middle["incident"]) == [middle["id"]]
    assert ids(eventType="USER") == [high["id"], middle["id"], low["id"]] and ids(eventType="SYSTEM") == []
    assert ids(plan="Selfheal Sandbox", form=low["form"]["id"]) == [high["id"], middle["id"], low["id"]]
    assert ids(plan="Another plan") == []
    assert ids(propertyName="service,summary", propertyValue="orders,disk", propertyValueOperator="EQUALS,CONTAINS") == [
        low["id"]]
    assert ids(**{"from": high["created"]}) == [high["id"]]
    assert ids(to=low["created"]) == [low["id"]]
    for params in ({"status": "OPEN"}, {"priority": "URGENT"}, {"sortBy": "SEVERITY"}, {"embed": "messages"},
                   {"submitterid": "x"}, {"fields": "NAME"}, {"from": "yesterday"},
                   {"propertyName": "a,b", "propertyValue": "x"}):
        bad = xm.get("/events", **params)
        assert bad.status_code == 400 and set(bad.json()) == {"code", "reason", "message"}, params


def test_status_as_at_a_past_time(xm):
    event = xm.page("dt-P-5")
    created = event["created"]  # as at its creation (ms), the event is ACTIVE; it is terminated afterwards
    assert xm.post("/events", {"id": event["id"], "status": "TERMINATED"}).status_code == 200
    assert xm.get("/events/" + event["id"]).json()["status"] == "TERMINATED"
    then = xm.get("/events/" + event["id"], at=created).json()
    assert then["status"] == "ACTIVE" and then["terminated"] is None
    assert xm.get("/events", at=created, status="ACTIVE").json()["total"] == 1
    assert xm.get("/events", status="ACTIVE").json()["total"] == 0
    assert xm.get("/events", at="2000-01-01T00:00:00Z").json()["total"] == 0
    assert xm.get("/events/" + event["id"], at="2000-01-01T00:00:00Z").status_code == 404


def test_a_report_reads_who_responded_what_and_when(xm, sandbox):
    event = xm.page("dt-P-9", recipients=["Database"], responseOptions=["Restart", "Ignore", "Escalate"])
    admin = "/_sandbox/xmatters/respond"
    sandbox.call("POST", admin, {"event": event["id"], "recipient": "dba.two", "response": "Ignore"})
    # a moment strictly between the two answers (the API's times are in milliseconds: keep them 10 ms apart)
    time.sleep(0.01)
    between = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".%03dZ" % (int(time.time() * 1000) % 1000)
    time.sleep(0.01)
    sandbox.call("POST", admin, {"event": event["id"], "recipient": "dba.one", "response": "Restart",
                                 "annotation": "restarting the database"})
    xm.post("/events/%s/annotations" % event["id"], {"comment": "selfheal: restart done"})
    now = "2100-01-01T00:00:00Z"
    deliveries = xm.get("/events/%s/user-deliveries" % event["id"], at=now).json()["data"]
    answers = sorted((d["response"]["received"], d["person"]["targetName"], d["response"]["text"]) for d in deliveries)
    assert [(who, what) for when, who, what in answers] == [("dba.two", "Ignore"), ("dba.one", "Restart")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", when) for when, who, what in answers)
    notification = next(d for d in deliveries if d["person"]["targetName"] == "dba.one")["notifications"]["data"][0]
    assert notification["responded"] == answers[1][0]
    assert [(r["text"], r["comment"]) for r in notification["responses"]["data"]] == [("Restart", "restarting the database")]
    earlier = xm.get("/events/%s/user-deliveries" % event["id"], at=between).json()["data"]
    assert [(d["person"]["targetName"], (d.get("response") or {}).get("text")) for d in earlier] == [
        ("dba.one", None), ("dba.two", "Ignore")]  # as it stood then: dba.one had not answered yet
    full = xm.get("/events/" + event["id"], embed="annotations,responseOptions,recipients").json()
    notes = [(a["author"]["targetName"], a["comment"]) for a in full["annotations"]["data"]]
    assert notes == [("dba.one", "restarting the database"), (credentials.XMATTERS_USER, "selfheal: restart done")]
    assert all(a["created"] for a in full["annotations"]["data"])
    assert [o["text"] for o in full["responseOptions"]["data"]] == ["Restart", "Ignore", "Escalate"]
    listed = xm.get("/events", propertyName="selfheal_incident_key", propertyValue="dt-P-9", embed="annotations").json()
    assert [a["comment"] for a in listed["data"][0]["annotations"]["data"]] == [
        "restarting the database", "selfheal: restart done"]
    single = xm.get("/events/%s/annotations/%s" % (event["id"], full["annotations"]["data"][1]["id"])).json()
    assert single["comment"] == "selfheal: restart done"
