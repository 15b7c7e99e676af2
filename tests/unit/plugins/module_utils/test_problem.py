"""The problem normaliser, with payloads in the documented Problems API v2 and webhook shapes."""

import copy

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _problem

API_PROBLEM = {
    "problemId": "-6156404735398726308_1669823466223V2", "displayId": "P-221194163",
    "title": "Host or monitoring unavailable", "impactLevel": "INFRASTRUCTURE", "severityLevel": "AVAILABILITY",
    "status": "OPEN",
    "affectedEntities": [{"entityId": {"id": "HOST-E371A974A078CC54", "type": "HOST"}, "name": "frontend-dev"}],
    "impactedEntities": [{"entityId": {"id": "HOST-E371A974A078CC54", "type": "HOST"}, "name": "frontend-dev"},
                         {"entityId": {"id": "SERVICE-0000000000000001", "type": "SERVICE"}, "name": "checkout"}],
    "rootCauseEntity": None,
    "managementZones": [{"id": "4067143719293196613", "name": "dev"}],
    "entityTags": [{"context": "CONTEXTLESS", "key": "stage", "value": "dev", "stringRepresentation": "stage:dev"},
                   {"context": "CONTEXTLESS", "key": "critical", "stringRepresentation": "critical"},
                   {"context": "AWS", "key": "team", "value": "web", "stringRepresentation": "[AWS]team:web"}],
    "problemFilters": [{"id": "ca786d1f", "name": "Infrastructure alerts"}],
    "startTime": 1669823466223, "endTime": -1,
}


def test_api_problem_in_the_documented_v2_shape():
    problem = _problem.normalize_problem(API_PROBLEM, "https://abc12345.live.dynatrace.com/")
    assert problem == {
        "id": "-6156404735398726308_1669823466223V2", "display_id": "P-221194163",
        "title": "Host or monitoring unavailable", "status": "OPEN", "severity": "AVAILABILITY",
        "impact": "INFRASTRUCTURE",
        "entities": [{"id": "HOST-E371A974A078CC54", "type": "HOST", "name": "frontend-dev"},
                     {"id": "SERVICE-0000000000000001", "type": "SERVICE", "name": "checkout"}],
        "root_cause": None,
        "tags": {"stage": "dev", "critical": "", "[AWS]team": "web"},
        "management_zones": ["dev"],
        "url": "https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=-6156404735398726308_1669823466223V2",
        "start_time": 1669823466223, "end_time": -1,
    }
    assert _problem.incident_key(problem) == "dt-P-221194163"
    assert _problem.problem_hosts(problem) == ["frontend-dev"]


def test_closed_problem_with_root_cause_and_missing_optional_fields():
    api = {"problemId": "42_1V2", "status": "CLOSED", "endTime": 1669823999999,
           "rootCauseEntity": {"entityId": {"id": "PROCESS_GROUP_INSTANCE-1", "type": "PROCESS_GROUP_INSTANCE"}, "name": "java"}}
    problem = _problem.normalize_problem(api)
    assert problem["status"] == "CLOSED" and problem["end_time"] == 1669823999999
    assert problem["root_cause"] == {"id": "PROCESS_GROUP_INSTANCE-1", "type": "PROCESS_GROUP_INSTANCE", "name": "java"}
    assert problem["entities"] == [] and problem["tags"] == {} and problem["management_zones"] == []
    assert problem["display_id"] is None and problem["url"] is None
    assert _problem.incident_key(problem) == "dt-42_1V2"


def test_entity_without_name_uses_its_id():
    api = dict(API_PROBLEM, impactedEntities=[{"entityId": {"id": "HOST-1", "type": "HOST"}}], affectedEntities=[])
    assert _problem.normalize_problem(api)["entities"] == [{"id": "HOST-1", "type": "HOST", "name": "HOST-1"}]


