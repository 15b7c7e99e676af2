"""make demo: the self-healing loop on this machine, with nothing but the clone.

Starts, all on 127.0.0.1: the SaaS API sandbox (Dynatrace, xMatters, Jira, Slack, ...), a demo estate (a web
service under supervisord on host "web-01", a small tmpfs, nginx in front of blue and green backends on host
"router-01"), and ansible-rulebook running the collection's self_healing rulebook
with the collection installed from its tarball. Then it plays each scenario and prints the incident's
timeline and the time from detection to healthy. Everything it started is stopped on exit, Ctrl-C or failure.
"""

import calendar
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from sandbox import credentials  # tests/sandbox (make venv puts tests/ on the import path)
from utils import bluegreen_estate, chatops, estate, rulebook_harness
from utils.sandbox_control import start_sandbox, stop_sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOKEN = "demo-webhook-token"


def say(text=""):
    print(text, flush=True)


def step(text):
    say("%s  %s" % (time.strftime("%H:%M:%S"), text))


def print_timeline(key, path, detected, healed):
    """The incident's records by start time, with start and end in seconds after detection: the page, the ticket and
    the channel are written while the fix runs, not before it."""
    with open(path) as handle:
        records = json.load(handle)["records"]
    say("\n  Incident %s (seconds after the problem was notified)" % key)
    say("  %-7s %-7s %-20s %-10s %-8s %s" % ("start", "end", "step", "system", "result", "detail"))
    for record in sorted(records, key=lambda r: epoch(r["time"]) - r["duration"]):
        end = epoch(record["time"]) - detected
        values = (end - record["duration"], end, record["step"], record["system"], record["result"],
                  str(record.get("detail") or "")[:60])
        say("  %6.2f  %6.2f  %-20s %-10s %-8s %s" % values)
    say("  detection -> healthy: %.1f s\n" % (healed - detected))


def epoch(text):
    """A timeline time (2026-12-01T14:03:00.123456Z) in seconds since the epoch."""
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + text[19:].rstrip("Z"))


def process_crash(sandbox, loop, supervisor, quiet=False):
    """Kill the service, have Dynatrace report it, wait until healed and resolved; returns the timings."""
    if not quiet:
        say("\n== Scenario 1: process crash -> restart ==")
    old = supervisor.pid()
    estate.kill(old)
    estate.wait_until(lambda: supervisor.pid() == 0, what="supervisor to see the crash")
    if not quiet:
        step("killed the web service (PID %d); Dynatrace detects it and notifies the rulebook" % old)
    detected = time.time()
    problem, key, path = report_problem(sandbox, loop, {
        "title": "Process unavailable: web", "severity": "AVAILABILITY",
        "entities": [{"type": "HOST", "name": "web-01"}], "tags": {"process": "web", "app": "checkout"}})
    estate.wait_until(lambda: estate.healthy(supervisor.port) and supervisor.pid() not in (0, old), timeout=120,
                      what="the service to come back")
    healed = time.time()
    if not quiet:
        step("web service healthy again with PID %d" % supervisor.pid())
    return finish(sandbox, problem, key, path, detected, healed, quiet)


def report_problem(sandbox, loop, spec):
    """Have the sandbox's Dynatrace open a problem (and notify the rulebook); returns it, its key, its timeline path."""
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", spec)
    key = "dt-" + problem["displayId"]
    return problem, key, os.path.join(loop.workdir, "incidents", key + ".json")


def finish(sandbox, problem, key, path, detected, healed, quiet=False):
    """Wait until the incident is resolved, show its records, and return what the benchmark needs."""
    wait_resolved(path)
    if not quiet:
        step("incident resolved; Dynatrace problem %s is %s; %s" % (
            problem["displayId"], sandbox.state()["dynatrace"]["problems"][problem["problemId"]]["status"],
            ticket_line(sandbox, key)))
        step(channel_line(sandbox, key))
        print_timeline(key, path, detected, healed)
    with open(path) as handle:
        records = json.load(handle)["records"]
    return {"incident": key, "detected": detected, "healed": healed, "resolved": time.time(), "records": records}


