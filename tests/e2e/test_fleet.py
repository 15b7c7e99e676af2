"""A problem spanning a fleet, in one real ansible-rulebook activation of the self_healing rulebook: twelve hosts
(each its own 127.0.0.x address reached over SSH, its own supervisord program and crash-loop state) heal in batches
of four (selfheal_batch_size set in the inventory, not the default five) and the incident resolves once, after the
last batch; a batch that does not heal stops the roll."""

import pytest

from sandbox import credentials
from utils import estate
from utils import rulebook_harness
from utils.fleet import Fleet
from utils.loops import channels_for, problem_state, tickets_for, timeline

TOKEN = "fleet-webhook-token"


@pytest.fixture(scope="module")
def fleet_loop(installed_collection, sandbox_session, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e-fleet")
    with Fleet(workdir / "fleet", size=12) as fleet:
        port = rulebook_harness.free_port()
        inventory = fleet.inventory()
        inventory["all"]["vars"] = {
            "incident_oncall_provider": "xmatters", "incident_oncall_groups": ["Ops Primary"],
            "incident_jira_project": "OPS", "incident_jira_resolution": "Fixed", "incident_slack_enabled": True,
            "incident_timeline_dir": str(workdir / "incidents"), "incident_decision_dir": str(workdir / "decisions"),
            "remediation_db": str(workdir / "remediations.db"), "remediation_host_limit": 50,
            "selfheal_max_hosts": 20, "selfheal_batch_size": 4, "process_restart_health_timeout": 15}
        inventory["all"]["hosts"] = {"localhost": {"ansible_connection": "local",
                                                   "ansible_python_interpreter": rulebook_harness.BIN + "/python"}}
        activation = rulebook_harness.Activation(
            "selfheal.devops.self_healing", installed_collection, inventory=inventory,
            variables={"selfheal_webhook_port": port, "selfheal_webhook_token": TOKEN,
                       "selfheal_state_file": str(workdir / "state.db")},
            env=credentials.environment(sandbox_session.url), workdir=str(workdir / "eda"))
        activation.start()
        try:
            activation.wait_for_url("http://127.0.0.1:%d/dynatrace/problems/health" % port, timeout=90)
            sandbox_session.call("POST", "/_sandbox/dynatrace/webhook", {
                "url": "http://127.0.0.1:%d/dynatrace/problems" % port, "headers": {"Authorization": "Bearer " + TOKEN}})
            activation.fleet, activation.workdir = fleet, workdir
            yield activation
        finally:
            activation.stop()


def report(sandbox, hosts):
    return sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Process unavailable: web on %d hosts" % len(hosts), "severity": "AVAILABILITY",
        "tags": {"process": "web"}, "entities": [{"type": "HOST", "name": name} for name in hosts]})


def records(loop, problem):
    return timeline(loop, "dt-" + problem["displayId"])["records"]


def test_twelve_hosts_heal_in_batches_of_four_and_the_incident_resolves_once(fleet_loop, sandbox_session):
    fleet, sandbox = fleet_loop.fleet, sandbox_session
    fleet.reset()
    old = {name: fleet.crash(name) for name in fleet.names}
    problem = report(sandbox, fleet.names)
    estate.wait_until(lambda: any(r["step"] == "archive channel" for r in records(fleet_loop, problem)), timeout=300,
                      what="the incident resolved")
    for name in fleet.names:
        assert fleet.healthy(name) and fleet.pid(name) not in (0, old[name]), name
    restarts = [r for r in records(fleet_loop, problem) if r["step"] == "restart process"]
    assert sorted(r["system"] for r in restarts) == sorted(fleet.names) and {r["result"] for r in restarts} == {"changed"}
    assert [r["step"] for r in records(fleet_loop, problem)].count("resolve ticket") == 1
    assert problem_state(sandbox, problem)["status"] == "CLOSED"
    key = "dt-" + problem["displayId"]
    [ticket] = tickets_for(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved" and len(channels_for(sandbox, key)) == 1


def test_a_batch_that_does_not_heal_stops_the_roll_and_escalates(fleet_loop, sandbox_session):
    fleet, sandbox = fleet_loop.fleet, sandbox_session
    fleet.reset()
    broken = fleet.names[2]  # in the first batch of four
    fleet.break_restart(broken)
    try:
        for name in fleet.names:
            fleet.crash(name)
        problem = report(sandbox, fleet.names)
        estate.wait_until(lambda: any(r["step"] == "escalated" for r in records(fleet_loop, problem)), timeout=300,
                          what="the escalation")
    finally:
        fleet.repair(broken)
    first_batch, later = fleet.names[:4], fleet.names[4:]  # four from the inventory, not the default five
    assert all(fleet.healthy(name) for name in first_batch if name != broken)
    assert all(fleet.pid(name) == 0 for name in later)  # the roll stopped: nothing after the failing batch
    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    escalation = [c for c in comments if "Escalated" in c][0]
    assert broken in escalation and "Not touched: " + ", ".join(later) in escalation
    assert problem_state(sandbox, problem)["status"] == "OPEN"
