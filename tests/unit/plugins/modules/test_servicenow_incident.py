"""servicenow_incident: the argument spec through main(), and the planning functions (no HTTP)."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfheal.devops.plugins.module_utils import _servicenow_task as logic
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput
from ansible_collections.selfheal.devops.plugins.modules import servicenow_incident as module_under_test

PASSWORD = "unit-test-sn-password-0001"


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exited:
            module_under_test.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for name in ("SERVICENOW_URL", "SN_HOST", "SERVICENOW_USER", "SN_USERNAME", "SERVICENOW_PASSWORD", "SN_PASSWORD",
                 "SERVICENOW_TOKEN", "SN_ACCESS_TOKEN", "SERVICENOW_CLIENT_ID", "SN_CLIENT_ID",
                 "SERVICENOW_CLIENT_SECRET", "SN_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)


BASE = {"url": "http://127.0.0.1:9", "user": "u", "password": PASSWORD, "max_retries": 0}


@pytest.mark.parametrize("args, message", [
    ({"incident_key": "k"}, "missing required arguments: url"),
    (dict(BASE), "one of the following is required: incident_key, number"),
    (dict(BASE, incident_key="k", state="open"), "value of state must be one of: present, updated, resolved, closed"),
    (dict(BASE, incident_key="k", urgency=4), "value of urgency must be one of: 1, 2, 3"),
    (dict(BASE, incident_key="k", password=None), "ServiceNow: no credentials"),
])
def test_argument_errors(capsys, args, message):
    code, result = run_main(capsys, args)
    assert code == 1 and result["failed"] and message in result["msg"] and PASSWORD not in json.dumps(result)


def test_an_unreachable_instance_is_a_communication_error_without_the_password(capsys):
    code, result = run_main(capsys, dict(BASE, incident_key="k", short_description="x", timeout=2))
    assert code == 1 and result["error_kind"] == "communication" and "ServiceNow" in result["msg"]
    assert PASSWORD not in json.dumps(result) and not result.get("changed")


def rec(**fields):
    return dict((k, v if isinstance(v, dict) else {"value": v, "display_value": v}) for k, v in fields.items())


@pytest.mark.parametrize("field, have, wanted, same", [
    ("short_description", {"value": "Disk full", "display_value": "Disk full"}, "Disk full", True),
    ("short_description", {"value": "Disk full", "display_value": "Disk full"}, "disk full", False),
    ("description", {"value": "a\r\nb ", "display_value": "a\r\nb "}, "a\nb", True),
    ("assignment_group", {"value": "0a1b", "display_value": "Network"}, "network", True),
    ("assignment_group", {"value": "0a1b", "display_value": "Network"}, "0a1b", True),
    ("urgency", {"value": "1", "display_value": "1 - High"}, "1", True),
    ("urgency", {"value": "1", "display_value": "1 - High"}, "2", False),
])
def test_same_compares_values_and_reference_display_values(field, have, wanted, same):
    assert logic.same({field: have}, field, wanted) is same


def test_plan_changes_gives_the_changed_fields_with_display_values():
    record = rec(short_description="x", urgency={"value": "2", "display_value": "2 - Medium"},
                 assignment_group={"value": "g1", "display_value": "Network"})
    desired = {"short_description": "x", "urgency": "1", "assignment_group": "g2", "_assignment_group_name": "Database"}
    body, before, after = logic.plan_changes(record, desired)
    assert body == {"urgency": "1", "assignment_group": "g2"}
    assert before == {"urgency": "2 - Medium", "assignment_group": "Network"}
    assert after == {"urgency": "1", "assignment_group": "Database"}
    body, before, after = logic.plan_changes(None, desired)
    assert before == {} and set(body) == {"short_description", "urgency", "assignment_group"}


def params(**overrides):
    base = {"work_note": None, "work_note_id": None, "comment": None, "comment_id": None, "state": "present",
            "close_code": "Solution provided", "close_notes": None}
    base.update(overrides)
    return base


def test_notes_are_added_unless_their_marker_is_in_the_journal():
    marker = logic.servicenow.marker("restarting")
    journal = "2026-01-01 10:00:00 - Selfheal (Work notes)\nrestarting\n\n[selfheal:%s]\n\n" % marker
    record = rec(work_notes={"value": "", "display_value": journal}, comments={"value": "", "display_value": ""})
    body, result, after = {}, {"work_note_added": False, "comment_added": False}, {}
    logic.plan_notes(params(work_note="restarting", comment="on it"), record, body, result, after)
    assert "work_notes" not in body and body["comments"].startswith("on it\n\n[selfheal:")
    assert result["comment_added"] and not result["work_note_added"] and after == {"comments": "on it"}


@pytest.mark.parametrize("state, current, has_notes, expected", [
    ("resolved", "2", False, "6"),
    ("resolved", "6", True, None),
    ("resolved", "7", True, None),
    ("closed", "6", True, "7"),
    ("closed", "2", False, "7"),
    ("closed", "8", False, None),
    ("present", "2", False, None),
])
def test_plan_state(state, current, has_notes, expected):
    record = rec(state=current, number="INC1", close_notes="done" if has_notes else "")
    body, result, before, after = {}, {"transitioned": None}, {}, {}
    logic.plan_state(params(state=state, close_notes="fixed"), record, body, result, before, after)
    assert body.get("state") == expected
    if expected and not has_notes:
        assert body["close_notes"] == "fixed" and body["close_code"] == "Solution provided"
    if expected and has_notes:
        assert "close_notes" not in body  # closing a resolved incident keeps its resolution


def test_resolving_needs_close_notes():
    with pytest.raises(InvalidInput) as raised:
        logic.plan_state(params(state="resolved"), rec(state="2", number="INC7", close_notes=""), {}, {}, {}, {})
    assert "close_notes is required to resolve ServiceNow incident INC7" in str(raised.value)


def test_attachments_are_read_first_and_must_have_distinct_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "log.txt").write_text("one")
    (tmp_path / "b" / "log.txt").write_text("two")
    found = logic.read_attachments([str(tmp_path / "a" / "log.txt")])
    assert found[0][0] == "log.txt" and found[0][2] == 3 and len(found[0][3]) == 64
    with pytest.raises(InvalidInput):
        logic.read_attachments([str(tmp_path / "a" / "log.txt"), str(tmp_path / "b" / "log.txt")])
    with pytest.raises(InvalidInput):
        logic.read_attachments([str(tmp_path / "missing")])


class Service(object):
    def __init__(self, attachments):
        self.listed = attachments

    def attachments(self, table, sys_id):
        return self.listed


def test_attachments_are_skipped_by_name_and_hash_or_size():
    files = [("same.txt", "/p/same.txt", 3, "h1"), ("changed.txt", "/p/changed.txt", 3, "h2"),
             ("nohash.txt", "/p/nohash.txt", 5, "h3"), ("new.txt", "/p/new.txt", 1, "h4")]
    have = [{"file_name": "same.txt", "hash": "h1", "size_bytes": "3"},
            {"file_name": "changed.txt", "hash": "old", "size_bytes": "3"},
            {"file_name": "nohash.txt", "size_bytes": "5"}]
    missing, names = logic.plan_attachments(Service(have), rec(sys_id="s1"), files)
    assert [name for name, dummy in missing] == ["changed.txt", "new.txt"]
    assert names == ["changed.txt", "nohash.txt", "same.txt"]
