"""keptn_rollback against the sandbox's Keptn v1, through real ansible-playbook."""

from sandbox import credentials

ARGS = {"project": "sockshop", "stage": "production", "service": "carts", "poll_interval": 0.5, "wait_timeout": 20}


def task(name, check=None, **args):
    item = {"name": name, "selfheal.devops.keptn_rollback": dict(ARGS, **args), "register": "r", "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


def sequences(sandbox):
    return sandbox.state()["keptn"]["sequences"]


def test_check_apply_rerun_success(sandbox, sandbox_env, playbook):
    sandbox.call("POST", "/_sandbox/keptn/config", {"appear_delay": 0.3, "finish_delay": 0.5, "result": "pass"})
    run = playbook([task("check", check=True, incident_key="dt-P-1"), task("apply", incident_key="dt-P-1"),
                    task("rerun", incident_key="dt-P-1")], env=sandbox_env)
    run.assert_no_secret()
    assert run["check"]["changed"] and run["check"]["would_send"]["type"] == "sh.keptn.event.production.rollback.triggered"
    assert run["check"]["would_send"]["data"]["labels"]["selfheal-incident"] == "dt-P-1"
    assert run["apply"]["changed"] and run["apply"]["state"] == "finished" and run["apply"]["result"] == "pass"
    assert run["rerun"]["changed"] is False and run["rerun"]["keptn_context"] == run["apply"]["keptn_context"]
    assert len(sequences(sandbox)) == 1


def test_failed_rollback_and_timeout(sandbox, sandbox_env, playbook):
    sandbox.call("POST", "/_sandbox/keptn/config", {"appear_delay": 0.1, "finish_delay": 0.2, "result": "fail"})
    run = playbook([task("fails", incident_key="dt-P-2"),
                    task("tolerated", incident_key="dt-P-2", fail_on_result=False)], env=sandbox_env)
    assert run["fails"]["failed"] and "with result fail" in run["fails"]["msg"] and run["fails"]["keptn_context"]
    assert run["tolerated"]["result"] == "fail" and not run["tolerated"].get("failed") and not run["tolerated"]["changed"]
    sandbox.call("POST", "/_sandbox/keptn/config", {"manual": True, "appear_delay": 0})
    run = playbook([task("times out", incident_key="dt-P-3", wait_timeout=2)], env=sandbox_env)
    assert run["times out"]["failed"] and "did not finish within 2 s (state: started)" in run["times out"]["msg"]
    assert "Traceback" not in run.stdout + run.stderr


def test_recovers_from_gateway_429_and_503(sandbox, sandbox_env, playbook):
    sandbox.fault(credentials.KEPTN_PREFIX + "/api/v1/event", status=429, headers={"Retry-After": "1"},
                  body={"code": 429, "message": "too many requests"})
    sandbox.fault(credentials.KEPTN_PREFIX + "/api/mongodb-datastore/event", method="GET", status=503, times=2)
    run = playbook([task("rollback", incident_key="dt-P-4")], env=sandbox_env)
    assert run["rollback"]["changed"] and run["rollback"]["state"] == "finished", run["rollback"]
    assert len(sequences(sandbox)) == 1


def test_clear_errors_on_bad_token_and_validation(sandbox, sandbox_env, playbook):
    wrong = dict(sandbox_env, KEPTN_API_TOKEN="not-the-keptn-token")
    run = playbook([task("bad token", incident_key="dt-P-5")], env=wrong)
    assert run["bad token"]["failed"] and run["bad token"]["error_kind"] == "auth"
    assert "unauthenticated or invalid credentials" in run["bad token"]["msg"]
    run = playbook([task("unknown service", incident_key="dt-P-5", service="payments")], env=sandbox_env)
    assert run["unknown service"]["failed"] and "HTTP 400" in run["unknown service"]["msg"]
    assert "does not exist in project sockshop" in run["unknown service"]["msg"]
    assert "Traceback" not in run.stdout + run.stderr
    run.assert_no_secret()


def test_bad_timings_and_names_fail_before_any_request(sandbox, sandbox_env, playbook):
    """wait_timeout -1 used to trigger the rollback and then fail; poll_interval -1 triggered and crashed; 0 polled
    ~500 times a second. Every one now fails with invalid_input and the sandbox sees no request at all."""
    bad = {"negative timeout": {"wait_timeout": -1}, "negative interval": {"poll_interval": -1},
           "zero interval": {"poll_interval": 0}, "capital stage": {"stage": "Production"},
           "empty service": {"service": ""}}
    run = playbook([task(name, incident_key="dt-P-6", **args) for name, args in bad.items()], env=sandbox_env)
    for name in bad:
        result = run[name]
        assert result["failed"] and result["error_kind"] == "invalid_input", (name, result)
        assert result["changed"] is False and "keptn_context" not in result, name
    assert "must be at least 1 second" in run["negative timeout"]["msg"]
    assert "poll_interval must be between 0.2 and 300" in run["zero interval"]["msg"]
    assert "not a Keptn name" in run["capital stage"]["msg"]
    assert sandbox.requests(credentials.KEPTN_PREFIX + "/*") == []
    assert not sequences(sandbox)
    assert "Traceback" not in run.stdout + run.stderr


def test_a_failure_after_the_trigger_reports_the_change(sandbox, sandbox_env, playbook):
    """Triggered, then the sequence state cannot be read: the failure says changed=true and what was written."""
    sandbox.call("POST", "/_sandbox/keptn/config", {"manual": True, "appear_delay": 0})
    sandbox.fault(credentials.KEPTN_PREFIX + "/api/controlPlane/*", method="GET", status=500, times=50,
                  body={"code": 500, "message": "shipyard-controller unavailable"})
    run = playbook([task("triggered then broken", incident_key="dt-P-7", max_retries=0)], env=sandbox_env)
    result = run["triggered then broken"]
    assert result["failed"] and result["changed"] is True, result
    assert result["keptn_context"] and result["written"][0].startswith("triggered sh.keptn.event.production.rollback")
    assert "shipyard-controller unavailable" in result["msg"] and "this run had already triggered" in result["msg"]
    assert len(sequences(sandbox)) == 1
    run.assert_no_secret()