WEBHOOK = {
    "ProblemID": "999", "PID": "99999", "ProblemTitle": "Dynatrace problem notification test run", "State": "OPEN",
    "ProblemSeverity": "AVAILABILITY", "ProblemImpact": "INFRASTRUCTURE",
    "ProblemURL": "https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=99999",
    "ImpactedEntity": "MyHost1, MyService1",
    "ImpactedEntities": [{"type": "HOST", "name": "MyHost1", "entity": "HOST-XXXXXXXXXXXXX"},
                         {"type": "SERVICE", "name": "MyService1", "entity": "SERVICE-XXXXXXXXXXXXX"}],
    "ProblemDetailsJSON": {"ID": "99999"}, "Tags": "testtag1, testtag2",
}


def test_webhook_flat_payload_as_documented():
    problem = _problem.normalize_notification(WEBHOOK)
    assert problem["id"] == "99999" and problem["display_id"] == "P-999" and problem["status"] == "OPEN"
    assert problem["entities"][0] == {"id": "HOST-XXXXXXXXXXXXX", "type": "HOST", "name": "MyHost1"}
    assert problem["tags"] == {"testtag1": "", "testtag2": ""}
    assert problem["url"].endswith("pid=99999") and problem["end_time"] == -1
    assert _problem.incident_key(problem) == "dt-P-999"
    assert _problem.problem_hosts(problem) == ["MyHost1"]


def test_webhook_resolved_is_closed_and_v2_details_enrich_it():
    payload = dict(WEBHOOK, State="RESOLVED", Tags="app:checkout",
                   ProblemDetailsJSONv2=dict(API_PROBLEM, status="CLOSED", endTime=1669823999999,
                                             rootCauseEntity={"entityId": {"id": "HOST-E371A974A078CC54", "type": "HOST"}, "name": "frontend-dev"}))
    problem = _problem.normalize_notification(payload)
    assert problem["status"] == "CLOSED" and problem["end_time"] == 1669823999999
    assert problem["root_cause"]["name"] == "frontend-dev"
    assert problem["management_zones"] == ["dev"]
    assert problem["tags"]["app"] == "checkout" and problem["tags"]["stage"] == "dev"
    assert [e["name"] for e in problem["entities"]] == ["MyHost1", "MyService1", "frontend-dev", "checkout"]
    assert _problem.problem_hosts(problem) == ["MyHost1", "frontend-dev"]


@pytest.mark.parametrize("change, message", [
    ({"PID": None}, "PID"), ({"PID": ""}, "PID"), ({"PID": True}, "PID"), ({"State": "open"}, "State"),
    ({"State": None}, "State"), ({"ImpactedEntities": "MyHost1"}, "ImpactedEntities"),
    ({"ImpactedEntities": ["MyHost1"]}, "an entity of ImpactedEntities must be an object"), ({"ImpactedEntities": [{"type": "HOST"}]}, "needs an id"),
    ({"ProblemDetailsJSONv2": "{ProblemDetailsJSONv2}"}, "without quotes"), ({"ProblemTitle": ["x"]}, "ProblemTitle"),
])
def test_bad_notifications_say_what_is_wrong(change, message):
    payload = copy.deepcopy(WEBHOOK)
    payload.update(change)
    with pytest.raises(ValueError) as info:
        _problem.normalize_notification(payload)
    assert message in str(info.value)


def test_own_writes_are_recognised():
    assert _problem.is_own(context="selfheal.devops")
    assert _problem.is_own(text=_problem.MARKER + " remediation started")
    assert _problem.is_own(properties={"selfheal.marker": "dt-P-1"})
    assert not _problem.is_own(text="Restarted by hand", context="ops")
    raw = {"evidenceDetails": {"details": [
        {"evidenceType": "EVENT", "displayName": "Process crashed", "entity": {"entityId": {"id": "HOST-1"}}},
        {"evidenceType": "EVENT", "displayName": _problem.MARKER + " remediation started", "entity": {"entityId": {"id": "HOST-1"}}},
        {"evidenceType": "EVENT", "displayName": "Annotation", "properties": {"selfheal.marker": "x"}}]}}
    assert _problem.foreign_evidence(raw) == ["EVENT|Process crashed|HOST-1"]
    assert _problem.foreign_evidence({"ProblemDetailsJSONv2": raw}) == ["EVENT|Process crashed|HOST-1"]
    assert _problem.foreign_evidence(WEBHOOK) == []
