"""End to end, with one real ansible-rulebook activation running the collection's self_healing rulebook
(installed from the tarball) and the sandbox as Dynatrace and xMatters:
  - a crashed process is detected, restarted by remediate_process_crash, and every record is written once;
  - the same notification delivered 100 times heals once;
  - a full disk (a real 8 MiB tmpfs) is freed by remediate_full_disk, keeping young and excluded files."""

import json
import os
import subprocess
import time

import pytest

import credentials
import estate
import rulebook_harness

TOKEN = "e2e-webhook-token"


@pytest.fixture(scope="module")
def loop(installed_collection, sandbox_session, tmp_path_factory):
    """One activation for the module: the estate (supervised web service on host web-01) and the rulebook."""
    workdir = tmp_path_factory.mktemp("e2e-crash")
    supervisor = estate.Supervisor(workdir)
    port = rulebook_harness.free_port()
    disk = workdir / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True,
                             check=False).returncode == 0
    inventory = {"all": {
        "hosts": {"web-01": {"ansible_connection": "local"}},
        "vars": dict(supervisor.role_vars(),
                     ansible_python_interpreter=os.path.join(rulebook_harness.BIN, "python"),
                     process_restart_state_dir=str(workdir / "restarts"),
                     process_restart_health_timeout=15,
                     incident_oncall_provider="xmatters", incident_oncall_groups=["Ops Primary"],
                     incident_timeline_dir=str(workdir / "incidents"),
                     tempfile_cleanup_paths=[str(disk / "app-tmp")], tempfile_cleanup_allowed_roots=[str(disk)],
                     tempfile_cleanup_threshold_percent=50, tempfile_cleanup_target_free_percent=60,
                     tempfile_cleanup_age="1h", tempfile_cleanup_excludes=["*.lock"])}}
    variables = {"selfheal_webhook_port": port, "selfheal_webhook_token": TOKEN,
                 "selfheal_state_file": str(workdir / "dynatrace-state.json")}
    activation = rulebook_harness.Activation("selfheal.devops.self_healing", installed_collection, variables=variables,
                                             inventory=inventory, env=credentials.environment(sandbox_session.url),
                                             workdir=str(workdir / "eda"))
    activation.start()
    try:
        activation.wait_for_url("http://127.0.0.1:%d/dynatrace/problems/health" % port, timeout=90)
        sandbox_session.call("POST", "/_sandbox/dynatrace/webhook", {
            "url": "http://127.0.0.1:%d/dynatrace/problems" % port, "headers": {"Authorization": "Bearer " + TOKEN}})
        sandbox_session.call("POST", "/_sandbox/xmatters/config", {"delay": 0.1})
        activation.supervisor, activation.workdir, activation.disk = supervisor, workdir, disk if mounted else None
        yield activation
    finally:
        activation.stop()
        supervisor.stop()
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def crash_and_report(loop, sandbox):
    """Kill the service as a crash would, and have Dynatrace open the matching problem."""
    old = loop.supervisor.pid()
    estate.kill(old)
    estate.wait_until(lambda: loop.supervisor.pid() == 0, what="supervisor to see the crash")
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Process unavailable: web", "severity": "AVAILABILITY",
        "entities": [{"type": "HOST", "name": "web-01"}, {"type": "PROCESS_GROUP_INSTANCE", "name": "web"}],
        "tags": {"process": "web", "app": "checkout"}})
    return old, problem


def problem_state(sandbox, problem):
    return sandbox.state()["dynatrace"]["problems"][problem["problemId"]]


def timeline(loop, key):
    path = loop.workdir / "incidents" / (key + ".json")
    return json.loads(path.read_text()) if path.exists() else {"records": []}


def wait_for_resolution(loop, sandbox, problem):
    key = "dt-" + problem["displayId"]
    estate.wait_until(lambda: any(r["step"] == "resolve page" for r in timeline(loop, key)["records"]), timeout=120,
                      what="the playbook to resolve the incident")
    assert problem_state(sandbox, problem)["status"] == "CLOSED"


