"""The AWX/AAP credential types drive the real modules: each credential is filled in with the sandbox's values (read
back through its own injectors), rendered the way automation controller renders it, and handed to a module as that
task's only source of connection settings. The module reaches the sandbox, and the same credential with a wrong
secret is refused there (so the injected values are what the module used), with no secret in the output."""

import glob
import os

import yaml
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sandbox import credentials

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TYPES_DIR = os.path.join(ROOT, "extensions", "awx", "credential_types")
KEY = "dt-P-4242"

# One module run per credential type that needs an authenticated request (check mode where it writes), and the
# sandbox path its requests go to. tls.yml needs a TLS endpoint and webhook.yml feeds a rulebook variable: both are
# covered by tests/unit/test_credential_types.py only.
RUNS = {
    "dynatrace.yml": ({"selfheal.devops.dynatrace_problem_info": {}}, credentials.DYNATRACE_PREFIX),
    "jira.yml": ({"selfheal.devops.jira_incident": {"project": "OPS", "incident_key": KEY, "summary": "Disk full"},
                  "check_mode": True}, credentials.JIRA_PREFIX),
    "slack.yml": ({"selfheal.devops.slack_channel": {"incident_key": KEY}, "check_mode": True}, credentials.SLACK_PREFIX),
    "xmatters.yml": ({"selfheal.devops.oncall_notify": {"provider": "xmatters", "incident_key": KEY, "summary": "Disk full",
                                                        "groups": ["Ops Primary"]}, "check_mode": True},
                     credentials.XMATTERS_PREFIX),
    "pagerduty.yml": ({"selfheal.devops.oncall_notify": {"provider": "pagerduty", "incident_key": KEY, "summary": "Disk full",
                                                         "source": "web-01", "severity": "error"}},
                      credentials.PAGERDUTY_PREFIX),
    "keptn.yml": ({"selfheal.devops.keptn_rollback": {"project": "sockshop", "stage": "production", "service": "carts",
                                                      "incident_key": KEY}, "check_mode": True}, credentials.KEPTN_PREFIX),
    "servicenow.yml": ({"selfheal.devops.servicenow_incident": {"incident_key": KEY, "short_description": "Disk full"},
                        "check_mode": True}, credentials.SERVICENOW_PREFIX),
    "msgraph.yml": ({"selfheal.devops.teams_channel": {"team": "Operations", "incident_key": KEY}, "check_mode": True},
                    credentials.MSGRAPH_PREFIX),
}


def load(name):
    with open(os.path.join(TYPES_DIR, name)) as handle:
        return yaml.safe_load(handle)


def inputs_from(definition, env):
    """The credential an admin would enter for the service behind env: each env injector's input, from env."""
    parse = ImmutableSandboxedEnvironment().parse
    inputs = {}
    for variable, template in definition["injectors"]["env"].items():
        [field_id] = meta.find_undeclared_variables(parse(template))
        if env.get(variable):
            inputs[field_id] = env[variable]
    return inputs


def render(definition, inputs):
    """Env injectors rendered as automation controller does: unset inputs undefined, unset booleans false."""
    namespace = {field["id"]: False for field in definition["inputs"]["fields"] if field.get("type") == "boolean"}
    namespace.update((key, value) for key, value in inputs.items() if value != "")
    env = ImmutableSandboxedEnvironment()
    return {variable: env.from_string(template).render(**namespace) for variable, template in definition["injectors"]["env"].items()}


def test_every_service_type_is_exercised():
    names = {os.path.basename(path) for path in glob.glob(os.path.join(TYPES_DIR, "*.yml"))}
    assert names - set(RUNS) == {"tls.yml", "webhook.yml"}


def test_credentials_reach_the_sandbox_and_a_wrong_secret_is_refused(sandbox, sandbox_env, playbook):
    tasks, wrong_secrets = [], []
    for name, (task, prefix) in sorted(RUNS.items()):
        definition = load(name)
        inputs = inputs_from(definition, sandbox_env)
        assert set(definition["inputs"].get("required", [])) <= set(inputs), name
        env = render(definition, inputs)
        # The round trip: what the credential injects is what the sandbox's clients are configured with.
        assert {k: v for k, v in env.items() if k in sandbox_env} == {k: sandbox_env[k] for k in env if k in sandbox_env}, name
        for variable in env:
            assert variable not in os.environ, "%s is set in the test's own environment" % variable
        tasks.append(dict(task, name="good " + name, environment=env, register="r", ignore_errors=True))
        secret = next(field["id"] for field in definition["inputs"]["fields"] if field.get("secret") and inputs.get(field["id"]))
        wrong = dict(inputs, **{secret: "wrong-" + inputs[secret]})
        wrong_secrets.append(wrong[secret])
        tasks.append(dict(task, name="wrong " + name, environment=render(definition, wrong), register="r", ignore_errors=True))

    run = playbook(tasks)
    assert "Traceback" not in run.stdout + run.stderr
    run.assert_no_secret()
    leaked = [secret for secret in wrong_secrets if secret in run.stdout + run.stderr]
    assert not leaked, "a wrong secret shows in the output"
    for name, (task, prefix) in sorted(RUNS.items()):
        good, bad = run["good " + name], run["wrong " + name]
        assert not good.get("failed"), (name, good.get("msg"))
        assert bad.get("failed"), (name, "a wrong secret was accepted")
    # Every service was really asked (the good runs), not answered from some default.
    paths = [entry["path"] for entry in sandbox.requests()]
    for name, (task, prefix) in sorted(RUNS.items()):
        assert any(path.startswith(prefix) for path in paths), (name, prefix)
