"""Contract of the sandbox's Slack Web API (tests/sandbox/README.md), and the proof that the unmodified
slack_sdk.WebClient works against it."""

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from sandbox import credentials

AUTH = {"Authorization": "Bearer " + credentials.SLACK_TOKEN}


def api(sandbox, method, json=None, data=None, params=None, headers=None, http="POST"):
    headers = AUTH if headers is None else headers
    response = requests.request(http, sandbox.url + credentials.SLACK_PREFIX + "/" + method, json=json, data=data,
                                params=params, headers=headers, timeout=10)
    return response


def call(sandbox, method, **kwargs):
    response = api(sandbox, method, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_auth_errors_are_http_200_ok_false(sandbox):
    assert call(sandbox, "auth.test", headers={}) == {"ok": False, "error": "not_authed"}
    assert call(sandbox, "auth.test", headers={"Authorization": "Bearer xoxb-wrong"})["error"] == "invalid_auth"
    assert call(sandbox, "auth.test")["ok"] is True
    # A form body may carry the token; a JSON body may not.
    assert call(sandbox, "auth.test", headers={}, data={"token": credentials.SLACK_TOKEN})["ok"] is True
    assert call(sandbox, "conversations.create", headers={}, json={"token": credentials.SLACK_TOKEN, "name": "x"})["error"] == "not_authed"


@pytest.mark.parametrize("name,error", [("", "invalid_name_required"), ("Incident-1", "invalid_name_specials"),
                                        ("inc 1", "invalid_name_specials"), ("x" * 81, "invalid_name_maxlength"),
                                        ("--", "invalid_name_punctuation")])
def test_channel_name_rules(sandbox, name, error):
    assert call(sandbox, "conversations.create", json={"name": name}) == {"ok": False, "error": error}


def test_create_name_taken_also_by_an_archived_channel_and_form_bodies(sandbox):
    created = call(sandbox, "conversations.create", data={"name": "inc-dt-p-1"})
    assert created["ok"] and created["channel"]["name"] == "inc-dt-p-1" and created["channel"]["is_member"]
    cid = created["channel"]["id"]
    assert call(sandbox, "conversations.archive", json={"channel": cid}) == {"ok": True}
    assert call(sandbox, "conversations.archive", json={"channel": cid})["error"] == "already_archived"
    assert call(sandbox, "conversations.create", json={"name": "inc-dt-p-1"})["error"] == "name_taken"
    assert call(sandbox, "chat.postMessage", json={"channel": cid, "text": "x"})["error"] == "is_archived"
    assert call(sandbox, "conversations.unarchive", json={"channel": cid}) == {"ok": True}
    assert call(sandbox, "conversations.unarchive", json={"channel": cid})["error"] == "not_archived"


def test_list_pages_with_cursor_and_excludes_archived(sandbox):
    ids = [call(sandbox, "conversations.create", json={"name": "c-%02d" % n})["channel"]["id"] for n in range(25)]
    call(sandbox, "conversations.archive", json={"channel": ids[0]})
    seen, cursor, pages = [], None, 0
    while True:
        body = call(sandbox, "conversations.list", params={"limit": 10, "cursor": cursor}, http="GET")
        seen += [c["id"] for c in body["channels"]]
        pages += 1
        cursor = body["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids and pages == 3
    active = call(sandbox, "conversations.list", params={"exclude_archived": "true", "limit": 100}, http="GET")
    assert len(active["channels"]) == 24
    assert call(sandbox, "conversations.list", params={"cursor": "bogus"}, http="GET")["error"] == "invalid_cursor"
    # Read methods take query or form parameters, not JSON.
    assert call(sandbox, "conversations.list", json={"limit": 1})["error"] == "invalid_arguments"


def test_invite_errors_batches_and_force(sandbox):
    cid = call(sandbox, "conversations.create", json={"name": "inc-invite"})["channel"]["id"]
    assert call(sandbox, "conversations.invite", json={"channel": cid, "users": "U10000001,U10000002"})["ok"]
    refused = call(sandbox, "conversations.invite", json={"channel": cid, "users": "U10000002,U10000003"})
    assert refused["error"] == "already_in_channel"
    assert refused["errors"] == [{"user": "U10000002", "ok": False, "error": "already_in_channel"}]
    members = call(sandbox, "conversations.members", params={"channel": cid}, http="GET")["members"]
    assert "U10000003" not in members  # nobody is invited when one invite fails
    forced = call(sandbox, "conversations.invite", json={"channel": cid, "users": "U10000002,U10000003", "force": True})
    assert forced["ok"] and "U10000003" in call(sandbox, "conversations.members", params={"channel": cid}, http="GET")["members"]
    assert call(sandbox, "conversations.invite", json={"channel": cid, "users": "U0SELFHEAL"})["error"] == "cant_invite_self"
    assert call(sandbox, "conversations.invite", json={"channel": cid, "users": "UNOBODY"})["error"] == "user_not_found"
    assert call(sandbox, "conversations.invite", json={"channel": "C404", "users": "U10000001"})["error"] == "channel_not_found"


def test_history_newest_first_with_cursor_threads_and_metadata(sandbox):
    cid = call(sandbox, "conversations.create", json={"name": "inc-history"})["channel"]["id"]
    parent = call(sandbox, "chat.postMessage", json={"channel": cid, "text": "parent", "metadata": {
        "event_type": "selfheal_devops_message", "event_payload": {"incident_key": "dt-P-1"}}})
    for n in range(5):
        call(sandbox, "chat.postMessage", json={"channel": cid, "text": "reply %d" % n, "thread_ts": parent["ts"]})
    for n in range(14):
        call(sandbox, "chat.postMessage", data={"channel": cid, "text": "m%d" % n})
    first = call(sandbox, "conversations.history", params={"channel": cid, "limit": 10}, http="GET")
    assert [m["text"] for m in first["messages"]][:2] == ["m13", "m12"] and first["has_more"]
    rest = call(sandbox, "conversations.history", params={"channel": cid, "limit": 10,
                                                          "cursor": first["response_metadata"]["next_cursor"]}, http="GET")
    assert [m["text"] for m in rest["messages"]][-1] == "parent" and not rest["has_more"]
    assert "metadata" not in rest["messages"][-1] and rest["messages"][-1]["reply_count"] == 5
    with_meta = call(sandbox, "conversations.history", params={"channel": cid, "include_all_metadata": "true",
                                                               "oldest": "0", "limit": 999}, http="GET")
    assert with_meta["messages"][-1]["metadata"]["event_payload"] == {"incident_key": "dt-P-1"}
    thread = call(sandbox, "conversations.replies", params={"channel": cid, "ts": parent["ts"], "limit": 4}, http="GET")
    assert [m["text"] for m in thread["messages"]] == ["parent", "reply 0", "reply 1", "reply 2"] and thread["has_more"]
    floats = [float(m["ts"]) for m in with_meta["messages"]]
    assert floats == sorted(floats, reverse=True) and len(set(floats)) == len(floats)


def test_topic_purpose_and_lookup_by_email(sandbox):
    cid = call(sandbox, "conversations.create", json={"name": "inc-topic"})["channel"]["id"]
    assert call(sandbox, "conversations.setTopic", json={"channel": cid, "topic": "P-1: web down"})["channel"]["topic"]["value"] == "P-1: web down"
    assert call(sandbox, "conversations.setPurpose", json={"channel": cid, "purpose": "x" * 251})["error"] == "too_long"
    user = call(sandbox, "users.lookupByEmail", params={"email": "oncall.primary@example.com"}, http="GET")["user"]
    assert user["id"] == "U0ONCALL01"
    assert call(sandbox, "users.lookupByEmail", params={"email": "nobody@example.com"}, http="GET")["error"] == "users_not_found"


def test_rate_limit_is_http_429_with_retry_after(sandbox):
    sandbox.fault(credentials.SLACK_PREFIX + "/chat.postMessage", times=1, status=429, headers={"Retry-After": "1"},
                  body={"ok": False, "error": "ratelimited"})
    cid = call(sandbox, "conversations.create", json={"name": "inc-429"})["channel"]["id"]
    limited = api(sandbox, "chat.postMessage", json={"channel": cid, "text": "x"})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert call(sandbox, "chat.postMessage", json={"channel": cid, "text": "x"})["ok"]


def test_slack_sdk_web_client_works_unmodified(sandbox):
    sandbox.fault(credentials.SLACK_PREFIX + "/conversations.invite", times=1, status=429, headers={"Retry-After": "1"},
                  body={"ok": False, "error": "ratelimited"})
    client = WebClient(token=credentials.SLACK_TOKEN, base_url=sandbox.url + credentials.SLACK_PREFIX + "/",
                       retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    channel = client.conversations_create(name="inc-sdk")["channel"]
    client.conversations_invite(channel=channel["id"], users=["U10000001", "U10000002"])
    parent = client.chat_postMessage(channel=channel["id"], text="web down",
                                     metadata={"event_type": "selfheal_devops_message", "event_payload": {"k": "v"}})
    client.chat_postMessage(channel=channel["id"], text="looking", thread_ts=parent["ts"])
    for n in range(30):
        client.chat_postMessage(channel=channel["id"], text="n%d" % n)
    texts = []
    for page in client.conversations_history(channel=channel["id"], limit=7):  # the SDK follows next_cursor
        texts += [m["text"] for m in page["messages"]]
    assert len(texts) == 31 and texts[0] == "n29" and texts[-1] == "web down"
    assert client.conversations_replies(channel=channel["id"], ts=parent["ts"])["messages"][1]["text"] == "looking"
    client.conversations_archive(channel=channel["id"])
    with pytest.raises(SlackApiError) as raised:
        client.conversations_archive(channel=channel["id"])
    assert raised.value.response["error"] == "already_archived"
    assert client.users_lookupByEmail(email="user001@example.com")["user"]["id"] == "U10000001"


BUTTONS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*dt-P-1234* web down"}},
           {"type": "actions", "block_id": "selfheal_actions", "elements": [
               {"type": "button", "action_id": "selfheal_approve", "value": "dt-P-1234", "style": "primary",
                "text": {"type": "plain_text", "text": "Approve fix"}},
               {"type": "button", "action_id": "selfheal_ignore", "value": "dt-P-1234",
                "text": {"type": "plain_text", "text": "Ignore"}}]}]


def test_blocks_are_kept_on_messages_so_buttons_can_be_read(sandbox):
    cid = call(sandbox, "conversations.create", json={"name": "inc-blocks"})["channel"]["id"]
    posted = call(sandbox, "chat.postMessage", json={"channel": cid, "text": "web down", "blocks": BUTTONS})
    assert posted["message"]["blocks"] == BUTTONS
    form = call(sandbox, "chat.postMessage", data={"channel": cid, "text": "form", "blocks": __import__("json").dumps(BUTTONS)})
    assert form["message"]["blocks"] == BUTTONS  # a form body carries blocks as a JSON string
    history = call(sandbox, "conversations.history", params={"channel": cid}, http="GET")["messages"]
    assert [m["blocks"][1]["elements"][0]["action_id"] for m in history] == ["selfheal_approve", "selfheal_approve"]
    assert call(sandbox, "chat.postMessage", json={"channel": cid, "blocks": "{bad"})["error"] == "invalid_blocks_format"


def test_chat_update_contract(sandbox):
    cid = call(sandbox, "conversations.create", json={"name": "inc-update"})["channel"]["id"]
    ts = call(sandbox, "chat.postMessage", json={"channel": cid, "text": "web down", "blocks": BUTTONS})["ts"]
    decided = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approved by <@U0ONCALL01>"}}]
    updated = call(sandbox, "chat.update", json={"channel": cid, "ts": ts, "text": "approved", "blocks": decided})
    assert updated["ok"] and (updated["channel"], updated["ts"], updated["text"]) == (cid, ts, "approved")
    assert updated["message"]["blocks"] == decided
    # blocks only: the text stays; text only: the blocks are removed (Slack's documented behaviour)
    call(sandbox, "chat.update", json={"channel": cid, "ts": ts, "blocks": BUTTONS})
    message = call(sandbox, "conversations.history", params={"channel": cid}, http="GET")["messages"][0]
    assert (message["text"], message["blocks"]) == ("approved", BUTTONS)
    call(sandbox, "chat.update", data={"channel": cid, "ts": ts, "text": "resolved"})
    message = call(sandbox, "conversations.history", params={"channel": cid}, http="GET")["messages"][0]
    assert message["text"] == "resolved" and "blocks" not in message and message["edited"]["user"] == "U0SELFHEAL"
    assert call(sandbox, "chat.update", json={"channel": cid, "ts": "1.000001", "text": "x"})["error"] == "message_not_found"
    assert call(sandbox, "chat.update", json={"channel": "inc-update", "ts": ts, "text": "x"})["error"] == "channel_not_found"
    assert call(sandbox, "chat.update", json={"channel": cid, "ts": ts})["error"] == "no_text"
    assert call(sandbox, "chat.update", json={"channel": cid, "ts": ts, "text": "x"}, headers={})["error"] == "not_authed"
    user_ts = sandbox.call("POST", "/_sandbox/slack/messages", {"channel": cid, "user": "U0ONCALL01", "text": "mine"})["ts"][0]
    assert call(sandbox, "chat.update", json={"channel": cid, "ts": user_ts, "text": "x"})["error"] == "cant_update_message"
    reply = call(sandbox, "chat.postMessage", json={"channel": cid, "text": "in thread", "thread_ts": ts})["ts"]
    assert call(sandbox, "chat.update", json={"channel": cid, "ts": reply, "text": "edited reply"})["ok"]
    thread = call(sandbox, "conversations.replies", params={"channel": cid, "ts": ts}, http="GET")["messages"]
    assert thread[1]["text"] == "edited reply"


def test_usergroups_list_and_admin(sandbox):
    groups = call(sandbox, "usergroups.list", params={"include_users": "true"}, http="GET")["usergroups"]
    assert [(g["id"], g["handle"], g["users"]) for g in groups] == [("S0SREONCALL", "sre-oncall", ["U0ONCALL01", "U0ONCALL02"])]
    assert "users" not in call(sandbox, "usergroups.list", http="GET")["usergroups"][0]
    created = sandbox.call("POST", "/_sandbox/slack/usergroups", {"handle": "dba", "users": ["dba.one@example.com", "U0ONCALL04"]})
    assert created["users"] == ["U0ONCALL03", "U0ONCALL04"] and created["id"].startswith("S")
    assert len(call(sandbox, "usergroups.list", http="GET")["usergroups"]) == 2
    assert call(sandbox, "usergroups.list", json={"include_users": True})["error"] == "invalid_arguments"


def test_slack_sdk_updates_a_message_and_lists_user_groups(sandbox):
    client = WebClient(token=credentials.SLACK_TOKEN, base_url=sandbox.url + credentials.SLACK_PREFIX + "/")
    channel = client.conversations_create(name="inc-sdk-update")["channel"]
    posted = client.chat_postMessage(channel=channel["id"], text="web down", blocks=BUTTONS)
    client.chat_update(channel=channel["id"], ts=posted["ts"], text="approved by oncall-primary", blocks=[])
    message = client.conversations_history(channel=channel["id"])["messages"][0]
    assert message["text"] == "approved by oncall-primary" and "blocks" not in message
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=channel["id"], ts="1.000001", text="x")
    assert raised.value.response["error"] == "message_not_found"
    assert client.usergroups_list(include_users=True)["usergroups"][0]["users"] == ["U0ONCALL01", "U0ONCALL02"]
