"""Each event source documents itself as ansible.eda sources do, and documents every argument it reads."""

import os
import re

import pytest
import yaml

from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import dynatrace, oncall_callback

SOURCES = {"dynatrace": dynatrace, "oncall_callback": oncall_callback}
HERE_WEBHOOK = os.path.join(os.path.dirname(dynatrace.__file__), "_webhook.py")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_documentation_and_examples_are_valid(name):
    module = SOURCES[name]
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["short_description"] and doc["description"]
    for option, spec in doc["options"].items():
        assert spec.get("description"), option
        assert spec.get("type") in ("str", "int", "bool", "list", "path", "dict", "float"), option
    examples = yaml.safe_load(module.EXAMPLES)
    assert examples and all("selfheal.devops." + name in str(play["sources"]) for play in examples)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_argument_read_is_documented(name):
    module = SOURCES[name]
    documented = set(yaml.safe_load(module.DOCUMENTATION)["options"])
    with open(module.__file__) as handle:
        read = set(re.findall(r'args\.get\("([a-z_]+)"', handle.read()))
    with open(HERE_WEBHOOK) as handle:  # the shared webhook arguments, read through WebhookConfig
        read |= set(re.findall(r'(?:args\.get\(|_int\(args, )"([a-z_]+)"', handle.read()))
    assert read - documented == set(), "undocumented arguments"
