"""servicenow_incident against the sandbox's ServiceNow through real ansible-playbook: check mode -> apply -> idempotent
re-run (one read, zero writes, from the request log) -> sandbox state, for every state; OAuth, retries and clear errors."""

import hashlib

from sandbox import credentials

MODULE = "selfheal.devops.servicenow_incident"
KEY = "dt-P-1234"
SN = credentials.SERVICENOW_PREFIX


def task(name, check=None, **args):
    item = {"name": name, MODULE: dict({"incident_key": KEY}, **args), "register": "r", "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


def phases(prefix, **args):
    return [task("%s %s" % (prefix, phase), check=phase == "check", **args) for phase in ("check", "apply", "rerun")]


def incidents(sandbox):
    return list(sandbox.state()["servicenow"]["tables"]["incident"].values())


def writes(entries):
    return [e for e in entries if e["method"] not in ("GET", "HEAD")]


def opened(**changes):
    """The arguments of OPEN with some changed."""
    merged = dict(OPEN)
    merged.update(changes)
    return merged


OPEN = dict(short_description="Dynatrace P-1234: web crashed on web-01", description="Opened by selfheal.devops",
            severity="ERROR", assignment_group="Linux Operations", host="web-01.example.com",
            work_note="Restarting web on web-01.", fields={"category": "software", "caller_id": "Abel Tuter"})


def test_every_state_check_apply_rerun_and_sandbox_state(sandbox, sandbox_env, playbook, tmp_path):
    transcript = tmp_path / "teams-transcript.md"
    transcript.write_text("- `10:01` **Oncall Primary**: restarting\n")
    trace = tmp_path / "trace.log"
    trace.write_bytes(b"\x00trace\x01" * 100)
    steps = (phases("present", **OPEN)
             + phases("updated", state="updated", severity="AVAILABILITY", comment="We are on it.")
             + phases("attach", state="updated", attachments=[str(transcript), str(trace)])
             + phases("resolved", state="resolved", close_notes="Restarted web; health check passed.",
                      work_note="Verified healthy for 5 minutes.")
             + phases("closed", state="closed"))
    run = playbook(steps, env=sandbox_env, diff=True)
    run.assert_no_secret()
    assert "Traceback" not in run.stdout + run.stderr
    for name, result in run.results.items():
        assert not result.get("failed"), (name, result.get("msg"))
        assert result["changed"] is (not name.endswith("rerun")), name

    check, applied = run["present check"], run["present apply"]
    assert check["created"] and check["number"] is None and check["diff"]["before"] == {}
    assert check["diff"]["after"]["assignment_group"] == "Linux Operations" and check["diff"]["after"]["cmdb_ci"] == "web-01"
    assert check["incident"]["urgency"] == "1" and check["incident"]["impact"] == "2"
    assert applied["created"] and applied["number"] == "INC0010001" and applied["work_note_added"]
    assert applied["incident"]["priority_name"] == "2 - High" and applied["incident"]["assignment_group_name"] == "Linux Operations"
    assert applied["incident"]["cmdb_ci_name"] == "web-01" and applied["incident"]["state_name"] == "New"
    assert applied["url"].endswith("/nav_to.do?uri=incident.do?sys_id=%s" % applied["sys_id"])
    assert run["present rerun"]["number"] == "INC0010001" and not run["present rerun"]["work_note_added"]
    assert run["present rerun"]["diff"] == {"before": {}, "after": {}}

    for phase in ("check", "apply"):
        updated = run["updated " + phase]
        assert updated["updated_fields"] == ["impact"] and updated["comment_added"]
        assert updated["diff"]["before"] == {"impact": "2 - Medium"} and updated["diff"]["after"]["impact"] == "1"
    assert run["updated check"]["incident"]["impact"] == "1" and run["updated apply"]["incident"]["priority_name"] == "1 - Critical"
    assert run["attach check"]["attached"] == ["teams-transcript.md", "trace.log"] == run["attach apply"]["attached"]
    assert run["attach rerun"]["attached"] == []
    assert run["resolved check"]["transitioned"] == {"from": "New", "to": "Resolved"}
    assert run["resolved apply"]["incident"]["state_name"] == "Resolved" and run["resolved apply"]["work_note_added"]
    assert run["resolved apply"]["incident"]["close_code"] == "Solution provided"
    assert run["resolved rerun"]["transitioned"] is None
    assert run["closed apply"]["transitioned"] == {"from": "Resolved", "to": "Closed"}

    [incident] = incidents(sandbox)
    assert incident["number"] == "INC0010001" and incident["state"] == "7" and incident["priority"] == "1"
    assert incident["correlation_id"] == KEY and incident["correlation_display"] == "selfheal.devops"
    assert incident["close_notes"] == "Restarted web; health check passed." and incident["category"] == "software"
    state = sandbox.state()["servicenow"]
    groups, cis, users = (state["tables"][t] for t in ("sys_user_group", "cmdb_ci", "sys_user"))
    assert groups[incident["assignment_group"]]["name"] == "Linux Operations" and cis[incident["cmdb_ci"]]["name"] == "web-01"
    assert users[incident["caller_id"]]["user_name"] == "abel.tuter"  # a reference field given by display value
    journal = state["journal"][incident["sys_id"]]
    assert [(e["element"], e["value"].splitlines()[0]) for e in journal] == [
        ("work_notes", "Restarting web on web-01."), ("comments", "We are on it."),
        ("work_notes", "Verified healthy for 5 minutes.")]
    assert all(e["value"].endswith("]") and "[selfheal:" in e["value"] for e in journal)
    attached = sorted((a["file_name"], a["size_bytes"], a["hash"]) for a in state["attachments"].values())
    assert attached == [("teams-transcript.md", str(transcript.stat().st_size), hashlib.sha256(transcript.read_bytes()).hexdigest()),
                        ("trace.log", "700", hashlib.sha256(trace.read_bytes()).hexdigest())]


def test_idempotent_rerun_is_one_read_and_zero_writes(sandbox, sandbox_env, playbook):
    first = playbook([task("open", **OPEN)], env=sandbox_env)
    assert first["open"]["created"]
    sandbox.call("DELETE", "/_sandbox/log")
    again = playbook([task("open", **OPEN)], env=sandbox_env)
    assert not again["open"]["changed"]
    entries = sandbox.requests(SN + "/*")
    assert [(e["method"], e["path"]) for e in entries] == [("GET", SN + "/api/now/table/incident")]
    assert entries[0]["query"]["sysparm_display_value"] == "all"
    assert entries[0]["query"]["sysparm_query"] == "correlation_id=%s^correlation_display=selfheal.devops^ORDERBYsys_created_on" % KEY
    assert len(incidents(sandbox)) == 1


def test_oauth_client_credentials_token_refreshed_on_401_and_module_defaults(sandbox, sandbox_env, playbook):
    env = dict((k, v) for k, v in sandbox_env.items() if not k.startswith("SERVICENOW_"))
    group = {"url": sandbox_env["SERVICENOW_URL"], "client_id": credentials.SERVICENOW_CLIENT_ID,
             "client_secret": "{{ sn_secret }}"}
    tasks = [{"name": "grouped", "module_defaults": {"group/selfheal.devops.servicenow": group}, "block": [
        task("open", short_description="OAuth incident", work_note="via OAuth"),
        task("password grant", state="updated", comment="via the password grant", user=credentials.SERVICENOW_USER,
             password="{{ sn_password }}"),
    ]}]
    # The instance forgets the token between the lookup and the write: one 401, one new token, no failure.
    sandbox.fault(SN + "/api/now/table/incident", method="POST", times=1, status=401,
                  body={"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
                        "status": "failure"})
    run = playbook(tasks, env=env, extra_vars={"sn_secret": credentials.SERVICENOW_CLIENT_SECRET,
                                               "sn_password": credentials.SERVICENOW_PASSWORD})
    run.assert_no_secret()
    assert not run["open"].get("failed") and run["open"]["created"], run["open"]
    assert not run["password grant"].get("failed") and run["password grant"]["comment_added"], run["password grant"]
    tokens = sandbox.requests(SN + "/oauth_token.do")
    assert len(tokens) == 3  # open: first token, a new one after the 401; password grant: one
    assert len(incidents(sandbox)) == 1
    # A ready bearer token works too (SN_ACCESS_TOKEN, the servicenow.itsm variable).
    token = sandbox.state()["servicenow"]["tokens"]
    bearer_env = dict(env, SN_HOST=sandbox_env["SERVICENOW_URL"], SN_ACCESS_TOKEN=sorted(token)[0])
    bearer = playbook([task("bearer", state="updated", work_note="with a bearer token")], env=bearer_env)
    assert bearer["bearer"]["work_note_added"] and not bearer["bearer"].get("failed")


def test_recovers_from_429_and_503(sandbox, sandbox_env, playbook, tmp_path):
    evidence = tmp_path / "evidence.txt"
    evidence.write_text("df -h /var\n")
    sandbox.fault(SN + "/api/now/table/incident", method="GET", times=1, status=429, headers={"Retry-After": "1"},
                  body={"error": {"message": "Rate limit exceeded", "detail": "Too many requests"}, "status": "failure"})
    sandbox.fault(SN + "/api/now/table/incident", method="POST", times=1, status=503,
                  body={"error": {"message": "Service Unavailable", "detail": None}, "status": "failure"})
    sandbox.fault(SN + "/api/now/attachment/file", method="POST", times=1, status=429, headers={"Retry-After": "0"})
    run = playbook([task("open", attachments=[str(evidence)], **OPEN)], env=sandbox_env)
    result = run["open"]
    assert not result.get("failed") and result["created"] and result["attached"] == ["evidence.txt"], result
    assert any("HTTP 429; retrying in 1.0 s" in w for w in result["warnings"]) and any("HTTP 503" in w for w in result["warnings"])
    assert len(incidents(sandbox)) == 1 and len(sandbox.state()["servicenow"]["attachments"]) == 1


def test_clear_errors_nothing_half_created_no_secret(sandbox, sandbox_env, playbook, tmp_path):
    evidence = tmp_path / "evidence.txt"
    evidence.write_text("evidence\n")
    run = playbook([
        task("bad password", password="sn-wrong-password-9999", **OPEN),
        task("unknown group", **opened(assignment_group="Nobody Home")),
        task("unknown host", **opened(host="ghost-99.example.com", assignment_group=None)),
        task("no description", incident_key="dt-P-9", work_note="x"),
        task("nothing to update", incident_key="dt-P-8", state="updated", comment="x"),
        task("resolve without notes", state="resolved"),
        task("unreadable file", attachments=[str(tmp_path / "missing.txt")], **OPEN),
        task("unknown severity", **opened(severity="APOCALYPSE")),
        task("no role", user=credentials.SERVICENOW_NOROLE_USER, password=credentials.SERVICENOW_NOROLE_PASSWORD,
             incident_key="dt-P-7", short_description="x"),
        task("bad oauth client", client_id=credentials.SERVICENOW_CLIENT_ID, client_secret="sn-wrong-client-secret-9", **OPEN),
    ], env=sandbox_env)
    text = run.stdout + run.stderr
    assert "Traceback" not in text and "sn-wrong-password-9999" not in text and "sn-wrong-client-secret-9" not in text
    run.assert_no_secret()
    bad = run["bad password"]
    assert bad["failed"] and bad["error_kind"] == "auth" and bad["status"] == 401
    assert bad["msg"].startswith("ServiceNow GET") and "User Not Authenticated (Required to provide Auth information)" in bad["msg"]
    unknown = run["unknown group"]
    assert unknown["failed"] and unknown["error_kind"] == "invalid_input" and "'Nobody Home'" in unknown["msg"]
    assert not unknown["changed"]
    ghost = run["unknown host"]
    assert not ghost.get("failed") and ghost["created"] and ghost["incident"]["cmdb_ci"] is None
    assert any("ghost-99.example.com" in w for w in ghost["warnings"])
    assert "short_description is required" in run["no description"]["msg"]
    assert run["nothing to update"]["error_kind"] == "not_found" and "dt-P-8" in run["nothing to update"]["msg"]
    assert "close_notes is required to resolve" in run["resolve without notes"]["msg"]
    assert run["unreadable file"]["error_kind"] == "invalid_input" and "missing.txt" in run["unreadable file"]["msg"]
    assert "APOCALYPSE" in run["unknown severity"]["msg"]
    # Without the itil role the lookup sees nothing and the create is refused by the ACL: one clear error.
    assert run["no role"]["status"] == 403 and "ACL Exception Insert Failed" in run["no role"]["msg"]
    oauth = run["bad oauth client"]
    assert oauth["error_kind"] == "auth" and oauth["msg"].startswith(
        "ServiceNow OAuth token request answered HTTP 401: server_error - access_denied (check client_id and client_secret")
    # Only the "unknown host" run created an incident; the unknown group failed before any write.
    assert [i["correlation_id"] for i in incidents(sandbox)] == [KEY]
    accepted = [e for e in writes(sandbox.requests(SN + "/api/now/*")) if e["status"] in (200, 201)]
    assert [(e["method"], e["path"]) for e in accepted] == [("POST", SN + "/api/now/table/incident")]


def test_a_failure_after_a_write_reports_what_was_written(sandbox, sandbox_env, playbook, tmp_path):
    evidence = tmp_path / "evidence.txt"
    evidence.write_text("evidence\n")
    sandbox.fault(SN + "/api/now/attachment/file", method="POST", times=1, status=400,
                  body={"error": {"message": "Attachment refused", "detail": "file type not allowed"}, "status": "failure"})
    run = playbook([task("open", attachments=[str(evidence)], **OPEN)], env=sandbox_env)
    result = run["open"]
    assert result["failed"] and result["changed"] and result["written"] == ["incident INC0010001"]
    assert "Attachment refused (file type not allowed)" in result["msg"] and "INC0010001" in result["msg"]
    again = playbook([task("open", attachments=[str(evidence)], **OPEN)], env=sandbox_env)["open"]
    assert not again.get("failed") and not again["created"] and again["attached"] == ["evidence.txt"]
    assert len(incidents(sandbox)) == 1


def test_attachment_match_name_attaches_a_growing_file_once_and_content_again(sandbox, sandbox_env, playbook, tmp_path):
    timeline = tmp_path / "dt-P-1234.json"
    timeline.write_text('{"records": [1]}\n')
    grow = {"name": "grow", "ansible.builtin.copy": {"dest": str(timeline), "content": '{"records": [1, 2]}\n'}}
    steps = ([task("open", **OPEN), task("first", state="updated", attachments=[str(timeline)]), grow]
             + phases("by name", state="updated", attachments=[str(timeline)], attachment_match="name")
             + phases("by content", state="updated", attachments=[str(timeline)]))
    run = playbook(steps, env=sandbox_env, diff=True)
    run.assert_no_secret()
    for name in ("first", "by name check", "by name apply", "by name rerun", "by content check", "by content apply", "by content rerun"):
        assert not run[name].get("failed"), (name, run[name].get("msg"))
    assert run["first"]["attached"] == ["dt-P-1234.json"]
    assert [run["by name " + p]["attached"] for p in ("check", "apply", "rerun")] == [[], [], []]
    assert not run["by name apply"]["changed"]
    assert run["by content check"]["attached"] == ["dt-P-1234.json"] == run["by content apply"]["attached"]
    assert run["by content rerun"]["attached"] == [] and not run["by content rerun"]["changed"]
    sizes = sorted(int(a["size_bytes"]) for a in sandbox.state()["servicenow"]["attachments"].values())
    assert sizes == [len('{"records": [1]}\n'), len('{"records": [1, 2]}\n')]  # the first, and the changed content once
