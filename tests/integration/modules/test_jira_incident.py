"""jira_incident against the sandbox's Jira Cloud (REST v3, ADF, Basic) and Data Center (REST v2, Bearer PAT),
through real ansible-playbook: check mode -> apply -> re-run -> sandbox state, for every state."""

import hashlib

import pytest

from sandbox import credentials
from ansible_collections.selfheal.devops.plugins.module_utils import jira as jira_utils

MODULE = "selfheal.devops.jira_incident"
DESCRIPTION = """Opened by **selfheal.devops** for [P-100](https://dt.example/p/100).

## Impact
- checkout on `web-01`
- payments

```sh
df -h /var
```"""


def task(name, check=None, **args):
    item = {"name": name, MODULE: args, "register": "r", "ignore_errors": True}
    if check is not None:
        item["check_mode"] = check
    return item


def env_for(mount, sandbox, sandbox_env):
    if mount == "cloud":
        return sandbox_env  # JIRA_URL/JIRA_USER/JIRA_TOKEN, api_version 3 (the default)
    env = {k: v for k, v in sandbox_env.items() if not k.startswith("JIRA_")}
    env.update(JIRA_URL=sandbox.url + credentials.JIRA_DC_PREFIX, JIRA_TOKEN=credentials.JIRA_PAT, JIRA_API_VERSION="2")
    return env


def phases(prefix, **args):
    return [task("%s %s" % (prefix, phase), check=phase == "check", **args) for phase in ("check", "apply", "rerun")]


@pytest.mark.parametrize("mount", ["cloud", "dc"])
def test_every_state_check_apply_rerun_and_sandbox_state(sandbox, sandbox_env, playbook, tmp_path, mount):
    transcript = tmp_path / "slack-transcript.txt"
    transcript.write_text("10:01 oncall: restarting checkout\n10:03 selfheal: healthy\n")
    trace = tmp_path / "trace.log"
    trace.write_bytes(b"\x00trace\x01" * 100)
    ident = dict(project="OPS", incident_key="dt-P-100")
    fields = dict(ident, summary="Disk full on web-01", description=DESCRIPTION, priority="High", labels=["dynatrace"],
                  components=["checkout"], custom_fields={"customfield_10060": {"value": "Major"}, "Root cause": "Disk **filled**"})
    updated = dict(fields)
    updated.update(summary="Disk full on web-01 and web-02", priority="Highest")
    steps = (phases("present", **fields)
             + phases("update", **updated)
             + phases("commented", state="commented", comment="Restarted **checkout** on `web-01`.", **ident)
             + phases("attach", attachments=[str(transcript), str(trace)], **ident)
             + phases("progress", status="In Progress", **ident)
             + phases("resolved", state="resolved", resolution="Fixed", comment="Resolved by selfheal.devops.", **ident))
    run = playbook(steps, env=env_for(mount, sandbox, sandbox_env), diff=True)
    run.assert_no_secret()
    assert "Traceback" not in run.stdout + run.stderr
    for name, result in run.results.items():
        assert not result.get("failed"), (name, result.get("msg"))
        assert result["changed"] is (not name.endswith("rerun")), name

    check = run["present check"]
    assert check["created"] and check["key"] is None and check["diff"]["before"] == {}
    assert check["diff"]["after"]["labels"] == ["dynatrace", "dt-P-100"] and check["diff"]["after"]["priority"] == "High"
    applied = run["present apply"]
    assert applied["created"] and applied["key"] == "OPS-1" and applied["status"] == "Open"
    assert applied["url"] == sandbox.url + ("/jira" if mount == "cloud" else "/jira-dc") + "/browse/OPS-1"
    assert applied["issue"]["components"] == ["checkout"] and applied["issue"]["labels"] == ["dynatrace", "dt-P-100"]
    assert run["present rerun"]["created"] is False and run["present rerun"]["diff"] == {"before": {}, "after": {}}

    for phase in ("check", "apply"):
        update = run["update " + phase]
        assert update["updated_fields"] == ["priority", "summary"]
        assert update["diff"] == {"before": {"summary": "Disk full on web-01", "priority": "High"},
                                  "after": {"summary": "Disk full on web-01 and web-02", "priority": "Highest"}}
    assert run["update check"]["issue"]["priority"] == "Highest"  # predicted
    assert run["commented check"]["commented"] and run["commented apply"]["comment_id"] == run["commented rerun"]["comment_id"]
    assert run["attach check"]["attached"] == ["slack-transcript.txt", "trace.log"] == run["attach apply"]["attached"]
    assert run["attach rerun"]["attached"] == []
    assert run["progress apply"]["transitioned"] == {"from": "Open", "to": "In Progress", "transition": "Start Progress"}
    assert run["resolved check"]["transitioned"] == {"from": "In Progress", "to": "Resolved", "transition": "Resolve Issue"}
    assert run["resolved check"]["status"] == "Resolved" and run["resolved apply"]["issue"]["resolution"] == "Fixed"
    assert run["resolved rerun"]["status"] == "Resolved" and run["resolved rerun"]["transitioned"] is None

    state = sandbox.state()["jira"][mount]
    assert list(state["issues"]) == ["OPS-1"]
    issue = state["issues"]["OPS-1"]
    stored = issue["fields"]
    assert stored["summary"] == "Disk full on web-01 and web-02" and stored["priority"] == "Highest"
    assert stored["labels"] == ["dynatrace", "dt-P-100"] and stored["components"] == ["checkout"]
    assert stored["status"] == "Resolved" and stored["resolution"] == "Fixed"
    assert stored["custom"]["customfield_10060"] == "10201"  # the option id of "Major"
    if mount == "cloud":
        assert stored["description"] == jira_utils.markdown_to_adf(DESCRIPTION)
        assert stored["custom"]["customfield_10070"] == jira_utils.markdown_to_adf("Disk **filled**")
        assert all(isinstance(c["body"], dict) for c in issue["comments"])
    else:
        assert stored["description"] == jira_utils.markdown_to_wiki(DESCRIPTION)
        assert stored["description"].startswith("Opened by *selfheal.devops* for [P-100|https://dt.example/p/100]")
        assert stored["custom"]["customfield_10070"] == "Disk *filled*"
        assert all(isinstance(c["body"], str) for c in issue["comments"])
    markers = [jira_utils.markers_in(c["body"]) for c in issue["comments"]]
    assert markers == [{run["commented apply"]["comment_id"]}, {run["resolved apply"]["comment_id"]}]
    assert [t["to"] for t in issue["transitions"]] == ["In Progress", "Resolved"]
    assert [(a["filename"], a["size"], a["sha256"]) for a in issue["attachments"]] == [
        ("slack-transcript.txt", transcript.stat().st_size, hashlib.sha256(transcript.read_bytes()).hexdigest()),
        ("trace.log", 700, hashlib.sha256(trace.read_bytes()).hexdigest())]
    searched = sandbox.requests("/jira*/rest/api/*/search*")
    assert searched and all(e["path"].endswith("/search/jql" if mount == "cloud" else "/search") for e in searched)


