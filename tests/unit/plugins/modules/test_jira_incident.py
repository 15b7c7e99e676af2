"""jira_incident: the argument spec through main(), then run() with a service double (no HTTP)."""

import copy
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfheal.devops.plugins.module_utils import jira
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, UnexpectedResponse
from ansible_collections.selfheal.devops.plugins.module_utils import _jira_task as jira_incident
from ansible_collections.selfheal.devops.plugins.modules import jira_incident as jira_incident_module

TOKEN = "unit-test-jira-token-0001"


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exited:
            jira_incident_module.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for name in ("JIRA_URL", "JIRA_USER", "JIRA_TOKEN", "JIRA_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


BASE = {"url": "http://127.0.0.1:9", "token": TOKEN, "max_retries": 0}


@pytest.mark.parametrize("args, message", [
    ({"incident_key": "k"}, "missing required arguments: token"),
    (dict(BASE), "one of the following is required: key, incident_key"),
    (dict(BASE, key="OPS-1", state="commented"), "state is commented but all of the following are missing: comment"),
    (dict(BASE, key="OPS-1", service_desk_id="10"), "parameters are required together: service_desk_id, request_type_id"),
    (dict(BASE, key="OPS-1", state="closed"), "value of state must be one of: present, commented, resolved"),
    (dict(BASE, key="OPS-1", api_version="4"), "value of api_version must be one of: 2, 3"),
    (dict(BASE, key="OPS-1", labels="a,b", custom_fields="x"), "custom_fields"),
])
def test_argument_spec_through_main(capsys, args, message):
    code, out = run_main(capsys, args)
    assert code == 1 and out["failed"] is True and message in out["msg"]
    assert TOKEN not in json.dumps(out)


def test_connection_failure_is_a_clean_error_without_the_token(capsys):
    code, out = run_main(capsys, dict(BASE, key="OPS-1", user="a@example.com", max_retry_wait=0))
    assert code == 1 and out["error_kind"] == "communication" and "Jira request GET" in out["msg"]
    assert TOKEN not in json.dumps(out)


def test_unreadable_attachment_fails_before_any_request(capsys, tmp_path):
    code, out = run_main(capsys, dict(BASE, key="OPS-1", attachments=[str(tmp_path / "missing.log")]))
    assert code == 1 and out["error_kind"] == "invalid_input" and "missing.log is not a readable file" in out["msg"]


# --- run() with a double ----------------------------------------------------------------------------------------

class FakeModule(object):
    def __init__(self, check_mode=False, **params):
        self.params = {name: spec.get("default") for name, spec in jira_incident.argument_spec().items()}
        self.params.update(api_version="3", user="a@example.com", token=TOKEN)
        self.params.update(params)
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)


WORKFLOW = {"Open": [("11", "Start Progress", "In Progress", "indeterminate"), ("21", "Resolve Issue", "Resolved", "done")],
            "In Progress": [("21", "Resolve Issue", "Resolved", "done")],
            "Resolved": [("41", "Reopen Issue", "Open", "new")]}
CATEGORY = {"Open": "new", "In Progress": "indeterminate", "Resolved": "done"}


