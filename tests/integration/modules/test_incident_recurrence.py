"""incident_recurrence through real ansible-playbook against the sandbox's Jira: the same crash five times in the
window - the 4th occurrence opens one Problem ticket linked to the four incidents (and asks to page the owner once),
the 5th is linked to it and opens no other; check mode writes nothing; a re-run changes nothing."""

import json

import pytest

PROBLEM = {"title": "Process unavailable: checkout", "severity": "AVAILABILITY", "root_cause": "checkout",
           "entities": [{"type": "HOST", "name": "web-01"}, {"type": "PROCESS_GROUP_INSTANCE", "name": "checkout"}],
           "tags": {"selfheal_scenario": "process_crash", "service": "checkout"}}


def normalised(raw):
    entities = [{"id": e["entityId"]["id"], "type": e["entityId"]["type"], "name": e["name"]} for e in raw["impactedEntities"]]
    root = raw["rootCauseEntity"]
    return {"id": raw["problemId"], "display_id": raw["displayId"], "title": raw["title"], "status": raw["status"],
            "severity": raw["severityLevel"], "impact": raw["impactLevel"], "entities": entities,
            "root_cause": {"id": root["entityId"]["id"], "type": root["entityId"]["type"], "name": root["name"]},
            "tags": dict((t["key"], t.get("value", "")) for t in raw["entityTags"]), "management_zones": [],
            "start_time": raw["startTime"], "end_time": -1}


def timeline_file(directory, key, problem, seconds):
    """The timeline the role would have attached: page, fix (healthy after `seconds`), resolve."""
    start = problem["start_time"] / 1000.0
    records = [{"time": iso(start + 3), "incident": key, "action": "open", "step": "page on-call", "system": "xmatters",
                "result": "changed", "duration": 1.0, "detail": ""},
               {"time": iso(start + 5 + seconds), "incident": key, "action": "record", "step": "restart process", "system": "web-01",
                "result": "changed", "duration": float(seconds), "detail": "healthy"},
               {"time": iso(start + 7 + seconds), "incident": key, "action": "resolve", "step": "resolved", "system": "dynatrace",
                "result": "changed", "duration": 0.5, "detail": "closed"}]
    path = directory / (key + ".json")
    path.write_text(json.dumps({"incident": key, "problem": problem["display_id"], "records": records}))
    return str(path)


def iso(epoch):
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + ".000Z"


def occurrence(sandbox, directory, number):
    raw = sandbox.call("POST", "/_sandbox/dynatrace/problems", PROBLEM)
    problem = normalised(raw)
    key = "dt-" + problem["display_id"]
    ticket = {"name": "ticket %d" % number, "register": "t", "selfheal.devops.jira_incident": {
        "project": "OPS", "incident_key": key, "summary": "%s: %s on web-01" % (problem["display_id"], problem["title"]),
        "labels": ["selfheal"], "attachments": [timeline_file(directory, key, problem, 10 + number)]}}
    return key, problem, ticket


def recurrence(name, key, problem, **extra):
    args = dict({"incident_key": key, "problem": problem, "threshold": 3}, **extra)
    return {"name": name, "selfheal.devops.incident_recurrence": args, "register": "r", "ignore_errors": True}


def problem_tickets(sandbox):
    return [i for i in sandbox.state()["jira"]["cloud"]["issues"].values() if i["fields"]["issuetype"] == "Problem"]


