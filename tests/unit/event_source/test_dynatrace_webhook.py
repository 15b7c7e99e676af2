"""selfheal.devops.dynatrace in webhook mode: main() driven into a queue over real HTTP on 127.0.0.1."""

import asyncio
import copy
import json
import os
import sqlite3
import stat
import threading

import aiohttp
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import dynatrace as source

TOKEN = "webhook-token-123"
AUTH = {"Authorization": "Bearer " + TOKEN}

NOTIFICATION = {
    "ProblemID": "P-1234", "PID": "-6156404735398726308_1669823466223V2", "ProblemTitle": "Process crashed",
    "State": "OPEN", "ProblemSeverity": "AVAILABILITY", "ProblemImpact": "INFRASTRUCTURE",
    "ProblemURL": "https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=-6156404735398726308_1669823466223V2",
    "ImpactedEntity": "web-01, checkout",
    "ImpactedEntities": [{"type": "HOST", "name": "web-01", "entity": "HOST-E371A974A078CC54"},
                         {"type": "SERVICE", "name": "checkout", "entity": "SERVICE-1A2B3C4D5E6F7A8B"}],
    "ProblemDetailsJSON": {"ID": "-6156404735398726308_1669823466223V2"},
    "Tags": "app:checkout, env:prod, critical",
}


async def post(base, body, headers=None):
    headers = AUTH if headers is None else headers
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/dynatrace/problems", json=body, headers=headers) as response:
            return response.status, await response.json()


@pytest.fixture
async def webhook(run_source, tmp_path):
    return await run_source(source.main, {"token": TOKEN, "state_file": str(tmp_path / "state.json"), "path": "/dynatrace/problems"})


async def test_notification_becomes_one_normalised_event(webhook):
    status, answer = await post(webhook.base, NOTIFICATION)
    assert status == 202 and answer["transition"] == "opened"
    (event,) = webhook.events()
    assert event["transition"] == "opened" and event["intake"] == "webhook"
    assert event["incident_key"] == "dt-P-1234"
    problem = event["problem"]
    assert problem["id"] == NOTIFICATION["PID"] and problem["display_id"] == "P-1234"
    assert problem["status"] == "OPEN" and problem["severity"] == "AVAILABILITY"
    assert {"id": "HOST-E371A974A078CC54", "type": "HOST", "name": "web-01"} in problem["entities"]
    assert problem["tags"]["app"] == "checkout"
    assert event["meta"]["hosts"] == ["web-01"]
    assert "raw" not in event


async def test_a_storm_of_identical_notifications_gives_one_event(webhook):
    async with aiohttp.ClientSession() as session:
        async def send():
            async with session.post(webhook.base + "/dynatrace/problems", json=NOTIFICATION, headers=AUTH) as response:
                return response.status

        statuses = []
        for dummy in range(10):  # 1,000 deliveries, 100 at a time
            statuses.extend(await asyncio.gather(*[send() for dummy_inner in range(100)]))
    assert statuses == [202] * 1000
    assert len(webhook.events()) == 1


async def test_merge_then_resolve_then_duplicate_resolve(webhook):
    await post(webhook.base, NOTIFICATION)
    merged = copy.deepcopy(NOTIFICATION)
    merged["ImpactedEntities"].append({"type": "HOST", "name": "web-02", "entity": "HOST-00000000000000B2"})
    await post(webhook.base, merged)
    resolved = dict(merged, State="RESOLVED")
    await post(webhook.base, resolved)
    status, answer = await post(webhook.base, resolved)
    assert status == 202 and answer["status"] == "duplicate"
    events = webhook.events()
    assert [e["transition"] for e in events] == ["opened", "updated", "closed"]
    assert events[1]["meta"]["hosts"] == ["web-01", "web-02"]
    assert events[2]["problem"]["status"] == "CLOSED"


@pytest.mark.parametrize("body, message", [
    ({"ProblemTitle": "no ids", "State": "OPEN"}, "PID"),
    (dict(NOTIFICATION, State="MAYBE"), "State"),
    (dict(NOTIFICATION, ImpactedEntities="web-01"), "ImpactedEntities"),
])
async def test_missing_or_wrong_fields_are_400(webhook, body, message):
    status, answer = await post(webhook.base, body)
    assert status == 400 and message in answer["error"]
    assert webhook.events() == []


async def test_wrong_token_is_401(webhook):
    status, dummy = await post(webhook.base, NOTIFICATION, headers={"Authorization": "Bearer nope"})
    assert status == 401 and webhook.events() == []


def saved_problems(path):
    with sqlite3.connect(str(path)) as conn:
        return {row[0]: row[1] for row in conn.execute("SELECT id, status FROM selfheal_problems")}


async def test_state_file_survives_a_restart(run_source, tmp_path):
    args = {"token": TOKEN, "state_file": str(tmp_path / "state" / "dynatrace.db"), "path": "/dynatrace/problems"}
    first = await run_source(source.main, args)
    await post(first.base, NOTIFICATION)
    assert len(first.events()) == 1
    first.task.cancel()
    await asyncio.gather(first.task, return_exceptions=True)
    second = await run_source(source.main, args)
    status, answer = await post(second.base, NOTIFICATION)
    assert answer["status"] == "duplicate" and second.events() == []
    await post(second.base, dict(NOTIFICATION, State="RESOLVED"))
    assert [e["transition"] for e in second.events()] == ["closed"]
    assert saved_problems(tmp_path / "state" / "dynatrace.db") == {NOTIFICATION["PID"]: "CLOSED"}
    assert stat.S_IMODE(os.stat(str(tmp_path / "state")).st_mode) == 0o700  # the folder was created, private
    assert stat.S_IMODE(os.stat(str(tmp_path / "state" / "dynatrace.db")).st_mode) == 0o600


