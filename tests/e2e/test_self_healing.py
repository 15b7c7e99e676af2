"""End to end, with one real ansible-rulebook activation running the collection's self_healing rulebook
(installed from the tarball) and the sandbox as Dynatrace, xMatters, Jira and Slack:
  - a crashed process is detected, restarted by remediate_process_crash, and every record is written once;
  - the same notification delivered 100 times heals once;
  - a full disk (a real 8 MiB tmpfs) is freed by remediate_full_disk, keeping young and excluded files;
  - Jira down for 30 s and Slack rate-limited during a crash: healed, every record once;
  - a slow green release behind nginx is switched back to blue by rollback_bluegreen with zero failed requests
    from a client running throughout, and a Keptn-managed service is rolled back through Keptn."""

import json
import os
import time

import pytest

from utils import estate
from utils.loops import (bluegreen_estate, channel_texts, channels_for, crash_and_report, incident_attachments, pages_for, problem_state,
                         self_healing_loop, tickets_for, timeline, wait_for_step)


@pytest.fixture(scope="module")
def loop(installed_collection, sandbox_session, tmp_path_factory):
    """One activation for the module, every scenario in auto mode."""
    with self_healing_loop(installed_collection, sandbox_session, tmp_path_factory.mktemp("e2e-auto")) as activation:
        yield activation


def wait_for_resolution(loop, sandbox, problem):
    wait_for_step(loop, problem, "archive channel")
    assert problem_state(sandbox, problem)["status"] == "CLOSED"


