"""The sandbox's Dynatrace API v2 honours the documented contract (shared/docs/api-contracts.md section 1)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

import credentials

AUTH = {"Authorization": "Api-Token " + credentials.DYNATRACE_TOKEN}


@pytest.fixture
def api(sandbox):
    return sandbox.url + credentials.DYNATRACE_PREFIX + "/api/v2"


def open_problem(sandbox, **spec):
    spec.setdefault("title", "Process unavailable")
    spec.setdefault("entities", [{"type": "HOST", "name": "web-01"}, {"type": "SERVICE", "name": "checkout"}])
    return sandbox.call("POST", "/_sandbox/dynatrace/problems", spec)


@pytest.mark.parametrize("headers, params, message", [
    ({}, {}, "Missing authorization parameter."),
    ({"Authorization": "Api-Token dt0c01.WRONG"}, {}, "Token Authentication failed"),
    ({"Authorization": "Bearer " + credentials.DYNATRACE_TOKEN}, {}, "Missing authorization parameter."),
])
def test_wrong_auth_is_401_with_the_error_envelope(api, headers, params, message):
    response = requests.get(api + "/problems", headers=headers, params=params)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": 401, "message": message}}


def test_api_token_query_parameter_is_accepted(api):
    assert requests.get(api + "/problems", params={"api-token": credentials.DYNATRACE_TOKEN}).status_code == 200


def test_problem_shape_and_selectors(sandbox, api):
    first = open_problem(sandbox, tags={"app": "checkout", "critical": None}, management_zones=["prod"])
    open_problem(sandbox, title="Disk full", severity="RESOURCE_CONTENTION", entities=[{"type": "HOST", "name": "db-01"}])
    body = requests.get(api + "/problems", headers=AUTH, params={"problemSelector": 'status("open"),displayId("%s")' % first["displayId"]}).json()
    assert body["totalCount"] == 1 and body["nextPageKey"] is None and body["warnings"] == []
    problem = body["problems"][0]
    assert problem["problemId"] == first["problemId"] and problem["endTime"] == -1 and problem["status"] == "OPEN"
    assert problem["impactedEntities"][0]["entityId"]["type"] == "HOST"  # entityId is an object
    assert {"context": "CONTEXTLESS", "key": "critical", "stringRepresentation": "critical"} in problem["entityTags"]
    assert "evidenceDetails" not in problem and "recentComments" not in problem
    by_entity = requests.get(api + "/problems", headers=AUTH, params={"entitySelector": 'type("HOST"),entityName.equals("db-01")'}).json()
    assert [p["title"] for p in by_entity["problems"]] == ["Disk full"]
    by_zone = requests.get(api + "/problems", headers=AUTH, params={"problemSelector": 'managementZones("prod")'}).json()
    assert by_zone["totalCount"] == 1
    by_tag = requests.get(api + "/problems", headers=AUTH, params={"problemSelector": 'entityTags("app:checkout")'}).json()
    assert by_tag["totalCount"] == 1
    by_severity = requests.get(api + "/problems", headers=AUTH, params={"problemSelector": 'severityLevel("RESOURCE_CONTENTION")'}).json()
    assert by_severity["totalCount"] == 1


@pytest.mark.parametrize("params, path", [
    ({"pageSize": "501"}, "pageSize"),
    ({"problemSelector": "status(open)"}, "problemSelector/entitySelector/from/to"),
    ({"entitySelector": 'entityName.equals("x")'}, "entitySelector"),
    ({"fields": "everything"}, "fields"),
    ({"nextPageKey": "garbage!"}, "nextPageKey"),
])
def test_bad_queries_are_400_with_constraint_violations(api, params, path):
    response = requests.get(api + "/problems", headers=AUTH, params=params)
    assert response.status_code == 400
    violations = response.json()["error"]["constraintViolations"]
    assert violations[0]["path"] == path and violations[0]["parameterLocation"] == "QUERY"


def test_pagination_next_page_key_alone_but_fields_per_page(sandbox, api):
    sandbox.call("POST", "/_sandbox/dynatrace/problems/bulk", {"count": 1200})
    first = requests.get(api + "/problems", headers=AUTH, params={"pageSize": 500, "fields": "evidenceDetails"}).json()
    assert first["totalCount"] == 1200 and len(first["problems"]) == 500 and "evidenceDetails" in first["problems"][0]
    mixed = requests.get(api + "/problems", headers=AUTH, params={"nextPageKey": first["nextPageKey"], "pageSize": 500})
    assert mixed.status_code == 400
    second = requests.get(api + "/problems", headers=AUTH, params={"nextPageKey": first["nextPageKey"]}).json()
    assert len(second["problems"]) == 500 and "evidenceDetails" not in second["problems"][0]
    third = requests.get(api + "/problems", headers=AUTH, params={"nextPageKey": second["nextPageKey"], "fields": "evidenceDetails"}).json()
    assert len(third["problems"]) == 200 and third["nextPageKey"] is None and "evidenceDetails" in third["problems"][0]
    ids = {p["problemId"] for page in (first, second, third) for p in page["problems"]}
    assert len(ids) == 1200


def test_time_window(sandbox, api):
    open_problem(sandbox)
    assert requests.get(api + "/problems", headers=AUTH, params={"from": "now-5m"}).json()["totalCount"] == 1
    assert requests.get(api + "/problems", headers=AUTH, params={"to": "now-1h", "from": "now-2h"}).json()["totalCount"] == 0
    assert requests.get(api + "/problems", headers=AUTH, params={"from": "2020-01-01T00:00:00Z"}).json()["totalCount"] == 1


def test_get_close_and_comments(sandbox, api):
    problem = open_problem(sandbox)
    url = api + "/problems/" + problem["problemId"]
    assert requests.get(api + "/problems/nope", headers=AUTH).json()["error"]["code"] == 404
    created = requests.post(url + "/comments", headers=AUTH, json={"message": "remediation started", "context": "selfheal.devops"})
    assert created.status_code == 201 and created.content == b""
    assert requests.post(url + "/comments", headers=AUTH, json={"context": "x"}).status_code == 400
    for number in range(11):
        requests.post(url + "/comments", headers=AUTH, json={"message": "note %d" % number})
    page = requests.get(url + "/comments", headers=AUTH).json()
    assert page["totalCount"] == 12 and page["pageSize"] == 10 and len(page["comments"]) == 10 and page["nextPageKey"]
    rest = requests.get(url + "/comments", headers=AUTH, params={"nextPageKey": page["nextPageKey"]}).json()
    assert len(rest["comments"]) == 2 and rest["nextPageKey"] is None
    ours = next(c for c in page["comments"] + rest["comments"] if c["context"] == "selfheal.devops")
    assert set(ours) == {"id", "content", "authorName", "context", "createdAtTimestamp"}
    assert requests.put(url + "/comments/" + ours["id"], headers=AUTH, json={"message": "edited"}).status_code == 204
    assert requests.get(url + "/comments/" + ours["id"], headers=AUTH).json()["content"] == "edited"
    assert requests.delete(url + "/comments/" + ours["id"], headers=AUTH).status_code == 204
    assert requests.post(url + "/close", headers=AUTH, json={}).status_code == 400
    closed = requests.post(url + "/close", headers=AUTH, json={"message": "fixed by selfheal"})
    assert closed.status_code == 200
    body = closed.json()
    assert body["closing"] is True and body["problemId"] == problem["problemId"] and body["comment"]["content"] == "fixed by selfheal"
    again = requests.post(url + "/close", headers=AUTH, json={"message": "fixed by selfheal"})
    assert again.status_code == 204 and again.content == b""
    assert requests.get(url, headers=AUTH).json()["status"] == "CLOSED"


def test_events_ingest_per_entity_results(sandbox, api):
    open_problem(sandbox, entities=[{"type": "HOST", "name": "web-01"}, {"type": "HOST", "name": "web-02"}])
    two = requests.post(api + "/events/ingest", headers=AUTH, json={
        "eventType": "CUSTOM_INFO", "title": "restarted", "entitySelector": 'type("HOST")', "properties": {"selfheal.marker": "dt-P-1"}})
    assert two.status_code == 201 and two.json()["reportCount"] == 2
    assert all(r["status"] == "OK" and r["correlationId"] for r in two.json()["eventIngestResults"])
    sandbox.call("POST", "/_sandbox/dynatrace/settings", {"ingest_reject_types": ["HOST"]})
    rejected = requests.post(api + "/events/ingest", headers=AUTH, json={"eventType": "CUSTOM_INFO", "title": "x", "entitySelector": 'type("HOST")'})
    assert rejected.status_code == 201 and {r["status"] for r in rejected.json()["eventIngestResults"]} == {"INVALID_ENTITY_TYPE"}
    assert requests.post(api + "/events/ingest", headers=AUTH, json={"eventType": "NOPE", "title": "x"}).status_code == 400
    assert requests.post(api + "/events/ingest", headers=AUTH, json={"eventType": "CUSTOM_INFO"}).status_code == 400
    too_many = {"k%d" % n: "v" for n in range(101)}
    assert requests.post(api + "/events/ingest", headers=AUTH, json={"eventType": "CUSTOM_INFO", "title": "x", "properties": too_many}).status_code == 400


def test_rate_limit_headers(sandbox, api):
    sandbox.call("POST", "/_sandbox/dynatrace/settings", {"rate_limits": {"/problems": {"limit": 2, "window": 60}}})
    statuses = [requests.get(api + "/problems", headers=AUTH) for dummy in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    limited = statuses[-1]
    assert limited.headers["X-RateLimit-Limit"] == "2" and limited.headers["X-RateLimit-Remaining"] == "0"
    assert len(limited.headers["X-RateLimit-Reset"]) >= 16  # microseconds
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["error"]["code"] == 429


def test_fault_injection_applies_to_dynatrace_routes(sandbox, api):
    sandbox.fault(credentials.DYNATRACE_PREFIX + "/api/v2/problems", status=503, times=2)
    assert [requests.get(api + "/problems", headers=AUTH).status_code for dummy in range(3)] == [503, 503, 200]


class Receiver(object):
    """A loopback webhook receiver that records what Dynatrace posts."""

    def __init__(self):
        self.received = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.received.append((dict(self.headers), json.loads(body)))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True).start()
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_port

    def wait(self, count, timeout=10):
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout), self.received
        return self.received


def test_problem_notifications_open_merge_resolve(sandbox):
    receiver = Receiver()
    try:
        sandbox.call("POST", "/_sandbox/dynatrace/webhook", {"url": receiver.url, "headers": {"Authorization": "Bearer hook-secret"}})
        problem = open_problem(sandbox, tags={"app": "checkout"})
        headers, body = receiver.wait(1)[0]
        assert headers["Authorization"] == "Bearer hook-secret"
        assert body["PID"] == problem["problemId"] and body["State"] == "OPEN"
        assert body["ProblemID"] == problem["displayId"][2:]
        assert body["ImpactedEntities"][0] == {"type": "HOST", "name": "web-01", "entity": problem["impactedEntities"][0]["entityId"]["id"]}
        assert body["ProblemDetailsJSON"]["ID"] == problem["problemId"] and body["Tags"] == "app:checkout"
        sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/update" % problem["displayId"], {"entities": [{"type": "HOST", "name": "web-02"}]})
        assert len(receiver.wait(2)[1][1]["ImpactedEntities"]) == 3
        sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/resolve" % problem["displayId"], {})
        assert receiver.wait(3)[2][1]["State"] == "RESOLVED"
        template = '{"PID":"{PID}","State":"{State}","ProblemDetailsJSONv2":{ProblemDetailsJSONv2}}'
        sandbox.call("POST", "/_sandbox/dynatrace/webhook", {"template": template})
        second = open_problem(sandbox)
        v2 = receiver.wait(4)[3][1]["ProblemDetailsJSONv2"]
        assert v2["problemId"] == second["problemId"] and v2["evidenceDetails"]["totalCount"] == 1
        assert all(o["status"] == 200 for o in sandbox.outbound())
    finally:
        receiver.server.shutdown()