class FakeJira(object):
    """An in-memory Jira with the JiraService verbs; records every write."""

    def __init__(self, version="3", issues=()):
        self.version = version
        self.issues = dict((i["key"], i) for i in issues)
        self.writes = []
        self.reads = []

    def rich(self, text):
        return jira.render(text, self.version)

    def browse_url(self, key):
        return "https://jira.example/browse/%s" % key if key else None

    def field_list(self):
        self.reads.append("field")
        return [{"id": "customfield_10060", "name": "Severity", "schema": {}}]

    def get_issue(self, key, fields=None):
        self.reads.append(("get", key))
        if key not in self.issues:
            raise NotFound("Jira issue %s does not exist" % key)
        return copy.deepcopy(self.issues[key])

    def find_by_label(self, label, project=None):
        self.reads.append(("search", label, project))
        return [{"key": k} for k, i in sorted(self.issues.items()) if label in i["fields"]["labels"]]

    def create_issue(self, fields):
        self.writes.append(("create", fields))
        key = "OPS-%d" % (len(self.issues) + 1)
        self.issues[key] = issue(key, summary=fields["summary"], labels=fields.get("labels", []),
                                 description=fields.get("description"))
        return {"key": key, "id": "1"}

    def create_request(self, desk, kind, values):
        self.writes.append(("request", desk, kind, values))
        key = "OPS-%d" % (len(self.issues) + 1)
        self.issues[key] = issue(key, summary=values["summary"], labels=(), description=values.get("description"))
        return {"issueKey": key}

    def update_issue(self, key, fields):
        self.writes.append(("update", key, fields))
        self.issues[key]["fields"].update(fields)

    def comments(self, key):
        self.reads.append(("comments", key))
        return self.issues[key]["comments"]

    def add_comment(self, key, body, internal=False):
        self.writes.append(("comment", key, body, internal))
        self.issues[key]["comments"].append({"body": body})

    def transitions(self, key, include_unavailable=False):
        self.reads.append(("transitions", key))
        return [{"id": i, "name": n, "to": {"name": t, "statusCategory": {"key": c}},
                 "fields": {"resolution": {}} if t == "Resolved" else {}}
                for i, n, t, c in WORKFLOW[self.issues[key]["fields"]["status"]["name"]]]

    def transition(self, key, transition_id, fields=None, comment=None):
        self.writes.append(("transition", key, transition_id, fields, comment))
        target = next(t for i, n, t, c in sum(WORKFLOW.values(), []) if i == transition_id)
        self.issues[key]["fields"]["status"] = {"name": target, "statusCategory": {"key": CATEGORY[target]}}

    def add_attachments(self, key, files):
        self.writes.append(("attach", key, [(name, content) for name, content, dummy in files]))
        self.issues[key]["fields"]["attachment"].extend({"filename": n, "size": len(c)} for n, c, dummy in files)


def issue(key, summary="Disk full", status="Open", labels=("dt-P-1",), description=None, attachments=()):
    return {"key": key, "id": "100", "comments": [], "fields": {
        "summary": summary, "description": description, "status": {"name": status, "statusCategory": {"key": CATEGORY[status]}},
        "labels": list(labels), "priority": {"name": "Medium"}, "components": [], "resolution": None,
        "attachment": list(attachments)}}


def test_check_mode_predicts_a_create_and_writes_nothing():
    service = FakeJira()
    module = FakeModule(check_mode=True, project="OPS", incident_key="dt-P-1", summary="Disk full", description="x",
                        comment="noted", status="In Progress")
    changed, result, diff = jira_incident.run(module, service)
    assert changed and result["created"] and result["key"] is None and result["status"] == "In Progress"
    assert result["commented"] and result["transitioned"] == {"from": None, "to": "In Progress", "transition": None}
    assert result["issue"]["labels"] == ["dt-P-1"] and result["issue"]["summary"] == "Disk full"
    assert diff["before"] == {} and diff["after"]["summary"] == "Disk full" and diff["after"]["labels"] == ["dt-P-1"]
    assert service.writes == []


def test_create_then_rerun_changes_nothing():
    service = FakeJira()
    params = dict(project="OPS", incident_key="dt-P-1", summary="Disk full", description="**x**", labels=["disk"])
    changed, result, dummy = jira_incident.run(FakeModule(**params), service)
    assert changed and result["created"] and result["key"] == "OPS-1"
    created = service.writes[0][1]
    assert created["project"] == {"key": "OPS"} and created["issuetype"] == {"name": "Incident"}
    assert created["labels"] == ["disk", "dt-P-1"] and created["description"] == jira.markdown_to_adf("**x**")
    service.writes = []
    changed, result, diff = jira_incident.run(FakeModule(**params), service)
    assert not changed and service.writes == [] and diff == {"before": {}, "after": {}}


