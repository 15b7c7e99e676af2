"""Every role has meta/argument_specs.yml, and it documents exactly the public variables of defaults/main.yml."""

import glob
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = sorted(os.path.basename(os.path.dirname(path)) for path in glob.glob(os.path.join(ROOT, "roles", "*", "tasks")))


def load(role, *parts):
    path = os.path.join(ROOT, "roles", role, *parts)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.parametrize("role", ROLES)
def test_role_has_argument_specs_matching_defaults(role):
    specs = load(role, "meta", "argument_specs.yml")
    assert specs, "roles/%s/meta/argument_specs.yml is missing" % role
    main = specs["argument_specs"]["main"]
    assert main.get("short_description"), "entry point main needs a short_description"
    documented = main.get("options", {})
    defaults = load(role, "defaults", "main.yml") or {}
    assert sorted(defaults) == sorted(k for k in documented if k in defaults), "defaults not all documented"
    undocumented = sorted(set(defaults) - set(documented))
    assert not undocumented, "defaults missing from argument_specs: %s" % undocumented
    for name, option in documented.items():
        assert name.startswith(role + "_"), "public variable %s must be prefixed with %s_" % (name, role)
        assert option.get("description"), "%s needs a description" % name
        if name in defaults and "default" in option:
            assert option["default"] == defaults[name], "%s: default differs from defaults/main.yml" % name
        if name not in defaults:
            assert option.get("required"), "%s has no default in defaults/main.yml, so it must be required" % name


@pytest.mark.parametrize("role", ROLES)
def test_private_role_vars_are_underscore_prefixed(role):
    for name in load(role, "vars", "main.yml") or {}:
        assert name.startswith("_"), "roles/%s/vars/main.yml: %s should be private (_%s)" % (role, name, name)


def test_roles_exist():
    assert ROLES, "no roles found"
