"""The sandbox core: the request log records the real status of every request, unknown paths and failed handlers
answer in the vendor's error shape, and the faults the concurrency work needs (after: apply then fail; hang)."""

import threading
import time

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sandbox import core
from sandbox import credentials

DYN = {"Authorization": "Api-Token " + credentials.DYNATRACE_TOKEN}
KEPTN = {"x-token": credentials.KEPTN_TOKEN}
XM = (credentials.XMATTERS_USER, credentials.XMATTERS_PASSWORD)


def wait_for(predicate, timeout=10.0):
    """Poll the sandbox's admin API (there is no event to await across processes); bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def last_status(sandbox, path):
    entries = sandbox.requests(path)
    return entries[-1]["status"] if entries else None


# --- unknown paths: the vendor's error shape, and the status in the log --------------------------------------

@pytest.mark.parametrize("method, path, headers, status, body", [
    ("GET", credentials.DYNATRACE_PREFIX + "/api/v2/nothing", DYN, 404,
     lambda b: set(b) == {"error"} and b["error"]["code"] == 404 and b["error"]["message"]),
    ("DELETE", credentials.DYNATRACE_PREFIX + "/api/v2/problems", DYN, 405,
     lambda b: b["error"]["code"] == 405 and "DELETE" in b["error"]["message"]),
    ("POST", credentials.SLACK_PREFIX + "/chat/postMessage", {}, 404,
     lambda b: b == {"ok": False, "error": "unknown_method"}),
    ("GET", credentials.XMATTERS_PREFIX + "/api/xm/1/nothing", {}, 404,
     lambda b: b["code"] == 404 and b["reason"] == "Not Found" and b["message"]),
    ("GET", credentials.KEPTN_PREFIX + "/api/v1/nothing", KEPTN, 404,
     lambda b: set(b) == {"code", "message"} and b["code"] == 404),
    ("GET", credentials.PAGERDUTY_PREFIX + "/v2/enqueue", {}, 405,
     lambda b: b["status"] == "Method Not Allowed" and b["errors"]),
])
def test_unknown_paths_answer_the_vendors_json_error_and_are_logged_with_their_status(sandbox, method, path, headers,
                                                                                      status, body):
    response = requests.request(method, sandbox.url + path, headers=headers, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert body(response.json()), response.text
    assert last_status(sandbox, path) == status


def test_the_vendor_sdk_sees_slacks_unknown_method_error(sandbox):
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token=credentials.SLACK_TOKEN, base_url=sandbox.url + credentials.SLACK_PREFIX + "/")
    with pytest.raises(SlackApiError) as error:
        client.api_call("conversations.nothing")
    assert error.value.response["error"] == "unknown_method"


def test_errors_raised_inside_handlers_are_logged_with_their_status(sandbox):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {"title": "Disk full"})
    comments = sandbox.url + credentials.DYNATRACE_PREFIX + "/api/v2/problems/%s/comments" % problem["problemId"]
    bad = requests.post(comments, headers=dict(DYN, **{"Content-Type": "application/json"}), data="{not json", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 400  # raised as HTTPBadRequest in the handler
    assert last_status(sandbox, comments[len(sandbox.url):]) == 400
    broken = requests.post(sandbox.url + "/_sandbox/xmatters/config", data="[", timeout=10)  # admin: request.json() raises
    assert broken.status_code == 500 and "error" in broken.json()
    [entry] = sandbox.requests("/_sandbox/xmatters/config")
    assert (entry["status"], entry["error"]) == (500, "JSONDecodeError")


class Boom(object):
    """A service whose handler fails, to see the core answer in the service's shape."""

    PREFIX = "/vendor"

    @staticmethod
    def setup(sandbox, app):
        async def failing(request):
            raise KeyError("bug")

        sandbox.add_error_shape("/vendor", lambda status, message: web.json_response({"fault": status, "why": message},
                                                                                     status=status))
        app.router.add_get("/vendor/api/fail", failing)


async def test_a_failing_handler_answers_500_in_the_vendor_shape_and_logs_it():
    app = core.build_app([Boom])
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/vendor/api/fail")
        assert response.status == 500 and await response.json() == {"fault": 500, "why": "Internal error (KeyError)."}
        missing = await client.get("/vendor/api/none")
        assert missing.status == 404 and (await missing.json())["fault"] == 404
        elsewhere = await client.get("/nothing")
        assert elsewhere.status == 404  # outside every service: aiohttp's own answer
    log = list(app[core.SANDBOX].log)
    assert [(e["path"], e["status"]) for e in log] == [("/vendor/api/fail", 500), ("/vendor/api/none", 404),
                                                       ("/nothing", 404)]
    assert log[0]["error"] == "KeyError"


# --- fault specs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, message", [
    ({"method": "GET"}, "path"),
    ({"path": "/x", "status": 502, "drop": True}, "exclude"),
    ({"path": "/x", "after": True}, "after needs"),
    ({"path": "/x", "hang": "yes"}, "hang must be"),
    ({"path": "/x", "latency": -1}, "latency"),
    ({"path": "/x", "times": "many"}, "times"),
    ({"path": "/x", "colour": "red"}, "colour"),
])
def test_a_bad_fault_spec_is_a_400_and_adds_nothing(sandbox, spec, message):
    response = requests.post(sandbox.url + "/_sandbox/faults", json=[{"path": "/ok", "status": 503}, spec], timeout=10)
    assert response.status_code == 400 and message in response.json()["error"]
    assert sandbox.call("GET", "/_sandbox/faults") == []


# --- after: the write is applied, then the client sees the failure ------------------------------------------------

