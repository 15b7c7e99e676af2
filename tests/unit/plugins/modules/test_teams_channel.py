"""teams_channel: the argument spec through main(), names, message ids, marker search and the transcript (no HTTP)."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.selfheal.devops.plugins.module_utils import _teams_task as logic
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput
from ansible_collections.selfheal.devops.plugins.modules import teams_channel as module_under_test

SECRET = "unit~test~graph~secret~0001"


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exited:
            module_under_test.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for name in ("MSGRAPH_TENANT_ID", "AZURE_TENANT_ID", "MSGRAPH_CLIENT_ID", "AZURE_CLIENT_ID", "MSGRAPH_CLIENT_SECRET",
                 "AZURE_CLIENT_SECRET", "MSGRAPH_TOKEN", "MSGRAPH_URL", "MSGRAPH_LOGIN_URL", "MSGRAPH_BOT_URL"):
        monkeypatch.delenv(name, raising=False)


BASE = {"team": "Operations", "incident_key": "dt-P-1", "tenant_id": "t", "client_id": "c", "client_secret": SECRET,
        "login_url": "http://127.0.0.1:9", "graph_url": "http://127.0.0.1:9/v1.0", "max_retries": 0, "timeout": 2}


@pytest.mark.parametrize("args, message", [
    ({"incident_key": "k"}, "missing required arguments: team"),
    (dict(BASE, state="archived"), "value of state must be one of: present, closed, transcript"),
    (dict(BASE, close_action=["delete"]), "close_action"),
    (dict(BASE, client_secret=None), "Microsoft Graph: client_secret required"),
    (dict(BASE, name="a/b"), "invalid Teams channel name 'a/b'"),
])
def test_argument_errors(capsys, args, message):
    code, result = run_main(capsys, args)
    assert code == 1 and result["failed"] and message in result["msg"] and SECRET not in json.dumps(result)


def test_an_unreachable_identity_platform_is_a_communication_error(capsys):
    code, result = run_main(capsys, dict(BASE))
    assert code == 1 and result["error_kind"] == "communication" and "Microsoft identity platform" in result["msg"]
    assert SECRET not in json.dumps(result)


def params(**overrides):
    base = {"incident_key": "dt-P-1", "name": None, "name_prefix": "inc-", "closed_prefix": "closed-",
            "close_action": ["archive"], "text": "hello", "reply_to": None, "message_id": None}
    base.update(overrides)
    return base


def test_channel_names_and_closed_names():
    assert logic.channel_names(params()) == ("inc-dt-P-1", "closed-inc-dt-P-1")
    name, closed = logic.channel_names(params(name="x" * 50, close_action=["rename"]))
    assert len(closed) == 50 and closed.startswith("closed-")
    with pytest.raises(InvalidInput):
        logic.channel_names(params(closed_prefix="closed/", close_action=["rename"]))


def test_message_ids_depend_on_the_text_the_thread_and_the_incident():
    first = logic.message_id_of(params())
    assert first == logic.message_id_of(params())
    assert first != logic.message_id_of(params(reply_to="1700"))
    assert first != logic.message_id_of(params(incident_key="dt-P-2"))
    assert logic.message_id_of(params(message_id="open.1")) == "open.1"
    with pytest.raises(InvalidInput):
        logic.message_id_of(params(message_id="no spaces"))


def message(mid, created, content, replies=(), kind="message", author=None, deleted=None):
    origin = {"user": {"displayName": author}} if author else {"application": {"displayName": "Selfheal"}}
    return {"id": mid, "createdDateTime": created, "messageType": kind, "deletedDateTime": deleted, "from": origin,
            "body": {"content": content}, "replies": list(replies)}


def test_find_marked_in_the_channel_or_a_thread():
    reply = message("3", "2026-01-01T10:02:00Z", "<p>done</p><p>[selfheal:r1]</p>")
    messages = [message("1", "2026-01-01T10:00:00Z", "<p>open</p><p>[selfheal:m1]</p>", [reply])]
    assert logic.find_marked(messages, "m1")["id"] == "1"
    assert logic.find_marked(messages, "r1") is None
    assert logic.find_marked(messages, "r1", reply_to="1")["id"] == "3"
    with pytest.raises(InvalidInput):
        logic.find_marked(messages, "r1", reply_to="9")


def test_transcript_is_oldest_first_with_replies_after_their_parent_and_no_system_or_deleted_messages():
    messages = [
        message("2", "2026-01-01T10:05:00Z", "<p>second</p>", author="Dba One",
                replies=[message("5", "2026-01-01T10:07:00Z", "late reply", author="A"),
                         message("4", "2026-01-01T10:06:00Z", "early reply", author="B")]),
        message("1", "2026-01-01T10:00:00Z", "<p>first &amp; foremost</p><p>[selfheal:m1]</p>"),
        message("0", "2026-01-01T09:00:00Z", "<systemEventMessage/>", kind="systemEventMessage"),
        message("3", "2026-01-01T10:06:30Z", "", author="C", deleted="2026-01-01T10:08:00Z"),
    ]
    entries = logic.transcript_entries(messages)
    assert [(e["id"], e["text"], e["reply_to"]) for e in entries] == [
        ("1", "first & foremost", None), ("2", "second", None), ("4", "early reply", "2"), ("5", "late reply", "2")]
    team = {"id": "t", "displayName": "Ops"}
    channel = {"id": "c", "displayName": "inc-1"}
    markdown = logic.render(team, channel, entries, "markdown")
    assert markdown.splitlines()[:3] == ["# Microsoft Teams transcript of Ops / inc-1", "",
                                         "- `2026-01-01 10:00:00` **Selfheal**: first & foremost"]
    assert "    - `2026-01-01 10:06:00` **B**: early reply" in markdown
    document = json.loads(logic.render(team, channel, entries, "json"))
    assert document["team"] == {"id": "t", "displayName": "Ops"} and len(document["messages"]) == 4
