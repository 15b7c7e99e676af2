"""The AWX/AAP credential types in extensions/awx/credential_types inject exactly what the collection reads.

The reference is plugins/module_utils/_options.py: every option with an environment fallback, in every service
dict (SERVICES, so a service added there is covered here without editing this file) and in CONNECTION. The
injectors are rendered the way automation controller renders them (an immutable sandboxed Jinja environment;
inputs never set are undefined, booleans never set are false), and the result is read back through the
modules' own env_fallback and type conversion.
"""

import glob
import os
import re
import types

import pytest
import yaml
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.selfheal.devops.plugins.module_utils import _options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TYPES_DIR = os.path.join(ROOT, "extensions", "awx", "credential_types")
RULEBOOKS = os.path.join(ROOT, "extensions", "eda", "rulebooks")

# Options read from the environment on purpose without a credential type, with the reason. Empty today: every
# option with an env fallback is injectable. A new service in _options.SERVICES fails
# test_every_environment_option_has_a_credential_type until it has a file here or an entry here.
NOT_COVERED = {}

# What automation controller accepts in a credential type (awx/main/fields.py CredentialTypeInputField).
TOP_KEYS = {"name", "description", "kind", "inputs", "injectors"}
FIELD_KEYS = {"id", "label", "type", "secret", "multiline", "help_text", "choices", "default", "format", "ask_at_runtime"}
INJECTOR_KEYS = {"env", "extra_vars", "file"}
SECRET_WORDS = re.compile(r"token|password|secret|key", re.I)


def load_types():
    found = {}
    for path in sorted(glob.glob(os.path.join(TYPES_DIR, "*.yml"))):
        with open(path) as handle:
            found[os.path.basename(path)] = yaml.safe_load(handle)
    return found


TYPES = load_types()


def environment_options():
    """{env var: (service, option, spec, primary)} for every option the modules read from the environment."""
    table = {}
    sources = sorted(_options.SERVICES.items()) + [("connection", _options.CONNECTION)]
    for service, options in sources:
        for option, spec in options.items():
            fallback = spec.get("fallback")
            if not fallback:
                continue
            names = fallback[1]
            for index, name in enumerate(names):
                table[name] = (service, option, spec, index == 0)
    return table


ENV_OPTIONS = environment_options()


def fields(definition):
    return {field["id"]: field for field in definition["inputs"]["fields"]}


def template_variables(template):
    return meta.find_undeclared_variables(ImmutableSandboxedEnvironment().parse(template))


def inputs_behind(definition, template):
    """The input ids a template renders; tower.filename stands for the inputs the file injector writes."""
    used = template_variables(template)
    if "tower" in used:
        for file_template in definition["injectors"].get("file", {}).values():
            used |= template_variables(file_template)
    return used - {"tower"}


def env_injections():
    """(file, env var) for every env injector."""
    return [(name, variable) for name, definition in sorted(TYPES.items())
            for variable in definition.get("injectors", {}).get("env", {})]


def render_like_awx(definition, inputs):
    """The env an AWX job gets from a credential with these inputs (awx CredentialType.inject_credential)."""
    namespace = {"tower": types.SimpleNamespace(filename="/runner/env/tmpcredential")}
    for field in definition["inputs"]["fields"]:
        value = inputs.get(field["id"])
        if field.get("type") == "boolean":
            namespace[field["id"]] = bool(value) if field["id"] in inputs else False
        elif value:
            namespace[field["id"]] = value
    env = ImmutableSandboxedEnvironment()
    return {variable: env.from_string(template).render(**namespace)
            for variable, template in definition["injectors"].get("env", {}).items()}


def read_back(env, spec):
    """What a module's env_fallback makes of an injected value (ansible's own type conversion)."""
    value = env
    if spec.get("type") == "bool":
        return boolean(value)
    if spec.get("type") == "float":
        return float(value)
    if spec.get("type") == "int":
        return int(value)
    return value


