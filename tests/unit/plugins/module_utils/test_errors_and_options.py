"""Typed errors, redaction, and the connection options staying in step with their doc fragments."""

import importlib

import pytest
import yaml

from ansible_collections.selfheal.devops.plugins.module_utils import _errors, _options


@pytest.mark.parametrize("text, secret", [
    ("Authorization: Api-Token dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.secretpart", "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX"),
    ("header Bearer xoxb-1234-5678-abcdefgh was refused", "xoxb-1234-5678-abcdefgh"),
    ("GET https://x/api/v2/problems?api-token=supersecret123&pageSize=5", "supersecret123"),
    ("POST https://x/triggers?apiKey=abcdef123456", "abcdef123456"),
    ('{"routing_key": "R0UT1NGK3Y5ANDB0X000000000000001"}', "R0UT1NGK3Y5ANDB0X000000000000001"),
    ("x-token: keptn-token-value-1", "keptn-token-value-1"),
    ("Basic bWVAZXhhbXBsZS5jb206c2VjcmV0", "bWVAZXhhbXBsZS5jb206c2VjcmV0"),
])
def test_redact_masks_credential_shapes(text, secret):
    assert secret not in _errors.redact(text)
    assert _errors.REDACTED in _errors.redact(text)


def test_redact_masks_registered_secrets_anywhere_and_keeps_the_rest():
    text = "login failed for password hunter2hunter2 on https://jira.example.com"
    redacted = _errors.redact(text, secrets=("hunter2hunter2",))
    assert "hunter2hunter2" not in redacted and "https://jira.example.com" in redacted


def test_error_renders_for_fail_json_without_secrets():
    error = _errors.AuthError("Jira answered 401 for token abc123secret", status=401,
                              url="https://j/rest?token=abc123secret", secrets=("abc123secret",))
    kwargs = error.to_fail_kwargs()
    assert kwargs == {"msg": "Jira answered 401 for token ********", "error_kind": "auth", "status": 401,
                      "url": "https://j/rest?token=********"}


@pytest.mark.parametrize("body, expected", [
    ({"error": {"code": 400, "message": "Constraints violated.",
                "constraintViolations": [{"path": "pageSize", "message": "must be less than or equal to 500"}]}},
     "Constraints violated.; pageSize: must be less than or equal to 500"),
    ({"errorMessages": ["Field 'priority' is required"], "errors": {}}, "Field 'priority' is required"),
    ({"errorMessages": [], "errors": {"summary": "You must specify a summary."}}, "summary: You must specify a summary."),
    ({"ok": False, "error": "name_taken"}, "name_taken"),
    ({"code": 400, "message": "stage name in event data and in event type does not match"},
     "stage name in event data and in event type does not match"),
    ({"status": "invalid event", "message": "Event object is invalid", "errors": ["'payload.summary' is missing"]},
     "'payload.summary' is missing; Event object is invalid; invalid event"),
    ({"code": 404, "reason": "Not Found", "message": "Event not found"}, "Event not found; Not Found"),
    ("plain text", "plain text"),
    (None, ""),
])
def test_api_error_text_reads_every_service_shape(body, expected):
    assert _errors.api_error_text(body) == expected


FRAGMENTS = {
    "dynatrace": "dynatrace", "jira": "jira", "slack": "slack", "oncall": "oncall", "keptn": "keptn",
    "servicenow": "servicenow", "msgraph": "msgraph",
}


def _fragment_options(name):
    module = importlib.import_module("ansible_collections.selfheal.devops.plugins.doc_fragments.%s" % name)
    return yaml.safe_load(module.ModuleDocFragment.DOCUMENTATION)["options"]


@pytest.mark.parametrize("service", sorted(FRAGMENTS))
def test_connection_options_match_their_doc_fragment(service):
    spec = _options.SERVICES[service]
    docs = _fragment_options(FRAGMENTS[service])
    assert sorted(spec) == sorted(docs)
    for name, option in spec.items():
        doc = docs[name]
        assert option["type"] == doc["type"], name
        assert option.get("required", False) == doc.get("required", False), name
        assert option.get("default") == doc.get("default"), name
        assert option.get("choices") == doc.get("choices"), name
        for env in option.get("fallback", (None, []))[1]:
            assert "E(%s)" % env in " ".join(doc["description"]), name


def test_shared_connection_options_match_their_doc_fragment():
    docs = _fragment_options("connection")
    assert sorted(_options.CONNECTION) == sorted(docs)
    for name, option in _options.CONNECTION.items():
        assert option["type"] == docs[name]["type"]
        assert option.get("default") == docs[name].get("default")


def test_secrets_are_no_log():
    secret_names = {"api_token", "token", "xmatters_password", "routing_key", "password", "client_secret", "xmatters_trigger_url"}
    for service, spec in _options.SERVICES.items():
        for name, option in spec.items():
            assert option.get("no_log", False) == (name in secret_names), (service, name)


def test_argument_spec_merges_module_options():
    spec = _options.argument_spec("jira", state=dict(type="str", default="present"))
    assert "url" in spec and "max_retries" in spec and spec["state"]["default"] == "present"