def wait_resolved(path):
    def resolved():
        if not os.path.exists(path):
            return False
        with open(path) as handle:
            return any(r["step"] == "archive channel" for r in json.load(handle)["records"])

    estate.wait_until(resolved, timeout=120, what="the incident to be resolved")


def ticket_line(sandbox, key):
    issues = [i for i in sandbox.state()["jira"]["cloud"]["issues"].values() if key in i["fields"]["labels"]]
    if not issues:
        return "no Jira ticket"
    issue = issues[0]
    return "Jira %s is %s (%d comments, attached: %s)" % (
        issue["key"], issue["fields"]["status"], len(issue["comments"]),
        ", ".join(a["filename"] for a in issue["attachments"]) or "nothing")


def channel_line(sandbox, key):
    slack = sandbox.state()["slack"]
    channels = [c for c in slack["channels"].values() if c["name"] == "inc-" + key.lower()]
    if not channels:
        return "no Slack channel"
    channel = channels[0]
    return "Slack #%s %s (%d members, %d messages)" % (
        channel["name"], "archived" if channel["is_archived"] else "open", len(channel["members"]),
        len(slack["messages"][channel["id"]]))


def used_percent(path):
    vfs = os.statvfs(path)
    return 100.0 * (vfs.f_blocks - vfs.f_bfree) / vfs.f_blocks


def full_disk(sandbox, loop):
    say("== Scenario 2: full disk -> temp-file cleanup ==")
    if loop.disk is None:
        say("   not run: mounting the demo's 8 MiB tmpfs needs root (mount -t tmpfs)\n")
        return
    app = os.path.join(loop.disk, "app-tmp")
    os.makedirs(app, exist_ok=True)
    old = time.time() - 3 * 3600
    for number in range(6):
        path = os.path.join(app, "upload-%d.tmp" % number)
        with open(path, "wb") as handle:
            handle.write(b"x" * 1024 * 1024)
        os.utime(path, (old - number * 60, old - number * 60))
    with open(os.path.join(app, "in-progress.tmp"), "wb") as handle:
        handle.write(b"x" * 512 * 1024)
    step("filled the demo disk to %.0f %% with temp files (threshold 50 %%); Dynatrace reports low disk space"
         % used_percent(loop.disk))
    detected = time.time()
    problem, key, path = report_problem(sandbox, loop, {
        "title": "Low disk space on /var/tmp", "severity": "RESOURCE_CONTENTION",
        "entities": [{"type": "HOST", "name": "web-01"}]})
    estate.wait_until(lambda: used_percent(loop.disk) < 50, timeout=120, what="the disk to be freed")
    healed = time.time()
    step("disk back to %.0f %% used; the young in-progress file is still there: %s"
         % (used_percent(loop.disk), os.path.exists(os.path.join(app, "in-progress.tmp"))))
    return finish(sandbox, problem, key, path, detected, healed)


def bluegreen(sandbox, loop):
    say("== Scenario 3: slow service after a blue-green release -> switch back to blue on nginx ==")
    estate_ = loop.bluegreen
    estate_.green.configure(delay=0.05)
    # nginx -s reload returns before the new workers answer: start only once green really serves.
    estate.wait_until(lambda: estate_.active_colour("nginx") == "green", timeout=30, what="green live behind nginx")
    client = bluegreen_estate.LoadClient(estate_.router_url("nginx"), keepalive=True, concurrency=2, max_requests=50000,
                                         max_seconds=120, pause=0.01)
    client.start()
    step("green is live behind nginx (%s) and answers in 50+ ms; a client sends requests throughout"
         % estate_.router_url("nginx"))
    detected = time.time()
    problem, key, path = report_problem(sandbox, loop, {
        "title": "Response time degradation: checkout", "severity": "PERFORMANCE",
        "entities": [{"type": "SERVICE", "name": "checkout"}], "tags": {"bluegreen": "green", "app": "checkout"}})
    try:
        estate.wait_until(lambda: estate_.active_colour("nginx", requests=1) == "blue", timeout=120, what="traffic on blue")
        healed = time.time()
        step("nginx serves blue again")
        wait_resolved(path)  # the client runs until the incident is closed
    finally:
        report = client.stop().as_dict()
    estate_.green.reset()
    step("client during the incident: %d requests, %d non-2xx, %d failed, answered by %s" % (
        report["requests"], report["non_2xx"], report["failed"], report["colours"]))
    if report["non_2xx"] or report["failed"]:
        raise RuntimeError("requests failed during the blue-green switch: %s" % report)
    return finish(sandbox, problem, key, path, detected, healed)


