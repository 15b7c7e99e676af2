"""incident_report through real ansible-playbook against the sandbox's seeded history (tests/sandbox/history.py):
the report from Jira alone equals the report from the local timeline files of the same incidents; check mode,
idempotence, the three files; Dynatrace and xMatters enrichment; errors are clear and leak nothing."""

import json
import os
import shutil
import subprocess

import pytest

from sandbox import credentials

END = "2026-12-01T00:00:00Z"
END_EPOCH = 1796083200.0  # 2026-12-01T00:00:00Z
START = "2026-11-01T00:00:00Z"


def report_task(task, **args):
    return {"name": task, "selfheal.devops.incident_report": args, "register": "r", "ignore_errors": True}


def seed(sandbox, count=60, seed=11):
    return sandbox.call("POST", "/_sandbox/history/seed", {"count": count, "days": 30, "seed": seed, "end": END_EPOCH})


def download_timelines(sandbox, directory):
    """What the incident role leaves on the controller: each ticket's attachments, as files."""
    os.makedirs(directory, exist_ok=True)
    for issue in sandbox.state()["jira"]["cloud"]["issues"].values():
        for attachment in issue["attachments"]:
            with open(os.path.join(directory, attachment["filename"]), "w") as handle:
                handle.write(sandbox.call_raw("GET", "/_sandbox/jira/cloud/attachments/" + attachment["id"]))


def figures_of(report):
    """The report without what only Jira knows (ticket key and title of each incident row) and the source statistics."""
    out = dict(report)
    out.pop("sources")
    out["incidents"] = [dict((k, v) for k, v in row.items() if k not in ("ticket", "title")) for row in report["incidents"]]
    return out