def wait_for_healing(loop, sandbox, problem, old_pid):
    wait_for_resolution(loop, sandbox, problem)
    new = loop.supervisor.pid()
    assert new and new != old_pid and estate.alive(new) and estate.healthy(loop.supervisor.port)
    return new


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

    [ticket] = tickets_for(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved" and ticket["fields"]["resolution"] == "Fixed"
    assert incident_attachments(ticket) == [key + "-slack.md", key + ".json"]
    [channel] = channels_for(sandbox, key)
    assert channel["is_archived"] and {"U0ONCALL01", "U0ONCALL02"} <= set(channel["members"])
    texts = channel_texts(sandbox, channel)
    assert "Remediation started" in texts[0] and texts[-1].startswith(":white_check_mark: Resolved: web restarted")
    assert any("web restarted on web-01" in json.dumps(c["body"]) for c in ticket["comments"])

    records = timeline(loop, key)["records"]
    steps = [(r["step"], r["system"], r["result"]) for r in records]
    assert steps[:7] == [("remediation started", "dynatrace", "changed"), ("page on-call", "xmatters", "changed"),
                         ("open ticket", "jira", "changed"), ("open channel", "slack", "changed"),
                         ("restart process", "web-01", "changed"),
                         ("resolved", "dynatrace", "changed"), ("resolve page", "xmatters", "changed")]
    assert ("resolve ticket", "jira", "changed") in steps
    restart = [r for r in records if r["step"] == "restart process"][0]
    new = loop.supervisor.pid()
    assert restart["detail"].startswith("web restarted on web-01: PID 0 -> %d, healthy after" % new) and restart["duration"] > 0
    assert all(r["duration"] >= 0 and r["time"].endswith("Z") for r in records)


def test_the_same_notification_delivered_100_times_heals_once(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/notify" % problem["displayId"], {"count": 100})
    wait_for_healing(loop, sandbox, problem, old)
    estate.wait_until(lambda: sum(1 for o in sandbox.outbound() if o["status"] is not None) >= 101, timeout=30,
                      what="all deliveries")

    assert len(pages_for(sandbox, key)) == 1 and len(tickets_for(sandbox, key)) == 1 and len(channels_for(sandbox, key)) == 1
    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    assert sum(c.startswith("[selfheal.devops] Remediation started") for c in comments) == 1
    assert loop.output().count("'incident_key': '%s'" % key) >= 1
    assert loop.output().count("PLAY [Decide where to restart, and open the incident]") == 2  # this test's and the previous one's


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
    [ticket] = tickets_for(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved"
    assert incident_attachments(ticket) == [key + "-slack.md", key + ".json"]
    [channel] = channels_for(sandbox, key)
    assert channel["is_archived"] and "temporary files" in channel_texts(sandbox, channel)[-1]
    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    assert any("temporary files" in c and "deleted on web-01" in c for c in comments), comments


def test_jira_down_for_30_s_and_slack_rate_limited_still_heal_with_every_record_once(loop, sandbox_session):
    sandbox = sandbox_session
    sandbox.fault("/jira/rest/*", times=-1, duration=30, status=503, body={"errorMessages": ["Service Unavailable"]})
    sandbox.fault("/slack/api/chat.postMessage", times=3, status=429, headers={"Retry-After": "1"},
                  body={"ok": False, "error": "ratelimited"})
    try:
        old, problem = crash_and_report(loop, sandbox)
        key = "dt-" + problem["displayId"]
        estate.wait_until(lambda: loop.supervisor.pid() not in (0, old) and estate.healthy(loop.supervisor.port),
                          timeout=60, what="the restart while Jira is down")
        wait_for_step(loop, problem, "archive channel", timeout=180)
    finally:
        sandbox.call("DELETE", "/_sandbox/faults")
    assert problem_state(sandbox, problem)["status"] == "CLOSED"
    [page] = pages_for(sandbox, key)
    assert page["status"] == "TERMINATED"
    [ticket] = tickets_for(sandbox, key)  # created late, once, and resolved
    assert ticket["fields"]["status"] == "Resolved"
    assert incident_attachments(ticket) == [key + "-slack.md", key + ".json"]
    [channel] = channels_for(sandbox, key)
    texts = channel_texts(sandbox, channel)
    assert len(texts) == len(set(texts)) == 2 and channel["is_archived"]  # opening and outcome, once each
    results = [(r["step"], r["system"], r["result"]) for r in timeline(loop, key)["records"]]
    assert ("open ticket", "jira", "failed") in results and ("resolve ticket", "jira", "changed") in results


def test_slow_green_release_is_switched_back_to_blue_without_a_failed_request(loop, sandbox_session):
    sandbox, bluegreen = sandbox_session, loop.bluegreen
    assert bluegreen.active_colour("nginx") == "green"
    bluegreen.green.configure(delay=0.05)  # the new release is slow
    client = bluegreen_estate.LoadClient(bluegreen.router_url("nginx"), keepalive=True, concurrency=2,
                                         max_requests=50000, max_seconds=150, pause=0.01)
    client.start()
    try:
        problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
            "title": "Response time degradation: checkout", "severity": "PERFORMANCE",
            "entities": [{"type": "SERVICE", "name": "checkout"}], "tags": {"bluegreen": "green", "app": "checkout"}})
        key = "dt-" + problem["displayId"]
        wait_for_step(loop, problem, "archive channel")
    finally:
        report = client.stop().as_dict()
    bluegreen.green.reset()
    assert report["non_2xx"] == 0 and report["failed"] == 0 and report["requests"] > 100, report
    assert report["colours"].get("blue", 0) > 0 and bluegreen.active_colour("nginx", requests=10) == "blue"
    assert problem_state(sandbox, problem)["status"] == "CLOSED"
    [page] = pages_for(sandbox, key)
    assert page["status"] == "TERMINATED"
    [ticket] = tickets_for(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved"
    [channel] = channels_for(sandbox, key)
    assert channel["is_archived"] and "switched back to blue" in " ".join(channel_texts(sandbox, channel)[-1].split())


def test_a_keptn_managed_service_is_rolled_back_through_keptn(loop, sandbox_session):
    sandbox = sandbox_session
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Response time degradation: carts", "severity": "PERFORMANCE",
        "entities": [{"type": "SERVICE", "name": "carts"}],
        "tags": {"bluegreen": "green", "keptn_project": "sockshop", "keptn_stage": "production", "keptn_service": "carts"}})
    key = "dt-" + problem["displayId"]
    wait_for_step(loop, problem, "archive channel")
    sequences = [s for s in sandbox.state()["keptn"]["sequences"].values() if s["service"] == "carts"]
    assert len(sequences) == 1 and sequences[0]["name"] == "rollback"
    assert problem_state(sandbox, problem)["status"] == "CLOSED"
    assert loop.bluegreen.active_colour("nginx") == "blue"  # the router was not touched by the Keptn path
    assert len(tickets_for(sandbox, key)) == 1 and len(channels_for(sandbox, key)) == 1