async def test_updates_caused_only_by_our_own_writes_are_ignored(webhook):
    """A notification that differs only by evidence this collection wrote (its marker) is not news."""
    with_details = dict(NOTIFICATION, ProblemDetailsJSONv2={"evidenceDetails": {"totalCount": 1, "details": [
        {"evidenceType": "EVENT", "displayName": "Process unavailable", "entity": {"entityId": {"id": "HOST-E371A974A078CC54", "type": "HOST"}}}]}})
    await post(webhook.base, with_details)
    ours = copy.deepcopy(with_details)
    ours["ProblemDetailsJSONv2"]["evidenceDetails"]["details"].append(
        {"evidenceType": "EVENT", "displayName": source.dt.MARKER + " remediation started",
         "entity": {"entityId": {"id": "HOST-E371A974A078CC54", "type": "HOST"}}})
    status, answer = await post(webhook.base, ours)
    assert answer["status"] == "duplicate"
    theirs = copy.deepcopy(with_details)
    theirs["ProblemDetailsJSONv2"]["evidenceDetails"]["details"].append(
        {"evidenceType": "EVENT", "displayName": "Memory saturation", "entity": {"entityId": {"id": "HOST-E371A974A078CC54", "type": "HOST"}}})
    await post(webhook.base, theirs)
    assert [e["transition"] for e in webhook.events()] == ["opened", "updated"]


async def test_include_raw(run_source):
    running = await run_source(source.main, {"include_raw": True, "path": "/dynatrace/problems"})
    await post(running.base, NOTIFICATION, headers={})
    assert running.events()[0]["raw"] == NOTIFICATION


# --- property-based: arbitrary input never crashes the source and never makes an event ------------

class ThreadedSource(object):
    """The source in its own event loop thread, so a synchronous property test can hammer it.

    Its queue is the one ansible-rulebook gives a source (asyncio.Queue(1)), drained by a consumer as the rules
    engine does; `delivered` counts what reached the consumer.
    """

    def __init__(self, args):
        self.loop = asyncio.new_event_loop()
        self.queue = None
        self.delivered = 0
        self.args = args
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue(1)
        consumer = self.loop.create_task(self._consume())
        self.task = self.loop.create_task(source.main(self.queue, self.args))
        self.loop.call_soon(self.ready.set)
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        consumer.cancel()
        self.loop.run_until_complete(asyncio.gather(consumer, return_exceptions=True))

    async def _consume(self):
        while True:
            await self.queue.get()
            self.delivered += 1

    def stop(self):
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)


@pytest.fixture(scope="module")
def threaded_source():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    running = ThreadedSource({"port": port, "token": TOKEN, "path": "/dynatrace/problems", "max_body_bytes": 65536,
                              "reconcile": False})
    url = "http://127.0.0.1:%d/dynatrace/problems" % port
    session = requests.Session()
    for dummy in range(200):
        try:
            session.get(url + "/health", timeout=1)
            break
        except requests.ConnectionError:
            threading.Event().wait(0.02)
    yield running, url, session
    running.stop()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
                    max_leaves=25)
NEAR_MISS = st.fixed_dictionaries({}, optional={
    "PID": st.one_of(st.text(max_size=30), st.integers(), st.none()),
    "ProblemID": st.one_of(st.text(max_size=10), st.integers()),
    "State": st.one_of(st.sampled_from(["OPEN", "RESOLVED", "CLOSED", "open", ""]), st.integers()),
    "ImpactedEntities": JSON, "Tags": JSON, "ProblemTitle": JSON, "ProblemDetailsJSONv2": JSON,
})


def _post_rejected(running, session, url, data, headers):
    before = running.delivered
    response = session.post(url, data=data, headers=headers, timeout=5)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert running.delivered == before
    return response


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes_are_rejected(threaded_source, body):
    running, url, session = threaded_source
    _post_rejected(running, session, url, body, dict(AUTH, **{"Content-Type": "application/json"}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON)
def test_arbitrary_json_is_rejected(threaded_source, body):
    running, url, session = threaded_source
    _post_rejected(running, session, url, json.dumps(body), dict(AUTH, **{"Content-Type": "application/json"}))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=NEAR_MISS)
def test_near_miss_notifications_never_crash(threaded_source, body):
    """Payloads shaped like notifications: either a clean 400, or (when valid) an accepted event — never a 5xx."""
    running, url, session = threaded_source
    response = session.post(url, data=json.dumps(body), headers=dict(AUTH, **{"Content-Type": "application/json"}), timeout=5)
    assert response.status_code in (202, 400), (response.status_code, response.text, body)
    if response.status_code == 400:
        assert "error" in response.json()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=256))
def test_unauthenticated_input_is_401_whatever_it_is(threaded_source, body):
    running, url, session = threaded_source
    response = _post_rejected(running, session, url, body, {"Content-Type": "application/json"})
    assert response.status_code == 401