def approved_crash(sandbox, loop, supervisor, answer_via="slack", quiet=False):
    """A crash in approve mode: nothing is restarted until the on-call engineer answers, by clicking "Approve fix" in
    the incident's Slack channel (answer_via="slack") or picking Approve in xMatters ("xmatters")."""
    if not quiet:
        say("== Incident 4: process crash in approve mode (the service is tagged selfheal_mode:approve) ==")
    old = supervisor.pid()
    estate.kill(old)
    estate.wait_until(lambda: supervisor.pid() == 0, what="supervisor to see the crash")
    if not quiet:
        step("killed the web service (PID %d) again; this time its Dynatrace tags ask for approval" % old)
    detected = time.time()
    # Dynatrace keeps tags on entities: the approval tag goes on the process's own entity, not on the host (whose next
    # problem would otherwise ask for approval too).
    problem, key, path = report_problem(sandbox, loop, {
        "title": "Process unavailable: web", "severity": "AVAILABILITY",
        "entities": [{"type": "HOST", "name": "web-01", "tags": {"process": "web", "app": "checkout"}},
                     {"type": "PROCESS_GROUP_INSTANCE", "name": "web on web-01",
                      "tags": {"process": "web", "selfheal_mode": "approve"}}]})

    def page():
        return [e for e in sandbox.state()["xmatters"]["events"] if e["name"].startswith(problem["displayId"])]

    def buttons():
        slack = sandbox.state()["slack"]
        channel = next((c for c in slack["channels"].values() if c["name"] == "inc-" + key.lower()), None)
        return channel and any("selfheal_approve" in json.dumps(m.get("blocks") or [])
                               for m in slack["messages"].get(channel["id"], []))

    estate.wait_until(page, timeout=60, what="the page with the response options")
    if answer_via == "slack":
        estate.wait_until(buttons, timeout=60, what="the approval buttons in the incident channel")
    if not quiet:
        step("xMatters paged the on-call engineer with the options %s and the channel shows Approve / Ignore buttons; "
             "the service is still down (PID %d)" % (" / ".join(o["text"] for o in page()[0]["responseOptions"]),
                                                     supervisor.pid()))
    answered = time.time()
    if answer_via == "slack":
        sandbox.call("POST", "/_sandbox/slack/click", {"channel": "inc-" + key.lower(), "user": "U0ONCALL01",
                                                       "action_id": "selfheal_approve"})
        if not quiet:
            step("oncall-primary clicked \"Approve fix\" in #inc-%s (a simulated responder, through the sandbox's Slack)"
                 % key.lower())
    else:
        sandbox.call("POST", "/_sandbox/xmatters/respond", {"event": page()[0]["id"], "response": "Approve",
                                                            "recipient": "oncall.primary"})
        if not quiet:
            step("oncall.primary picked Approve in xMatters (a simulated responder, through the sandbox)")
    estate.wait_until(lambda: estate.healthy(supervisor.port) and supervisor.pid() not in (0, old), timeout=120,
                      what="the service to come back")
    healed = time.time()
    if not quiet:
        step("web service healthy again with PID %d" % supervisor.pid())
    return dict(finish(sandbox, problem, key, path, detected, healed, quiet), answered=answered)


