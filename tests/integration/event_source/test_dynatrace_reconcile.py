"""Reconciliation at start, against the sandbox's Problems API: what a previous run left unfinished is emitted again,
what it finished is not, and nothing outside the source's scope is touched."""

import asyncio

import aiohttp
import requests

from sandbox import credentials
from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import dynatrace as source


def api(sandbox):
    return sandbox.url + credentials.DYNATRACE_PREFIX


def comment(sandbox, problem, text):
    response = requests.post(api(sandbox) + "/api/v2/problems/%s/comments" % problem["problemId"],
                             headers={"Authorization": "Api-Token " + credentials.DYNATRACE_TOKEN},
                             json={"message": "[selfheal.devops] " + text, "context": "selfheal.devops"}, timeout=10)
    assert response.status_code == 201


def open_problem(sandbox, title, **extra):
    body = {"title": title, "entities": [{"type": "HOST", "name": "web-01"}]}
    body.update(extra)
    return sandbox.call("POST", "/_sandbox/dynatrace/problems", body)


def source_args(sandbox, **extra):
    args = {"token": "t0ken", "path": "/dynatrace/problems", "url": api(sandbox), "api_token": credentials.DYNATRACE_TOKEN,
            "reconcile": True}
    args.update(extra)
    return args


async def settle(running, expected, timeout=20):
    """The events emitted once `expected` have arrived (and a moment more, so a surplus would show)."""
    events = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(events) < expected and asyncio.get_running_loop().time() < deadline:
        events.extend(running.events())
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    return events + running.events()


async def test_unfinished_incidents_are_emitted_again_and_finished_ones_are_not(sandbox, run_source):
    unfinished = open_problem(sandbox, "Process unavailable: web")
    comment(sandbox, unfinished, "Remediation started for P-x")
    resolved_not_closed = open_problem(sandbox, "Process unavailable: api")
    comment(sandbox, resolved_not_closed, "Remediation started for P-y")
    comment(sandbox, resolved_not_closed, "Resolved: api restarted")
    escalated = open_problem(sandbox, "Low disk space")
    comment(sandbox, escalated, "Remediation started for P-z")
    comment(sandbox, escalated, "Escalated to a human: crash loop")
    closed_while_down = open_problem(sandbox, "Process unavailable: db")
    comment(sandbox, closed_while_down, "Remediation started for P-w")
    sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/resolve" % closed_while_down["displayId"], {})
    never_ours = open_problem(sandbox, "Response time degradation")  # no trace of this collection, no selector

    running = await run_source(source.main, source_args(sandbox))
    events = await settle(running, 2)
    got = sorted((e["problem"]["id"], e["transition"], e.get("reconciled")) for e in events)
    assert got == sorted([(unfinished["problemId"], "opened", True), (closed_while_down["problemId"], "closed", True)])
    assert never_ours["problemId"] not in {e["problem"]["id"] for e in events}
    # Dynatrace's notifications of these problems now open nothing again (an `updated` may follow when the
    # notification carries fields the API object did not).
    sandbox.call("POST", "/_sandbox/dynatrace/webhook", {"url": running.base + "/dynatrace/problems",
                                                         "headers": {"Authorization": "Bearer t0ken"}})
    for problem in (escalated, unfinished, resolved_not_closed):
        sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/notify" % problem["displayId"], {"count": 2})
    await asyncio.sleep(1.0)
    assert [e for e in running.events() if e["transition"] != "updated"] == []
    assert all(o["status"] == 202 for o in sandbox.outbound())


async def test_with_a_problem_selector_every_open_problem_in_scope_is_ours(sandbox, run_source):
    in_scope = open_problem(sandbox, "zone-a process unavailable")
    out_of_scope = open_problem(sandbox, "elsewhere process unavailable")
    running = await run_source(source.main, source_args(sandbox, problem_selector='text("zone-a")'))
    events = await settle(running, 1)
    assert [(e["problem"]["id"], e["transition"]) for e in events] == [(in_scope["problemId"], "opened")]
    assert out_of_scope["problemId"] not in {e["problem"]["id"] for e in events}


async def test_dynatrace_down_at_start_does_not_block_intake_and_reconciles_later(sandbox, run_source):
    unfinished = open_problem(sandbox, "Process unavailable: web")
    comment(sandbox, unfinished, "Remediation started for P-x")
    sandbox.fault(credentials.DYNATRACE_PREFIX + "/api/v2/problems", times=-1, duration=3, status=503,
                  body={"error": {"code": 503, "message": "Service Unavailable"}})
    running = await run_source(source.main, source_args(sandbox, max_retries=0))
    async with aiohttp.ClientSession() as session:  # the webhook answers meanwhile
        async with session.get(running.base + "/dynatrace/problems/health") as answer:
            assert answer.status == 200
    events = await settle(running, 1, timeout=30)
    assert [(e["problem"]["id"], e["transition"]) for e in events] == [(unfinished["problemId"], "opened")]


async def test_a_problem_closed_after_this_collection_resolved_it_says_so_and_no_other_does(sandbox, run_source):
    """The closing notification of a problem carrying the collection's Resolved comment is flagged incident_resolved
    (the closing rule leaves it alone); one closed by Dynatrace while a human owns it (escalated) is not."""
    running = await run_source(source.main, source_args(sandbox, reconcile=False))
    sandbox.call("POST", "/_sandbox/dynatrace/webhook", {"url": running.base + "/dynatrace/problems",
                                                         "headers": {"Authorization": "Bearer t0ken"}})
    healed = open_problem(sandbox, "Process unavailable: web")
    escalated = open_problem(sandbox, "Process unavailable: api")
    await settle(running, 2)
    comment(sandbox, healed, "Remediation started for P-a")
    comment(sandbox, healed, "Resolved: web restarted")
    comment(sandbox, escalated, "Remediation started for P-b")
    comment(sandbox, escalated, "Escalated to a human: crash loop")
    for problem in (healed, escalated):
        sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/resolve" % problem["displayId"], {})
    closed = [e for e in await settle(running, 2) if e["transition"] == "closed"]
    assert sorted((e["problem"]["id"], e.get("incident_resolved", False)) for e in closed) == sorted(
        [(healed["problemId"], True), (escalated["problemId"], False)])
    # Read from Dynatrace, once per closing (the notification carries no comments).
    reads = sandbox.requests("*/api/v2/problems/*/comments")
    assert sorted(r["path"].split("/")[-2] for r in reads if r["method"] == "GET") == sorted(
        [healed["problemId"], escalated["problemId"]])
