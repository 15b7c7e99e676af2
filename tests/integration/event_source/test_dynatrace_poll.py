"""selfheal.devops.dynatrace in poll mode: main() driven into a queue against the sandbox's Problems API."""

import asyncio
import sqlite3

import pytest
import requests

from sandbox import credentials
from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import dynatrace as source


def poll_args(sandbox, **extra):
    args = {"mode": "poll", "url": sandbox.url + credentials.DYNATRACE_PREFIX, "api_token": credentials.DYNATRACE_TOKEN,
            "interval": 1}
    args.update(extra)
    return args


async def next_event(queue, timeout=15):
    return await asyncio.wait_for(queue.get(), timeout)


async def no_event(queue, seconds):
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(queue.get(), seconds)


async def call(sandbox, method, path, body=None):
    return await asyncio.get_running_loop().run_in_executor(None, sandbox.call, method, path, body)


class Running(object):
    def __init__(self, args):
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(source.main(self.queue, args))

    async def stop(self):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def start():
    running = []

    def begin(args):
        item = Running(args)
        running.append(item)
        return item

    yield begin
    for item in running:
        await item.stop()


async def test_poll_sees_open_and_close(sandbox, start):
    poller = start(poll_args(sandbox))
    problem = await call(sandbox, "POST", "/_sandbox/dynatrace/problems",
                         {"title": "Process crashed", "entities": [{"type": "HOST", "name": "web-01"}]})
    opened = await next_event(poller.queue)
    assert opened["transition"] == "opened" and opened["intake"] == "poll"
    assert opened["problem"]["id"] == problem["problemId"] and opened["meta"]["hosts"] == ["web-01"]
    assert opened["problem"]["url"].startswith(sandbox.url + credentials.DYNATRACE_PREFIX + "/#problems")
    await call(sandbox, "POST", "/_sandbox/dynatrace/problems/%s/resolve" % problem["displayId"], {})
    closed = await next_event(poller.queue)
    assert closed["transition"] == "closed" and closed["problem"]["status"] == "CLOSED"
    await no_event(poller.queue, 2.5)  # two more cycles: nothing new, nothing repeated


async def test_two_thousand_open_problems_cost_four_list_requests_per_cycle(sandbox, start):
    await call(sandbox, "POST", "/_sandbox/dynatrace/problems/bulk", {"count": 2000})
    await call(sandbox, "DELETE", "/_sandbox/log")
    poller = start(poll_args(sandbox, interval=30, reconcile=False))  # reconciliation at start lists them once more
    events = [await next_event(poller.queue) for dummy in range(2000)]
    assert len({e["problem"]["id"] for e in events}) == 2000
    listed = await asyncio.get_running_loop().run_in_executor(None, sandbox.requests, credentials.DYNATRACE_PREFIX + "/api/v2/problems")
    assert len(listed) == 4
    assert all(set(entry["query"]) == {"nextPageKey"} for entry in listed[1:])


async def test_poll_survives_rate_limits_server_errors_and_bad_tokens(sandbox, start, caplog):
    path = credentials.DYNATRACE_PREFIX + "/api/v2/problems"
    await call(sandbox, "POST", "/_sandbox/faults", [
        {"path": path, "status": 429, "headers": {"Retry-After": "1"}, "body": {"error": {"code": 429, "message": "Too many"}}, "times": 1},
        {"path": path, "status": 503, "times": 1}])
    poller = start(poll_args(sandbox))
    await call(sandbox, "POST", "/_sandbox/dynatrace/problems", {"title": "Disk full"})
    assert (await next_event(poller.queue, timeout=20))["transition"] == "opened"
    assert not poller.task.done()
    bad = start(poll_args(sandbox, api_token="dt0c01.WRONGWRONGWRONGWRONGWRON.secret"))
    await no_event(bad.queue, 2)
    assert not bad.task.done()  # a source that returns would end the activation
    assert "HTTP 401" in caplog.text and "WRONGWRONG" not in caplog.text


async def test_state_file_catch_up_after_downtime(sandbox, start, tmp_path):
    state_file = str(tmp_path / "poll-state.db")
    first = await call(sandbox, "POST", "/_sandbox/dynatrace/problems", {"title": "first"})
    poller = start(poll_args(sandbox, state_file=state_file))
    assert (await next_event(poller.queue))["problem"]["id"] == first["problemId"]
    await poller.stop()
    # While the activation is down: the first problem closes and a second one opens.
    await call(sandbox, "POST", "/_sandbox/dynatrace/problems/%s/resolve" % first["displayId"], {})
    second = await call(sandbox, "POST", "/_sandbox/dynatrace/problems", {"title": "second"})
    restarted = start(poll_args(sandbox, state_file=state_file))
    caught_up = sorted([await next_event(restarted.queue), await next_event(restarted.queue)], key=lambda e: e["transition"])
    assert [(e["transition"], e["problem"]["id"]) for e in caught_up] == [
        ("closed", first["problemId"]), ("opened", second["problemId"])]
    await no_event(restarted.queue, 2.5)
    with sqlite3.connect(state_file) as conn:
        assert conn.execute("SELECT status FROM selfheal_problems WHERE id = ?", (first["problemId"],)).fetchone() == ("CLOSED",)
        assert int(conn.execute("SELECT value FROM selfheal_meta WHERE key = 'last_poll'").fetchone()[0]) > 0


async def test_own_events_do_not_count_as_updates(sandbox, start):
    problem = await call(sandbox, "POST", "/_sandbox/dynatrace/problems",
                         {"title": "Process crashed", "entities": [{"type": "HOST", "name": "web-01"}]})
    poller = start(poll_args(sandbox, fields=["evidenceDetails"]))
    assert (await next_event(poller.queue))["transition"] == "opened"
    api = sandbox.url + credentials.DYNATRACE_PREFIX + "/api/v2"
    auth = {"Authorization": "Api-Token " + credentials.DYNATRACE_TOKEN}

    def ingest(title, properties):
        return requests.post(api + "/events/ingest", headers=auth, json={
            "eventType": "CUSTOM_INFO", "title": title, "properties": properties,
            "entitySelector": 'entityId("%s")' % problem["impactedEntities"][0]["entityId"]["id"]}).status_code

    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, ingest, "Restarted the process", {"selfheal.marker": "dt-P-1"}) == 201
    await no_event(poller.queue, 2.5)
    assert await loop.run_in_executor(None, ingest, "Deployment by the release pipeline", {}) == 201
    assert (await next_event(poller.queue))["transition"] == "updated"
