"""Pure logic of the Slack service layer: channel names, pagination and error mapping (with a transport double)."""

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import slack
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput


@pytest.mark.parametrize("key,prefix,expected", [
    ("dt-P-1234", "inc-", "inc-dt-p-1234"),
    ("DT P:42 / Web #1", "inc-", "inc-dt-p-42-web-1"),
    ("dt-P-1", "", "dt-p-1"),
    ("--dt--P--7--", "", "dt-p-7"),
    ("Ünïcödé", "inc-", "inc-n-c-d"),
])
def test_channel_name_follows_slacks_rules(key, prefix, expected):
    name = slack.channel_name(key, prefix)
    assert name == expected and slack.valid_channel_name(name)


def test_long_names_are_cut_to_80_with_a_stable_digest():
    first = slack.channel_name("x" * 200)
    assert len(first) == 80 and first == slack.channel_name("x" * 200) and first != slack.channel_name("x" * 199)


def test_a_key_without_any_usable_character_is_refused():
    with pytest.raises(InvalidInput):
        slack.channel_name("!!!", prefix="")


@pytest.mark.parametrize("name,valid", [("inc-1", True), ("Inc-1", False), ("a" * 81, False), ("--", False), ("", False)])
def test_valid_channel_name(name, valid):
    assert bool(slack.valid_channel_name(name)) is valid


class Response(object):
    def __init__(self, body):
        self.json = body
        self.url = "https://slack.test/api/x"


class Client(object):
    """Answers each call from a list of bodies and records (verb, method, params)."""

    def __init__(self, bodies):
        self.bodies = list(bodies)
        self.calls = []

    def get(self, method, params=None):
        self.calls.append(("GET", method, params))
        return Response(self.bodies.pop(0))

    def post(self, method, json_body=None, headers=None):
        self.calls.append(("POST", method, json_body))
        return Response(self.bodies.pop(0))


def test_paged_follows_next_cursor_until_empty():
    client = Client([{"ok": True, "members": ["U1", "U2"], "response_metadata": {"next_cursor": "c2"}},
                     {"ok": True, "members": ["U3"], "response_metadata": {"next_cursor": ""}}])
    assert slack.SlackService(client).members("C1") == ["U1", "U2", "U3"]
    assert [c[2].get("cursor") for c in client.calls] == [None, "c2"]


@pytest.mark.parametrize("code,kind", [("invalid_auth", slack.SlackAuthError), ("channel_not_found", slack.SlackNotFound),
                                       ("is_archived", slack.SlackError)])
def test_ok_false_becomes_a_typed_error_naming_the_code(code, kind):
    service = slack.SlackService(Client([{"ok": False, "error": code}]))
    with pytest.raises(kind) as raised:
        service.call("chat.postMessage", channel="C1", text="x")
    assert raised.value.code == code and code in str(raised.value)


def test_invite_goes_in_batches_of_100_and_skips_who_joined_meanwhile():
    client = Client([{"ok": True}, {"ok": False, "error": "already_in_channel"}, {"ok": True}, {"ok": True}])
    slack.SlackService(client).invite("C1", ["U%03d" % n for n in range(250)])
    sizes = [(c[1], len(c[2]["users"].split(",")), c[2].get("force")) for c in client.calls]
    assert sizes == [("conversations.invite", 100, None), ("conversations.invite", 100, None),
                     ("conversations.invite", 100, True), ("conversations.invite", 50, None)]


def test_transcript_puts_thread_replies_after_their_parent():
    client = Client([
        {"ok": True, "messages": [{"ts": "3", "text": "c"}, {"ts": "2", "text": "b", "reply_count": 2},
                                  {"ts": "1", "text": "a"}], "response_metadata": {"next_cursor": ""}},
        {"ok": True, "messages": [{"ts": "2", "text": "b"}, {"ts": "2.1", "text": "b1"}, {"ts": "2.2", "text": "b2"}]},
    ])
    assert [m["text"] for m in slack.SlackService(client).transcript("C1")] == ["a", "b", "b1", "b2", "c"]


# --- slack_channel: inputs checked before writing, honest failures, transcript folders ---------------------------

def test_resolve_users_refuses_an_unknown_or_deactivated_address_and_empty_entries():
    from ansible_collections.selfheal.devops.plugins.module_utils import _slack_task as slack_channel

    client = Client([{"ok": True, "user": {"id": "U1", "deleted": False}}, {"ok": True, "user": {"id": "U1"}}])
    ids, looked_up = slack_channel.resolve_users(slack.SlackService(client), ["a@x.test", "U2", "A@x.test", "U2"])
    assert ids == ["U1", "U2"] and looked_up == {"U1"}
    service = slack.SlackService(Client([{"ok": True, "user": {"id": "U3", "deleted": True}}]))
    with pytest.raises(InvalidInput, match="gone@x.test is deactivated"):
        slack_channel.resolve_users(service, ["gone@x.test"])
    with pytest.raises(InvalidInput, match="an entry is empty"):
        slack_channel.resolve_users(slack.SlackService(Client([])), [" "])


def test_check_ids_names_every_unknown_and_deactivated_user():
    from ansible_collections.selfheal.devops.plugins.module_utils import _slack_task as slack_channel

    client = Client([{"ok": True, "user": {"id": "U1"}}, {"ok": False, "error": "user_not_found"},
                     {"ok": True, "user": {"id": "U3", "deleted": True}}, {"ok": False, "error": "user_not_found"}])
    with pytest.raises(InvalidInput) as info:
        slack_channel.check_ids(slack.SlackService(client), ["U1", "U2", "U3", "U4"])
    assert str(info.value) == ("unknown Slack user id(s): U2, U4 (users.info: user_not_found); "
                               "deactivated Slack user(s): U3; nothing was written")
    assert [c[:2] for c in client.calls] == [("GET", "users.info")] * 4
    slack_channel.check_ids(slack.SlackService(Client([])), [])  # nothing to check, nothing asked


def test_failure_reports_changed_only_after_a_write():
    from ansible_collections.selfheal.devops.plugins.module_utils import _slack_task as slack_channel

    result = slack_channel.new_result()
    quiet = slack_channel.failure(InvalidInput("bad"), result)
    assert quiet["changed"] is False and "written" not in quiet and quiet["msg"] == "bad"
    result["written"] += ["created channel #inc-1", "set the topic"]
    loud = slack_channel.failure(slack.SlackError("conversations.invite", "user_is_restricted"), result)
    assert loud["changed"] is True and loud["written"] == ["created channel #inc-1", "set the topic"]
    assert loud["msg"].endswith("(this run had already created channel #inc-1; set the topic)")


def test_missing_folders_are_created_owner_only(tmp_path):
    from ansible_collections.selfheal.devops.plugins.module_utils import _slack_task as slack_channel

    path = tmp_path / "x" / "y" / "t.md"
    assert slack_channel.missing_folders(str(path)) == [str(tmp_path / "x"), str(tmp_path / "x" / "y")]
    result = slack_channel.new_result()
    slack_channel.write_transcript(str(path), "hello\n", result)
    assert path.read_text() == "hello\n" and (tmp_path / "x").stat().st_mode & 0o777 == 0o700
    assert result["written"] == ["created folder %s" % (tmp_path / "x"), "created folder %s" % (tmp_path / "x" / "y"),
                                 "wrote %s" % path]
    assert slack_channel.missing_folders(str(path)) == []
