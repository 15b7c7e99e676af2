"""Each runbook in check mode (--check) against a real estate in need of the fix (a crashed supervisord service, old
temporary files on a disk above its threshold, nginx serving the slow colour, a Keptn-managed service): it decides
and reads for real, says what it would do, and changes nothing anywhere - the estate is as it was, and there is no
page, ticket, channel or Dynatrace comment, no Keptn sequence, no lease or budget record, no timeline. For the crash,
a real run afterwards heals as if the check never ran."""

import os
import time

import pytest

from utils import bluegreen_estate, estate
from utils.loops import channels_for, pages_for, tickets_for

INCIDENT = {"incident_oncall_provider": "xmatters", "incident_oncall_groups": ["Ops Primary"],
            "incident_jira_project": "OPS", "incident_slack_enabled": True,
            "incident_slack_oncall_email_domain": "example.com"}


def open_problem(sandbox, title, severity, entities, tags):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": title, "severity": severity, "entities": entities, "tags": tags})
    key = "dt-" + problem["displayId"]
    extra = {"selfheal_incident_key": key,
             "selfheal_problem": {"id": problem["problemId"], "display_id": problem["displayId"], "title": title,
                                  "severity": severity, "entities": entities, "tags": tags}}
    return problem, key, extra


def inventory(state, hosts, **more):
    """The runbook's inventory; every piece of state it could write lives under `state`."""
    settings = dict(INCIDENT, incident_timeline_dir=str(state / "incidents"), remediation_db=str(state / "remediations.db"),
                    incident_decision_dir=str(state / "decisions"), **more)
    return {"all": {"hosts": hosts, "vars": settings}}


def assert_nothing_written(sandbox, problem, key, state, run):
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    after = sandbox.state()
    assert after["dynatrace"]["comments"] == {}
    assert after["dynatrace"]["problems"][problem["problemId"]]["status"] == "OPEN"
    assert not pages_for(sandbox, key) and not tickets_for(sandbox, key) and not channels_for(sandbox, key)
    assert not after["keptn"]["sequences"]
    assert not state.exists(), sorted(str(p) for p in state.rglob("*"))  # no lease, budget, guard or timeline
    run.assert_no_secret()


def said(run, text):
    return text in " ".join(run.stdout.split())


def test_process_crash_in_check_mode_changes_nothing_then_a_real_run_heals(collection_playbook, sandbox, sandbox_env,
                                                                           tmp_path):
    supervisor = estate.Supervisor(tmp_path)
    try:
        estate.kill(supervisor.pid())
        estate.wait_until(lambda: supervisor.pid() == 0, what="supervisor to see the crash")
        problem, key, extra = open_problem(sandbox, "Process unavailable: web on web-01", "AVAILABILITY",
                                           [{"type": "HOST", "name": "web-01"}], {"process": "web"})
        state = tmp_path / "state"
        hosts = {"web-01": dict(supervisor.role_vars(), ansible_connection="local",
                                process_restart_state_dir=str(state / "restarts"))}

        check = collection_playbook("remediate_process_crash", inventory(state, hosts), extra, env=sandbox_env,
                                    extra_args=["--check"])

        assert_nothing_written(sandbox, problem, key, state, check)
        assert said(check, "Check mode: web would be restarted on web-01 (PID 0, not healthy); nothing was changed.")
        assert supervisor.pid() == 0 and not estate.healthy(supervisor.port)

        run = collection_playbook("remediate_process_crash", inventory(state, hosts), extra, env=sandbox_env)

        assert run.rc == 0, run.stdout[-3000:]
        assert supervisor.pid() and estate.healthy(supervisor.port)
        assert len(pages_for(sandbox, key)) == 1 and len(tickets_for(sandbox, key)) == 1
        assert len(channels_for(sandbox, key)) == 1
        assert sandbox.state()["dynatrace"]["problems"][problem["problemId"]]["status"] == "CLOSED"
    finally:
        supervisor.stop()


def test_full_disk_in_check_mode_deletes_nothing(collection_playbook, sandbox, sandbox_env, tmp_path):
    area = tmp_path / "disk" / "app-tmp"
    area.mkdir(parents=True)
    old = time.time() - 7200
    for number in range(3):
        path = area / ("old-%d.tmp" % number)
        path.write_bytes(b"x" * 4096)
        os.utime(path, (old, old))
    problem, key, extra = open_problem(sandbox, "Low disk space on web-01", "RESOURCE_CONTENTION",
                                       [{"type": "HOST", "name": "web-01"}], {})
    state = tmp_path / "state"
    # Any disk in use is above a 0.5 % threshold: the check run goes as far as the cleanup would.
    hosts = {"web-01": {"ansible_connection": "local", "tempfile_cleanup_paths": [str(area)],
                        "tempfile_cleanup_allowed_roots": [str(tmp_path / "disk")], "tempfile_cleanup_age": "1h",
                        "tempfile_cleanup_threshold_percent": 0.5, "tempfile_cleanup_target_free_percent": 0}}

    check = collection_playbook("remediate_full_disk", inventory(state, hosts), extra, env=sandbox_env,
                                extra_args=["--check"])

    assert_nothing_written(sandbox, problem, key, state, check)
    assert said(check, "Check mode: 3 temporary files (12.00 KB) would be deleted on web-01")
    assert sorted(p.name for p in area.iterdir()) == ["old-0.tmp", "old-1.tmp", "old-2.tmp"]


@pytest.mark.parametrize("keptn", [False, True], ids=["nginx", "keptn"])
def test_bluegreen_rollback_in_check_mode_switches_nothing(collection_playbook, sandbox, sandbox_env, tmp_path, keptn):
    state = tmp_path / "state"
    if keptn:
        problem, key, extra = open_problem(sandbox, "Response time degradation: carts", "PERFORMANCE",
                                           [{"type": "SERVICE", "name": "carts"}],
                                           {"keptn_project": "sockshop", "keptn_stage": "production", "keptn_service": "carts"})
        check = collection_playbook("rollback_bluegreen", inventory(state, {"localhost": {"ansible_connection": "local"}}),
                                    extra, env=sandbox_env, extra_args=["--check"])
        assert_nothing_written(sandbox, problem, key, state, check)
        assert said(check, "Check mode: Keptn would roll carts back in sockshop; nothing was changed.")
        return
    (tmp_path / "estate").mkdir()
    with bluegreen_estate.Estate(routers=("nginx",), active="green", workdir=str(tmp_path / "estate")) as routed:
        problem, key, extra = open_problem(sandbox, "Response time degradation: checkout", "PERFORMANCE",
                                           [{"type": "SERVICE", "name": "checkout"}], {"bluegreen": "green", "app": "checkout"})
        hosts = {"localhost": {"ansible_connection": "local"},
                 "router-01": dict(routed.role_vars("nginx"), ansible_connection="local")}
        settings = inventory(state, hosts)
        settings["all"]["children"] = {"bluegreen_routers": {"hosts": {"router-01": None}}}

        check = collection_playbook("rollback_bluegreen", settings, extra, env=sandbox_env, extra_args=["--check"])

        assert_nothing_written(sandbox, problem, key, state, check)
        assert said(check, "Check mode: traffic on router-01 (nginx) would be switched back to blue from green; nothing was changed.")
        assert routed.active_colour("nginx", requests=10) == "green"