def test_same_playbook_twice_leaves_one_issue_jsm_and_module_defaults(sandbox, sandbox_env, playbook):
    tasks = [{"name": "grouped", "module_defaults": {"group/selfheal.devops.jira": {
        "url": sandbox_env["JIRA_URL"], "user": sandbox_env["JIRA_USER"], "token": "{{ jira_token }}"}}, "block": [
        task("open", project="OPS", incident_key="dt-P-200", summary="Checkout is slow", description="p95 **2.3 s**",
             service_desk_id="10", request_type_id="25", priority="High", components=["checkout"]),
        task("internal note", project="OPS", incident_key="dt-P-200", comment="Agents: rollback prepared", comment_internal=True),
        task("cloud v2 note", project="OPS", incident_key="dt-P-200", api_version="2", comment="Seen through **REST v2**"),
    ]}]
    play_env = {k: v for k, v in sandbox_env.items() if not k.startswith("JIRA_")}
    first = playbook(tasks, env=play_env, extra_vars={"jira_token": credentials.JIRA_TOKEN})
    creates = sandbox.requests("/jira/rest/servicedeskapi/request")
    assert len(creates) == 1 and creates[0]["status"] == 201
    sandbox.call("DELETE", "/_sandbox/log")
    second = playbook(tasks, env=play_env, extra_vars={"jira_token": credentials.JIRA_TOKEN})
    reads = sandbox.requests("/jira/*")
    assert len(reads) == 6 and {e["method"] for e in reads} == {"GET"}  # per task: one search, one GET of the issue
    for run in (first, second):
        run.assert_no_secret()
    assert first["open"]["created"] and first["open"]["changed"] and first["internal note"]["commented"]
    assert first["cloud v2 note"]["commented"] and first["cloud v2 note"]["key"] == "OPS-1"
    assert not any(second[name]["changed"] for name in ("open", "internal note", "cloud v2 note"))
    issues = sandbox.state()["jira"]["cloud"]["issues"]
    assert list(issues) == ["OPS-1"]
    issue = issues["OPS-1"]
    assert issue["request"]["serviceDeskId"] == "10" and issue["request"]["requestTypeId"] == "25"
    assert issue["fields"]["labels"] == ["dt-P-200"] and issue["fields"]["priority"] == "High"
    assert issue["fields"]["description"] == jira_utils.markdown_to_adf("p95 **2.3 s**")  # set as ADF after the JSM create
    assert [c["internal"] for c in issue["comments"]] == [True, False]
    assert issue["comments"][1]["body"].startswith("Seen through *REST v2*")  # a wiki string, written through /rest/api/2
    assert sandbox.requests("/jira/rest/api/2/search/jql")  # Cloud's enhanced search under v2 too