def test_report_from_jira_equals_report_from_local_timelines(sandbox, sandbox_env, playbook, tmp_path):
    seed(sandbox)
    download_timelines(sandbox, str(tmp_path / "incidents"))
    common = {"start": START, "end": END, "dest": str(tmp_path / "out"), "formats": ["json"]}
    run = playbook([report_task("jira", sources=["jira"], name="from-jira", **common),
                    report_task("timelines", sources=["timelines"], timeline_dir=str(tmp_path / "incidents"), name="from-files", **common)],
                   env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    run.assert_no_secret()
    assert run["jira"]["incidents"] == run["timelines"]["incidents"] > 50
    from_jira = json.loads((tmp_path / "out" / "from-jira.json").read_text())
    from_files = json.loads((tmp_path / "out" / "from-files.json").read_text())
    assert from_jira["sources"]["jira"]["issues"] == 60
    assert figures_of(from_jira) == figures_of(from_files)
    assert from_jira["totals"]["escalated"] > 0 and from_jira["recurrences"] and from_jira["responders"]
    assert all(row["ticket"].startswith("OPS-") for row in from_jira["incidents"])


def test_check_mode_apply_idempotent_and_the_three_files(sandbox, sandbox_env, playbook, tmp_path):
    seed(sandbox, count=40)
    args = {"sources": ["jira", "dynatrace", "xmatters"], "start": START, "end": END, "dest": str(tmp_path / "reports")}
    check = playbook([report_task("check", **args)], env=sandbox_env, check=True, diff=True)
    assert check.rc == 0, check.stdout[-3000:]
    assert check["check"]["changed"] and not (tmp_path / "reports").exists()
    run = playbook([report_task("apply", **args), report_task("again", **args)], env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    run.assert_no_secret()
    first, again = run["apply"], run["again"]
    assert first["changed"] and not again["changed"], again
    assert sorted(os.listdir(str(tmp_path / "reports"))) == ["incident-report.html", "incident-report.json", "incident-report.md"]
    assert first["charts"] == ["per-day", "per-host", "per-scenario", "recurrences", "responders", "times-by-mode"]
    report = json.loads((tmp_path / "reports" / "incident-report.json").read_text())
    totals = report["totals"]
    assert totals["incidents"] == first["incidents"] and totals["auto"] + totals["approve"] + totals["escalated"] == totals["incidents"]
    # Dynatrace gives detection and onset for every incident; xMatters gives who answered and when.
    assert report["times"]["all"]["time_to_detect"]["count"] == totals["incidents"]
    assert report["sources"]["dynatrace"]["enriched"] == totals["incidents"] and report["sources"]["xmatters"]["enriched"] > 0
    assert set(r["name"] for r in report["responders"]) <= {"oncall.primary", "oncall.secondary", "dba.one", "dba.two"}
    assert report["times"]["auto"]["time_to_acknowledge"]["count"] > 0  # people acknowledge auto pages too
    assert report["automation"]["fixed_before_ack"] > 0 and report["automation"]["saved_seconds"] > 0
    html = (tmp_path / "reports" / "incident-report.html").read_text()
    assert "default-src 'none'" in html and html.count("<svg") == 6 and "<script" not in html
    markdown = (tmp_path / "reports" / "incident-report.md").read_text()
    assert "## Response times by mode" in markdown and "| escalated |" in markdown


def test_problems_the_automation_never_handled_are_counted(sandbox, sandbox_env, playbook, tmp_path):
    seed(sandbox, count=10)
    sandbox.call("POST", "/_sandbox/dynatrace/problems/bulk", {"count": 3, "status": "CLOSED", "problem": {"title": "Manual one"}})
    run = playbook([report_task("report", sources=["jira", "dynatrace"], period_days=40, dest=str(tmp_path), formats=["json"])],
                   env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    assert run["report"]["sources"]["dynatrace"] == {"enriched": 10, "problems_without_incident": 3}


def test_a_file_that_is_not_a_timeline_is_skipped_with_a_warning(sandbox_env, playbook, tmp_path):
    (tmp_path / "incidents").mkdir()
    (tmp_path / "incidents" / "dt-P-1.json").write_text("{not json")
    run = playbook([report_task("report", sources=["timelines"], timeline_dir=str(tmp_path / "incidents"), dest=str(tmp_path / "out"),
                                formats=["json", "markdown"])], env=sandbox_env)
    assert run.rc == 0 and run["report"]["incidents"] == 0 and run["report"]["warnings_count"] == 1
    assert "dt-P-1.json" in " ".join(run["report"]["warnings"])
    assert (tmp_path / "incidents" / "dt-P-1.json").read_text() == "{not json"  # nothing lost


@pytest.mark.parametrize("args, message", [
    ({"sources": ["dynatrace"]}, "sources must include jira or timelines"),
    ({"start": "last tuesday"}, "start 'last tuesday' is not an ISO-8601"),
    ({"start": END, "end": START}, "the period is empty"),
    ({"sources": ["timelines"], "timeline_dir": "/nonexistent/selfheal"}, "timeline_dir /nonexistent/selfheal is not a directory"),
    ({"workers": 0}, "workers must be at least 1"),
    ({"name": "../x"}, "name must be a file name stem"),
])
def test_bad_input_fails_clearly(sandbox_env, playbook, tmp_path, args, message):
    run = playbook([report_task("report", dest=str(tmp_path), **args)], env=sandbox_env)
    result = run["report"]
    assert result["failed"] and message in result["msg"], result
    assert "Traceback" not in run.stdout + run.stderr
    run.assert_no_secret()
    assert not os.listdir(str(tmp_path))


def test_jira_without_credentials_names_them_and_a_wrong_token_leaks_nothing(sandbox, sandbox_env, playbook, tmp_path):
    env = dict(sandbox_env)
    env.pop("JIRA_URL")
    run = playbook([report_task("report", dest=str(tmp_path))], env=dict(env, JIRA_URL=""))
    assert run["report"]["failed"] and "jira_url" in run["report"]["msg"] and "JIRA_URL" in run["report"]["msg"]
    wrong = playbook([report_task("report", dest=str(tmp_path), jira_token="not-the-token-" + credentials.JIRA_TOKEN[::-1])],
                     env=sandbox_env)
    assert wrong["report"]["failed"] and "401" in wrong["report"]["msg"]
    wrong.assert_no_secret()
    assert credentials.JIRA_TOKEN[::-1] not in wrong.stdout


def test_html_charts_need_matplotlib_json_and_markdown_do_not(playbook, tmp_path):
    python = shutil.which("python3", path="/usr/bin")
    if python is None or subprocess.run([python, "-c", "import matplotlib"], capture_output=True, check=False).returncode == 0:
        pytest.skip("needs a python3 without matplotlib (Debian's, as installed)")
    (tmp_path / "incidents").mkdir()
    env = {"ANSIBLE_PYTHON_INTERPRETER": python}
    args = {"sources": ["timelines"], "timeline_dir": str(tmp_path / "incidents"), "dest": str(tmp_path / "out")}
    run = playbook([report_task("html", **args), report_task("plain", formats=["json", "markdown"], **args)], env=env)
    assert run["html"]["failed"] and "matplotlib" in run["html"]["msg"] and "charts: false" in run["html"]["msg"]
    assert not run["plain"].get("failed") and sorted(os.listdir(str(tmp_path / "out"))) == ["incident-report.json", "incident-report.md"]
