"""On-call service layer: payload building, response parsing, polling, construction (no network)."""

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import oncall
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, UnexpectedResponse


# --- xMatters payloads and parsing ---------------------------------------------------------------------

def test_trigger_body_has_recipients_priority_flat_properties_and_options():
    body = oncall.xmatters_trigger_body(
        "dt-P-1", "selfheal_incident_key", summary="Disk full", severity="warning", groups=["Ops Primary"],
        people=["dba.one"], source="web01", event_class="disk", custom_details={"free": 2, "mounts": ["/var"]},
        links=[{"href": "https://dt/p/1", "text": "Problem"}, {"href": "https://runbook"}],
        properties={"Service": "checkout", "selfheal_incident_key": "spoofed"},
        response_options=[{"text": "Clean up", "action": "stop_notifying_target"}, "Ignore"])
    assert body["priority"] == "MEDIUM"
    assert body["recipients"] == [{"id": "Ops Primary", "recipientType": "GROUP"},
                                  {"id": "dba.one", "recipientType": "PERSON"}]
    props = body["properties"]
    assert props["selfheal_incident_key"] == "dt-P-1"  # the key always wins
    assert props["free"] == 2 and props["mounts"] == '["/var"]'
    assert props["summary"] == "Disk full" and props["class"] == "disk" and props["Service"] == "checkout"
    assert props["links"] == "Problem https://dt/p/1\nhttps://runbook"
    assert body["responseOptions"] == [{"text": "Clean up", "action": "STOP_NOTIFYING_TARGET"}, {"text": "Ignore"}]


@pytest.mark.parametrize("severity, priority, expected", [
    ("critical", None, "HIGH"), ("error", None, "HIGH"), ("info", None, "LOW"), ("info", "high", "HIGH"),
    (None, None, "MEDIUM"),
])
def test_priority_defaults_from_severity(severity, priority, expected):
    assert oncall.xmatters_trigger_body("k", "p", severity=severity, priority=priority)["priority"] == expected


def test_trigger_body_without_recipients_or_options_leaves_them_to_the_form():
    body = oncall.xmatters_trigger_body("k", "p")
    assert "recipients" not in body and "responseOptions" not in body and body["properties"] == {"p": "k"}


def test_property_value_ignores_language_suffix():
    assert oncall.property_value({"Country#en": "USA"}, "Country") == "USA"
    assert oncall.property_value({"Country": "USA"}, "Country#en") == "USA"
    assert oncall.property_value({"Other": 1}, "Country") is None


def test_parse_on_call_orders_members_by_position():
    items = [{"group": {"targetName": "Ops"}, "shift": {"name": "24x7"},
              "members": {"data": [{"position": 2, "member": {"targetName": "b", "recipientType": "PERSON"}},
                                   {"position": 1, "member": {"targetName": "a", "firstName": "A", "lastName": "One",
                                                              "recipientType": "PERSON"}}]}},
             {"group": {"targetName": "Empty"}, "shift": None, "members": {"data": []}}]
    parsed = oncall.parse_on_call(items)
    assert parsed[0] == {"group": "Ops", "shift": "24x7", "members": [
        {"target_name": "a", "name": "A One", "position": 1, "type": "PERSON"},
        {"target_name": "b", "name": None, "position": 2, "type": "PERSON"}]}
    assert parsed[1] == {"group": "Empty", "shift": None, "members": []}


def test_parse_deliveries_and_first_response():
    items = [{"person": {"targetName": "a"}, "deliveryStatus": "DELIVERED"},
             {"person": {"targetName": "b"}, "deliveryStatus": "DELIVERED",
              "response": {"text": "Ignore", "received": "2026-01-01T10:00:05.000+0000"}},
             {"person": {"targetName": "c"}, "deliveryStatus": "DELIVERED",
              "response": {"text": "Restart", "received": "2026-01-01T10:00:01.000+0000"}}]
    parsed = oncall.parse_deliveries(items)
    assert parsed[0] == {"recipient": "a", "delivery_status": "DELIVERED", "response": None, "responded_at": None}
    assert oncall.first_response(parsed)["recipient"] == "c"
    assert oncall.first_response(parsed[:1]) is None