def servicenow_and_teams(sandbox, loop, supervisor):
    """A crash whose incident goes to ServiceNow and Microsoft Teams instead of Jira and Slack.

    The desks and chats are inventory settings, and ansible-rulebook hands each run a fresh copy of its inventory:
    switching them in the inventory file (atomically, as an operator changing group_vars would) applies to the next
    incident, with no second activation. The file is put back afterwards."""
    import yaml

    say("== Incident 5: process crash -> restart, the incident in ServiceNow + Microsoft Teams instead of Jira + Slack ==")
    path = loop.inventory_path
    with open(path) as handle:
        original = handle.read()
    inventory = yaml.safe_load(original)
    inventory["all"]["vars"].update(
        incident_jira_project="", incident_slack_enabled=False, incident_service_desks=["servicenow"],
        incident_chats=["teams"], incident_servicenow_assignment_group="Linux Operations",
        incident_teams_team="Operations", incident_teams_oncall_email_domain="example.com")

    def replace(text):
        with open(path + ".new", "w") as handle:
            handle.write(text)
        os.replace(path + ".new", path)

    replace(yaml.safe_dump(inventory, sort_keys=False))
    try:
        step("inventory switched: incident_service_desks [servicenow], incident_chats [teams] (team Operations)")
        outcome = process_crash(sandbox, loop, supervisor, quiet=True)
    finally:
        replace(original)
    key = outcome["incident"]
    state = sandbox.state()
    incidents = [r for r in state["servicenow"]["tables"]["incident"].values() if r["correlation_id"] == key]
    for record in incidents:
        attached = sorted(a["file_name"] for a in state["servicenow"]["attachments"].values() if a["table_sys_id"] == record["sys_id"])
        notes = [e for e in state["servicenow"]["journal"].get(record["sys_id"], []) if e["element"] == "work_notes"]
        step("ServiceNow %s is %s (%s; close notes: %s) with %d work notes, attached: %s" % (
            record["number"], {"6": "Resolved", "7": "Closed"}.get(record["state"], "state " + record["state"]),
            record["close_code"], record["close_notes"][:60], len(notes), ", ".join(attached) or "nothing"))
    channels = [c for team in state["msgraph"]["teams"].values() for c in team["channels"].values()
                if c["displayName"] == "inc-" + key]
    for channel in channels:
        step("Teams channel %s %s (%d messages posted by the app's bot)" % (
            channel["displayName"], "archived" if channel["isArchived"] else "open",
            len(state["msgraph"]["messages"].get(channel["id"], []))))
    step("%s; %s" % (ticket_line(sandbox, key), channel_line(sandbox, key)))
    print_timeline(key, os.path.join(loop.workdir, "incidents", key + ".json"), outcome["detected"], outcome["healed"])
    if len(incidents) != 1 or len(channels) != 1 or incidents[0]["state"] != "6" or not channels[0]["isArchived"]:
        raise RuntimeError("the ServiceNow + Teams incident %s was not written exactly once and resolved" % key)
    return outcome


