"""oncall_notify: the argument spec through main(), then the logic with a service double."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput
from ansible_collections.selfheal.devops.plugins.modules import oncall_notify

ROUTING_KEY = "R0UT1NGK3Y5ANDB0X000000000000001"


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exited:
            oncall_notify.main()
    out = json.loads(capsys.readouterr().out)
    return exited.value.code, out


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for name in ("XMATTERS_URL", "XMATTERS_USER", "XMATTERS_PASSWORD", "XMATTERS_TRIGGER_URL", "PAGERDUTY_ROUTING_KEY",
                 "PAGERDUTY_EVENTS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("args, message", [
    ({"incident_key": "k"}, "missing required arguments: provider"),
    ({"provider": "opsgenie", "incident_key": "k"}, "provider must be one of"),
    ({"provider": "pagerduty", "incident_key": "k"}, "provider is pagerduty but all of the following are missing: routing_key"),
    ({"provider": "xmatters", "incident_key": "k", "xmatters_url": "https://x"}, "xmatters_trigger_url"),
    ({"provider": "pagerduty", "incident_key": "k", "routing_key": ROUTING_KEY, "severity": "fatal"}, "severity must be one of"),
    ({"provider": "pagerduty", "incident_key": "k", "routing_key": ROUTING_KEY, "poll_interval": 0}, "poll_interval must be"),
])
def test_argument_spec_through_main(capsys, args, message):
    code, out = run_main(capsys, args)
    assert code == 1 and out["failed"] is True and message in out["msg"]


def test_pagerduty_check_mode_through_main_sends_nothing_and_hides_the_routing_key(capsys):
    code, out = run_main(capsys, {"provider": "pagerduty", "incident_key": "dt-P-1", "routing_key": ROUTING_KEY,
                                  "pagerduty_url": "http://127.0.0.1:9", "summary": "Disk full", "source": "web01",
                                  "_ansible_check_mode": True})
    assert code == 0 and out["changed"] is True
    assert out["would_send"]["payload"] == {"summary": "Disk full", "source": "web01", "severity": "error"}
    assert ROUTING_KEY not in json.dumps(out)


def test_invalid_input_is_a_clean_failure_through_main(capsys):
    code, out = run_main(capsys, {"provider": "pagerduty", "incident_key": "k", "routing_key": ROUTING_KEY,
                                  "source": "h", "_ansible_check_mode": True})
    assert code == 1 and out["error_kind"] == "invalid_input" and "need summary" in out["msg"]


# --- logic with doubles ------------------------------------------------------------------------------------

class FakeModule(object):
    def __init__(self, check_mode=False, **params):
        self.params = {name: spec.get("default") for name, spec in oncall_notify.argument_spec().items()}
        self.params.update(params)
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)


EVENT = {"id": "uuid-1", "eventId": "981001", "status": "ACTIVE", "priority": "HIGH", "requestId": "r-1",
         "created": "2026-01-01T00:00:00.000+0000", "properties": {"selfheal_incident_key": "dt-P-1"}}


class FakeXMatters(object):
    def __init__(self, active=(), any_status=(), annotations=(), answer=None):
        self.active = list(active)
        self.any_status = list(any_status) or list(active)
        self.notes = list(annotations)
        self.answer = answer
        self.writes = []

    def find_open_events(self, key_property, incident_key):
        return self.active

    def find_events(self, key_property, incident_key, status=None):
        return self.any_status

    def trigger(self, body):
        self.writes.append(("trigger", body))
        return "r-new"

    def wait_for_request(self, request_id, timeout, interval):
        return dict(EVENT, id="uuid-new", requestId=request_id)

    def set_status(self, event_uuid, status):
        self.writes.append(("status", event_uuid, status))
        return dict(EVENT, id=event_uuid, status=status)

    def annotations(self, event_uuid):
        return [{"comment": text} for text in self.notes]

    def annotate(self, event_uuid, comment):
        self.writes.append(("annotate", event_uuid, comment))

    def on_call(self, groups):
        return [{"group": g, "members": []} for g in groups]

    def deliveries(self, event_uuid):
        return [{"recipient": "oncall.primary", "delivery_status": "DELIVERED", "response": None}]

    def wait_for_response(self, event_uuid, timeout, interval):
        return self.answer, self.deliveries(event_uuid)


def xm_module(check_mode=False, **params):
    base = dict(provider="xmatters", incident_key="dt-P-1", summary="Disk full", groups=["Ops Primary"])
    base.update(params)
    return FakeModule(check_mode=check_mode, **base)


def test_active_event_with_the_same_key_means_no_new_page():
    service = FakeXMatters(active=[EVENT])
    changed, result, diff = oncall_notify.run(xm_module(), service)
    assert changed is False and service.writes == []
    assert result["event"]["id"] == "uuid-1" and result["event"]["incident_key"] == "dt-P-1"
    assert result["on_call"] == [{"group": "Ops Primary", "members": []}] and result["notified"]
    assert diff["before"] == diff["after"]


def test_trigger_when_no_active_event():
    service = FakeXMatters()
    changed, result, diff = oncall_notify.run(xm_module(severity="critical"), service)
    assert changed is True and result["request_id"] == "r-new" and result["event"]["id"] == "uuid-new"
    assert service.writes[0][0] == "trigger" and service.writes[0][1]["priority"] == "HIGH"
    assert diff["before"] == {} and diff["after"]["status"] == "ACTIVE"


def test_check_mode_predicts_the_trigger_without_sending():
    service = FakeXMatters()
    changed, result, diff = oncall_notify.run(xm_module(check_mode=True, comment="hello"), service)
    assert changed is True and service.writes == [] and result["event"] is None
    assert result["would_send"]["properties"]["selfheal_incident_key"] == "dt-P-1"
    assert result["annotation_added"] is True and "notified" not in result


def test_comment_is_added_once():
    service = FakeXMatters(active=[EVENT], annotations=["[selfheal.devops] hello"])
    changed, result, diff = oncall_notify.run(xm_module(comment="hello"), service)
    assert changed is False and result["annotation_added"] is False and service.writes == []
    service = FakeXMatters(active=[EVENT])
    changed, result, diff = oncall_notify.run(xm_module(comment="hello"), service)
    assert changed is True and service.writes == [("annotate", "uuid-1", "[selfheal.devops] hello")]


def test_wait_for_response_returns_the_responder_or_no_response():
    answer = {"recipient": "oncall.secondary", "response": "Restart"}
    changed, result, diff = oncall_notify.run(xm_module(wait_for_response=True), FakeXMatters(active=[EVENT], answer=answer))
    assert result["response"] == "Restart" and result["responder"] == "oncall.secondary"
    changed, result, diff = oncall_notify.run(xm_module(wait_for_response=True), FakeXMatters(active=[EVENT]))
    assert result["response"] == "no_response" and "responder" not in result
    with pytest.raises(oncall_notify.NoResponse) as failed:
        oncall_notify.run(xm_module(wait_for_response=True, fail_on_no_response=True), FakeXMatters(active=[EVENT]))
    assert failed.value.result["response"] == "no_response" and "Nobody responded" in failed.value.message


def test_resolve_terminates_active_events_and_is_idempotent():
    service = FakeXMatters(active=[EVENT])
    changed, result, diff = oncall_notify.run(xm_module(state="resolved"), service)
    assert changed is True and service.writes == [("status", "uuid-1", "TERMINATED")]
    assert diff["before"]["status"] == ["ACTIVE"] and diff["after"]["status"] == "TERMINATED"
    terminated = dict(EVENT, status="TERMINATED")
    service = FakeXMatters(any_status=[terminated])
    changed, result, diff = oncall_notify.run(xm_module(state="resolved"), service)
    assert changed is False and service.writes == [] and result["event"]["status"] == "TERMINATED"
    changed, result, diff = oncall_notify.run(xm_module(state="resolved", comment="done"), service)
    assert changed is True and result["event"]["status"] == "TERMINATED"
    assert service.writes == [("annotate", "uuid-1", "[selfheal.devops] done")]


def test_resolve_in_check_mode_writes_nothing():
    service = FakeXMatters(active=[EVENT])
    changed, result, diff = oncall_notify.run(xm_module(check_mode=True, state="resolved", comment="done"), service)
    assert changed is True and service.writes == [] and result["event"]["status"] == "TERMINATED"


def test_resolve_without_any_event_is_not_a_change():
    changed, result, diff = oncall_notify.run(xm_module(state="resolved", comment="done"), FakeXMatters())
    assert changed is False and result == {"event": None, "annotation_added": False}


def test_xmatters_has_no_acknowledge():
    with pytest.raises(InvalidInput, match="no acknowledge"):
        oncall_notify.run(xm_module(state="acknowledged"), FakeXMatters())


def test_xmatters_trigger_needs_a_summary():
    with pytest.raises(InvalidInput, match="summary"):
        oncall_notify.run(xm_module(summary=None), FakeXMatters())


class FakePagerDuty(object):
    def __init__(self):
        self.sent = []

    def send(self, body):
        self.sent.append(body)
        return {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]}


@pytest.mark.parametrize("state, action", [("triggered", "trigger"), ("acknowledged", "acknowledge"),
                                           ("resolved", "resolve")])
def test_pagerduty_states_map_to_event_actions(state, action):
    module = FakeModule(provider="pagerduty", incident_key="dt-P-1", state=state, summary="s", source="h",
                        comment="c", wait_for_response=True)
    service = FakePagerDuty()
    changed, result, diff = oncall_notify.run(module, service)
    assert changed is True and service.sent[0]["event_action"] == action and result["event_action"] == action
    assert result["api_response"]["dedup_key"] == "dt-P-1"
    assert len(module.warnings) == 2  # comment and wait_for_response are ignored, and say so


def test_pagerduty_check_mode_sends_nothing():
    module = FakeModule(check_mode=True, provider="pagerduty", incident_key="k", summary="s", source="h")
    service = FakePagerDuty()
    changed, result, diff = oncall_notify.run(module, service)
    assert changed is True and service.sent == [] and result["would_send"]["event_action"] == "trigger"
