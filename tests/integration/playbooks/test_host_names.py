"""A crash on a host Dynatrace names differently from the inventory (its FQDN against the inventory's short name):
without an alias nothing is restarted and the incident goes to a human, saying how to name the host; with
selfheal_host_aliases in the inventory the process-crash runbook restarts it there, on the aliased host only."""

from utils import estate
from utils.loops import tickets_for


def crash_named(sandbox, supervisor, name):
    """The service is down (killed now, or still down from before) and Dynatrace opens a problem naming `name`."""
    if supervisor.pid():
        estate.kill(supervisor.pid())
    estate.wait_until(lambda: supervisor.pid() == 0, what="supervisor to see the crash")
    entities = [{"type": "HOST", "name": name}]
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Process unavailable: web on %s" % name, "severity": "AVAILABILITY", "entities": entities,
        "tags": {"process": "web"}})
    extra = {"selfheal_incident_key": "dt-" + problem["displayId"],
             "selfheal_problem": {"id": problem["problemId"], "display_id": problem["displayId"], "title": problem["title"],
                                  "severity": "AVAILABILITY", "entities": entities, "tags": {"process": "web"}}}
    return problem, extra


def comments(sandbox, problem):
    return [c["content"] for c in sandbox.state()["dynatrace"]["comments"].get(problem["problemId"], [])]


def test_a_host_dynatrace_names_by_its_fqdn_is_fixed_only_through_an_alias(collection_playbook, sandbox, sandbox_env,
                                                                           tmp_path):
    (tmp_path / "other").mkdir()
    supervisor = estate.Supervisor(tmp_path)
    try:
        other = estate.Supervisor(tmp_path / "other")
    except Exception:
        supervisor.stop()
        raise
    try:
        hosts = {"web-01": dict(supervisor.role_vars(), ansible_connection="local",
                                process_restart_state_dir=str(tmp_path / "restarts")),
                 # another host of the same short name's family: never touched
                 "web-01-canary": dict(other.role_vars(), ansible_connection="local",
                                       process_restart_state_dir=str(tmp_path / "other" / "restarts"))}
        settings = {"incident_timeline_dir": str(tmp_path / "incidents"), "remediation_db": str(tmp_path / "remediations.db"),
                    "incident_jira_project": "OPS"}
        canary = other.pid()

        problem, extra = crash_named(sandbox, supervisor, "web-01.prod.example.com")
        run = collection_playbook("remediate_process_crash", {"all": {"hosts": hosts, "vars": settings}}, extra,
                                  env=sandbox_env)
        assert run.rc == 0, run.stdout[-3000:]
        assert supervisor.pid() == 0  # nothing restarted
        assert any(c.startswith("[selfheal.devops] Escalated to a human:") and "selfheal_host_aliases" in c
                   for c in comments(sandbox, problem)), comments(sandbox, problem)
        [ticket] = tickets_for(sandbox, extra["selfheal_incident_key"])
        assert ticket["fields"]["status"] == "Open"

        settings["selfheal_host_aliases"] = {"WEB-01.prod.example.com": "web-01"}
        problem, extra = crash_named(sandbox, supervisor, "web-01.prod.example.com")
        run = collection_playbook("remediate_process_crash", {"all": {"hosts": hosts, "vars": settings}}, extra,
                                  env=sandbox_env)
        assert run.rc == 0, run.stdout[-3000:]
        assert supervisor.pid() and estate.healthy(supervisor.port)
        assert sandbox.state()["dynatrace"]["problems"][problem["problemId"]]["status"] == "CLOSED"
        assert "automatic fix on web-01 (web-01.prod.example.com is web-01)" in run.stdout
        assert other.pid() == canary
    finally:
        supervisor.stop()
        other.stop()
