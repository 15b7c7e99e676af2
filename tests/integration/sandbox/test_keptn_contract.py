"""The sandbox's Keptn v1 gateway honours the documented contract (Keptn 1.x api/shipyard/datastore swagger files; see
tests/sandbox/README.md)."""

import time

import pytest
import requests

from sandbox import credentials

AUTH = {"x-token": credentials.KEPTN_TOKEN}


@pytest.fixture
def api(sandbox):
    return sandbox.url + credentials.KEPTN_PREFIX + "/api"


def event(stage="production", sequence="rollback", **data):
    body = {"project": "sockshop", "stage": stage, "service": "carts"}
    body.update(data)
    return {"specversion": "1.0", "type": "sh.keptn.event.%s.%s.triggered" % (stage, sequence), "source": "test",
            "shkeptncontext": "rollback-carts-P-1234", "data": body}


def test_auth_and_metadata(api):
    assert requests.get(api + "/v1/metadata").json() == {"code": 401, "message": "unauthenticated or invalid credentials"}
    assert requests.get(api + "/v1/metadata", headers=AUTH).json()["keptnversion"] == "1.4.5"


@pytest.mark.parametrize("body, message", [
    ({"type": "sh.keptn.event.rollback.triggered", "data": {"project": "sockshop", "stage": "production", "service": "carts"}},
     "unknown event type action: triggered"),
    (dict(event(), data={"project": "sockshop", "stage": "production"}), "mandatory field(s) 'project', 'stage' or 'service' missing"),
    (dict(event(), data={"project": "sockshop", "stage": "staging", "service": "carts"}),
     "stage name in event data and in event type does not match"),
])
def test_validation(api, body, message):
    response = requests.post(api + "/v1/event", headers=AUTH, json=body)
    assert response.status_code == 400 and response.json() == {"code": 400, "message": message}


def test_context_is_deterministic_and_uuids_are_kept(api):
    first = requests.post(api + "/v1/event", headers=AUTH, json=event()).json()["keptnContext"]
    again = requests.post(api + "/v1/event", headers=AUTH, json=event()).json()["keptnContext"]
    assert first == again and len(first) == 36
    kept = "a3e5f16d-8888-4720-82c7-6995062905c1"
    assert requests.post(api + "/v1/event", headers=AUTH, json=dict(event(), shkeptncontext=kept)).json()["keptnContext"] == kept
    fresh = dict(event())
    del fresh["shkeptncontext"]
    assert requests.post(api + "/v1/event", headers=AUTH, json=fresh).json()["keptnContext"] not in (first, kept)


def test_sequence_appears_late_then_finishes_and_the_datastore_has_the_events(sandbox, api):
    sandbox.call("POST", "/_sandbox/keptn/config", {"appear_delay": 0.3, "finish_delay": 0.3, "result": "pass"})
    context = requests.post(api + "/v1/event", headers=AUTH, json=event()).json()["keptnContext"]
    url = api + "/controlPlane/v1/sequence/sockshop"
    assert requests.get(url, headers=AUTH, params={"keptnContext": context}).json()["states"] == []  # pending
    deadline = time.monotonic() + 5
    while True:
        states = requests.get(url, headers=AUTH, params={"keptnContext": context}).json()["states"]
        if states and states[0]["state"] == "finished" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert states[0]["state"] == "finished" and states[0]["stages"][0]["state"] == "succeeded"
    events = requests.get(api + "/mongodb-datastore/event", headers=AUTH, params={"keptnContext": context}).json()["events"]
    types = [e["type"] for e in events]
    assert "sh.keptn.event.rollback.finished" in types and "sh.keptn.event.rollback.started" in types
    finished = next(e for e in events if e["type"] == "sh.keptn.event.rollback.finished")
    assert finished["data"]["result"] == "pass" and finished["triggeredid"]
    assert requests.post(api + "/mongodb-datastore/event", headers=AUTH, json={}).status_code == 403


def test_manual_sequence_abort_and_unknown_project(sandbox, api):
    sandbox.call("POST", "/_sandbox/keptn/config", {"appear_delay": 0, "manual": True})
    context = requests.post(api + "/v1/event", headers=AUTH, json=event()).json()["keptnContext"]
    url = api + "/controlPlane/v1/sequence/sockshop"
    assert requests.get(url, headers=AUTH, params={"keptnContext": context}).json()["states"][0]["state"] == "started"
    assert requests.post(url + "/%s/control" % context, headers=AUTH, json={"state": "abort"}).json() == {}
    assert requests.get(url, headers=AUTH, params={"keptnContext": context}).json()["states"][0]["state"] == "aborted"
    assert requests.get(api + "/controlPlane/v1/sequence/nope", headers=AUTH).status_code == 404


def test_gateway_faults(sandbox, api):
    sandbox.fault(credentials.KEPTN_PREFIX + "/api/v1/event", status=429, body={"code": 429, "message": "too many requests"})
    response = requests.post(api + "/v1/event", headers=AUTH, json=event())
    assert response.status_code == 429 and response.json()["message"] == "too many requests"
