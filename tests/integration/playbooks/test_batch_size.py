"""The fix play's batch size: an unusable selfheal_batch_size stops every remediation playbook before anything is
decided or written (a batch size of 0 would make Ansible roll over every target at once). The inventory's value
reaching the fix play is proven with a real fleet in tests/e2e/test_fleet.py."""

import pytest


@pytest.mark.parametrize("playbook", ["remediate_process_crash", "remediate_full_disk", "rollback_bluegreen"])
@pytest.mark.parametrize("size", ["0", "two"])
def test_an_unusable_batch_size_stops_before_anything_is_done(collection_playbook, sandbox, sandbox_env, tmp_path, playbook,
                                                              size):
    problem = {"id": "-1", "display_id": "P-1", "title": "Process unavailable", "severity": "AVAILABILITY",
               "entities": [{"type": "HOST", "name": "localhost"}], "tags": {"process": "web"}}
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local"}},
                         "vars": {"selfheal_batch_size": size, "incident_timeline_dir": str(tmp_path / "incidents"),
                                  "remediation_db": str(tmp_path / "remediations.db")}}}
    run = collection_playbook(playbook, inventory, {"selfheal_problem": problem, "selfheal_incident_key": "dt-P-1"},
                              env=sandbox_env)
    assert run.rc != 0
    assert "remediation_batch_size (selfheal_batch_size) must be a whole number of at least 1, got '%s'" % size in run.stdout
    assert not (tmp_path / "remediations.db").exists() and not (tmp_path / "incidents").exists()
    assert sandbox.state()["dynatrace"]["comments"] == {} and not sandbox.state()["jira"]["cloud"]["issues"]
