"""The incident orchestrator's own logic: steps run concurrently within the phase's budget, the words of the records,
what counts as resolved, and the first answer winning."""

import json
import os
import threading
import time

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _decisions, _incident

PROBLEM = {"id": "-1_1V2", "display_id": "P-7", "title": "Process unavailable: web", "severity": "AVAILABILITY",
           "impact": "INFRASTRUCTURE", "url": "https://dt.example/#problems;pid=-1_1V2",
           "entities": [{"id": "HOST-1", "type": "HOST", "name": "web-01"}, {"id": "PGI-1", "type": "PROCESS_GROUP_INSTANCE", "name": "web"}]}


def params(tmp_path, budget=5.0):
    return {"incident_key": "dt-P-7", "problem": PROBLEM, "run_url": "", "budget": budget, "timeline_dir": str(tmp_path),
            "request_timeout": 1, "max_retries": 0, "max_retry_wait": 0, "connections": {}, "phase": "open",
            "dynatrace": {"enabled": True, "close": True}, "oncall": {"provider": "", "groups": [], "approval_timeout": 300},
            "jira": {"project": ""}, "slack": {"enabled": False, "buttons": False}, "servicenow": {"enabled": False},
            "teams": {"enabled": False}}


def test_the_words_of_the_records():
    words = _incident.Words("dt-P-7", PROBLEM, "https://awx.example/jobs/9")
    assert words.summary == "P-7: Process unavailable: web on web-01"
    assert "- Incident key: `dt-P-7`" in words.description() and "[P-7](https://dt.example" in words.description()
    assert "Remediation run: [https://awx.example/jobs/9]" in words.description()
    opening = words.opening([{"key": "OPS-3", "url": "https://jira.example/browse/OPS-3"}])
    assert opening.startswith(":rotating_light: *P-7: Process unavailable: web on web-01*")
    assert "Ticket: <https://jira.example/browse/OPS-3|OPS-3>" in opening
    assert words.topic([{"key": "OPS-3"}]).endswith("| OPS-3") and len(words.topic() * 10) > 250 >= len(words.topic())


def test_steps_run_side_by_side_and_a_slow_one_is_left_behind_as_failed(tmp_path):
    incident = _incident.Incident(params(tmp_path, budget=1.0))

    def sleeps(seconds, result="changed"):
        def work(dummy):
            time.sleep(seconds)
            return result, "slept %s" % seconds, {}
        return work

    started = time.monotonic()
    done = dict((step.name, step) for step in incident.stage([_incident.Step("a", "dynatrace", sleeps(0.3)), _incident.Step("b", "jira", sleeps(0.3)),
                           _incident.Step("hangs", "slack", sleeps(30))]))
    took = time.monotonic() - started
    assert 0.9 <= took < 1.6  # the two quick ones together (not one after the other), then the budget
    assert done["a"].result == done["b"].result == "changed"
    records = {r["step"]: r for r in incident.records("open")}
    assert records["hangs"]["result"] == "failed" and "budget" in records["hangs"]["detail"]
    assert 0.25 < records["a"]["duration"] < 1.0 and records["a"]["time"].endswith("Z")
    assert [e["step"] for e in incident.errors] == ["hangs"]


def test_a_step_that_raises_is_a_recorded_failure(tmp_path):
    incident = _incident.Incident(params(tmp_path))

    def broken(dummy):
        raise KeyError("oops")

    incident.stage([_incident.Step("broken", "jira", broken)])
    [record] = incident.records("open")
    assert record["result"] == "failed" and "KeyError" in record["detail"]


def test_what_counts_as_resolved(tmp_path):
    incident = _incident.Incident(params(tmp_path))
    incident.saved = [{"action": "open", "result": "changed"}]
    assert not incident.already_resolved() and not incident.resolved_cleanly()
    incident.saved += [{"action": "resolve", "result": "changed"}, {"action": "resolve", "result": "failed"}]
    assert incident.already_resolved() and not incident.resolved_cleanly()  # a new resolve catches up the failure
    incident.saved += [{"action": "update", "result": "ok"}, {"action": "resolve", "result": "ok"}]
    assert incident.resolved_cleanly()


def test_a_catch_up_that_found_everything_in_place_leaves_no_record(tmp_path):
    incident = _incident.Incident(params(tmp_path))
    incident.stage([_incident.Step("open ticket", "jira", lambda dummy: ("ok", "OPS-1 Open", {}), quiet=True),
                    _incident.Step("outcome", "slack", lambda dummy: ("changed", "#inc", {}))])
    assert [r["step"] for r in incident.records("resolve")] == ["outcome"]


def test_the_timeline_is_read_and_appended(tmp_path):
    incident = _incident.Incident(params(tmp_path))
    assert incident.read_timeline() == []
    incident.save([{"step": "a", "result": "ok"}])
    incident.save([{"step": "b", "result": "ok"}])
    saved = json.load(open(os.path.join(str(tmp_path), "dt-P-7.json")))
    assert [r["step"] for r in saved["records"]] == ["a", "b"] and saved["problem"] == "P-7"


def test_the_first_answer_wins_and_a_later_one_is_told(tmp_path):
    folder = str(tmp_path / "decisions")
    first, ours = _decisions.write(folder, "dt-P-7", {"source": "slack", "action": "approve", "responder": "U1"})
    late, theirs = _decisions.write(folder, "dt-P-7", {"source": "xmatters", "response": "Ignore", "responder": "bob"})
    assert ours and not theirs and late["responder"] == "U1" and late["action"] == "approve"
    assert oct(os.stat(_decisions.decision_path(folder, "dt-P-7")).st_mode & 0o777) == "0o600"
    assert _decisions.read(folder, "dt-P-7", time.time() - 60)["source"] == "slack"
    assert _decisions.read(folder, "dt-P-7", time.time() + 60) is None  # an answer older than the question
    _decisions.consume(folder, "dt-P-7")
    assert _decisions.read(folder, "dt-P-7", 0) is None and len(os.listdir(folder)) == 1


def test_racing_answers_leave_exactly_one_winner(tmp_path):
    folder = str(tmp_path)
    results = []

    def answer(number):
        results.append(_decisions.write(folder, "dt-P-7", {"source": "slack", "action": "approve", "responder": "U%d" % number}))

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [decision for decision, ours in results if ours]
    assert len(winners) == 1 and all(decision == winners[0] for decision, dummy in results)


@pytest.mark.parametrize("decision, approved", [
    ({"source": "slack", "action": "approve"}, True), ({"source": "slack", "action": "ignore"}, False),
    ({"source": "xmatters", "response": "Restart"}, True), ({"source": "xmatters", "response": "Ignore"}, False),
])
def test_what_an_answer_means(decision, approved):
    assert _incident._interpret(decision, "Restart")["approved"] is approved
