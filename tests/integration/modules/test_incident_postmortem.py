"""incident_postmortem through real ansible-playbook against the sandbox: one seeded incident's post-mortem is
assembled from the timeline, Dynatrace, xMatters and the ticket; check mode writes nothing; apply writes the three
files and attaches them once; a re-run changes nothing; after it the report from Jira equals the report from the
local files entirely (the post-mortem record carries the title too); errors are clear."""

import json
import os

import pytest

END_EPOCH = 1796083200.0  # 2026-12-01T00:00:00Z


def task(title, module="selfheal.devops.incident_postmortem", **args):
    return {"name": title, module: args, "register": "r", "ignore_errors": True}


@pytest.fixture
def seeded(sandbox, tmp_path):
    """Ten seeded incidents; the controller's timeline directory holds what the role left (timeline + transcript)."""
    sandbox.call("POST", "/_sandbox/history/seed", {"count": 10, "days": 10, "seed": 5, "end": END_EPOCH})
    directory = tmp_path / "incidents"
    directory.mkdir()
    issues = sorted(sandbox.state()["jira"]["cloud"]["issues"].values(), key=lambda i: int(i["key"].split("-")[1]))
    for issue in issues:
        for attachment in issue["attachments"]:
            (directory / attachment["filename"]).write_text(
                sandbox.call_raw("GET", "/_sandbox/jira/cloud/attachments/" + attachment["id"]))
    return issues, directory


