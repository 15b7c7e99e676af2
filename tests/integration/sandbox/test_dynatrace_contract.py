"""The sandbox's Dynatrace API v2 honours the documented contract (Dynatrace Environment API v2: problems, events ingest,
the entity selector; see tests/sandbox/README.md)."""

import base64
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from sandbox import credentials

AUTH = {"Authorization": "Api-Token " + credentials.DYNATRACE_TOKEN}
SERVER = os.path.join(os.path.dirname(credentials.__file__), "server.py")


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
    ({"problemSelector": "status(open)"}, "problemSelector"),
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


# --- selectors: every documented criterion applied, or a 400; never ignored ------------------------------------

def titles(api, **params):
    response = requests.get(api + "/problems", headers=AUTH, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return sorted(p["title"] for p in response.json()["problems"])


@pytest.fixture
def estate(sandbox):
    """Three problems with different zones, entity types, tags, alerting profiles and maintenance."""
    open_problem(sandbox, title="checkout slow", management_zones=["prod"], problem_filters=["Payments team"],
                 entities=[{"type": "SERVICE", "name": "checkout", "tags": ["[Kubernetes]app:checkout", "tier:web"]},
                           {"type": "HOST", "name": "web-01", "tags": {"os": "linux"}}])
    open_problem(sandbox, title="db disk full", management_zones=["prod", "databases"], tags={"app": "db", "dba": None},
                 entities=[{"type": "HOST", "name": "db-01"}], problem_filters=["Self-healing", "DBA pager"])
    open_problem(sandbox, title="staging down", management_zones=["staging"], under_maintenance=True,
                 entities=[{"type": "PROCESS_GROUP_INSTANCE", "name": "Web-Staging"}], tags=["time:10\\:30"])


def test_problem_selector_zone_ids_entity_types_alerting_profiles_and_maintenance(sandbox, api, estate):
    zones = {z["name"]: z["id"] for p in requests.get(api + "/problems", headers=AUTH, timeout=10).json()["problems"]
             for z in p["managementZones"]}
    assert titles(api, problemSelector='managementZoneIds("%s")' % zones["databases"]) == ["db disk full"]
    assert titles(api, problemSelector='managementZoneIds("%s","%s")' % (zones["staging"], zones["databases"])) == [
        "db disk full", "staging down"]
    assert titles(api, problemSelector='managementZoneIds("1")') == []
    assert titles(api, problemSelector='affectedEntityTypes("SERVICE")') == ["checkout slow"]
    assert titles(api, problemSelector='affectedEntityTypes("PROCESS_GROUP_INSTANCE","HOST")') == [
        "checkout slow", "db disk full", "staging down"]
    assert titles(api, problemSelector='problemFilterNames("pager")') == ["db disk full"]  # contains, any case
    assert titles(api, problemSelector='problemFilterNames("PAYMENTS")') == ["checkout slow"]
    assert titles(api, problemSelector='problemFilterNames.equals("payments")') == []
    assert titles(api, problemSelector='problemFilterNames.equals("payments TEAM")') == ["checkout slow"]
    ids = {f["name"]: f["id"] for p in requests.get(api + "/problems", headers=AUTH, timeout=10).json()["problems"]
           for f in p["problemFilters"]}
    assert titles(api, problemSelector='problemFilterIds("%s")' % ids["DBA pager"]) == ["db disk full"]
    assert titles(api, problemSelector="underMaintenance(true)") == ["staging down"]
    assert titles(api, problemSelector='underMaintenance("false")') == ["checkout slow", "db disk full"]
    assert titles(api, problemSelector='entityTags("[Kubernetes]app:checkout")') == ["checkout slow"]
    assert titles(api, problemSelector='entityTags("[AWS]app:checkout")') == []
    assert titles(api, problemSelector='entityTags("app")') == ["checkout slow", "db disk full"]  # key: any value
    assert titles(api, problemSelector='entityTags("time:10\\:30")') == ["staging down"]  # escaped colon in the value
    assert titles(api, problemSelector='managementZones("prod"),affectedEntityTypes("HOST")') == [
        "checkout slow", "db disk full"]


def test_entity_selector_tags_names_zones_and_negation(sandbox, api, estate):
    zones = {z["name"]: z["id"] for p in requests.get(api + "/problems", headers=AUTH, timeout=10).json()["problems"]
             for z in p["managementZones"]}
    assert titles(api, entitySelector='type("SERVICE"),tag("[Kubernetes]app:checkout")') == ["checkout slow"]
    assert titles(api, entitySelector='type(HOST),tag("os:linux")') == ["checkout slow"]  # unquoted type is fine
    assert titles(api, entitySelector='type("HOST"),tag("os:windows","dba")') == ["db disk full"]  # any of the tags
    assert titles(api, entitySelector='type("HOST"),not(tag("os:linux"))') == ["db disk full"]
    assert titles(api, entitySelector='type("HOST"),entityName.equals("DB-01")') == ["db disk full"]  # any case
    assert titles(api, entitySelector='type("HOST"),caseSensitive(entityName.equals("DB-01"))') == []
    assert titles(api, entitySelector='type("PROCESS_GROUP_INSTANCE"),entityName.startsWith("web-")') == ["staging down"]
    assert titles(api, entitySelector='type("HOST"),entityName("DB-")') == ["db disk full"]  # contains, any case
    assert titles(api, entitySelector='type("HOST"),entityName.in("web-01","db-01")') == ["checkout slow", "db disk full"]
    assert titles(api, entitySelector='type("HOST"),mzName("databases")') == ["db disk full"]
    assert titles(api, entitySelector='type("HOST"),mzId(%s)' % zones["prod"]) == ["checkout slow", "db disk full"]
    assert titles(api, entitySelector='type("SERVICE"),mzName("staging")') == []


@pytest.mark.parametrize("params, path, words", [
    ({"problemSelector": 'managementZoneIds(123)'}, "problemSelector", "quoted"),
    ({"problemSelector": 'underMaintenance("maybe")'}, "problemSelector", "true or false"),
    ({"problemSelector": 'severityLevel("SEVERE")'}, "problemSelector", "severityLevel"),
    ({"problemSelector": 'status("open","closed")'}, "problemSelector", "one value"),
    ({"problemSelector": 'text("%s")' % ("x" * 31)}, "problemSelector", "30"),
    ({"problemSelector": 'healthState("HEALTHY")'}, "problemSelector", "unknown criterion"),
    ({"entitySelector": 'type("HOST"),healthState("HEALTHY")'}, "entitySelector", "not supported"),
    ({"entitySelector": 'type("HOST"),toRelationships.isProcessOf(type("PROCESS_GROUP_INSTANCE"))'}, "entitySelector",
     "not supported"),
    ({"entitySelector": 'type("HOST"),type("SERVICE")'}, "entitySelector", "one type"),
    ({"entitySelector": 'type("HOST","SERVICE")'}, "entitySelector", "exactly one"),
    ({"entitySelector": 'entityId("HOST-1","SERVICE-1")'}, "entitySelector", "same type"),
    ({"entitySelector": 'type("HOST"),not(type("SERVICE"))'}, "entitySelector", "not()"),
    ({"entitySelector": 'type("HOST"),tag("a"'}, "entitySelector", "expected"),
    ({"entitySelector": 'type("HOST"),entityName.equals("%s")' % ("x" * 2000)}, "entitySelector", "2,000"),
    ({"sort": "relevance"}, "sort", "text()"),
    ({"from": "2021-01-25"}, "from", "cannot parse"),
    ({"to": "now-30s"}, "to", "cannot parse"),
])
def test_selectors_the_sandbox_cannot_honour_are_400_never_ignored(sandbox, api, estate, params, path, words):
    response = requests.get(api + "/problems", headers=AUTH, params=params, timeout=10)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["message"] == "Constraints violated."
    assert error["constraintViolations"][0]["path"] == path and words in error["constraintViolations"][0]["message"]


def test_text_search_covers_title_events_display_id_and_entity_ids_and_sorts_by_relevance(sandbox, api):
    in_title = open_problem(sandbox, title="Disk full on db-01", evidence="Low disk space")
    in_event = open_problem(sandbox, title="Slow responses", evidence="disk latency high")
    other = open_problem(sandbox, title="Process crashed", entities=[{"type": "HOST", "name": "app-01"}])
    assert titles(api, problemSelector='text("DISK")') == ["Disk full on db-01", "Slow responses"]
    assert titles(api, problemSelector='text("%s")' % other["displayId"].lower()) == ["Process crashed"]
    entity = other["affectedEntities"][0]["entityId"]["id"]
    assert titles(api, problemSelector='text("%s")' % entity[:20]) == ["Process crashed"]
    ranked = requests.get(api + "/problems", headers=AUTH, timeout=10, params={
        "problemSelector": 'text("disk")', "sort": "-relevance"}).json()["problems"]
    assert [p["problemId"] for p in ranked] == [in_title["problemId"], in_event["problemId"]]
    ranked = requests.get(api + "/problems", headers=AUTH, timeout=10, params={
        "problemSelector": 'text("disk")', "sort": "+relevance"}).json()["problems"]
    assert [p["problemId"] for p in ranked] == [in_event["problemId"], in_title["problemId"]]


def test_sort_by_status_puts_open_problems_first(sandbox, api):
    first = open_problem(sandbox, title="old, still open", start_time=int(time.time() * 1000) - 60000)
    second = open_problem(sandbox, title="newer, closed")
    sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/resolve" % second["displayId"], {})
    listed = requests.get(api + "/problems", headers=AUTH, timeout=10, params={"sort": "+status,-startTime"}).json()
    assert [p["problemId"] for p in listed["problems"]] == [first["problemId"], second["problemId"]]
    listed = requests.get(api + "/problems", headers=AUTH, timeout=10, params={"sort": "-status"}).json()
    assert [p["problemId"] for p in listed["problems"]] == [second["problemId"], first["problemId"]]


# --- from / to --------------------------------------------------------------------------------------------------

def test_times_without_an_offset_are_utc_not_local_time(tmp_path):
    """A sandbox whose local zone is New York still reads 10:00 without an offset as 10:00 UTC."""
    zoned = SandboxProcess(tmp_path, env={"TZ": "America/New_York"})
    try:
        api = zoned.url + credentials.DYNATRACE_PREFIX + "/api/v2"
        start = 1767261600000  # 2026-01-01T10:00:00Z
        open_problem(zoned, title="at ten utc", start_time=start, end_time=start + 60000)
        assert titles(api, **{"from": "2026-01-01T09:59:00", "to": "2026-01-01T10:00:30"}) == ["at ten utc"]
        assert titles(api, **{"from": "2026-01-01 09:59", "to": "2026-01-01 10:00:30.5"}) == ["at ten utc"]
        assert titles(api, **{"from": "2026-01-01T04:59:00-05:00", "to": "2026-01-01T05:00:30-05:00"}) == ["at ten utc"]
        assert titles(api, **{"from": "2026-01-01T14:59:00", "to": "2026-01-01T15:00:30"}) == []  # 10:00 in New York
        assert titles(api, **{"from": str(start - 1000), "to": str(start)}) == ["at ten utc"]  # milliseconds
        assert titles(api, **{"from": str(start + 1), "to": str(start + 59999)}) == []  # neither start nor end inside
    finally:
        zoned.stop()


def test_relative_times_now_2h_and_now_30d(sandbox, api):
    now = int(time.time() * 1000)
    day = 86400000
    open_problem(sandbox, title="10 days ago", start_time=now - 10 * day, end_time=now - 10 * day + 60000)
    open_problem(sandbox, title="40 days ago", start_time=now - 40 * day, end_time=now - 40 * day + 60000)
    open_problem(sandbox, title="open for 3 h", start_time=now - 3 * 3600000)
    open_problem(sandbox, title="just now")
    assert titles(api) == ["just now", "open for 3 h"]  # default now-2h: an open problem's end is now
    assert titles(api, **{"from": "now-2h", "to": "now-1h"}) == []
    assert titles(api, **{"from": "now-30d"}) == ["10 days ago", "just now", "open for 3 h"]
    assert titles(api, **{"from": "now-1y", "to": "now-30d"}) == ["40 days ago"]
    assert titles(api, **{"from": "now-2M/d", "to": "now-5w"}) == ["40 days ago"]


def test_the_timeframe_of_a_paged_query_is_kept_on_later_pages(sandbox, api):
    sandbox.call("POST", "/_sandbox/dynatrace/problems/bulk", {"count": 3})
    first = requests.get(api + "/problems", headers=AUTH, timeout=10, params={"pageSize": 1, "from": "now-5m"}).json()
    assert first["totalCount"] == 3
    second = requests.get(api + "/problems", headers=AUTH, timeout=10, params={"nextPageKey": first["nextPageKey"]}).json()
    assert second["totalCount"] == 3 and len(second["problems"]) == 1
    forged = base64.urlsafe_b64encode(json.dumps([1]).encode()).decode().rstrip("=")
    assert requests.get(api + "/problems", headers=AUTH, timeout=10, params={"nextPageKey": forged}).status_code == 400


# --- impacts and ids --------------------------------------------------------------------------------------------

def test_impact_types_are_the_apis_values(sandbox, api):
    problem = open_problem(sandbox, affected_users=42, entities=[
        {"type": "HOST", "name": "web-01"}, {"type": "SERVICE", "name": "checkout"},
        {"type": "APPLICATION", "name": "shop"}, {"type": "MOBILE_APPLICATION", "name": "shop-app"},
        {"type": "CUSTOM_APPLICATION", "name": "kiosk"}])
    body = requests.get(api + "/problems/" + problem["problemId"], headers=AUTH, timeout=10,
                        params={"fields": "impactAnalysis"}).json()
    impacts = {i["impactedEntity"]["name"]: (i["impactType"], i["estimatedAffectedUsers"]) for i in body["impactAnalysis"]["impacts"]}
    assert impacts == {"checkout": ("SERVICE", 0), "shop": ("APPLICATION", 42), "shop-app": ("MOBILE", 42),
                       "kiosk": ("CUSTOM_APPLICATION", 42)}  # a host is no impact type
    assert {i["impactType"] for i in body["impactAnalysis"]["impacts"]} <= {"APPLICATION", "CUSTOM_APPLICATION", "MOBILE", "SERVICE"}
    assert "_underMaintenance" not in body and "impactAnalysis" not in requests.get(
        api + "/problems/" + problem["problemId"], headers=AUTH, timeout=10).json()


def test_management_zone_ids_are_stable_across_starts(sandbox, api, tmp_path):
    first = open_problem(sandbox, management_zones=["prod", "databases"])["managementZones"]
    assert all(z["id"].isdigit() for z in first)
    other = SandboxProcess(tmp_path)
    try:
        second = requests.post(other.url + "/_sandbox/dynatrace/problems", timeout=10,
                               json={"title": "x", "management_zones": ["prod", "databases"]}).json()["managementZones"]
    finally:
        other.stop()
    assert first == second


class SandboxProcess(object):
    """A second sandbox process (server.py), started and stopped by the test."""

    def __init__(self, tmp_path, *args, env=None):
        url_file = tmp_path / "sandbox.url"
        self.process = subprocess.Popen([sys.executable, SERVER, "--port", "0", "--url-file", str(url_file)] + list(args),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=dict(os.environ, **(env or {})))
        line = self.process.stdout.readline()
        assert line.startswith("SANDBOX_URL="), (line, self.process.stderr.read())
        self.url = line.strip().split("=", 1)[1]

    def call(self, method, path, body=None):
        response = requests.request(method, self.url + path, json=body, timeout=10)
        assert response.status_code < 300, response.text
        return response.json()

    def stop(self):
        self.process.terminate()
        self.process.communicate(timeout=10)


def test_ingest_selects_entities_by_tag_and_zone(sandbox, api, estate):
    tagged = requests.post(api + "/events/ingest", headers=AUTH, timeout=10, json={
        "eventType": "CUSTOM_INFO", "title": "restarted", "entitySelector": 'type("HOST"),mzName("databases")'})
    assert tagged.status_code == 201 and tagged.json()["reportCount"] == 1
    unsupported = requests.post(api + "/events/ingest", headers=AUTH, timeout=10, json={
        "eventType": "CUSTOM_INFO", "title": "x", "entitySelector": 'type("HOST"),healthState("HEALTHY")'})
    assert unsupported.status_code == 400
    assert unsupported.json()["error"]["constraintViolations"][0]["parameterLocation"] == "PAYLOAD_BODY"


def test_a_single_problem_rejects_unknown_fields_too(sandbox, api):
    problem = open_problem(sandbox)
    response = requests.get(api + "/problems/" + problem["problemId"], headers=AUTH, params={"fields": "evidence"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["constraintViolations"][0]["path"] == "fields"
