"""keptn_rollback logic with a service double: naming, idempotency, check mode, waiting."""

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import keptn
from ansible_collections.selfheal.devops.plugins.module_utils._errors import CommunicationError, InvalidInput, UnexpectedResponse
from ansible_collections.selfheal.devops.plugins.modules import keptn_rollback

PARAMS = dict(project="sockshop", stage="production", service="carts", incident_key="dt-P-1", sequence="rollback",
              labels={"team": "web"}, event_message="m", wait=True, wait_timeout=10, poll_interval=1.0, fail_on_result=True)


class Module(object):
    def __init__(self, check_mode=False, **params):
        self.check_mode = check_mode
        self.params = dict(PARAMS, **params)


class Service(object):
    def __init__(self, existing=None, states=({"state": "finished"},), result="pass"):
        self.existing = existing
        self.states = list(states)
        self.result = result
        self.triggered = []

    def find_context(self, *args):
        return self.existing

    def trigger(self, event):
        self.triggered.append(event)
        return "ctx-1"

    def wait(self, project, context, timeout, interval):
        state = self.states[-1]
        return state, state.get("state") in keptn.TERMINAL_STATES

    def sequence(self, project, context):
        return self.states[-1]

    def finished_event(self, context, task):
        return {"data": {"result": self.result}}


def test_sequence_type_and_deterministic_context_seed():
    assert keptn.sequence_event_type("production", "rollback") == "sh.keptn.event.production.rollback.triggered"
    event = keptn_rollback.build_event(PARAMS)
    assert event["shkeptncontext"] == "selfheal-rollback-sockshop-production-carts-dt-P-1"
    assert event["data"]["labels"] == {"team": "web", "selfheal-incident": "dt-P-1"}
    assert keptn_rollback.build_event(PARAMS) == event


def run(module, service):
    result = keptn_rollback.new_result()
    changed = keptn_rollback.run(module, service, result)
    return changed, result


def test_check_mode_sends_nothing():
    service = Service()
    changed, result = run(Module(check_mode=True), service)
    assert changed and service.triggered == [] and result["would_send"]["data"]["service"] == "carts"
    assert result["written"] == []


def test_existing_sequence_is_not_triggered_again():
    service = Service(existing="ctx-0")
    changed, result = run(Module(), service)
    assert not changed and service.triggered == [] and result["keptn_context"] == "ctx-0" and result["result"] == "pass"
    assert result["written"] == []


def test_timeout_is_a_clear_error_with_the_context_and_says_what_was_written():
    service = Service(states=({"state": "started"},))
    result = keptn_rollback.new_result()
    with pytest.raises(UnexpectedResponse) as info:
        keptn_rollback.run(Module(), service, result)
    assert "ctx-1 did not finish within 10 s (state: started)" in str(info.value)
    failure = keptn_rollback.failure(info.value, result)
    assert failure["changed"] is True and failure["keptn_context"] == "ctx-1"
    assert failure["written"] == ["triggered sh.keptn.event.production.rollback.triggered (context ctx-1)"]
    assert "this run had already triggered sh.keptn.event.production.rollback.triggered" in failure["msg"]


def test_a_failure_before_any_write_is_not_a_change():
    failure = keptn_rollback.failure(CommunicationError("Keptn unreachable"), keptn_rollback.new_result())
    assert failure["changed"] is False and "written" not in failure and failure["msg"] == "Keptn unreachable"


@pytest.mark.parametrize("override, text", [
    ({"wait_timeout": -1}, "wait_timeout must be at least 1"),
    ({"wait_timeout": 0}, "wait_timeout must be at least 1"),
    ({"poll_interval": -1.0}, "poll_interval must be between 0.2 and 300"),
    ({"poll_interval": 0.0}, "poll_interval must be between 0.2 and 300"),
    ({"poll_interval": 0.01}, "poll_interval must be between 0.2 and 300"),
    ({"poll_interval": 301.0}, "poll_interval must be between 0.2 and 300"),
    ({"project": ""}, "project '' is not a Keptn name"),
    ({"stage": "Production"}, "stage 'Production' is not a Keptn name"),
    ({"service": "carts/../x"}, "service 'carts/../x' is not a Keptn name"),
    ({"sequence": "roll back"}, "sequence 'roll back' is not a Keptn name"),
    ({"service": "a" * 64}, "at most 63 characters"),
    ({"incident_key": "  "}, "incident_key must not be empty"),
    ({"labels": {"": "x"}}, "a label name must not be empty"),
    ({"event_message": "x" * 70000}, "Keptn accepts at most 65536"),
])
def test_every_input_is_checked_before_any_request(override, text):
    with pytest.raises(InvalidInput) as info:
        keptn_rollback.validate(dict(PARAMS, **override))
    assert text in str(info.value)


def test_valid_inputs_pass_and_the_bounds_are_inclusive():
    keptn_rollback.validate(dict(PARAMS, wait_timeout=1, poll_interval=0.2))
    keptn_rollback.validate(dict(PARAMS, poll_interval=300.0, service="carts-db2"))


def test_wait_backs_off_from_a_fifth_of_a_second():
    class Client(object):
        def __init__(self):
            self.calls = 0

        def get(self, path, params=None):
            self.calls += 1
            state = {"states": [{"shkeptncontext": "c", "state": "finished" if self.calls >= 4 else "started"}]}
            return type("R", (), {"json": state})()

    sleeps = []
    service = keptn.KeptnService(Client(), sleep=sleeps.append, clock=lambda: sum(sleeps))
    sequence, done = service.wait("sockshop", "c", timeout=30, interval=1.0)
    assert done and sequence["state"] == "finished" and sleeps == [0.2, 0.4, 0.8]