# --- xMatters verbs with a client double ----------------------------------------------------------------

class Reply(object):
    def __init__(self, json, status=200):
        self.json = json
        self.status = status


class FakeClient(object):
    """Answers GETs from a list of replies per path (the last one repeats) and records every call."""

    def __init__(self, gets=None, posts=None):
        self.gets = gets or {}
        self.posts = posts or {}
        self.calls = []

    def get(self, path, params=None):
        self.calls.append(("GET", path, params))
        replies = self.gets[path.split("?")[0]]
        return Reply(replies.pop(0) if len(replies) > 1 else replies[0])

    def post(self, path, json_body=None, expected=None, idempotent=None):
        self.calls.append(("POST", path, json_body, idempotent))
        return Reply(self.posts.get(path, {}), status=202)


class Clock(object):
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


def page(data, next_link=None):
    links = {"self": "x"}
    if next_link:
        links["next"] = next_link
    return {"count": len(data), "total": len(data), "data": data, "links": links}


def test_collect_follows_links_next_from_the_instance_root():
    client = FakeClient(gets={"/api/xm/1/events": [page([{"id": 1}], "/api/xm/1/events?offset=1&limit=1"),
                                                   page([{"id": 2}])]})
    service = oncall.XMatters(client, "https://x/trigger")
    assert [e["id"] for e in service._collect("/api/xm/1/events", {"limit": 1})] == [1, 2]
    assert client.calls[1][1] == "/api/xm/1/events?offset=1&limit=1"


def test_collect_rejects_a_body_without_data():
    service = oncall.XMatters(FakeClient(gets={"/api/xm/1/events": [{"oops": True}]}), "t")
    with pytest.raises(UnexpectedResponse):
        service._collect("/api/xm/1/events", {})


def test_find_events_keeps_exact_key_matches_newest_first():
    events = [{"id": "old", "created": "2026-01-01T00:00:00.000+0000", "properties": {"k": "dt-P-1"}},
              {"id": "other", "created": "2026-01-03T00:00:00.000+0000", "properties": {"k": "dt-P-10"}},
              {"id": "new", "created": "2026-01-02T00:00:00.000+0000", "properties": {"k#en": "dt-P-1"}}]
    client = FakeClient(gets={"/api/xm/1/events": [page(events)]})
    found = oncall.XMatters(client, "t").find_events("k", "dt-P-1", status="ACTIVE")
    assert [e["id"] for e in found] == ["new", "old"]
    assert client.calls[0][2]["status"] == "ACTIVE" and client.calls[0][2]["propertyValue"] == "dt-P-1"


def test_open_events_are_active_or_suspended():
    events = [{"id": s, "status": s, "properties": {"k": "v"}} for s in ("ACTIVE", "SUSPENDED", "TERMINATED")]
    service = oncall.XMatters(FakeClient(gets={"/api/xm/1/events": [page(events)]}), "t")
    assert sorted(e["id"] for e in service.find_open_events("k", "v")) == ["ACTIVE", "SUSPENDED"]


def test_wait_for_request_polls_until_the_event_exists():
    clock = Clock()
    client = FakeClient(gets={"/api/xm/1/events": [page([]), page([]), page([{"id": "e1"}])]})
    service = oncall.XMatters(client, "t", sleep=clock.sleep, clock=clock)
    assert service.wait_for_request("r1", timeout=5, interval=0.5)["id"] == "e1"
    assert clock.sleeps == [0.2, 0.4]  # starts short (events appear within a second), doubles up to interval


def test_wait_for_request_gives_up_after_the_timeout():
    clock = Clock()
    service = oncall.XMatters(FakeClient(gets={"/api/xm/1/events": [page([])]}), "t", sleep=clock.sleep, clock=clock)
    with pytest.raises(UnexpectedResponse, match="no event appeared within 2 s"):
        service.wait_for_request("r1", timeout=2, interval=0.5)
    assert clock.now <= 2


