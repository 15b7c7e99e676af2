"""Many incidents at once, in one real ansible-rulebook activation of the self_healing rulebook (parallel actions,
one lock per incident): two crashes heal side by side, an incident waiting for a human holds nothing else up, the
same problem twice runs one remediation, and a problem that names no host fixes nothing and asks a human."""

import json
import os
import time

import pytest

from utils import estate
from utils.loops import channels_for, crash, pages_for, problem_state, report, self_healing_loop, tickets_for, timeline

pytestmark = pytest.mark.alone  # times compared with a single incident's: nothing else may run meanwhile

SETTINGS = {"incident_oncall_response_options": [{"text": "Restart"}, {"text": "Ignore"}],
            "incident_approve_response": "Restart", "incident_approval_timeout": 120,
            "incident_approval_poll_interval": 0.3, "process_restart_max_attempts": 20,
            "incident_budget": 15, "incident_request_timeout": 3}


@pytest.fixture(scope="module")
def loop(installed_collection, sandbox_session, tmp_path_factory):
    with self_healing_loop(installed_collection, sandbox_session, tmp_path_factory.mktemp("e2e-concurrency"),
                           settings=SETTINGS, more_hosts=("web-02",)) as activation:
        yield activation


def healthy_again(loop, host, old):
    supervisor = loop.supervisors[host]
    pid = supervisor.pid()
    return pid not in (0, old) and estate.healthy(supervisor.port)


def resolved(loop, sandbox, problem):
    key = "dt-" + problem["displayId"]
    return problem_state(sandbox, problem)["status"] == "CLOSED" and any(
        r["step"] == "archive channel" for r in timeline(loop, key)["records"])


def closed_event(loop, problem):
    """The closed event of the problem as the rules received it (ansible-rulebook prints each), or None."""
    key = "dt-" + problem["displayId"]
    return next((block for block in loop.output().split("Event:")[1:]
                 if "'incident_key': '%s'" % key in block and "'transition': 'closed'" in block), None)


def time_to_heal(loop, sandbox, crashes, timeout=120):
    """Seconds from the first report until every crashed host is healthy again (each reported at once)."""
    running = len(loop.playbooks())  # an incident waiting for a human keeps its playbook running throughout
    started = time.monotonic()
    problems = [report(sandbox, host) for host, dummy in crashes]
    estate.wait_until(lambda: all(healthy_again(loop, host, old) for host, old in crashes), timeout=timeout,
                      interval=0.05, what="every crashed service healthy")
    took = time.monotonic() - started
    for problem in problems:
        estate.wait_until(lambda problem=problem: resolved(loop, sandbox, problem), timeout=timeout, what="resolution")
    # The next measurement starts once these incidents are over: each problem's closing reached the rules, saying
    # that the collection resolved its incident (so it starts no closing run), and their playbooks ended.
    for problem in problems:
        estate.wait_until(lambda problem=problem: closed_event(loop, problem), timeout=timeout,
                          what="the closed event of %s" % problem["displayId"])
        assert "'incident_resolved': True" in closed_event(loop, problem)
    estate.wait_until(lambda: len(loop.playbooks()) <= running, timeout=timeout, interval=0.1,
                      what="the playbooks of these incidents to end")
    return took, problems


def test_two_crashes_at_the_same_moment_heal_side_by_side(loop, sandbox_session):
    sandbox = sandbox_session
    # Measured side by side, and once more when the pair misses: one stall of this shared machine can fall on either
    # run of a pair; two pairs missing in a row are a finding.
    attempts = []
    for dummy in range(2):
        alone, dummy2 = time_to_heal(loop, sandbox, [("web-01", crash(loop, "web-01"))])
        both, problems = time_to_heal(loop, sandbox, [("web-01", crash(loop, "web-01")), ("web-02", crash(loop, "web-02"))])
        attempts.append("one incident healed in %.1f s, two at once in %.1f s" % (alone, both))
        loop.single_incident_time = alone
        for problem in problems:
            key = "dt-" + problem["displayId"]
            assert len(pages_for(sandbox, key)) == 1 and len(tickets_for(sandbox, key)) == 1 and len(channels_for(sandbox, key)) == 1
        if both <= alone + 2.0:
            break
    assert both <= alone + 2.0, "; ".join(attempts)
    # Every one of these problems closed because its incident was resolved: none started a closing run.
    assert "PLAY [Resolve an incident the problem closed by itself]" not in loop.output()


