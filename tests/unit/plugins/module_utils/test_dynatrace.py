"""Dynatrace service layer and dynatrace_problem logic with a client double (no network)."""

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import dynatrace
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, UnexpectedResponse
from ansible_collections.selfheal.devops.plugins.module_utils import _dynatrace_task as dynatrace_problem


class Answer(object):
    def __init__(self, body, status=200):
        self.json = body
        self.status = status


class FakeClient(object):
    """Records calls; answers from a queue per (method, path)."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def _answer(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        queue = self.answers[(method, path)]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def get(self, path, **kwargs):
        return self._answer("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self._answer("POST", path, **kwargs)


PROBLEM = {"problemId": "1_1V2", "displayId": "P-7", "title": "Process crashed", "status": "OPEN",
           "severityLevel": "AVAILABILITY", "impactLevel": "INFRASTRUCTURE",
           "impactedEntities": [{"entityId": {"id": "HOST-1", "type": "HOST"}, "name": "web-01"},
                                {"entityId": {"id": "SERVICE-1", "type": "SERVICE"}, "name": "checkout"}],
           "affectedEntities": [], "rootCauseEntity": None, "entityTags": [], "managementZones": [],
           "evidenceDetails": {"totalCount": 0, "details": []}, "startTime": 1, "endTime": -1}


def test_pages_send_the_key_alone_but_fields_every_time():
    client = FakeClient({("GET", "/problems"): [Answer({"problems": [{"problemId": "a"}], "nextPageKey": "K1"}),
                                                Answer({"problems": [{"problemId": "b"}], "nextPageKey": "K2"}),
                                                Answer({"problems": [{"problemId": "c"}], "nextPageKey": None})]})
    service = dynatrace.DynatraceService(client)
    found = service.list_problems(problem_selector='status("open")', time_from="now-2h", fields=("evidenceDetails",))
    assert [p["problemId"] for p in found] == ["a", "b", "c"] and service.list_requests == 3
    params = [call[2]["params"] for call in client.calls]
    assert params[0] == {"pageSize": "500", "problemSelector": 'status("open")', "from": "now-2h", "fields": "evidenceDetails"}
    assert params[1] == {"nextPageKey": "K1", "fields": "evidenceDetails"}
    assert params[2] == {"nextPageKey": "K2", "fields": "evidenceDetails"}


def test_display_id_is_resolved_through_the_problem_selector():
    client = FakeClient({("GET", "/problems"): [Answer({"problems": [], "nextPageKey": None})]})
    with pytest.raises(NotFound) as info:
        dynatrace.DynatraceService(client).get_problem("P-404")
    assert "P-404" in str(info.value)
    assert client.calls[0][2]["params"]["problemSelector"] == 'displayId("P-404")'


def test_ingest_failure_under_201_is_an_error():
    answer = {"reportCount": 2, "eventIngestResults": [{"correlationId": "a", "status": "OK"},
                                                       {"correlationId": "b", "status": "INVALID_ENTITY_TYPE"}]}
    client = FakeClient({("POST", "/events/ingest"): [Answer(answer, 201)]})
    with pytest.raises(UnexpectedResponse) as info:
        dynatrace.DynatraceService(client).ingest_event({"eventType": "CUSTOM_INFO", "title": "x", "entitySelector": "s"})
    assert "b: INVALID_ENTITY_TYPE" in str(info.value)


def test_entity_selector_targets():
    problem = dynatrace.normalize_problem(PROBLEM)
    assert dynatrace.entity_selector(problem, "impacted") == 'entityId("HOST-1","SERVICE-1")'
    assert dynatrace.entity_selector(problem, "service") == 'entityId("SERVICE-1")'
    with pytest.raises(InvalidInput):
        dynatrace.entity_selector(problem, "root_cause")


class FakeModule(object):
    def __init__(self, check_mode, **params):
        self.check_mode = check_mode
        self.params = dict(problem_id="P-7", state="present", comment=None, comment_context="selfheal.devops",
                           close_message="done", event=None, incident_key=None, return_raw=False)
        self.params.update(params)


class FakeService(object):
    def __init__(self, problem, comments=()):
        self.problem = problem
        self.comment_list = list(comments)
        self.writes = []

    def get_problem(self, ident, fields=()):
        return self.problem

    def normalize(self, raw):
        return dynatrace.normalize_problem(raw)

    def comments(self, pid):
        return self.comment_list

    def add_comment(self, *args):
        self.writes.append(("comment",) + args)

    def ingest_event(self, event):
        self.writes.append(("event", event))
        return {"reportCount": 1, "eventIngestResults": [{"correlationId": "c", "status": "OK"}]}

    def close(self, *args):
        self.writes.append(("close",) + args)
        return {"closing": True}


def test_check_mode_writes_nothing_and_predicts():
    service = FakeService(PROBLEM)
    module = FakeModule(True, comment="hello", state="closed", event={"event_type": "CUSTOM_INFO", "title": "t",
                                                                      "properties": {}, "timeout": None, "target": "impacted"})
    changed, result, diff = dynatrace_problem.run(module, service)
    assert changed and service.writes == []
    assert result["commented"] and result["closed"] and result["event"]["would_send"]["properties"]["selfheal.marker"] == "P-7"
    assert result["problem"]["status"] == "CLOSED" and diff["after"] == {"status": "CLOSED", "comments": ["hello"]}


def test_existing_comment_and_closed_problem_mean_no_change():
    closed = dict(PROBLEM, status="CLOSED")
    service = FakeService(closed, comments=[{"content": "hello", "context": "selfheal.devops"}])
    changed, result, dummy = dynatrace_problem.run(FakeModule(False, comment="hello", state="closed"), service)
    assert not changed and service.writes == [] and not result["closed"] and not result["commented"]


def test_same_text_from_someone_else_is_not_our_comment():
    service = FakeService(PROBLEM, comments=[{"content": "hello", "context": "ops-team"}])
    changed, dummy, dummy_diff = dynatrace_problem.run(FakeModule(False, comment="hello"), service)
    assert changed and service.writes[0] == ("comment", "1_1V2", "hello", "selfheal.devops")