def test_recovers_from_429_and_503(sandbox, sandbox_env, playbook):
    sandbox.fault("/jira/rest/api/3/search/jql", method="GET", times=1, status=429,
                  headers={"Retry-After": "1", "RateLimit-Reason": "jira-burst-based"},
                  body={"errorMessages": ["Rate limit exceeded."], "errors": {}})
    sandbox.fault("/jira/rest/api/3/issue", method="POST", times=1, status=503, headers={"Retry-After": "0"},
                  body={"errorMessages": ["Service unavailable"], "errors": {}})
    sandbox.fault("/jira/rest/api/3/issue/*/comment", method="POST", times=1, status=429, headers={"Retry-After": "0"})
    run = playbook([task("open", project="OPS", incident_key="dt-P-300", summary="After faults", comment="first note")],
                   env=sandbox_env)
    result = run["open"]
    assert result["changed"] and result["created"] and result["commented"] and not result.get("failed")
    warnings = result["warnings"]
    assert any("HTTP 429; retrying in 1.0 s" in w for w in warnings) and any("HTTP 503" in w for w in warnings)
    assert sum("HTTP 429" in w for w in warnings) == 2
    issues = sandbox.state()["jira"]["cloud"]["issues"]
    assert list(issues) == ["OPS-1"] and len(issues["OPS-1"]["comments"]) == 1
    run.assert_no_secret()


def test_clear_errors_without_traceback_or_secret(sandbox, sandbox_env, playbook):
    dc_url = sandbox.url + credentials.JIRA_DC_PREFIX
    seed = playbook([task("seed", project="OPS", incident_key="dt-P-400", summary="Seeded")], env=sandbox_env)
    assert seed["seed"]["created"]
    run = playbook([
        task("bad token", token="ATATT3xWrongWrongWrongWrong", project="OPS", incident_key="dt-P-400", summary="x"),
        dict(task("bad pat", url=dc_url, token="NjM0WrongWrongWrongWrongPAT", api_version="2", key="OPS-1"),
             environment={"JIRA_USER": ""}),  # no user: the token goes as a Bearer PAT
        task("unknown project", project="NOPE", incident_key="dt-P-401", summary="x"),
        task("unknown transition", project="OPS", incident_key="dt-P-400", transition="Teleport"),
        task("unknown status", project="OPS", incident_key="dt-P-400", status="Waiting for customer"),
        task("nothing to resolve", project="OPS", incident_key="dt-P-402", state="resolved"),
        task("bad priority", project="OPS", incident_key="dt-P-400", priority="Urgent"),
    ], env=sandbox_env)
    text = run.stdout + run.stderr
    assert "Traceback" not in text and "WrongWrong" not in text
    run.assert_no_secret()
    for name in ("bad token", "bad pat"):
        assert run[name]["failed"] and run[name]["error_kind"] == "auth" and run[name]["status"] == 401
        assert "You are not authenticated" in run[name]["msg"] and "check the token" in run[name]["msg"]
    unknown = run["unknown project"]
    assert unknown["failed"] and unknown["status"] == 400
    assert "The value 'NOPE' does not exist for the field 'project'" in unknown["msg"]
    transition = run["unknown transition"]
    assert transition["failed"] and transition["error_kind"] == "invalid_input"
    assert "Transition 'Teleport' does not exist for this issue" in transition["msg"]
    assert "'Start Progress' (-> In Progress), 'Resolve Issue' (-> Resolved), 'Close Issue' (-> Closed)" in transition["msg"]
    assert "leads to status 'Waiting for customer'" in run["unknown status"]["msg"]
    assert run["nothing to resolve"]["error_kind"] == "not_found" and "dt-P-402" in run["nothing to resolve"]["msg"]
    assert run["bad priority"]["status"] == 400 and "priority: The priority selected is invalid." in run["bad priority"]["msg"]
    state = sandbox.state()["jira"]["cloud"]["issues"]
    assert list(state) == ["OPS-1"] and state["OPS-1"]["fields"]["status"] == "Open"