def test_an_incident_waiting_for_a_human_holds_no_other_incident_up(loop, sandbox_session):
    sandbox = sandbox_session
    waiting_old = crash(loop, "web-02")
    waiting = report(sandbox, "web-02", tags={"selfheal_mode": "approve"})
    key = "dt-" + waiting["displayId"]
    estate.wait_until(lambda: pages_for(sandbox, key), timeout=60, what="the page asking for approval")
    took, dummy = time_to_heal(loop, sandbox, [("web-01", crash(loop, "web-01"))])
    assert loop.supervisors["web-02"].pid() == 0  # still waiting for its answer, untouched
    assert took <= getattr(loop, "single_incident_time", took) + 2.0, took
    [page] = pages_for(sandbox, key)
    sandbox.call("POST", "/_sandbox/xmatters/respond", {"event": page["id"], "response": "Restart",
                                                        "recipient": "oncall.primary"})
    estate.wait_until(lambda: healthy_again(loop, "web-02", waiting_old), timeout=60, what="the approved restart")
    estate.wait_until(lambda: resolved(loop, sandbox, waiting), timeout=60, what="the approved incident resolved")


def test_the_same_problem_delivered_twice_at_once_runs_one_remediation(loop, sandbox_session):
    sandbox = sandbox_session
    guard = os.path.join(str(loop.workdir), "restarts", "web.json")
    before = len(json.load(open(guard))["attempts"]) if os.path.exists(guard) else 0
    old = crash(loop, "web-01")
    problem = report(sandbox, "web-01")
    sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/notify" % problem["displayId"], {"count": 2})
    estate.wait_until(lambda: resolved(loop, sandbox, problem), timeout=120, what="resolution")
    assert healthy_again(loop, "web-01", old)
    restarts = json.load(open(guard))["attempts"]
    assert len(restarts) - before == 1, restarts
    key = "dt-" + problem["displayId"]
    assert len(pages_for(sandbox, key)) == 1 and len(tickets_for(sandbox, key)) == 1


def test_a_problem_without_a_host_fixes_nothing_and_asks_a_human(loop, sandbox_session):
    sandbox = sandbox_session
    old = crash(loop, "web-01")
    try:
        problem = report(sandbox, "web-01", entities=[{"type": "PROCESS_GROUP_INSTANCE", "name": "web on web-01"}])
        key = "dt-" + problem["displayId"]
        estate.wait_until(lambda: any(r["step"] == "escalated" for r in timeline(loop, key)["records"]), timeout=90,
                          what="the escalation")
        time.sleep(1.0)
        assert loop.supervisors["web-01"].pid() == 0 and loop.supervisors["web-02"].pid() != 0  # nothing restarted
        assert problem_state(sandbox, problem)["status"] == "OPEN"
        comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
        assert any("names no host" in c for c in comments), comments
        assert len(pages_for(sandbox, key)) == 1 and len(tickets_for(sandbox, key)) == 1
    finally:
        loop.supervisors["web-01"].ctl("start", "web")
        estate.wait_until(lambda: healthy_again(loop, "web-01", old), what="web-01 started again")


def test_a_hanging_jira_holds_up_neither_the_fix_nor_the_ticket(loop, sandbox_session):
    """Jira accepts every connection and never answers while the crash is fixed: the service heals in the usual time
    (the incident opens in the background), and the ticket is made once, when Jira answers again."""
    sandbox = sandbox_session
    sandbox.fault("/jira/rest/*", times=-1, duration=120, hang=True)
    try:
        old = crash(loop, "web-01")
        started = time.monotonic()
        problem = report(sandbox, "web-01")
        estate.wait_until(lambda: healthy_again(loop, "web-01", old), timeout=120, interval=0.05, what="the restart")
        took = time.monotonic() - started
        key = "dt-" + problem["displayId"]
        # Jira stays silent until the opening has given up on it (its budget), then answers again.
        estate.wait_until(lambda: any(r["action"] == "open" and r["step"] == "open ticket" for r in timeline(loop, key)["records"]),
                          timeout=120, what="the opening to give up on Jira")
    finally:
        sandbox.call("DELETE", "/_sandbox/faults")
    assert took <= getattr(loop, "single_incident_time", took) + 2.0, took
    estate.wait_until(lambda: resolved(loop, sandbox, problem), timeout=180, what="the resolution")
    key = "dt-" + problem["displayId"]
    [ticket] = tickets_for(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved"
    records = [(r["action"], r["step"], r["system"], r["result"]) for r in timeline(loop, key)["records"]]
    assert ("open", "open ticket", "jira", "failed") in records, records  # Jira did not answer within the budget
