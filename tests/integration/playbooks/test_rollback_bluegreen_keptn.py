"""rollback_bluegreen through Keptn: a problem on a Keptn-managed service (the keptn_* tags Keptn's Dynatrace
integration sets) triggers exactly one rollback sequence, resolves the incident, and a failed sequence escalates."""

import json


def problem_with_keptn_tags(sandbox):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Response time degradation", "severity": "PERFORMANCE",
        "entities": [{"type": "SERVICE", "name": "carts"}],
        "tags": {"keptn_project": "sockshop", "keptn_stage": "production", "keptn_service": "carts"}})
    normalised = {"id": problem["problemId"], "display_id": problem["displayId"], "title": problem["title"],
                  "severity": "PERFORMANCE", "entities": [{"type": "SERVICE", "name": "carts"}],
                  "tags": {"keptn_project": "sockshop", "keptn_stage": "production", "keptn_service": "carts"}}
    return problem, {"selfheal_problem": normalised, "selfheal_incident_key": "dt-" + problem["displayId"]}


def inventory(tmp_path):
    return {"all": {"hosts": {"localhost": {"ansible_connection": "local"}},
                    "vars": {"incident_timeline_dir": str(tmp_path / "incidents"), "incident_jira_project": "OPS",
                             "selfheal_target_hosts": "localhost"}}}


def sequences(sandbox):
    return list(sandbox.state()["keptn"]["sequences"].values())


def test_keptn_rollback_resolves_the_incident_once(sandbox, sandbox_env, collection_playbook, tmp_path):
    problem, extra = problem_with_keptn_tags(sandbox)
    extra["selfheal_target_hosts"] = "localhost"
    for attempt in range(2):
        run = collection_playbook("rollback_bluegreen", inventory(tmp_path), extra, env=sandbox_env)
        assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
        run.assert_no_secret()
    [sequence] = sequences(sandbox)
    assert sequence["name"] == "rollback" and sequence["service"] == "carts" and sequence["stage"] == "production"
    assert sandbox.state()["dynatrace"]["problems"][problem["problemId"]]["status"] == "CLOSED"
    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    assert any("Keptn rolled carts back in sockshop" in c for c in comments), comments
    [ticket] = sandbox.state()["jira"]["cloud"]["issues"].values()
    assert ticket["fields"]["status"] == "Resolved"
    timeline = json.loads((tmp_path / "incidents" / (extra["selfheal_incident_key"] + ".json")).read_text())
    assert [r["step"] for r in timeline["records"]].count("open ticket") == 1


def test_a_failed_keptn_sequence_escalates(sandbox, sandbox_env, collection_playbook, tmp_path):
    sandbox.call("POST", "/_sandbox/keptn/config", {"result": "fail"})
    problem, extra = problem_with_keptn_tags(sandbox)
    extra["selfheal_target_hosts"] = "localhost"
    run = collection_playbook("rollback_bluegreen", inventory(tmp_path), extra, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    assert sandbox.state()["dynatrace"]["problems"][problem["problemId"]]["status"] == "OPEN"
    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    assert any(c.startswith("[selfheal.devops] Escalated to a human:") and "fail" in c for c in comments), comments
    [ticket] = sandbox.state()["jira"]["cloud"]["issues"].values()
    assert ticket["fields"]["status"] == "Open"