def test_build_attach_once_and_rebuild_nothing(sandbox, sandbox_env, playbook, seeded):
    issues, directory = seeded
    issue = issues[3]
    key = [label for label in issue["fields"]["labels"] if label.startswith("dt-")][0]
    args = {"incident_key": key, "timeline_dir": str(directory), "sources": ["jira", "dynatrace", "xmatters"], "attach": True,
            "recurrence": "seen 2 times in the last 30 days"}
    check = playbook([task("check", **args)], env=sandbox_env, check=True, diff=True)
    assert check.rc == 0, check.stdout[-3000:]
    expected = [key + "-postmortem.json", key + "-postmortem.md", key + "-postmortem.html"]
    assert check["check"]["changed"] and check["check"]["attached"] == expected
    assert not (directory / (key + "-postmortem.md")).exists()
    assert len(sandbox.state()["jira"]["cloud"]["issues"][issue["key"]]["attachments"]) == 2

    run = playbook([task("build", **args), task("again", **args)], env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    run.assert_no_secret()
    built, again = run["build"], run["again"]
    assert built["changed"] and not again["changed"] and again["attached"] == []
    names = sorted(a["filename"] for a in sandbox.state()["jira"]["cloud"]["issues"][issue["key"]]["attachments"])
    assert names == sorted([key + ".json", key + "-slack.md", key + "-postmortem.json", key + "-postmortem.md", key + "-postmortem.html"])
    assert "/attachment/content/" in built["link"] and built["ticket"]["key"] == issue["key"]
    assert built["charts"] == ["stages"]

    record = json.loads((directory / (key + "-postmortem.json")).read_text())
    incident = record["incident"]
    assert incident["key"] == key and set(incident["sources"]) == {"timeline", "dynatrace", "oncall", "jira"}
    assert record["problem"]["evidence"] and record["problem"]["evidence"][0]["root_cause_relevant"]
    assert built["figures"]["time_to_detect"] > 0 and built["figures"]["time_to_resolve"] > 0
    assert incident["times"]["onset"] < incident["times"]["detected"] < incident["times"]["paged"] < incident["times"]["resolved"]
    problem = next(p for p in sandbox.state()["dynatrace"]["problems"].values() if "dt-" + p["displayId"] == key)
    assert incident["times"]["detected"] == problem["startTime"] / 1000.0
    html = (directory / (key + "-postmortem.html")).read_text()
    assert "default-src 'none'" in html and html.count("<svg") == 1 and "seen 2 times in the last 30 days" in html
    markdown = (directory / (key + "-postmortem.md")).read_text()
    assert "## Figures" in markdown and "## What the automation did" in markdown and "## Chat (Slack transcript)" in markdown
    attached = [a for a in sandbox.state()["jira"]["cloud"]["issues"][issue["key"]]["attachments"]
                if a["filename"] == key + "-postmortem.md"][0]
    assert sandbox.call_raw("GET", "/_sandbox/jira/cloud/attachments/" + attached["id"]) == markdown


def test_with_post_mortems_the_jira_report_equals_the_local_one_entirely(sandbox, sandbox_env, playbook, seeded, tmp_path):
    issues, directory = seeded
    keys = [[label for label in i["fields"]["labels"] if label.startswith("dt-")][0] for i in issues]
    tasks = [task("pm %s" % key, incident_key=key, timeline_dir=str(directory), sources=["jira", "dynatrace", "xmatters"],
                  attach=True, charts=False) for key in keys]
    common = {"start": "2026-11-01", "end": "2026-12-01", "dest": str(tmp_path / "out"), "formats": ["json"]}
    tasks += [task("jira", module="selfheal.devops.incident_report", sources=["jira"], name="jira", **common),
              task("files", module="selfheal.devops.incident_report", sources=["timelines"], timeline_dir=str(directory),
                   name="files", **common)]
    run = playbook(tasks, env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    from_jira = json.loads((tmp_path / "out" / "jira.json").read_text())
    from_files = json.loads((tmp_path / "out" / "files.json").read_text())
    from_jira.pop("sources")
    from_files.pop("sources")
    assert from_jira == from_files and from_jira["totals"]["incidents"] == 10
    assert all(row["title"] and row["ticket"] for row in from_jira["incidents"])
    assert from_jira["times"]["all"]["time_to_detect"]["count"] == 10  # the records carry Dynatrace's detection


def test_timeline_given_inline_and_problem_without_any_system(sandbox_env, playbook, tmp_path):
    records = [
        {"time": "2026-11-30T05:00:01.000Z", "action": "open", "step": "page on-call", "system": "xmatters", "result": "changed",
         "duration": 1.0, "detail": "oncall.primary"},
        {"time": "2026-11-30T05:00:20.000Z", "action": "record", "step": "restart process", "system": "web-01", "result": "changed",
         "duration": 12.0, "detail": "PID 1 -> 2, healthy"},
        {"time": "2026-11-30T05:00:25.000Z", "action": "resolve", "step": "resolved", "system": "dynatrace", "result": "changed",
         "duration": 0.3, "detail": "closed"}]
    problem = {"id": "-1_1V2", "display_id": "P-77", "title": "Process <script>alert(1)</script> unavailable",
               "entities": [{"id": "HOST-1", "type": "HOST", "name": "web-01"}], "start_time": 1796014790000}
    run = playbook([task("inline", incident_key="dt-P-77", timeline=records, problem=problem, dest=str(tmp_path))], env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    assert run["inline"]["figures"] == {"time_to_detect": None, "time_to_acknowledge": None, "time_to_heal": 30.0,
                                        "time_to_resolve": 35.0}
    html = (tmp_path / "dt-P-77-postmortem.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html  # the title is text, never markup
    assert run["inline"]["link"] == str(tmp_path / "dt-P-77-postmortem.html")


@pytest.mark.parametrize("args, message", [
    ({"incident_key": "dt-P-404"}, "no timeline for dt-P-404"),
    ({"incident_key": "dt-P-404", "attach": True}, "no Jira ticket carries the label dt-P-404"),
    ({"incident_key": "dt-P-9", "sources": ["dynatrace"], "timeline": [{"time": "2026-11-30T05:00:00Z", "action": "open"}]},
     "neither problem.id nor the timeline names the problem"),
])
def test_bad_input_fails_clearly(sandbox, sandbox_env, playbook, tmp_path, args, message):
    run = playbook([task("pm", timeline_dir=str(tmp_path), **args)], env=sandbox_env)
    assert run["pm"]["failed"] and message in run["pm"]["msg"], run["pm"]
    assert "Traceback" not in run.stdout + run.stderr
    run.assert_no_secret()
    assert os.listdir(str(tmp_path)) == []


def test_a_timeline_file_that_is_not_json_fails_and_stays(sandbox_env, playbook, tmp_path):
    (tmp_path / "dt-P-5.json").write_text("{oops")
    run = playbook([task("pm", incident_key="dt-P-5", timeline_dir=str(tmp_path))], env=sandbox_env)
    assert run["pm"]["failed"] and "is not JSON" in run["pm"]["msg"]
    assert sorted(os.listdir(str(tmp_path))) == ["dt-P-5.json"] and (tmp_path / "dt-P-5.json").read_text() == "{oops"
