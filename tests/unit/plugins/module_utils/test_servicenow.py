"""Pure logic of the ServiceNow service layer (queries, Link paging, markers, the severity mapping, the error body,
the choice of credentials) and the service against a transport double that records what it is asked."""

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _http, servicenow
from ansible_collections.selfheal.devops.plugins.module_utils._errors import (
    AuthError,
    InvalidInput,
    NotFound,
    RateLimited,
    UnexpectedResponse,
)
from ansible_collections.selfheal.devops.plugins.module_utils.msgraph import OAuth2TokenAuth

PARAMS = {"url": "https://example.service-now.com/", "user": None, "password": None, "token": None, "client_id": None,
          "client_secret": None, "timeout": 5.0, "validate_certs": True, "ca_path": None, "max_retries": 0,
          "max_retry_wait": 1.0}


def test_encoded_query_values_escape_the_caret():
    assert servicenow.q("a^b") == "a^^b" and servicenow.q("plain") == "plain" and servicenow.q(3) == "3"


@pytest.mark.parametrize("header, expected", [
    ('<https://x/api/now/table/incident?sysparm_offset=0>;rel="first",'
     '<https://x/api/now/table/incident?sysparm_offset=10>;rel="next",<https://x/a?o=20>;rel="last"',
     "https://x/api/now/table/incident?sysparm_offset=10"),
    ('<https://x/a?o=0>;rel="first",<https://x/a?o=0>;rel="last"', None),
    ('<https://x/a?o=5>; rel=next', "https://x/a?o=5"),
    (None, None),
    ("", None),
])
def test_next_link(header, expected):
    assert servicenow.next_link(header) == expected


def test_values_and_display_values_of_both_record_shapes():
    record = {"state": {"value": "6", "display_value": "Resolved"}, "number": "INC0010001"}
    assert servicenow.value(record, "state") == "6" and servicenow.display(record, "state") == "Resolved"
    assert servicenow.value(record, "number") == servicenow.display(record, "number") == "INC0010001"
    assert servicenow.value(None, "state") is None and servicenow.value(record, "missing") is None


def test_markers_are_stable_and_found_in_journal_text():
    marker = servicenow.marker("Restarted web")
    assert marker == servicenow.marker("Restarted web") and marker != servicenow.marker("Restarted web.")
    assert servicenow.marker("x", "dt-P-1.restart_2") == "dt-P-1.restart_2"
    with pytest.raises(InvalidInput):
        servicenow.marker("x", "has spaces")
    text = servicenow.marked("Restarted web  \n", marker)
    assert text == "Restarted web\n\n[selfheal:%s]" % marker
    journal = "2026-01-01 10:00:00 - Selfheal (Work notes)\n%s\n\n2026-01-01 09:00:00 - A (Work notes)\nother\n\n" % text
    assert servicenow.markers_in(journal) == {marker} and servicenow.markers_in(None) == set()


@pytest.mark.parametrize("kwargs, expected", [
    (dict(severity="AVAILABILITY"), ("1", "1")),
    (dict(severity="error"), ("1", "2")),
    (dict(severity="PERFORMANCE"), ("2", "2")),
    (dict(severity="RESOURCE_CONTENTION"), ("2", "3")),
    (dict(severity="CUSTOM_ALERT"), ("3", "3")),
    (dict(severity="PERFORMANCE", urgency=1), ("1", "2")),
    (dict(severity="PERFORMANCE", severity_map={"performance": {"impact": 1}}), ("2", "1")),
    (dict(severity_map={"NEW_KIND": {"urgency": 3, "impact": 1}}, severity="NEW_KIND"), ("3", "1")),
    (dict(urgency=2), ("2", None)),
    (dict(), (None, None)),
])
def test_urgency_and_impact_from_the_severity(kwargs, expected):
    assert servicenow.urgency_impact(**kwargs) == expected


@pytest.mark.parametrize("kwargs, text", [
    (dict(severity="APOCALYPSE"), "APOCALYPSE is not in the severity map"),
    (dict(severity_map={"ERROR": {"priority": 1}}), "severity_map: ERROR must map"),
    (dict(severity_map={"ERROR": {"urgency": 4}}, severity="ERROR"), "urgency must be 1, 2 or 3"),
])
def test_bad_severity_input_is_refused(kwargs, text):
    with pytest.raises(InvalidInput) as raised:
        servicenow.urgency_impact(**kwargs)
    assert text in str(raised.value)