def test_fourth_occurrence_opens_one_problem_ticket_and_the_fifth_does_not(sandbox, sandbox_env, playbook, tmp_path):
    tasks, keys = [], []
    for number in range(1, 5):
        key, problem, ticket = occurrence(sandbox, tmp_path, number)
        keys.append(key)
        tasks.append(ticket)
        if number == 4:
            tasks.append(dict(recurrence("check 4", key, problem), check_mode=True))
        tasks.append(recurrence("occurrence %d" % number, key, problem))
    run = playbook(tasks, env=sandbox_env, diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    run.assert_no_secret()
    first = run["occurrence 1"]
    assert first["count"] == 0 and first["message"] == "first occurrence in the last 30 days" and "problem_ticket" not in first
    # The 1st healed 16 s after its problem started; its ticket alone knows detection from its first record (+2 s): 14 s.
    assert run["occurrence 2"]["message"] == \
        "seen 1 time in the last 30 days, last fixed by selfheal.devops (restart process on web-01) in 14 s"
    assert run["occurrence 3"]["count"] == 2 and not run["occurrence 3"]["page_owner"]
    check = run["check 4"]
    assert check["changed"] and check["problem_ticket"]["created"] and check["problem_ticket"]["key"] is None
    fourth = run["occurrence 4"]
    assert fourth["occurrences"] == 4 and fourth["page_owner"] is True and fourth["problem_ticket"]["created"]
    assert fourth["message"].startswith("seen 3 times in the last 30 days, last fixed by selfheal.devops (restart process on web-01)")
    [problem_issue] = problem_tickets(sandbox)
    assert problem_issue["key"] == fourth["problem_ticket"]["key"] and problem_issue["fields"]["status"] == "Open"
    assert problem_issue["fields"]["summary"].startswith("Recurring: root cause ")
    tickets = [t["key"] for t in sorted(sandbox.state()["jira"]["cloud"]["issues"].values(), key=lambda i: int(i["id"]))
               if t["fields"]["issuetype"] == "Incident"]
    links = sandbox.state()["jira"]["cloud"]["links"].values()
    assert sorted(link["outward"] for link in links if link["inward"] == problem_issue["key"]) == sorted(tickets)
    comments = [json.dumps(c["body"]) for c in sandbox.state()["jira"]["cloud"]["issues"][tickets[3]]["comments"]]
    assert sum("seen 3 times in the last 30 days" in c for c in comments) == 1

    key, problem, ticket = occurrence(sandbox, tmp_path, 5)
    fifth_run = playbook([ticket, recurrence("occurrence 5", key, problem), recurrence("again", key, problem)], env=sandbox_env)
    assert fifth_run.rc == 0, fifth_run.stdout[-3000:]
    fifth, again = fifth_run["occurrence 5"], fifth_run["again"]
    assert fifth["occurrences"] == 5 and not fifth["page_owner"] and not fifth["problem_ticket"]["created"]
    assert fifth["problem_ticket"]["key"] == problem_issue["key"] and len(fifth["problem_ticket"]["linked"]) == 1
    assert len(problem_tickets(sandbox)) == 1
    assert not again["changed"] and again["problem_ticket"]["linked"] == []
    assert len([link for link in sandbox.state()["jira"]["cloud"]["links"].values() if link["inward"] == problem_issue["key"]]) == 5


def test_signature_labels_written_once_and_other_failures_do_not_count(sandbox, sandbox_env, playbook, tmp_path):
    key, problem, ticket = occurrence(sandbox, tmp_path, 1)
    other = sandbox.call("POST", "/_sandbox/dynatrace/problems", dict(PROBLEM, title="Low disk space on /var", root_cause="db-01",
                                                                      entities=[{"type": "HOST", "name": "db-01"}],
                                                                      tags={"selfheal_scenario": "full_disk"}))
    other_problem = normalised(other)
    other_key = "dt-" + other_problem["display_id"]
    other_ticket = {"name": "other ticket", "selfheal.devops.jira_incident": {
        "project": "OPS", "incident_key": other_key, "summary": "x", "labels": ["selfheal"]}}
    run = playbook([ticket, recurrence("first", key, problem), other_ticket, recurrence("other", other_key, other_problem),
                    recurrence("first again", key, problem)], env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    assert run["first"]["changed"] and not run["first again"]["changed"]
    assert run["other"]["count"] == 0  # a full disk on db-01 is not the checkout crash on web-01
    labels = [i for i in sandbox.state()["jira"]["cloud"]["issues"].values() if key in i["fields"]["labels"]][0]["fields"]["labels"]
    assert [s["label"] for s in run["first"]["signatures"]] == [label for label in labels if label.startswith("selfheal-sig-")]


@pytest.mark.parametrize("extra, message", [
    ({"incident_key": "dt-P-404"}, "no Jira ticket carries the label dt-P-404"),
    ({"threshold": 0}, "window_days and threshold must be at least 1"),
    ({"problem": {"severity": "x"}}, "problem must be the normalised Dynatrace problem"),
])
def test_bad_input_fails_clearly(sandbox, sandbox_env, playbook, extra, message):
    args = dict({"incident_key": "dt-P-1", "problem": {"title": "t", "entities": []}}, **extra)
    run = playbook([{"name": "r", "selfheal.devops.incident_recurrence": args, "ignore_errors": True}], env=sandbox_env)
    assert run["r"]["failed"] and message in run["r"]["msg"], run["r"]
    assert "Traceback" not in run.stdout + run.stderr
    run.assert_no_secret()