def wait_for_healing(loop, sandbox, problem, old_pid):
    wait_for_resolution(loop, sandbox, problem)
    new = loop.supervisor.pid()
    assert new and new != old_pid and estate.alive(new) and estate.healthy(loop.supervisor.port)
    return new


def pages_for(sandbox, key):
    return [e for e in sandbox.state()["xmatters"]["events"]
            if any(str(v) == key for k, v in (e.get("properties") or {}).items() if k.split("#")[0] == "selfheal_incident_key")]


def test_process_crash_is_healed_with_every_record_once(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    wait_for_healing(loop, sandbox, problem, old)

    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    started = [c for c in comments if c.startswith("[selfheal.devops] Remediation started for %s" % problem["displayId"])]
    resolved = [c for c in comments if c.startswith("[selfheal.devops] Resolved: web restarted on web-01")]
    assert len(started) == 1 and len(resolved) == 2, comments  # the resolve comment and the close message

    pages = pages_for(sandbox, key)
    assert len(pages) == 1 and pages[0]["status"] == "TERMINATED"

    records = timeline(loop, key)["records"]
    steps = [(r["step"], r["system"], r["result"]) for r in records]
    assert steps[:4] == [("remediation started", "dynatrace", "changed"), ("page on-call", "xmatters", "changed"),
                         ("resolved", "dynatrace", "changed"), ("resolve page", "xmatters", "changed")]
    assert all(r["duration"] >= 0 and r["time"].endswith("Z") for r in records)


def test_the_same_notification_delivered_100_times_heals_once(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/notify" % problem["displayId"], {"count": 100})
    wait_for_healing(loop, sandbox, problem, old)
    estate.wait_until(lambda: sum(1 for o in sandbox.outbound() if o["status"] is not None) >= 101, timeout=30,
                      what="all deliveries")

    assert len(pages_for(sandbox, key)) == 1
    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    assert sum(c.startswith("[selfheal.devops] Remediation started") for c in comments) == 1
    assert loop.output().count("'incident_key': '%s'" % key) >= 1
    assert loop.output().count("PLAY [Remediate a crashed process]") == 2  # this test's and the previous one's


def test_full_disk_is_freed_keeping_young_and_excluded_files(loop, sandbox_session):
    if loop.disk is None:
        pytest.skip("mounting a tmpfs is not allowed here")
    sandbox = sandbox_session
    app = loop.disk / "app-tmp"
    app.mkdir(exist_ok=True)
    old = time.time() - 3 * 3600
    chunks = []
    for number in range(6):
        path = app / ("upload-%d.tmp" % number)
        path.write_bytes(b"x" * 1024 * 1024)
        os.utime(str(path), (old - number * 60, old - number * 60))
        chunks.append(path)
    young = app / "in-progress.tmp"
    young.write_bytes(b"x" * 512 * 1024)
    lock = app / "writer.lock"
    lock.write_bytes(b"x" * 1024)
    os.utime(str(lock), (old, old))
    vfs = os.statvfs(str(loop.disk))
    assert 100.0 * (vfs.f_blocks - vfs.f_bfree) / vfs.f_blocks > 50  # above the threshold before the incident

    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Low disk space on /var/tmp", "severity": "RESOURCE_CONTENTION",
        "entities": [{"type": "HOST", "name": "web-01"}]})
    wait_for_resolution(loop, sandbox, problem)

    vfs = os.statvfs(str(loop.disk))
    assert 100.0 * vfs.f_bavail / vfs.f_blocks >= 60  # the target free space
    assert young.exists() and lock.exists()  # too young, excluded
    assert not chunks[-1].exists()  # the oldest went first
    key = "dt-" + problem["displayId"]
    assert len(pages_for(sandbox, key)) == 1 and pages_for(sandbox, key)[0]["status"] == "TERMINATED"
    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    assert any("temporary files" in c and "deleted on web-01" in c for c in comments), comments