def analytics(sandbox, loop):
    """The analytics report over the demo's incidents and a seeded history of 200 more over 30 days."""
    say("== Afterwards: post-mortems and analytics across incidents ==")
    seeded = sandbox.call("POST", "/_sandbox/history/seed", {"count": 200, "days": 30, "seed": 7})
    step("the sandbox's Jira, Dynatrace and xMatters now also hold a history of %s past incidents"
         % seeded.get("count", 200))
    dest = os.path.join(loop.workdir, "reports")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=loop.collections_path, ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(rulebook_harness.BIN, "python"), ANSIBLE_NOCOLOR="1",
               **credentials.environment(sandbox.url))
    run = subprocess.run([os.path.join(rulebook_harness.BIN, "ansible-playbook"), "selfheal.devops.incident_report",
                          "-e", json.dumps({"selfheal_report_dest": dest, "selfheal_report_sources": ["jira", "dynatrace", "xmatters"]})],
                         env=env, cwd=loop.workdir, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError("the analytics report failed:\n" + run.stdout[-3000:])
    with open(os.path.join(dest, "incident-report.json")) as handle:
        report = json.load(handle)
    times = report["times"]["all"]
    step("%d incidents in 30 days: time to acknowledge %s, to heal %s, to resolve %s (medians); %d recurring" % (
        report["totals"]["incidents"], seconds((times.get("time_to_acknowledge") or {}).get("median")),
        seconds((times.get("time_to_heal") or {}).get("median")),
        seconds((times.get("time_to_resolve") or {}).get("median")), len(report.get("recurrences") or [])))
    postmortems = sorted(n for n in os.listdir(os.path.join(loop.workdir, "incidents")) if n.endswith("-postmortem.html"))
    step("post-mortems, each attached to its ticket: %s" % ", ".join(postmortems))
    step("analytics report: %s" % os.path.join(dest, "incident-report.html"))


def seconds(value):
    return "-" if value is None else "%.0f s" % value


def start_loop(workdir, max_restarts=3, source=rulebook_harness.ROOT, inventory_vars=None, env=None, with_chatops=True):
    """Sandbox, estate and activation on loopback; returns (sandbox, supervisor, activation). Caller stops them.

    max_restarts is the crash-loop guard's limit per 15 minutes (a benchmark that crashes the service many
    times in a row raises it; otherwise the guard rightly escalates instead of restarting). A benchmark may run
    the collection of another checkout (source), change inventory variables and add environment variables; with_chatops
    also starts the chatops activation (responders' answers from xMatters callbacks and Slack)."""
    sandbox = supervisor = activation = bluegreen_ = None
    try:
        collections = rulebook_harness.install_collection(workdir, source)
        sandbox = start_sandbox()
        supervisor = estate.Supervisor(workdir)
        bluegreen_ = bluegreen_estate.Estate(routers=("nginx",), active="green", workdir=workdir)
        router = dict(bluegreen_.role_vars("nginx"), ansible_connection="local", bluegreen_switch_health_interval=0.1)
        port = rulebook_harness.free_port()
        disk = os.path.join(workdir, "disk")
        os.makedirs(disk)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", disk], capture_output=True,
                                 check=False).returncode == 0
        inventory = {"all": {"hosts": {"web-01": {"ansible_connection": "local"}}, "vars": dict(
            supervisor.role_vars(), ansible_python_interpreter=os.path.join(rulebook_harness.BIN, "python"),
            tempfile_cleanup_paths=[os.path.join(disk, "app-tmp")], tempfile_cleanup_allowed_roots=[disk],
            tempfile_cleanup_threshold_percent=50, tempfile_cleanup_target_free_percent=60,
            tempfile_cleanup_age="1h", tempfile_cleanup_excludes=["*.lock"],
            process_restart_state_dir=os.path.join(workdir, "restarts"), process_restart_health_timeout=15,
            process_restart_max_attempts=max_restarts, incident_oncall_provider="xmatters",
            incident_oncall_groups=["Ops Primary"], incident_timeline_dir=os.path.join(workdir, "incidents"),
            incident_oncall_response_options=[{"text": "Approve"}, {"text": "Ignore"}],
            incident_approval_poll_interval=0.3, incident_jira_project="OPS", incident_jira_resolution="Fixed",
            incident_slack_enabled=True, incident_slack_oncall_email_domain="example.com",
            incident_decision_dir=os.path.join(workdir, "decisions"), incident_slack_buttons=True,
            remediation_db=os.path.join(workdir, "remediations.db")),
            "children": {"bluegreen_routers": {"hosts": {"router-01": router}}}}}
        inventory["all"]["vars"].update(inventory_vars or {})
        variables = {"selfheal_webhook_port": port, "selfheal_webhook_token": TOKEN,
                     "selfheal_state_file": os.path.join(workdir, "state", "dynatrace.db")}
        activation = rulebook_harness.Activation("selfheal.devops.self_healing", collections, variables=variables,
                                                 inventory=inventory,
                                                 env=dict(credentials.environment(sandbox.url), **(env or {})),
                                                 workdir=os.path.join(workdir, "eda"), print_events=False)
        activation.workdir, activation.port, activation.disk = workdir, port, disk if mounted else None
        activation.bluegreen, activation.chatops = bluegreen_, None
        activation.start()
        if with_chatops:
            activation.chatops = chatops.start(collections, sandbox, workdir, inventory, os.path.join(workdir, "decisions"))
        activation.wait_for_url("http://127.0.0.1:%d/dynatrace/problems/health" % port, timeout=120)
        sandbox.call("POST", "/_sandbox/dynatrace/webhook", {
            "url": "http://127.0.0.1:%d/dynatrace/problems" % port, "headers": {"Authorization": "Bearer " + TOKEN}})
        return sandbox, supervisor, activation
    except BaseException:
        stop_loop(sandbox, supervisor, activation, bluegreen_)
        raise