@pytest.mark.parametrize("status", [502, 504])
def test_after_status_applies_the_write_once_then_answers_the_fault(sandbox, status):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {"title": "Disk full"})
    path = credentials.DYNATRACE_PREFIX + "/api/v2/problems/%s/comments" % problem["problemId"]
    sandbox.fault(path, method="POST", after=True, status=status)
    response = requests.post(sandbox.url + path, headers=DYN, json={"message": "restart done"}, timeout=10)
    assert response.status_code == status and response.json() == {"error": "injected fault"}
    stored = sandbox.state()["dynatrace"]["comments"][problem["problemId"]]
    assert [c["content"] for c in stored] == ["restart done"]  # applied exactly once
    [entry] = sandbox.requests(path)
    assert (entry["status"], entry["applied_status"]) == (status, 201)
    again = requests.post(sandbox.url + path, headers=DYN, json={"message": "second"}, timeout=10)
    assert again.status_code == 201  # times: 1 is used up


def test_after_status_also_covers_a_request_the_handler_refused(sandbox):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {"title": "Disk full"})
    path = credentials.DYNATRACE_PREFIX + "/api/v2/problems/%s/comments" % problem["problemId"]
    sandbox.fault(path, method="POST", after=True, status=504)
    bad = requests.post(sandbox.url + path, headers=DYN, data="{not json", timeout=10)
    assert bad.status_code == 504
    [entry] = sandbox.requests(path)
    assert (entry["status"], entry["applied_status"]) == (504, 400)
    assert problem["problemId"] not in sandbox.state()["dynatrace"]["comments"]  # nothing was written


def test_after_drop_applies_the_write_then_closes_the_connection(sandbox):
    trigger = "%s/api/integration/1/functions/%s/triggers" % (credentials.XMATTERS_PREFIX, credentials.XMATTERS_TRIGGER_ID)
    sandbox.call("POST", "/_sandbox/xmatters/config", {"delay": 0})
    sandbox.fault(trigger, method="POST", after=True, drop=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(sandbox.url + trigger, auth=XM, json={"properties": {"summary": "Disk full"}}, timeout=10)
    events = wait_for(lambda: sandbox.state()["xmatters"]["events"])
    assert len(events) == 1 and events[0]["properties"] == {"summary": "Disk full"}  # the page went out once
    [entry] = sandbox.requests(trigger)
    assert (entry["status"], entry["applied_status"]) == ("dropped", 202)


# --- hang: no answer until the client gives up, other requests served meanwhile ----------------------------------

def test_a_hanging_request_times_out_in_the_client_while_other_requests_are_served(sandbox):
    problems = sandbox.url + credentials.DYNATRACE_PREFIX + "/api/v2/problems"
    sandbox.fault(credentials.DYNATRACE_PREFIX + "/api/v2/problems", method="GET", hang=True, duration=60)
    outcome = {}

    def hanging_client():
        began = time.monotonic()
        try:
            requests.get(problems, headers=DYN, timeout=(5, 1))
            outcome["error"] = None
        except requests.exceptions.RequestException as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - began

    worker = threading.Thread(target=hanging_client)
    worker.start()
    assert wait_for(lambda: last_status(sandbox, "/dynatrace/api/v2/problems") == "hanging")
    served = []
    while worker.is_alive() and len(served) < 200:  # bounded: other requests are answered during the hang
        served.append(requests.get(sandbox.url + "/jira/rest/api/2/serverInfo", timeout=5).status_code)
    worker.join(10)
    assert isinstance(outcome["error"], requests.exceptions.ReadTimeout)
    assert 1.0 <= outcome["seconds"] < 5.0
    assert served and set(served) == {200}
    assert wait_for(lambda: last_status(sandbox, "/dynatrace/api/v2/problems") == "hung: client gave up")
    assert requests.get(problems, headers=DYN, timeout=5).status_code == 200  # times: 1 is used up


def test_a_hang_is_bounded_by_the_faults_duration_and_released_by_clearing_faults(sandbox):
    problems = sandbox.url + credentials.DYNATRACE_PREFIX + "/api/v2/problems"
    sandbox.fault(credentials.DYNATRACE_PREFIX + "/api/v2/problems", hang=True, duration=0.5)
    began = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(problems, headers=DYN, timeout=10)
    assert 0.4 <= time.monotonic() - began < 5.0
    assert last_status(sandbox, "/dynatrace/api/v2/problems") == "hung: released"

    sandbox.fault(credentials.DYNATRACE_PREFIX + "/api/v2/problems", hang=True)  # 300 s unless released
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(
        error=pytest.raises(requests.exceptions.ConnectionError, requests.get, problems, headers=DYN, timeout=30)))
    began = time.monotonic()
    worker.start()
    assert wait_for(lambda: last_status(sandbox, "/dynatrace/api/v2/problems") == "hanging")
    sandbox.call("DELETE", "/_sandbox/faults")
    worker.join(10)
    assert not worker.is_alive() and outcome["error"] and time.monotonic() - began < 10


def test_after_hang_applies_the_write_and_never_answers(sandbox):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {"title": "Disk full"})
    path = credentials.DYNATRACE_PREFIX + "/api/v2/problems/%s/close" % problem["problemId"]
    sandbox.fault(path, after=True, hang=True, duration=30)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(sandbox.url + path, headers=DYN, json={"message": "fixed"}, timeout=(5, 1))
    assert sandbox.state()["dynatrace"]["problems"][problem["problemId"]]["status"] == "CLOSED"
    assert wait_for(lambda: last_status(sandbox, path) == "hung: client gave up")
    assert sandbox.requests(path)[-1]["applied_status"] == 200
