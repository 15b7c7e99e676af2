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


# --- ambiguous writes and bounded error text --------------------------------------------------------------

def test_ambiguous_write_is_a_communication_error_that_says_it_may_have_been_applied():
    error = _errors.AmbiguousWrite("Jira POST https://j/rest/api/3/issue?token=abc123secret answered HTTP 502", method="POST",
                                   path="https://j/rest/api/3/issue?token=abc123secret", reason="HTTP 502", status=502,
                                   url="https://j/rest/api/3/issue", secrets=("abc123secret",))
    assert isinstance(error, _errors.CommunicationError) and isinstance(error, _errors.SelfHealError)
    assert error.path == "https://j/rest/api/3/issue?token=********" and "abc123secret" not in error.message
    assert error.to_fail_kwargs() == {"msg": "Jira POST https://j/rest/api/3/issue?token=******** answered HTTP 502",
                                      "error_kind": "ambiguous_write", "status": 502, "url": "https://j/rest/api/3/issue",
                                      "may_have_been_applied": True}
    unresolved = error.unresolved("Jira issue", "labelled dt-P-1 in OPS", "a re-run looks it up again before writing")
    assert isinstance(unresolved, _errors.AmbiguousWrite) and unresolved.status == 502 and unresolved.reason == "HTTP 502"
    assert unresolved.message.endswith("; Jira issue may have been applied, but no Jira issue was found by its key "
                                       "labelled dt-P-1 in OPS (a re-run looks it up again before writing)")


@pytest.mark.parametrize("text, expected", [
    (None, ""),
    ("short  text\n with   spaces", "short text with spaces"),
    ("<html>proxy error</html>", "<html>proxy error</html>"),  # short bodies are shown as they are
])
def test_excerpt_keeps_short_text(text, expected):
    assert _errors.excerpt(text) == expected


def test_excerpt_cuts_long_html_to_its_text_and_says_the_size():
    page = "<html><head><script>var x = '<b>';</script><title>Gateway</title></head><body>%s</body></html>" % ("<p>a&amp;b</p>" * 20000)
    text = _errors.excerpt(page)
    assert text.startswith("Gateway a&b a&b") and "<p>" not in text and "var x" not in text
    assert text.endswith("... (cut; the body had %d characters)" % len(page)) and len(text) < 360
    assert len(_errors.excerpt("y" * 1000, limit=50)) < 100


# --- connection options checked before any request, with the service named ---------------------------------

def _slack_params(**changes):
    params = dict(url="https://slack.example.com/api", token="xoxb-1234-5678-abcdefgh", validate_certs=True, ca_path=None,
                  timeout=30.0, max_retries=4, max_retry_wait=60.0)
    params.update(changes)
    return params


@pytest.mark.parametrize("changes, message", [
    (dict(timeout=0.0), "Slack: timeout must be a number of seconds greater than 0 (got 0.0); nothing was sent"),
    (dict(timeout=-2.5), "Slack: timeout must be a number of seconds greater than 0 (got -2.5); nothing was sent"),
    (dict(max_retries=-1), "Slack: max_retries must be 0 or more (got -1); nothing was sent"),
    (dict(max_retry_wait=-1.0), "Slack: max_retry_wait must be 0 or more seconds (got -1.0); nothing was sent"),
    (dict(max_retries=-2, max_retry_wait=-1.0), "Slack: max_retries must be 0 or more (got -2); "
                                                "max_retry_wait must be 0 or more seconds (got -1.0); nothing was sent"),
    (dict(ca_path="/nonexistent/ca.pem"), "Slack: ca_path /nonexistent/ca.pem does not exist; nothing was sent"),
    (dict(url="slack.com/api"), "Slack: the URL must start with http:// or https:// and name a host; got slack.com/api "
                                "(write it with https://, for example https://slack.com/api); nothing was sent"),
])
def test_module_parameters_are_checked_when_the_client_is_built(changes, message):
    from ansible_collections.selfheal.devops.plugins.module_utils import slack

    with pytest.raises(_errors.InvalidInput) as info:
        slack.client_from_params(_slack_params(**changes))
    assert str(info.value) == message
    assert "xoxb-1234-5678-abcdefgh" not in str(info.value)


def test_zero_retries_and_zero_wait_are_valid():
    from ansible_collections.selfheal.devops.plugins.module_utils import slack

    client = slack.client_from_params(_slack_params(max_retries=0, max_retry_wait=0.0))
    assert client.retry.max_attempts == 1 and client.retry.max_wait == 0.0


@pytest.mark.parametrize("service, params, name", [
    ("jira", dict(url="jira.example.com", user="me@example.com", token="t0ken-value", api_version="3"), "Jira"),
    ("dynatrace", dict(url="abc12345.live.dynatrace.com", api_token="dt0c01.X.Y"), "Dynatrace"),
    ("keptn", dict(url="ftp://keptn.example.com", api_token="keptn-token"), "Keptn"),
    ("servicenow", dict(url="dev1234.service-now.com", user="admin", password="pw-secret"), "ServiceNow"),
])
def test_every_service_names_itself_for_a_url_without_a_scheme(service, params, name):
    module = importlib.import_module("ansible_collections.selfheal.devops.plugins.module_utils.%s" % service)
    full = dict(validate_certs=True, ca_path=None, timeout=30.0, max_retries=4, max_retry_wait=60.0, **params)
    with pytest.raises(_errors.InvalidInput) as info:
        module.client_from_params(full)
    assert str(info.value).startswith("%s: the URL must start with http:// or https:// and name a host" % name)