def test_there_is_one_file_per_service():
    assert {"dynatrace.yml", "jira.yml", "slack.yml", "xmatters.yml", "pagerduty.yml", "keptn.yml"} <= set(TYPES)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_the_file_has_the_shape_automation_controller_accepts(name):
    definition = TYPES[name]
    assert set(definition) <= TOP_KEYS and {"name", "inputs", "injectors"} <= set(definition), sorted(definition)
    assert definition["name"].startswith("selfheal.devops "), definition["name"]
    assert definition.get("kind", "cloud") in ("cloud", "net")
    assert set(definition["injectors"]) <= INJECTOR_KEYS and definition["injectors"]
    ids = [field["id"] for field in definition["inputs"]["fields"]]
    assert len(ids) == len(set(ids)), ids
    for field in definition["inputs"]["fields"]:
        assert set(field) <= FIELD_KEYS, (name, field)
        assert re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", field["id"]) and field.get("label"), field
        assert field.get("type", "string") in ("string", "boolean"), field
        if "choices" in field and "default" in field:
            assert field["default"] in field["choices"], field
    assert set(definition["inputs"].get("required", [])) <= set(ids)


def test_names_are_unique():
    names = [definition["name"] for definition in TYPES.values()]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("name", sorted(TYPES))
def test_injectors_read_only_declared_inputs(name):
    definition = TYPES[name]
    ids = set(fields(definition))
    injectors = definition["injectors"]
    templates = list(injectors.get("env", {}).values()) + list(injectors.get("extra_vars", {}).values())
    templates += list(injectors.get("file", {}).values())
    for template in templates:
        used = template_variables(template)
        assert used - {"tower"} <= ids, (template, used - ids)
        if "tower" in used:
            assert injectors.get("file"), "%s uses tower.filename without a file injector" % template
    for variable in injectors.get("env", {}):
        assert re.match(r"^[A-Z][A-Z0-9_]*$", variable) and not variable.startswith("ANSIBLE_"), variable
    for variable in injectors.get("extra_vars", {}):
        assert not variable.lower().startswith(("ansible_", "eda_", "tower_", "awx_")), variable


@pytest.mark.parametrize("name,variable", env_injections())
def test_every_injected_variable_is_one_the_modules_read(name, variable):
    used = inputs_behind(TYPES[name], TYPES[name]["injectors"]["env"][variable])
    assert variable in ENV_OPTIONS, "%s injects %s, which no module reads (plugins/module_utils/_options.py)" % (name, variable)
    service, option, spec, primary = ENV_OPTIONS[variable]
    assert primary, "%s injects %s, an alias of %s.%s: inject its first name" % (name, variable, service, option)
    assert len(used) == 1, "%s: %s should render exactly one input, reads %s" % (name, variable, sorted(used))


@pytest.mark.parametrize("name,variable", env_injections())
def test_an_input_is_secret_exactly_when_the_option_is_no_log(name, variable):
    service, option, spec, primary = ENV_OPTIONS[variable]
    [field_id] = inputs_behind(TYPES[name], TYPES[name]["injectors"]["env"][variable])
    field = fields(TYPES[name])[field_id]
    message = "%s: input %s (-> %s, %s.%s no_log=%s) has secret=%s" % (
        name, field_id, variable, service, option, spec.get("no_log"), field.get("secret"))
    assert bool(field.get("secret")) == bool(spec.get("no_log")), message


@pytest.mark.parametrize("name", sorted(TYPES))
def test_every_input_that_looks_like_a_credential_is_secret(name):
    for field in TYPES[name]["inputs"]["fields"]:
        if field.get("type", "string") == "string" and SECRET_WORDS.search(field["id"]) and field["id"] != "client_id":
            assert field.get("secret") is True, "%s: %s is not secret: true" % (name, field["id"])


