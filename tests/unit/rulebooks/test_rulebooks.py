"""The shipped rulebooks: valid for ansible-rulebook (its own schema and parser), every playbook they run exists,
and the controller rulebook has exactly the rules of the local one."""

import os

import pytest
import yaml
from ansible_rulebook.conf import settings
from ansible_rulebook.rules_parser import parse_rule_sets
from ansible_rulebook.validators import Validate

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
RULEBOOKS = os.path.join(ROOT, "extensions", "eda", "rulebooks")


def load(name):
    with open(os.path.join(RULEBOOKS, name)) as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize("name", sorted(os.listdir(RULEBOOKS)))
def test_rulebook_is_valid_for_ansible_rulebook(name, monkeypatch):
    # The parser looks the collection up with the venv's ansible-galaxy, in the checkout's collections path.
    monkeypatch.setattr(settings, "ansible_galaxy_path", os.path.join(ROOT, ".venv", "bin", "ansible-galaxy"))
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, "build", "collections"))
    rulebook = load(name)
    Validate.rulebook(rulebook)
    assert parse_rule_sets(rulebook)


@pytest.mark.parametrize("name", sorted(os.listdir(RULEBOOKS)))
def test_every_playbook_a_rule_runs_exists(name):
    for ruleset in load(name):
        for rule in ruleset["rules"]:
            action = rule.get("action") or {}
            playbook = (action.get("run_playbook") or {}).get("name")
            if playbook:
                assert playbook.startswith("selfheal.devops."), playbook
                assert os.path.exists(os.path.join(ROOT, "playbooks", playbook.split(".")[-1] + ".yml")), playbook


def test_the_controller_rulebook_has_the_same_rules():
    local, controller = load("self_healing.yml")[0], load("self_healing_controller.yml")[0]
    assert local["sources"] == controller["sources"]

    def shape(rule):
        return rule["name"], rule["condition"], rule.get("throttle")

    assert [shape(r) for r in local["rules"]] == [shape(r) for r in controller["rules"]]
    for mine, theirs in zip(local["rules"], controller["rules"]):
        run = mine["action"]["run_playbook"]
        launch = theirs["action"]["run_job_template"]
        assert run.get("extra_vars") == launch.get("job_args", {}).get("extra_vars")
