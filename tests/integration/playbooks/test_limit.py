"""Every runbook decides, opens and resolves on localhost: a run whose limit leaves localhost out (--limit web-01, a
job template's limit, ansible-rulebook's run_playbook limited to an event's meta.hosts) used to skip all of that and
end "ok" having done nothing. It now stops at once, saying why, before anything is decided or written."""

import pytest

PLAYBOOKS = ["remediate_process_crash", "remediate_full_disk", "rollback_bluegreen", "resolve_incident", "chat_action"]


def run(collection_playbook, sandbox_env, tmp_path, playbook, limit, **settings):
    problem = {"id": "-1", "display_id": "P-1", "title": "Process unavailable", "severity": "AVAILABILITY",
               "entities": [{"type": "HOST", "name": "web-01"}], "tags": {"process": "web"}}
    inventory = {"all": {"hosts": {"web-01": {"ansible_connection": "local"}},
                         "vars": dict({"incident_timeline_dir": str(tmp_path / "state" / "incidents"),
                                       "remediation_db": str(tmp_path / "state" / "remediations.db")}, **settings)}}
    extra = {"selfheal_problem": problem, "selfheal_incident_key": "dt-P-1",
             "selfheal_chat": {"action": "fix", "incident_key": "dt-P-1"}}
    return collection_playbook(playbook, inventory, extra, env=sandbox_env, extra_args=["--limit", limit])


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_a_limit_without_localhost_stops_the_run_saying_why(collection_playbook, sandbox, sandbox_env, tmp_path, playbook):
    outcome = run(collection_playbook, sandbox_env, tmp_path, playbook, "web-01")
    assert outcome.rc != 0
    said = " ".join(outcome.stdout.split())
    assert "the limit of this run (web-01) leaves localhost out: nothing would be done" in said, outcome.stdout[-3000:]
    assert "Add localhost to the limit (for example --limit localhost,web-01)" in said
    assert not (tmp_path / "state").exists()
    assert sandbox.state()["dynatrace"]["comments"] == {} and not sandbox.state()["jira"]["cloud"]["issues"]


def test_a_limit_with_localhost_goes_on(collection_playbook, sandbox, sandbox_env, tmp_path):
    # past the check: the run reaches the first play's own checks (an unusable batch size stops it there)
    outcome = run(collection_playbook, sandbox_env, tmp_path, "remediate_process_crash", "localhost,web-01",
                  selfheal_batch_size="0")
    assert outcome.rc != 0
    said = " ".join(outcome.stdout.split())
    assert "nothing would be done" not in said
    assert "remediation_batch_size (selfheal_batch_size) must be a whole number of at least 1, got '0'" in said