@pytest.mark.parametrize("service", sorted(_options.SERVICES) + ["connection"])
def test_every_environment_option_has_a_credential_type(service):
    injected = {variable for name, variable in env_injections()}
    options = _options.CONNECTION if service == "connection" else _options.SERVICES[service]
    missing = []
    for option, spec in sorted(options.items()):
        fallback = spec.get("fallback")
        if fallback and fallback[1][0] not in injected and (service, option) not in NOT_COVERED:
            missing.append("%s.%s (%s)" % (service, option, fallback[1][0]))
    assert not missing, "no credential type injects: %s (add it to extensions/awx/credential_types or NOT_COVERED)" % missing


@pytest.mark.parametrize("name", sorted(TYPES))
def test_required_options_are_required_inputs(name):
    definition = TYPES[name]
    required = set(definition["inputs"].get("required", []))
    for variable, template in definition["injectors"].get("env", {}).items():
        used = inputs_behind(definition, template)
        service, option, spec, primary = ENV_OPTIONS[variable]
        if spec.get("required"):
            assert used <= required, "%s: %s feeds the required option %s.%s but is optional" % (name, sorted(used), service, option)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_a_credential_with_only_the_required_inputs_keeps_the_modules_defaults(name):
    """An optional input left empty must not override an option's default with an empty string (or turn a
    boolean off): automation controller sets every env injector, whatever the credential holds."""
    definition = TYPES[name]
    required = definition["inputs"].get("required", [])
    inputs = {field_id: "value-of-%s" % field_id for field_id in required}
    env = render_like_awx(definition, inputs)
    for variable, value in env.items():
        service, option, spec, primary = ENV_OPTIONS[variable]
        if "default" in spec:
            assert read_back(value, spec) == spec["default"], (name, variable, value, spec["default"])


@pytest.mark.parametrize("name", sorted(TYPES))
def test_a_full_credential_reaches_every_option(name):
    definition = TYPES[name]
    inputs = {}
    for field in definition["inputs"]["fields"]:
        if field.get("type") == "boolean":
            inputs[field["id"]] = not field.get("default", False)
        else:
            inputs[field["id"]] = field.get("choices", ["value-of-%s" % field["id"]])[-1]
    env = render_like_awx(definition, inputs)
    for variable, value in env.items():
        service, option, spec, primary = ENV_OPTIONS[variable]
        if "tower" in template_variables(definition["injectors"]["env"][variable]):
            continue  # a file's path, checked in test_the_tls_type_writes_the_bundle_and_keeps_verification_on_unless_asked
        [field_id] = inputs_behind(definition, definition["injectors"]["env"][variable])
        expected = inputs[field_id]
        if isinstance(expected, bool):
            assert isinstance(read_back(value, spec), bool)
        else:
            assert value == expected, (name, variable, value)


def test_the_tls_type_writes_the_bundle_and_keeps_verification_on_unless_asked():
    definition = TYPES["tls.yml"]
    assert definition["injectors"]["file"]["template"] == "{{ ca_bundle }}"
    env = render_like_awx(definition, {"ca_bundle": "-----BEGIN CERTIFICATE-----\n..."})
    assert env["SELFHEAL_CA_PATH"] == "/runner/env/tmpcredential"
    assert boolean(env["SELFHEAL_VALIDATE_CERTS"]) is True
    env = render_like_awx(definition, {"ca_bundle": "x", "skip_verification": True})
    assert boolean(env["SELFHEAL_VALIDATE_CERTS"]) is False


def test_the_webhook_token_type_feeds_the_variable_the_rulebooks_read():
    injected = TYPES["webhook.yml"]["injectors"]["extra_vars"]
    assert list(injected) == ["selfheal_webhook_token"]
    assert fields(TYPES["webhook.yml"])["token"]["secret"] is True
    for rulebook in ("self_healing.yml", "self_healing_controller.yml"):
        with open(os.path.join(RULEBOOKS, rulebook)) as handle:
            [ruleset] = yaml.safe_load(handle)
        [source] = ruleset["sources"]
        assert source["selfheal.devops.dynatrace"]["token"] == "{{ selfheal_webhook_token }}", rulebook
