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