def test_update_only_the_changed_fields_and_keep_foreign_labels():
    service = FakeJira(issues=[issue("OPS-7", labels=["dt-P-1", "human"])])
    module = FakeModule(key="OPS-7", incident_key="dt-P-1", summary="Disk full on db-01", labels=["disk"])
    changed, result, diff = jira_incident.run(module, service)
    assert changed and result["updated_fields"] == ["labels", "summary"]
    assert service.writes == [("update", "OPS-7", {"summary": "Disk full on db-01", "labels": ["dt-P-1", "human", "disk"]})]
    assert diff == {"before": {"summary": "Disk full", "labels": ["dt-P-1", "human"]},
                    "after": {"summary": "Disk full on db-01", "labels": ["dt-P-1", "human", "disk"]}}


def test_check_mode_update_predicts_without_writing():
    service = FakeJira(issues=[issue("OPS-7")])
    changed, result, dummy = jira_incident.run(FakeModule(check_mode=True, key="OPS-7", summary="new", priority="High"), service)
    assert changed and service.writes == [] and result["issue"]["summary"] == "new" and result["issue"]["priority"] == "High"


def test_comment_added_once_by_marker_in_both_versions():
    for version in ("3", "2"):
        service = FakeJira(version=version, issues=[issue("OPS-1")])
        module = FakeModule(key="OPS-1", comment="Restarted", comment_internal=True, api_version=version)
        changed, result, dummy = jira_incident.run(module, service)
        assert changed and result["commented"] and result["comment_id"] == jira.marker_id("Restarted")
        kind, key, body, internal = service.writes[0]
        assert internal is True and jira.markers_in(body) == {result["comment_id"]}
        assert isinstance(body, dict) == (version == "3")
        changed, result, dummy = jira_incident.run(FakeModule(key="OPS-1", comment="Restarted", api_version=version), service)
        assert not changed and len(service.writes) == 1


def test_commented_and_resolved_need_an_existing_issue():
    for state in ("commented", "resolved"):
        with pytest.raises(NotFound) as caught:
            jira_incident.run(FakeModule(incident_key="dt-P-9", project="OPS", state=state, comment="x"), FakeJira())
        assert "No Jira issue carries the label dt-P-9 in project OPS" in caught.value.message


def test_create_needs_project_and_summary():
    with pytest.raises(InvalidInput) as caught:
        jira_incident.run(FakeModule(incident_key="dt-P-9", summary="x"), FakeJira())
    assert "project and summary are required" in caught.value.message


def test_resolve_with_resolution_and_comment_then_nothing():
    service = FakeJira(issues=[issue("OPS-1")])
    module = FakeModule(key="OPS-1", state="resolved", resolution="Fixed", comment="fixed by restart")
    changed, result, diff = jira_incident.run(module, service)
    assert changed and result["transitioned"] == {"from": "Open", "to": "Resolved", "transition": "Resolve Issue"}
    kind, key, ident, fields, comment = service.writes[0]
    assert (ident, fields) == ("21", {"resolution": {"name": "Fixed"}}) and jira.markers_in(comment)
    assert result["commented"] and diff["after"]["status"] == "Resolved"
    changed, result, dummy = jira_incident.run(module, service)
    assert not changed and len(service.writes) == 1 and ("transitions", "OPS-1") not in service.reads[-2:]


def test_resolution_not_on_screen_is_a_warning():
    service = FakeJira(issues=[issue("OPS-1")])
    module = FakeModule(key="OPS-1", status="In Progress", resolution="Fixed")
    changed, dummy, dummy2 = jira_incident.run(module, service)
    assert changed and service.writes[0][3] is None and "resolution Fixed ignored" in module.warnings[0]


def test_unknown_transition_lists_the_available_ones():
    service = FakeJira(issues=[issue("OPS-1")])
    with pytest.raises(InvalidInput) as caught:
        jira_incident.run(FakeModule(key="OPS-1", transition="Teleport"), service)
    assert "'Start Progress' (-> In Progress), 'Resolve Issue' (-> Resolved)" in caught.value.message
    assert service.writes == []


