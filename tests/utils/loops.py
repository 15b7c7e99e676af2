"""A running self-healing loop for the end-to-end tests: the estate (a web service supervised on host web-01 and
a small tmpfs) and one real ansible-rulebook activation of selfheal.devops.self_healing against the sandbox."""

import contextlib
import json
import os
import subprocess

from sandbox import credentials
from utils import bluegreen_estate, estate, rulebook_harness

TOKEN = "e2e-webhook-token"


@contextlib.contextmanager
def self_healing_loop(collections_path, sandbox, workdir, variables=None, settings=None, more_hosts=()):
    """Start the estate and the activation; variables go to the rulebook, settings to the inventory.

    The estate: a web service under supervisord on host web-01, a small tmpfs, and a blue-green service (two
    backends behind a private nginx, green live) routed by host router-01 of the group bluegreen_routers.
    more_hosts: names of further hosts, each with its own supervisord running its own `web` service and its own
    crash-loop state (activation.supervisors[name])."""
    supervisor = estate.Supervisor(workdir)
    supervisors = {"web-01": supervisor}
    for name in more_hosts:
        (workdir / name).mkdir()
        supervisors[name] = estate.Supervisor(workdir / name)
    bluegreen = bluegreen_estate.Estate(routers=("nginx",), active="green", workdir=str(workdir))
    port = rulebook_harness.free_port()
    disk = workdir / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True,
                             check=False).returncode == 0
    inventory_vars = dict(supervisor.role_vars(),
                          ansible_python_interpreter=os.path.join(rulebook_harness.BIN, "python"),
                          process_restart_state_dir=str(workdir / "restarts"),
                          process_restart_health_timeout=15,
                          incident_oncall_provider="xmatters", incident_oncall_groups=["Ops Primary"],
                          incident_jira_project="OPS", incident_jira_resolution="Fixed",
                          incident_slack_enabled=True, incident_slack_oncall_email_domain="example.com",
                          incident_timeline_dir=str(workdir / "incidents"),
                          tempfile_cleanup_paths=[str(disk / "app-tmp")], tempfile_cleanup_allowed_roots=[str(disk)],
                          tempfile_cleanup_threshold_percent=50, tempfile_cleanup_target_free_percent=60,
                          tempfile_cleanup_age="1h", tempfile_cleanup_excludes=["*.lock"],
                          # every test restarts web-01 again: budgets of their own are tested on their own
                          remediation_host_limit=50, remediation_db=str(workdir / "remediations.db"),
                          incident_decision_dir=str(workdir / "decisions"))
    inventory_vars.update(settings or {})
    router = dict(bluegreen.role_vars("nginx"), ansible_connection="local", bluegreen_switch_health_interval=0.1)
    hosts = {"web-01": {"ansible_connection": "local"}}
    for name in more_hosts:
        hosts[name] = dict(supervisors[name].role_vars(), ansible_connection="local",
                           process_restart_state_dir=str(workdir / name / "restarts"))
    inventory = {"all": {"hosts": hosts, "vars": inventory_vars,
                         "children": {"bluegreen_routers": {"hosts": {"router-01": router}}}}}
    rulebook_vars = {"selfheal_webhook_port": port, "selfheal_webhook_token": TOKEN,
                     "selfheal_state_file": str(workdir / "dynatrace-state.json")}
    rulebook_vars.update(variables or {})
    activation = rulebook_harness.Activation("selfheal.devops.self_healing", collections_path, variables=rulebook_vars,
                                             inventory=inventory, env=credentials.environment(sandbox.url),
                                             workdir=str(workdir / "eda"))
    activation.start()
    try:
        activation.health_url = "http://127.0.0.1:%d/dynatrace/problems/health" % port
        activation.wait_for_url(activation.health_url, timeout=90)
        sandbox.call("POST", "/_sandbox/dynatrace/webhook", {
            "url": "http://127.0.0.1:%d/dynatrace/problems" % port, "headers": {"Authorization": "Bearer " + TOKEN}})
        sandbox.call("POST", "/_sandbox/xmatters/config", {"delay": 0.1})
        activation.supervisor, activation.workdir, activation.disk = supervisor, workdir, disk if mounted else None
        activation.supervisors = supervisors
        activation.bluegreen = bluegreen
        yield activation
    finally:
        activation.stop()
        for running in supervisors.values():
            running.stop()
        bluegreen.close()
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def crash(loop, host="web-01"):
    """Kill the host's web service as a crash would; return its PID."""
    supervisor = loop.supervisors[host]
    old = estate.wait_until(supervisor.pid, timeout=30, what="%s's service to run before the crash" % host)
    estate.kill(old)
    estate.wait_until(lambda: supervisor.pid() == 0, what="supervisor to see the crash")
    return old


def report(sandbox, host="web-01", tags=None, entities=None):
    """Have Dynatrace open the problem of a crashed web service on host (the sandbox notifies the activation)."""
    return sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Process unavailable: web on %s" % host, "severity": "AVAILABILITY",
        # The process's own entity per host: Dynatrace keeps tags on entities, so a shared one would carry one
        # problem's tags (selfheal_mode:approve, say) into the next.
        "entities": entities or [{"type": "HOST", "name": host}, {"type": "PROCESS_GROUP_INSTANCE", "name": "web on " + host}],
        "tags": dict({"process": "web", "app": "checkout"}, **(tags or {}))})


def crash_and_report(loop, sandbox, host="web-01", tags=None):
    """Kill the service as a crash would, and have Dynatrace open the matching problem."""
    old = crash(loop, host)
    return old, report(sandbox, host, tags)


def problem_state(sandbox, problem):
    return sandbox.state()["dynatrace"]["problems"][problem["problemId"]]


def timeline(loop, key):
    path = loop.workdir / "incidents" / (key + ".json")
    return json.loads(path.read_text()) if path.exists() else {"records": []}


def wait_for_step(loop, problem, step, timeout=120):
    key = "dt-" + problem["displayId"]
    estate.wait_until(lambda: any(r["step"] == step for r in timeline(loop, key)["records"]), timeout=timeout,
                      what="the incident step %r" % step)


def pages_for(sandbox, key):
    return [e for e in sandbox.state()["xmatters"]["events"]
            if any(str(v) == key for k, v in (e.get("properties") or {}).items() if k.split("#")[0] == "selfheal_incident_key")]


def tickets_for(sandbox, key):
    return [i for i in sandbox.state()["jira"]["cloud"]["issues"].values() if key in i["fields"]["labels"]]


def incident_attachments(ticket):
    """The ticket's attachments from the incident itself (timeline, transcripts), sorted; the post-mortem files the
    remediation role attaches afterwards are left out (test_recurrence checks those)."""
    return sorted(a["filename"] for a in ticket["attachments"] if "-postmortem." not in a["filename"])


def channels_for(sandbox, key):
    return [c for c in sandbox.state()["slack"]["channels"].values() if c["name"] == "inc-" + key.lower()]


def channel_texts(sandbox, channel):
    return [m["text"] for m in sandbox.state()["slack"]["messages"][channel["id"]]]