def test_wait_for_response_returns_none_at_the_timeout_and_the_answer_when_there_is_one():
    clock = Clock()
    quiet = [page([{"person": {"targetName": "a"}, "deliveryStatus": "DELIVERED"}])]
    service = oncall.XMatters(FakeClient(gets={"/api/xm/1/events/e1/user-deliveries": quiet}), "t",
                              sleep=clock.sleep, clock=clock)
    answer, deliveries = service.wait_for_response("e1", timeout=3, interval=1)
    assert answer is None and deliveries[0]["recipient"] == "a" and clock.now == 3
    answered = [page([]), page([{"person": {"targetName": "a"}, "response": {"text": "Go", "received": "t"}}])]
    client = FakeClient(gets={"/api/xm/1/events/e1/user-deliveries": answered})
    answer, deliveries = oncall.XMatters(client, "t", sleep=clock.sleep, clock=clock).wait_for_response("e1", 10, 1)
    assert answer["response"] == "Go" and answer["recipient"] == "a"
    assert "at" in client.calls[0][2]  # xMatters requires `at`


def test_trigger_returns_request_id_and_is_not_retried_as_idempotent():
    client = FakeClient(posts={"https://x/trigger": {"requestId": "r-1"}})
    assert oncall.XMatters(client, "https://x/trigger").trigger({"a": 1}) == "r-1"
    assert client.calls == [("POST", "https://x/trigger", {"a": 1}, False)]
    with pytest.raises(UnexpectedResponse, match="without a requestId"):
        oncall.XMatters(FakeClient(), "https://x/other").trigger({})


# --- PagerDuty -------------------------------------------------------------------------------------------

def test_pagerduty_trigger_event_maps_every_payload_field():
    body = oncall.pagerduty_event("trigger", "dt-P-1", summary="s" * 2000, source="web01", severity="warning",
                                  component="disk", group="web", event_class="disk_full", custom_details={"a": 1},
                                  links=[{"href": "https://x", "text": None}])
    assert body["event_action"] == "trigger" and body["dedup_key"] == "dt-P-1" and "routing_key" not in body
    payload = body["payload"]
    assert len(payload["summary"]) == 1024
    assert payload["class"] == "disk_full" and payload["component"] == "disk" and payload["group"] == "web"
    assert payload["custom_details"] == {"a": 1} and body["links"] == [{"href": "https://x"}]