def test_attachments_skip_same_name_and_size(tmp_path):
    same = tmp_path / "transcript.txt"
    same.write_bytes(b"12345")
    new = tmp_path / "new.log"
    new.write_bytes(b"abc")
    service = FakeJira(issues=[issue("OPS-1", attachments=[{"filename": "transcript.txt", "size": 5}])])
    module = FakeModule(key="OPS-1", attachments=[str(same), str(new)])
    changed, result, diff = jira_incident.run(module, service)
    assert changed and result["attached"] == ["new.log"] and service.writes == [("attach", "OPS-1", [("new.log", b"abc")])]
    assert diff == {"before": {"attachments": ["transcript.txt"]}, "after": {"attachments": ["new.log", "transcript.txt"]}}
    changed, result, dummy = jira_incident.run(module, service)
    assert not changed and len(service.writes) == 1
    same.write_bytes(b"123456")
    assert jira_incident.run(module, service)[1]["attached"] == ["transcript.txt"]


def test_same_file_name_twice_is_refused(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "x.log").write_text("1")
    (second / "x.log").write_text("2")
    with pytest.raises(InvalidInput):
        jira_incident.read_attachments([str(first / "x.log"), str(second / "x.log")])


def test_jsm_create_then_sets_the_rest_through_the_issue_api():
    service = FakeJira()
    module = FakeModule(project="OPS", incident_key="dt-P-5", summary="Slow", description="**bold**", priority="High",
                        service_desk_id="10", request_type_id="25", custom_fields={"Severity": {"value": "Major"}})
    changed, result, dummy = jira_incident.run(module, service)
    assert changed and result["created"] and result["key"] == "OPS-1"
    request, update = service.writes
    assert request == ("request", "10", "25", {"summary": "Slow", "description": "*bold*"})
    assert update[2]["labels"] == ["dt-P-5"] and update[2]["priority"] == {"name": "High"}
    assert update[2]["customfield_10060"] == {"value": "Major"} and update[2]["description"] == jira.markdown_to_adf("**bold**")


def test_several_issues_with_the_label_use_the_oldest_and_warn():
    service = FakeJira(issues=[issue("OPS-1"), issue("OPS-2")])
    module = FakeModule(incident_key="dt-P-1", project="OPS")
    changed, result, dummy = jira_incident.run(module, service)
    assert not changed and result["key"] == "OPS-1" and "2 issues carry the label dt-P-1 (OPS-1, OPS-2)" in module.warnings[0]


def test_a_400_on_the_transition_names_what_is_available_now():
    service = FakeJira(issues=[issue("OPS-1")])

    def refuse(key, transition_id, fields=None, comment=None):
        raise UnexpectedResponse("Jira POST .../transitions answered HTTP 400: Transition id '21' is not valid for this issue.",
                                 status=400)

    service.transition = refuse
    with pytest.raises(UnexpectedResponse) as caught:
        jira_incident.run(FakeModule(key="OPS-1", state="resolved"), service)
    assert "is not valid for this issue.. Available transitions of OPS-1 now: 'Start Progress'" not in caught.value.message
    assert "is not valid for this issue. Available transitions of OPS-1 now: 'Start Progress' (-> In Progress)" in caught.value.message


def test_comments_embedded_in_the_issue_are_used_when_complete():
    service = FakeJira()
    body = jira.comment_body("x", jira.marker_id("x"), "3")
    assert jira_incident.embedded_or_listed_comments(service, "OPS-1", {"comment": {"total": 1, "comments": [{"body": body}]}}) == [
        {"body": body}]
    assert service.reads == []
    service.issues["OPS-1"] = issue("OPS-1")
    jira_incident.embedded_or_listed_comments(service, "OPS-1", {"comment": {"total": 250, "comments": [{"body": body}]}})
    assert service.reads == [("comments", "OPS-1")]