def stop_loop(sandbox, supervisor, activation, bluegreen_=None):
    if activation is not None:
        if getattr(activation, "chatops", None) is not None:
            chatops.stop(sandbox, activation.chatops)
            shutil.rmtree(os.path.join(activation.chatops.workdir, "tmp"), ignore_errors=True)
        try:
            activation.wait_idle(timeout=60)  # the last incident's closed-problem run, say: never cut a run short
        except AssertionError:
            pass
        activation.stop()
        # Each run's private data (its command and environment, API tokens included) stays under the activation's
        # TMPDIR: remove it, so nothing the demo leaves behind holds a secret.
        shutil.rmtree(os.path.join(activation.workdir, "tmp"), ignore_errors=True)  # the activation's TMPDIR
        if getattr(activation, "disk", None):
            subprocess.run(["umount", "-l", activation.disk], check=False)
    if supervisor is not None:
        supervisor.stop()
    bluegreen_ = bluegreen_ or getattr(activation, "bluegreen", None)
    if bluegreen_ is not None:
        bluegreen_.close()
    if sandbox is not None:
        stop_sandbox(sandbox)


def files_with_secrets(folder):
    """Files under folder that contain one of the sandbox's credentials (there must be none)."""
    found = []
    for directory, dummy, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as handle:
                    data = handle.read(4 * 1024 * 1024)
            except OSError:
                continue
            if any(secret.encode() in data for secret in credentials.SECRETS):
                found.append(path)
    return found


def main():
    workdir = tempfile.mkdtemp(prefix="selfheal-demo-")
    started = time.time()
    parts = (None, None, None)
    try:
        step("building and installing the collection, starting the sandbox, the estate and ansible-rulebook")
        parts = start_loop(workdir)
        sandbox, supervisor, activation = parts
        step("sandbox (Dynatrace, Jira, Slack, xMatters, PagerDuty, Keptn APIs) at %s  (state: %s/_sandbox/state)"
             % (sandbox.url, sandbox.url))
        step("demo estate: web service on http://127.0.0.1:%d/ under supervisord, host web-01" % supervisor.port)
        step("ansible-rulebook is running selfheal.devops.self_healing (webhook on 127.0.0.1:%d)" % activation.port)

        step("watch the incidents unfold: %s/ (problems, pages, tickets, channels)" % sandbox.url)
        # Real SaaS APIs answer across the internet: give the sandbox's desks and chats a round trip of 300 ms
        # (Dynatrace 150 ms), so the timelines show what runs beside the fix.
        sandbox.call("POST", "/_sandbox/faults", [
            {"path": prefix + "*", "times": -1, "latency": latency} for prefix, latency in (
                ("/jira/", 0.3), ("/slack/api/", 0.3), ("/servicenow/", 0.3), ("/msgraph/", 0.3),
                ("/botframework/", 0.3), ("/dynatrace/", 0.15))])
        step("the sandbox answers Jira, Slack, ServiceNow and Teams after 300 ms and Dynatrace after 150 ms, as a SaaS "
             "across the internet would")
        process_crash(sandbox, activation, supervisor)
        full_disk(sandbox, activation)
        bluegreen(sandbox, activation)
        approved_crash(sandbox, activation, supervisor)
        servicenow_and_teams(sandbox, activation, supervisor)
        analytics(sandbox, activation)
        say("\nDemo finished in %.0f s: three scenarios resolved automatically, one incident approved from Slack, one in "
            "ServiceNow and Teams, and the analytics across incidents. "
            "Logs: %s" % (time.time() - started, workdir))
        return 0
    except KeyboardInterrupt:
        say("\ninterrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, fail
        say("\nDEMO FAILED: %s" % exc)
        if parts[2] is not None:
            say(parts[2].output()[-3000:])
        return 1
    finally:
        step("stopping everything the demo started")
        stop_loop(*parts)
        leaked = files_with_secrets(workdir)
        if leaked:
            say("WARNING: these files the demo leaves behind hold an API token: %s" % ", ".join(leaked))


if __name__ == "__main__":
    sys.exit(main())
