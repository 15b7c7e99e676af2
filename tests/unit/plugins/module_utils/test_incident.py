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
    done = dict((step.name, step) for step in incident.stage([
        _incident.Step("a", "dynatrace", sleeps(0.3)), _incident.Step("b", "jira", sleeps(0.3)),
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

    failures = []

    def answer(number):
        try:
            results.append(_decisions.write(folder, "dt-P-7", {"source": "slack", "action": "approve",
                                                               "responder": "U%d" % number}))
        except Exception as exc:  # noqa: BLE001 - every racer must be told the answer, none may fail
            failures.append(exc)

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and len(results) == 20
    winners = [decision for decision, ours in results if ours]
    assert len(winners) == 1 and all(decision == winners[0] for decision, dummy in results)
    assert sorted(os.listdir(folder)) == ["dt-P-7.decision.json"]  # no temporary file left behind


@pytest.mark.parametrize("decision, approved", [
    ({"source": "slack", "action": "approve"}, True), ({"source": "slack", "action": "ignore"}, False),
    ({"source": "xmatters", "response": "Restart"}, True), ({"source": "xmatters", "response": "Ignore"}, False),
])
def test_what_an_answer_means(decision, approved):
    assert _incident._interpret(decision, "Restart")["approved"] is approved


# --- desks and chats in any combination --------------------------------------------------------------------------

JIRA = {"key": "OPS-3", "url": "https://jira.example/browse/OPS-3"}
SN = {"key": "INC0010001", "number": "INC0010001", "url": "https://sn.example/nav_to.do?uri=incident.do?sys_id=1"}


def four(tmp_path, **changes):
    settings = params(tmp_path)
    settings.update(jira={"project": "OPS"}, servicenow={"enabled": True, "correlation_display": "selfheal.devops",
                                                         "severity_map": {}, "assignment_group": "", "fields": {},
                                                         "close_code": "Solution provided"},
                    slack={"enabled": True, "buttons": False, "users": ["U1"], "oncall_email_domain": ""},
                    teams={"enabled": True, "team": "Operations", "channel_prefix": "inc-", "membership_type": "standard",
                           "members": ["lead@example.com"], "owners": [], "oncall_email_domain": "example.com",
                           "post_as": "bot", "close_action": ["archive"], "closed_prefix": "closed-"})
    settings.update(changes)
    return settings


def test_the_chats_name_every_ticket_and_the_servicenow_text_is_plain():
    words = _incident.Words("dt-P-7", PROBLEM, "https://awx.example/jobs/9")
    slack = words.opening([JIRA, SN])
    assert "Tickets: <https://jira.example/browse/OPS-3|OPS-3>, <%s|INC0010001>" % SN["url"] in slack
    teams = words.teams_opening([JIRA, SN])
    assert teams.startswith("**P-7: Process unavailable: web on web-01**") and "[INC0010001](%s)" % SN["url"] in teams
    assert "Ticket: [OPS-3](https://jira.example/browse/OPS-3)" in words.teams_opening([JIRA])
    assert words.topic([JIRA, SN]).endswith("| OPS-3 | INC0010001")
    plain = words.plain_description()
    assert "**" not in plain and "`" not in plain and "Incident key: dt-P-7" in plain and "(https://dt.example" in plain


def test_the_servicenow_work_note_carries_the_last_records_of_the_timeline():
    records = [{"time": "t%d" % n, "action": "open", "step": "s%d" % n, "system": "jira", "result": "ok", "duration": 0.1}
               for n in range(60)]
    text = _incident.timeline_text("dt-P-7", records)
    lines = text.splitlines()
    assert len(lines) == 51 and "the last 50 of 60 records" in lines[0] and lines[1].startswith("t10 ") and lines[-1].startswith("t59 ")
    assert _incident.timeline_text("dt-P-7", records[:2]).splitlines()[0] == "Timeline (dt-P-7):"


def test_the_desks_are_linked_once_when_both_are_known(tmp_path):
    incident = _incident.Incident(four(tmp_path))
    assert incident.links() == []  # neither ticket known yet
    incident.found["ticket"] = dict(JIRA)
    assert incident.links() == []
    incident.found["servicenow"] = dict(SN)
    assert [(s.name, s.system) for s in incident.links()] == [("link servicenow", "jira"), ("link jira", "servicenow")]
    incident.saved = [{"step": "link servicenow", "system": "jira", "result": "changed"},
                      {"step": "link jira", "system": "servicenow", "result": "failed"}]
    assert [(s.name, s.system) for s in incident.links()] == [("link jira", "servicenow")]  # the failed one again
    incident.params["servicenow"]["enabled"] = False
    assert incident.links() == []


def calls_of(incident, answers):
    calls = []

    def call(system, args):
        calls.append((system, dict(args)))
        return answers.get(system, {"changed": True})
    incident.call = call
    return calls


def test_the_servicenow_step_maps_the_severity_escalation_and_resolution(tmp_path):
    incident = _incident.Incident(four(tmp_path))
    calls = calls_of(incident, {"servicenow": {"changed": True, "incident": {"number": "INC0010001", "state_name": "New"}}})
    step = incident.servicenow("open ticket", "present", work_note="started", work_note_id="k-opened")
    step.run(incident)
    system, args = calls[-1]
    assert (step.result, step.detail) == ("changed", "INC0010001 New") and incident.found["servicenow"]["number"] == "INC0010001"
    assert (args["severity"], args["host"], args["state"], args["work_note_id"]) == ("AVAILABILITY", "web-01", "present", "k-opened")
    assert "urgency" not in args and args["assignment_group"] is None

    unknown = _incident.Incident(four(tmp_path, problem=dict(PROBLEM, severity="SOMETHING_NEW")))
    calls = calls_of(unknown, {})
    unknown.servicenow("progress", "present").run(unknown)
    assert calls[-1][1]["severity"] is None  # never a failure for a severity the map does not know

    escalated = _incident.Incident(four(tmp_path, phase="update"))
    escalated.saved = [{"action": "escalate", "step": "escalated", "system": "servicenow", "result": "changed"}]
    calls = calls_of(escalated, {})
    escalated.servicenow("progress", "present").run(escalated)
    assert calls[-1][1]["urgency"] == 1

    timeline = tmp_path / "dt-P-7.json"
    timeline.write_text("{}")
    resolving = _incident.Incident(four(tmp_path, phase="resolve"))
    calls = calls_of(resolving, {})
    resolving.servicenow("resolve ticket", "resolved", close_notes="Resolved by selfheal.devops: ok",
                         attachments=[str(timeline), str(tmp_path / "dt-P-7-teams.md")]).run(resolving)
    args = calls[-1][1]
    assert (args["close_code"], args["close_notes"], args["attachment_match"]) == ("Solution provided", "Resolved by selfheal.devops: ok", "name")
    assert args["attachments"] == [str(timeline)] and "short_description" not in args  # only the files that exist


def test_a_failing_system_is_its_own_failed_step(tmp_path):
    incident = _incident.Incident(four(tmp_path))
    calls_of(incident, {"servicenow": {"failed": True, "msg": "ServiceNow: no assignment group is named 'X'"},
                        "teams": {"changed": True, "channel": {"displayName": "inc-dt-P-7"}, "added": ["u1"]}})
    steps = incident.stage([incident.servicenow("open ticket", "present"), incident.teams("open channel", "present", text="hi")])
    assert [(s.system, s.result) for s in steps] == [("servicenow", "failed"), ("teams", "changed")]
    assert incident.errors == [{"step": "open ticket", "system": "servicenow", "error": "ServiceNow: no assignment group is named 'X'"}]
    assert steps[1].detail == "inc-dt-P-7 +1 added"


def test_each_chat_brings_in_its_own_people_and_the_paged_ones(tmp_path):
    incident = _incident.Incident(four(tmp_path))
    incident.found["on_call"] = [{"members": [{"target_name": "oncall.primary"}, {"target_name": "oncall.secondary"}]}]
    assert incident.invitees("teams") == ["lead@example.com", "oncall.primary@example.com", "oncall.secondary@example.com"]
    assert incident.invitees("slack") == ["U1"]  # no domain for Slack here
    calls = calls_of(incident, {})
    incident.teams("open channel", "present", text=incident.words.teams_opening, members=True, description=incident.words.topic,
                   message_id="opening").run(incident)
    args = calls[-1][1]
    assert args["members"][-1] == "oncall.secondary@example.com" and args["message_id"] == "opening"
    assert args["description"] == incident.words.summary
