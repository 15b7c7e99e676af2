"""oncall_notify: the argument spec through main(), then the logic with a service double."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, UnexpectedResponse
from ansible_collections.selfheal.devops.plugins.module_utils import _oncall_task as oncall_notify
from ansible_collections.selfheal.devops.plugins.modules import oncall_notify as oncall_notify_module

ROUTING_KEY = "R0UT1NGK3Y5ANDB0X000000000000001"


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exited:
            oncall_notify_module.main()
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
    def __init__(self, active=(), any_status=(), annotations=(), answer=None, groups=("Ops Primary", "Database"),
                 people=("oncall.primary", "dba.one"), event_appears=True):
        self.active = list(active)
        self.any_status = list(any_status) or list(active)
        self.notes = list(annotations)
        self.answer = answer
        self.groups = groups
        self.people = people
        self.event_appears = event_appears
        self.writes = []

    def find_open_events(self, key_property, incident_key):
        return self.active

    def find_events(self, key_property, incident_key, status=None):
        return self.any_status

    def trigger(self, body):
        self.writes.append(("trigger", body))
        return "r-new"

    def wait_for_request(self, request_id, timeout, interval):
        if not self.event_appears:
            raise UnexpectedResponse("xMatters accepted the trigger (requestId %s) but no event appeared" % request_id)
        return dict(EVENT, id="uuid-new", requestId=request_id)

    def set_status(self, event_uuid, status):
        self.writes.append(("status", event_uuid, status))
        return dict(EVENT, id=event_uuid, status=status)

    def annotations(self, event_uuid):
        return [{"comment": text} for text in self.notes]

    def annotate(self, event_uuid, comment):
        self.writes.append(("annotate", event_uuid, comment))

    def on_call_checked(self, groups):
        unknown = [g for g in groups if g not in self.groups]
        if unknown:
            raise InvalidInput("unknown xMatters group(s): %s; nothing was sent" % ", ".join(unknown))
        return [{"group": g, "members": []} for g in groups]

    def unknown_people(self, people):
        return [p for p in people if p not in self.people]

    def deliveries(self, event_uuid):
        return [{"recipient": "oncall.primary", "delivery_status": "DELIVERED", "response": None}]

    def wait_for_response(self, event_uuid, timeout, interval):
        return self.answer, self.deliveries(event_uuid)


def run(module, service):
    result = {"written": []}
    changed, diff = oncall_notify.run(module, service, result)
    return changed, result, diff


def xm_module(check_mode=False, **params):
    base = dict(provider="xmatters", incident_key="dt-P-1", summary="Disk full", groups=["Ops Primary"])
    base.update(params)
    return FakeModule(check_mode=check_mode, **base)


def test_active_event_with_the_same_key_means_no_new_page():
    service = FakeXMatters(active=[EVENT])
    changed, result, diff = run(xm_module(), service)
    assert changed is False and service.writes == []
    assert result["event"]["id"] == "uuid-1" and result["event"]["incident_key"] == "dt-P-1"
    assert result["on_call"] == [{"group": "Ops Primary", "members": []}] and result["notified"]
    assert diff["before"] == diff["after"]


def test_trigger_when_no_active_event():
    service = FakeXMatters()
    changed, result, diff = run(xm_module(severity="critical"), service)
    assert changed is True and result["request_id"] == "r-new" and result["event"]["id"] == "uuid-new"
    assert service.writes[0][0] == "trigger" and service.writes[0][1]["priority"] == "HIGH"
    assert diff["before"] == {} and diff["after"]["status"] == "ACTIVE"


def test_check_mode_predicts_the_trigger_without_sending():
    service = FakeXMatters()
    changed, result, diff = run(xm_module(check_mode=True, comment="hello"), service)
    assert changed is True and service.writes == [] and result["event"] is None
    assert result["would_send"]["properties"]["selfheal_incident_key"] == "dt-P-1"
    assert result["annotation_added"] is True and "notified" not in result


def test_comment_is_added_once():
    service = FakeXMatters(active=[EVENT], annotations=["[selfheal.devops] hello"])
    changed, result, diff = run(xm_module(comment="hello"), service)
    assert changed is False and result["annotation_added"] is False and service.writes == []
    service = FakeXMatters(active=[EVENT])
    changed, result, diff = run(xm_module(comment="hello"), service)
    assert changed is True and service.writes == [("annotate", "uuid-1", "[selfheal.devops] hello")]


def test_wait_for_response_returns_the_responder_or_no_response():
    answer = {"recipient": "oncall.secondary", "response": "Restart"}
    changed, result, diff = run(xm_module(wait_for_response=True), FakeXMatters(active=[EVENT], answer=answer))
    assert result["response"] == "Restart" and result["responder"] == "oncall.secondary"
    changed, result, diff = run(xm_module(wait_for_response=True), FakeXMatters(active=[EVENT]))
    assert result["response"] == "no_response" and "responder" not in result
    module, result = xm_module(wait_for_response=True, fail_on_no_response=True), {"written": []}
    with pytest.raises(oncall_notify.NoResponse) as failed:
        oncall_notify.run(module, FakeXMatters(active=[EVENT]), result)
    failure = oncall_notify.failure(failed.value, result, module.params)
    assert failure["response"] == "no_response" and "Nobody responded" in failure["msg"]
    assert failure["error_kind"] == "no_response" and failure["changed"] is False and "written" not in failure


def test_resolve_terminates_active_events_and_is_idempotent():
    service = FakeXMatters(active=[EVENT])
    changed, result, diff = run(xm_module(state="resolved"), service)
    assert changed is True and service.writes == [("status", "uuid-1", "TERMINATED")]
    assert diff["before"]["status"] == ["ACTIVE"] and diff["after"]["status"] == "TERMINATED"
    terminated = dict(EVENT, status="TERMINATED")
    service = FakeXMatters(any_status=[terminated])
    changed, result, diff = run(xm_module(state="resolved"), service)
    assert changed is False and service.writes == [] and result["event"]["status"] == "TERMINATED"
    changed, result, diff = run(xm_module(state="resolved", comment="done"), service)
    assert changed is True and result["event"]["status"] == "TERMINATED"
    assert service.writes == [("annotate", "uuid-1", "[selfheal.devops] done")]


def test_resolve_in_check_mode_writes_nothing():
    service = FakeXMatters(active=[EVENT])
    changed, result, diff = run(xm_module(check_mode=True, state="resolved", comment="done"), service)
    assert changed is True and service.writes == [] and result["event"]["status"] == "TERMINATED"


def test_resolve_without_any_event_is_not_a_change():
    changed, result, diff = run(xm_module(state="resolved", comment="done"), FakeXMatters())
    assert changed is False and result == {"event": None, "annotation_added": False, "written": []}


def test_xmatters_has_no_acknowledge():
    with pytest.raises(InvalidInput, match="no acknowledge"):
        run(xm_module(state="acknowledged"), FakeXMatters())


def test_xmatters_trigger_needs_a_summary():
    with pytest.raises(InvalidInput, match="summary"):
        run(xm_module(summary=None), FakeXMatters())


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
    changed, result, diff = run(module, service)
    assert changed is True and service.sent[0]["event_action"] == action and result["event_action"] == action
    assert result["api_response"]["dedup_key"] == "dt-P-1"
    assert len(module.warnings) == 2  # comment and wait_for_response are ignored, and say so


def test_pagerduty_check_mode_sends_nothing():
    module = FakeModule(check_mode=True, provider="pagerduty", incident_key="k", summary="s", source="h")
    service = FakePagerDuty()
    changed, result, diff = run(module, service)
    assert changed is True and service.sent == [] and result["would_send"]["event_action"] == "trigger"


# --- strict inputs and honest results ------------------------------------------------------------------------

def base_params(**overrides):
    params = FakeModule(provider="xmatters", incident_key="dt-P-1").params
    params.update(overrides)
    return params


@pytest.mark.parametrize("overrides, message", [
    ({"poll_interval": 0.0}, "poll_interval must be at least 0.2"),
    ({"poll_interval": -1.0}, "poll_interval must be at least 0.2"),
    ({"response_timeout": 0.0}, "response_timeout must be greater than 0"),
    ({"event_timeout": -5.0}, "event_timeout must be greater than 0"),
    ({"incident_key": " "}, "incident_key must not be empty"),
    ({"groups": ["Ops Primary", ""]}, "groups: a name must not be empty"),
    ({"people": [" "]}, "people: a name must not be empty"),
    ({"response_options": [{"text": "Restart"}, {"text": "Restart"}]}, "Restart offered more than once"),
    ({"response_options": [{"text": ""}]}, "the text of an option must not be empty"),
    ({"response_options": [{"text": "Restart"}, {"text": "Ignore"}], "approve_response": "Approve"},
     "approve_response 'Approve' is not one of the response_options (Restart, Ignore)"),
])
def test_validate_refuses_before_any_request(overrides, message):
    with pytest.raises(InvalidInput) as info:
        oncall_notify.validate(base_params(**overrides))
    assert message in str(info.value)


def test_validate_accepts_an_approving_option_among_the_options_or_the_forms_own():
    oncall_notify.validate(base_params(response_options=[{"text": "Restart"}, {"text": "Ignore"}], approve_response="Restart"))
    oncall_notify.validate(base_params(approve_response="Approve"))  # no options: the form's own apply


def test_approve_response_without_options_warns_and_approved_says_whether_it_was_picked():
    answer = {"recipient": "oncall.primary", "response": "Approve"}
    module = xm_module(wait_for_response=True, approve_response="Approve")
    changed, result, diff = run(module, FakeXMatters(active=[EVENT], answer=answer))
    assert result["approved"] is True and any("form's own options" in w for w in module.warnings)
    answer = {"recipient": "oncall.primary", "response": "Ignore"}
    changed, result, diff = run(xm_module(wait_for_response=True, approve_response="Approve",
                                          response_options=[{"text": "Approve"}, {"text": "Ignore"}]),
                                FakeXMatters(active=[EVENT], answer=answer))
    assert result["approved"] is False and result["response"] == "Ignore"


def test_an_unknown_group_or_person_fails_naming_it_before_the_page():
    service = FakeXMatters()
    with pytest.raises(InvalidInput, match="unknown xMatters group.*Nobody"):
        run(xm_module(groups=["Ops Primary", "Nobody"]), service)
    with pytest.raises(InvalidInput, match="unknown xMatters people: ghost"):
        run(xm_module(people=["dba.one", "ghost"]), service)
    assert service.writes == []
    with pytest.raises(InvalidInput, match="ghost"):  # check mode predicts the failure too
        run(xm_module(check_mode=True, people=["ghost"]), service)


def test_people_are_not_read_again_when_the_page_exists():
    service = FakeXMatters(active=[EVENT], people=())
    changed, result, diff = run(xm_module(people=["left.the.company"]), service)
    assert changed is False and service.writes == []


def test_a_failure_after_the_trigger_says_changed_and_what_was_written():
    module, result = xm_module(), {"written": []}
    with pytest.raises(UnexpectedResponse) as info:
        oncall_notify.run(module, FakeXMatters(event_appears=False), result)
    failure = oncall_notify.failure(info.value, result, module.params)
    assert failure["changed"] is True and failure["request_id"] == "r-new"
    assert failure["written"] == ["triggered an xMatters event (requestId r-new)"]
    assert "no event appeared" in failure["msg"] and "this run had already triggered an xMatters event" in failure["msg"]


def test_terminations_are_listed_as_written():
    module, result = xm_module(state="resolved", comment="done"), {"written": []}
    oncall_notify.run(module, FakeXMatters(active=[EVENT, dict(EVENT, id="uuid-2", eventId="981002")]), result)
    assert result["written"] == ["annotated xMatters event 981001", "terminated xMatters event 981001",
                                 "terminated xMatters event 981002"]


def test_pagerduty_ignores_approve_response_and_says_so():
    module = FakeModule(provider="pagerduty", incident_key="k", summary="s", source="h", approve_response="Approve")
    run(module, FakePagerDuty())
    assert any("approve_response is ignored for PagerDuty" in w for w in module.warnings)