def test_the_mapping_gives_the_documented_priorities():
    lookup = {("1", "1"): 1, ("1", "2"): 2, ("2", "1"): 2, ("2", "2"): 3, ("2", "3"): 4, ("3", "2"): 4, ("3", "3"): 5}
    priorities = dict((name, lookup[servicenow.urgency_impact(name)]) for name in servicenow.SEVERITY_MAP)
    assert priorities == {"AVAILABILITY": 1, "ERROR": 2, "PERFORMANCE": 3, "RESOURCE_CONTENTION": 4,
                          "MONITORING_UNAVAILABLE": 4, "CUSTOM_ALERT": 5, "INFO": 5}


class Fake(object):
    """A transport double: answers (status, body, headers) in order and records each request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []
        self.base_url = "https://example.service-now.com"
        self.secrets = ()

    def request(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        status, body, headers = self.answers.pop(0)
        import json as _json
        content = _json.dumps(body).encode() if not isinstance(body, bytes) else body
        return _http.Response(status, headers or {}, content, self.base_url + (path if path.startswith("/") else ""))


@pytest.mark.parametrize("status, body, kind, text", [
    (401, {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"},
     AuthError, "User Not Authenticated (Required to provide Auth information) (check user and password"),
    (403, {"error": {"message": "Operation Failed", "detail": "ACL Exception"}, "status": "failure"}, AuthError, "itil"),
    (404, {"error": {"message": "No Record found", "detail": None}, "status": "failure"}, NotFound, "No Record found"),
    (429, {"error": {"message": "Rate limit exceeded", "detail": "x"}, "status": "failure"}, RateLimited, "after the retries"),
    (400, {"error": {"message": "Invalid table incidentx", "detail": None}, "status": "failure"}, UnexpectedResponse,
     "answered HTTP 400: Invalid table incidentx"),
    (500, b"<html>proxy error</html>", UnexpectedResponse, "<html>proxy error</html>"),
])
def test_the_error_body_becomes_a_typed_error(status, body, kind, text):
    service = servicenow.ServiceNowService(Fake((status, body, None)))
    with pytest.raises(kind) as raised:
        service.call("GET", "/api/now/table/incident")
    assert text in raised.value.message and raised.value.status == status


def test_records_follow_the_link_header_and_keep_the_page_size():
    link = '<https://example.service-now.com/api/now/table/incident?sysparm_offset=2&sysparm_limit=2>;rel="next"'
    fake = Fake((200, {"result": [{"n": 1}, {"n": 2}]}, {"Link": link}), (200, {"result": [{"n": 3}]}, {}))
    service = servicenow.ServiceNowService(fake)
    found = service.records("incident", "correlation_id=x", fields=("number",))
    assert [r["n"] for r in found] == [1, 2, 3]
    first, second = fake.calls
    assert first[2]["params"] == {"sysparm_query": "correlation_id=x", "sysparm_display_value": "all",
                                  "sysparm_exclude_reference_link": "true", "sysparm_limit": "100",
                                  "sysparm_offset": "0", "sysparm_fields": "number"}
    assert second[1].endswith("sysparm_offset=2&sysparm_limit=2") and second[2]["params"] is None


def test_a_limit_stops_paging():
    link = '<https://example.service-now.com/next>;rel="next"'
    fake = Fake((200, {"result": [{"n": 1}, {"n": 2}, {"n": 3}]}, {"Link": link}))
    assert len(servicenow.ServiceNowService(fake).records("incident", "", limit=2)) == 2 and len(fake.calls) == 1


def test_lookups_build_their_queries():
    fake = Fake((200, {"result": [{"sys_id": "a" * 32, "name": "DB"}]}, {}),
                (200, {"result": [{"sys_id": "c1", "name": "web"}, {"sys_id": "c2", "name": "web-01"}]}, {}),
                (200, {"result": []}, {}))
    service = servicenow.ServiceNowService(fake)
    assert service.find_group("Data^base")["name"] == "DB"
    assert fake.calls[0][2]["params"]["sysparm_query"] == "name=Data^^base"
    assert service.find_ci("web-01.example.com")["sys_id"] == "c2"  # the exact short name wins over a partial one
    assert fake.calls[1][2]["params"]["sysparm_query"] == (
        "nameINweb-01.example.com,web-01^ORfqdn=web-01.example.com^ORDERBYname")
    assert service.find_incidents("dt-P-1", "selfheal.devops") == []
    assert fake.calls[2][2]["params"]["sysparm_query"] == (
        "correlation_id=dt-P-1^correlation_display=selfheal.devops^ORDERBYsys_created_on")


def test_an_ambiguous_group_name_is_refused():
    fake = Fake((200, {"result": [{"sys_id": "1", "name": "Ops"}, {"sys_id": "2", "name": "Ops"}]}, {}))
    with pytest.raises(InvalidInput):
        servicenow.ServiceNowService(fake).find_group("Ops")


def test_credentials_choice():
    basic = servicenow.client_from_params(dict(PARAMS, user="u", password="p"))
    assert basic.client.auth.apply({})["Authorization"].startswith("Basic ") and basic.auth is basic.client.auth
    bearer = servicenow.client_from_params(dict(PARAMS, user="u", password="p", token="tok-123456"))
    assert bearer.client.auth.apply({}) == {"Authorization": "Bearer tok-123456"}
    oauth = servicenow.client_from_params(dict(PARAMS, user="u", password="secret-pw", client_id="c", client_secret="s-123456"))
    assert isinstance(oauth.auth, OAuth2TokenAuth) and oauth.auth.form["grant_type"] == "password"
    assert oauth.auth.path == "/oauth_token.do" and "secret-pw" in oauth.client.secrets and "s-123456" in oauth.client.secrets
    client_only = servicenow.client_from_params(dict(PARAMS, client_id="c", client_secret="s-123456"))
    assert client_only.auth.form == {"client_id": "c", "client_secret": "s-123456", "grant_type": "client_credentials"}
    for params, text in ((PARAMS, "no credentials"), (dict(PARAMS, client_id="c"), "go together"),
                         (dict(PARAMS, user="u"), "no credentials")):
        with pytest.raises(InvalidInput) as raised:
            servicenow.client_from_params(params)
        assert text in str(raised.value)


def test_a_401_with_an_oauth_token_fetches_a_new_token_once():
    tokens = Fake((200, {"access_token": "first-token-1", "expires_in": 1800}, {}),
                  (200, {"access_token": "second-token-2", "expires_in": 1800}, {}),
                  (200, {"access_token": "third-token-3", "expires_in": 1800}, {}))
    auth = OAuth2TokenAuth(tokens, "/oauth_token.do", {"grant_type": "client_credentials", "client_id": "c",
                                                       "client_secret": "s"}, "ServiceNow OAuth")

    class Api(Fake):
        def request(self, method, path, **kwargs):
            kwargs["headers"] = auth.apply({})
            return super(Api, self).request(method, path, **kwargs)

    denied = {"error": {"message": "User Not Authenticated", "detail": None}, "status": "failure"}
    api = Api((401, denied, None), (200, {"result": []}, None))
    service = servicenow.ServiceNowService(api, auth)
    assert service.call("GET", "/api/now/table/incident").status == 200
    assert [c[2]["headers"]["Authorization"] for c in api.calls] == ["Bearer first-token-1", "Bearer second-token-2"]
    again = Api((401, denied, None), (401, denied, None))
    with pytest.raises(AuthError):
        servicenow.ServiceNowService(again, auth).call("GET", "/x")  # the second 401 is final
    assert len(tokens.calls) == 3 and tokens.calls[0][2]["data"]["grant_type"] == "client_credentials"


def test_summary_of_a_record():
    record = {"sys_id": {"value": "abc", "display_value": "abc"}, "number": {"value": "INC1", "display_value": "INC1"},
              "state": {"value": "2", "display_value": "In Progress"},
              "assignment_group": {"value": "g1", "display_value": "Network"}, "cmdb_ci": {"value": "", "display_value": ""}}
    view = servicenow.summary(record, "https://x.service-now.com")
    assert view["url"] == "https://x.service-now.com/nav_to.do?uri=incident.do?sys_id=abc"
    assert view["state_name"] == "In Progress" and view["assignment_group_name"] == "Network" and view["cmdb_ci"] is None
    assert servicenow.summary(None, "x") is None
