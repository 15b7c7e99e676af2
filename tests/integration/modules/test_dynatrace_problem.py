"""dynatrace_problem and dynatrace_problem_info against the sandbox, through real ansible-playbook."""

from sandbox import credentials

PREFIX = credentials.DYNATRACE_PREFIX


def open_problem(sandbox, **spec):
    spec.setdefault("title", "Process unavailable")
    spec.setdefault("entities", [{"type": "HOST", "name": "web-01"}, {"type": "SERVICE", "name": "checkout"}])
    return sandbox.call("POST", "/_sandbox/dynatrace/problems", spec)


def task(name, module="selfheal.devops.dynatrace_problem", check=None, **args):
    item = {"name": name, module: args, "register": "r", "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


def test_comment_event_close_check_apply_rerun(sandbox, sandbox_env, playbook):
    problem = open_problem(sandbox)
    display = problem["displayId"]
    comment = "[selfheal.devops] Restarting checkout on web-01"
    event = {"event_type": "CUSTOM_INFO", "title": "[selfheal.devops] restart of checkout", "target": "host",
             "properties": {"runbook": "process crash"}}
    steps = []
    for phase, check in (("check", True), ("apply", False), ("rerun", False)):
        steps.append(task("comment " + phase, check=check, problem_id=display, comment=comment))
        steps.append(task("event " + phase, check=check, problem_id=display, event=event, incident_key="dt-" + display))
        steps.append(task("close " + phase, check=check, problem_id=display, state="closed", close_message="verified fix"))
    run = playbook(steps, env=sandbox_env, diff=True)
    run.assert_no_secret()

    assert run["comment check"]["changed"] and run["comment check"]["commented"]
    assert run["event check"]["changed"] and run["event check"]["event"]["would_send"]["entitySelector"].startswith("entityId(")
    assert run["close check"]["changed"] and run["close check"]["problem"]["status"] == "CLOSED"
    assert run["comment apply"]["changed"] and run["comment apply"]["diff"]["after"]["comments"] == [comment]
    assert run["event apply"]["event"]["eventIngestResults"][0]["status"] == "OK"
    assert run["close apply"]["closed"] and run["close apply"]["problem"]["status"] == "CLOSED"
    for name in ("comment rerun", "event rerun", "close rerun"):
        assert run[name]["changed"] is False, name

    state = sandbox.state()["dynatrace"]
    stored = state["problems"][problem["problemId"]]
    assert stored["status"] == "CLOSED"
    comments = state["comments"][problem["problemId"]]
    assert [c["content"] for c in comments if c["context"] == "selfheal.devops"] == [comment]
    assert [c["content"] for c in comments if c["content"] == "verified fix"] == ["verified fix"]
    events = [e for e in state["events"] if e["title"] == event["title"]]
    assert len(events) == 1 and events[0]["properties"]["selfheal.marker"] == "dt-" + display
    assert events[0]["entityId"] == problem["impactedEntities"][0]["entityId"]["id"]


def test_per_entity_failure_under_201_fails_clearly(sandbox, sandbox_env, playbook):
    problem = open_problem(sandbox)
    sandbox.call("POST", "/_sandbox/dynatrace/settings", {"ingest_reject_types": ["SERVICE"]})
    run = playbook([task("event", problem_id=problem["problemId"], event={"title": "deployment", "target": "service"})], env=sandbox_env)
    assert run["event"]["failed"]
    assert "did not apply it" in run["event"]["msg"] and "INVALID_ENTITY_TYPE" in run["event"]["msg"]
    assert "Traceback" not in run.stdout + run.stderr


def test_info_reads_two_thousand_problems_in_four_requests(sandbox, sandbox_env, playbook):
    sandbox.call("POST", "/_sandbox/dynatrace/problems/bulk", {"count": 2000})
    sandbox.call("DELETE", "/_sandbox/log")
    run = playbook([
        task("all open", module="selfheal.devops.dynatrace_problem_info", problem_selector='status("open")',
             fields=["evidenceDetails"], query="length([?status=='OPEN'])"),
    ], env=sandbox_env)
    result = run["all open"]
    assert result["count"] == 2000 and result["requests"] == 4 and result["query_result"] == 2000
    assert result["changed"] is False
    listed = sandbox.requests(PREFIX + "/api/v2/problems")
    assert len(listed) == 4
    assert all(set(entry["query"]) == {"nextPageKey", "fields"} for entry in listed[1:])  # fields re-sent, nothing else


def test_info_one_problem_by_display_id_and_module_defaults_group(sandbox, sandbox_env, playbook):
    problem = open_problem(sandbox, tags={"app": "checkout"})
    play_env = {k: v for k, v in sandbox_env.items() if not k.startswith("DYNATRACE_")}
    tasks = [{"name": "grouped", "block": [
        task("by display id", module="selfheal.devops.dynatrace_problem_info", problem_id=problem["displayId"], return_raw=True),
        task("comment via group", problem_id=problem["problemId"], comment="grouped")],
        "module_defaults": {"group/selfheal.devops.dynatrace": {
            "url": sandbox_env["DYNATRACE_URL"], "api_token": "{{ dt_token }}"}}}]
    run = playbook(tasks, env=play_env, extra_vars={"dt_token": credentials.DYNATRACE_TOKEN})
    found = run["by display id"]["problems"][0]
    assert found["id"] == problem["problemId"] and found["tags"] == {"app": "checkout"}
    assert run["by display id"]["raw"][0]["problemId"] == problem["problemId"]
    assert run["comment via group"]["commented"]
    run.assert_no_secret()


def test_recovers_from_429_and_503(sandbox, sandbox_env, playbook):
    problem = open_problem(sandbox)
    path = PREFIX + "/api/v2/problems/" + problem["problemId"]
    sandbox.fault(path, method="GET", times=1, status=429, headers={"Retry-After": "1"},
                  body={"error": {"code": 429, "message": "Too many requests"}})
    sandbox.fault(path + "/comments", method="POST", times=2, status=503)
    run = playbook([task("comment", problem_id=problem["problemId"], comment="after faults")], env=sandbox_env)
    assert run["comment"]["changed"] and not run["comment"].get("failed")
    assert any("HTTP 429; retrying in 1.0 s" in w for w in run["comment"]["warnings"])
    assert sum("HTTP 503" in w for w in run["comment"]["warnings"]) == 2
    comments = sandbox.state()["dynatrace"]["comments"][problem["problemId"]]
    assert [c["content"] for c in comments] == ["after faults"]


def test_clear_errors_on_bad_token_and_unknown_problem(sandbox, sandbox_env, playbook):
    problem = open_problem(sandbox)
    wrong = dict(sandbox_env, DYNATRACE_API_TOKEN="dt0c01.WRONGWRONGWRONGWRONGWRONG.secretsecretsecret")
    run = playbook([task("bad token", problem_id=problem["problemId"], comment="x")], env=wrong)
    assert run["bad token"]["failed"] and run["bad token"]["error_kind"] == "auth"
    assert "Token Authentication failed" in run["bad token"]["msg"] and "WRONGWRONG" not in run.stdout + run.stderr
    run = playbook([task("unknown id", problem_id="-1_1V2", comment="x"),
                    task("unknown display id", problem_id="P-999999", comment="x")], env=sandbox_env)
    assert run["unknown id"]["failed"] and run["unknown id"]["error_kind"] == "not_found"
    assert "HTTP 404" in run["unknown id"]["msg"]
    assert run["unknown display id"]["error_kind"] == "not_found" and "P-999999" in run["unknown display id"]["msg"]
    assert "Traceback" not in run.stdout + run.stderr
    run.assert_no_secret()
