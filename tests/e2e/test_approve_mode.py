"""End to end in approve mode: the self_healing rulebook with selfheal_process_crash_mode=approve pages with the
response options Restart / Ignore; the process is restarted only when the responder picks Restart in the sandbox,
and with no answer the incident escalates and nothing is restarted."""

import json

import pytest

from utils import estate
from utils.loops import crash_and_report, pages_for, problem_state, self_healing_loop, tickets_for, wait_for_step

SETTINGS = {"incident_oncall_response_options": [{"text": "Restart"}, {"text": "Ignore"}],
            "incident_approve_response": "Restart", "incident_approval_timeout": 6,
            "incident_approval_poll_interval": 0.3, "incident_oncall_escalation_groups": ["Database"]}


@pytest.fixture(scope="module")
def loop(installed_collection, sandbox_session, tmp_path_factory):
    with self_healing_loop(installed_collection, sandbox_session, tmp_path_factory.mktemp("e2e-approve"),
                           variables={"selfheal_process_crash_mode": "approve"}, settings=SETTINGS) as activation:
        yield activation


def test_the_responder_picks_restart_and_the_restart_happens(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    estate.wait_until(lambda: pages_for(sandbox, key), timeout=60, what="the page with the response options")
    [page] = pages_for(sandbox, key)
    assert [o["text"] for o in page["responseOptions"]] == ["Restart", "Ignore"]
    assert loop.supervisor.pid() == 0  # nothing restarted before the answer
    sandbox.call("POST", "/_sandbox/xmatters/respond", {"event": page["id"], "response": "Restart",
                                                        "recipient": "oncall.primary"})
    wait_for_step(loop, problem, "archive channel")
    new = loop.supervisor.pid()
    assert new and new != old and estate.healthy(loop.supervisor.port)
    assert problem_state(sandbox, problem)["status"] == "CLOSED"
    [ticket] = tickets_for(sandbox, key)
    assert any("Approved by oncall.primary (Restart, xmatters)" in json.dumps(c["body"]) for c in ticket["comments"])


def test_no_answer_escalates_and_restarts_nothing(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    wait_for_step(loop, problem, "escalated")
    assert loop.supervisor.pid() == 0  # still down: a human owns it now
    assert problem_state(sandbox, problem)["status"] == "OPEN"
    pages = sandbox.state()["xmatters"]["events"]
    escalation = [e for e in pages if any(str(v) == key + "-escalated" for v in (e.get("properties") or {}).values())]
    assert len(pages_for(sandbox, key)) == 1 and len(escalation) == 1
    [ticket] = tickets_for(sandbox, key)
    assert ticket["fields"]["status"] == "Open"
    assert any("Not approved (no_response)" in json.dumps(c["body"]) for c in ticket["comments"])