def test_pagerduty_ack_and_resolve_carry_no_payload():
    assert oncall.pagerduty_event("resolve", "k", summary="ignored") == {"event_action": "resolve", "dedup_key": "k"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(dedup_key="", summary="s", source="h", severity="error"), "required"),
    (dict(dedup_key="k" * 256, summary="s", source="h", severity="error"), "at most 255"),
    (dict(dedup_key="k", source="h", severity="error"), "need summary"),
    (dict(dedup_key="k", summary="s", severity="error"), "need source"),
    (dict(dedup_key="k", summary="s", source="h", severity="fatal"), "severity"),
])
def test_pagerduty_event_refuses_what_pagerduty_would_reject(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        oncall.pagerduty_event("trigger", **kwargs)


def test_pagerduty_send_adds_the_routing_key_and_marks_the_post_idempotent():
    client = FakeClient(posts={"/v2/enqueue": {"status": "success", "message": "Event processed", "dedup_key": "k"}})
    answer = oncall.PagerDuty(client, "R" * 32).send({"event_action": "resolve", "dedup_key": "k"})
    assert answer == {"status": "success", "message": "Event processed", "dedup_key": "k"}
    assert client.calls == [("POST", "/v2/enqueue", {"event_action": "resolve", "dedup_key": "k", "routing_key": "R" * 32},
                             True)]


# --- construction ----------------------------------------------------------------------------------------

def params(**overrides):
    base = dict(provider="xmatters", xmatters_url="https://co.xmatters.com", xmatters_user="u", xmatters_password="pw-123456",
                xmatters_trigger_url="https://co.xmatters.com/api/integration/1/functions/abc/triggers?apiKey=k-secret-1",
                pagerduty_url="https://events.pagerduty.com", routing_key=None, timeout=5.0, validate_certs=True,
                ca_path=None, max_retries=1, max_retry_wait=1.0)
    base.update(overrides)
    return base


def test_client_from_params_registers_every_secret():
    service = oncall.client_from_params(params())
    assert isinstance(service, oncall.XMatters)
    assert "pw-123456" in service.client.secrets and "k-secret-1" in service.client.secrets
    assert service.client.redact(service.trigger_url).endswith("apiKey=********")
    pd = oncall.client_from_params(params(provider="pagerduty", routing_key="R" * 32))
    assert isinstance(pd, oncall.PagerDuty) and "R" * 32 in pd.client.secrets


@pytest.mark.parametrize("overrides, missing", [
    (dict(xmatters_trigger_url=None), "xmatters_trigger_url"),
    (dict(xmatters_password=""), "xmatters_password"),
    (dict(provider="pagerduty"), "routing_key"),
])
def test_client_from_params_names_what_is_missing(overrides, missing):
    with pytest.raises(InvalidInput, match=missing):
        oncall.client_from_params(params(**overrides))


# --- recipients checked before a page ----------------------------------------------------------------------

class Directory(object):
    """A client double that knows some groups and people and answers 404 (NotFound) for the rest, as xMatters."""

    def __init__(self, groups, people):
        self.groups = groups
        self.people = people
        self.calls = []

    def get(self, path, params=None):
        self.calls.append((path, params))
        if path.endswith("/on-call"):
            names = params["groups"].split(",")
            missing = [name for name in names if name not in self.groups]
            if missing:
                raise NotFound("xMatters GET %s answered HTTP 404: Could not find a group with id or name %s" % (path, missing[0]))
            return Reply(page([{"group": {"targetName": name, "id": "id-" + name}, "members": {"data": []}}
                               for name in names]))
        name = path.rsplit("/", 1)[1]
        if name not in self.people:
            raise NotFound("xMatters GET %s answered HTTP 404" % path)
        return Reply({"targetName": name})


def test_on_call_checked_names_every_unknown_group_with_one_read_when_all_exist():
    directory = Directory(groups=("Ops Primary", "Database"), people=())
    service = oncall.XMatters(directory, "t")
    assert [g["group"] for g in service.on_call_checked(["Ops Primary", "Database"])] == ["Ops Primary", "Database"]
    assert len(directory.calls) == 1
    with pytest.raises(InvalidInput) as info:
        service.on_call_checked(["Ops Primary", "Nobody", "Ghosts"])
    assert "unknown xMatters group(s): Nobody, Ghosts; nothing was sent" in str(info.value)
    assert service.on_call_checked([]) == []


def test_on_call_checked_matches_groups_given_by_id_and_spots_a_group_missing_from_the_answer():
    class Partial(Directory):
        def get(self, path, params=None):
            return Reply(page([{"group": {"targetName": "Ops Primary", "id": "uuid-ops"}, "members": {"data": []}}]))

    service = oncall.XMatters(Partial((), ()), "t")
    assert service.on_call_checked(["uuid-ops"])[0]["group"] == "Ops Primary"
    with pytest.raises(InvalidInput, match="Database"):
        service.on_call_checked(["Ops Primary", "Database"])


def test_unknown_people_reads_each_person_by_quoted_target_name():
    directory = Directory(groups=(), people=("dba.one",))
    service = oncall.XMatters(directory, "t")
    assert service.unknown_people(["dba.one", "a/b c"]) == ["a/b c"]
    assert directory.calls[1][0] == "/api/xm/1/people/a%2Fb%20c"


@pytest.mark.parametrize("url, secrets", [
    ("https://co.xmatters.com/api/integration/1/functions/f/triggers?apiKey=k-1", ["k-1"]),
    ("https://co.xmatters.com/t?x=1&APIKEY=a%2Bb&api_key=c", ["a%2Bb", "a+b", "c"]),
    ("https://svc:p%40ss@co.xmatters.com/t", ["p%40ss", "p@ss"]),
    ("https://co.xmatters.com/api/integration/1/functions/f/triggers", []),
])
def test_trigger_url_secrets(url, secrets):
    assert oncall.trigger_url_secrets(url) == secrets


def test_a_trigger_url_without_scheme_fails_without_showing_it():
    with pytest.raises(InvalidInput) as info:
        oncall.client_from_params(params(xmatters_trigger_url="co.xmatters.com/t?apiKey=k-secret-1"))
    assert "k-secret-1" not in str(info.value) and "http:// or https://" in str(info.value)
