"""selfheal.devops.slack_actions: Slack's request signature, button clicks and slash commands as events, delivery
guarantees and the allow-list, driven as ansible-rulebook drives a source (a real HTTP server, a real-sized queue)."""

import asyncio
import hashlib
import hmac
import json
import os
import re
import time
import urllib.parse

import aiohttp
import pytest
import yaml
from aiohttp import web

from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import _webhook, slack_actions

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the format of Slack's documentation example; any string works
PATH = "/slack/actions"

# Slack's published example ("Verifying requests from Slack", api.slack.com/authentication/verifying-requests-from-slack):
# signing secret, X-Slack-Request-Timestamp, the raw slash-command body and the X-Slack-Signature Slack sent with it.
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TIMESTAMP = "1531420618"
DOC_BODY = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
            b"channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
            b"response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
            b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def sign(body, secret=SECRET, stamp=None):
    """Slack's signing, written independently of the plumbing: v0= + hex HMAC-SHA256(secret, v0:ts:body)."""
    stamp = str(int(time.time())) if stamp is None else str(stamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + digest,
            "Content-Type": "application/x-www-form-urlencoded"}


def click(action="approve", key="dt-P-1234", user="U0ONCALL01", trigger="13345224609.738474920.8088930838d88f008e0",
          action_ts="1548426417.840180", action_id=None, channel=("C0INCIDENT", "inc-dt-p-1234"), kind="block_actions",
          response_url="https://hooks.slack.com/actions/T0SANDBOX1/1/abc", extra_actions=()):
    """A block_actions payload as Slack sends it for a button click (Block Kit reference, interaction payloads)."""
    button = {"type": "button", "action_id": action_id or "selfheal_" + action, "block_id": "selfheal_actions",
              "text": {"type": "plain_text", "text": action.title(), "emoji": True}, "action_ts": action_ts}
    if key is not None:
        button["value"] = key
    payload = {"type": kind, "team": {"id": "T0SANDBOX1", "domain": "sandbox"},
               "user": {"id": user, "username": "oncall-primary", "name": "oncall-primary", "team_id": "T0SANDBOX1"},
               "api_app_id": "A0SELFHEAL", "token": "legacy-verification-token",
               "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": channel[0],
                             "is_ephemeral": False},
               "trigger_id": trigger, "channel": {"id": channel[0], "name": channel[1]},
               "message": {"type": "message", "ts": "1700000000.000100", "text": "web down", "blocks": []},
               "response_url": response_url, "actions": [button] + list(extra_actions)}
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def command(text="approve dt-P-1234", user="U0ONCALL01", channel=("C0INCIDENT", "inc-dt-p-1234"), name="/selfheal",
            trigger="398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"):
    """A slash command as Slack sends it (form fields of the slash-command reference)."""
    return urllib.parse.urlencode({
        "token": "legacy-verification-token", "team_id": "T0SANDBOX1", "team_domain": "sandbox",
        "channel_id": channel[0], "channel_name": channel[1], "user_id": user, "user_name": "oncall-primary",
        "command": name, "text": text, "api_app_id": "A0SELFHEAL", "is_enterprise_install": "false",
        "response_url": "https://hooks.slack.com/commands/T0SANDBOX1/2/def", "trigger_id": trigger}).encode()


async def post(base, body, headers):
    async with aiohttp.ClientSession() as session:
        async with session.post(base + PATH, data=body, headers=headers) as response:
            return response.status, await response.read(), response.headers


def args(**extra):
    base = {"signing_secret": SECRET, "allowed_users": {"default": ["*"]}}
    base.update(extra)
    return base


@pytest.fixture
async def source(run_source):
    return await run_source(slack_actions.main, args())


# --- signature -----------------------------------------------------------------------------------

def test_slacks_documented_example_verifies_with_the_sources_signature_scheme():
    """The published vector, checked by the source's own authenticator (its clock set to the example's time)."""
    independent = "v0=" + hmac.new(DOC_SECRET.encode(), b"v0:" + DOC_TIMESTAMP.encode() + b":" + DOC_BODY,
                                   hashlib.sha256).hexdigest()
    assert independent == DOC_SIGNATURE
    config = slack_actions.SlackConfig(args(signing_secret=DOC_SECRET))
    webhook_config = _webhook.WebhookConfig(config.webhook_args({}), default_path=PATH)
    headers = {"X-Slack-Request-Timestamp": DOC_TIMESTAMP, "X-Slack-Signature": DOC_SIGNATURE}

    at_the_time = _webhook.Authenticator(webhook_config, clock=lambda: int(DOC_TIMESTAMP) + 10)
    assert at_the_time.check(headers, DOC_BODY) is None
    at_the_time.accepted(headers)
    assert "replayed" in at_the_time.check(headers, DOC_BODY)

    fresh = _webhook.Authenticator(webhook_config, clock=lambda: int(DOC_TIMESTAMP) + 10)
    assert fresh.check(headers, DOC_BODY.replace(b"roadrunner", b"coyote")) == "missing or invalid signature"
    assert fresh.check(dict(headers, **{"X-Slack-Signature": DOC_SIGNATURE.upper()}), DOC_BODY) == "missing or invalid signature"
    assert fresh.check(dict(headers, **{"X-Slack-Signature": DOC_SIGNATURE[3:]}), DOC_BODY) == "missing or invalid signature"
    five_minutes_later = _webhook.Authenticator(webhook_config, clock=lambda: int(DOC_TIMESTAMP) + 301)
    assert "outside the replay window" in five_minutes_later.check(headers, DOC_BODY)
    other_secret = slack_actions.SlackConfig(args(signing_secret="another-secret"))
    assert _webhook.Authenticator(_webhook.WebhookConfig(other_secret.webhook_args({}), default_path=PATH),
                                  clock=lambda: int(DOC_TIMESTAMP)).check(headers, DOC_BODY) == "missing or invalid signature"
    # The example body is a slash command Slack would send: the parser reads it (another command: no event).
    fields = _webhook.form_body("application/x-www-form-urlencoded", DOC_BODY)
    reply = slack_actions.Parser(slack_actions.SlackConfig(args(command="/webhook-collect"))).parse(fields)
    assert isinstance(reply, slack_actions.Reply) and "Usage: /webhook-collect" in reply.body["text"]


async def test_documented_body_signed_now_passes_the_live_server(run_source):
    running = await run_source(slack_actions.main, args(signing_secret=DOC_SECRET, command="/webhook-collect"))
    status, body, dummy = await post(running.base, DOC_BODY, sign(DOC_BODY, DOC_SECRET))
    assert status == 200 and json.loads(body)["response_type"] == "ephemeral"
    assert running.events() == []  # an empty command text is a request for help: nothing to act on


@pytest.mark.parametrize("case", ["stale", "future", "wrong_secret", "no_signature", "no_timestamp", "bad_timestamp",
                                  "tampered", "no_prefix"])
async def test_unverified_requests_are_401_and_emit_nothing(source, case):
    body = click()
    headers = sign(body)
    if case == "stale":
        headers = sign(body, stamp=int(time.time()) - 301)
    elif case == "future":
        headers = sign(body, stamp=int(time.time()) + 301)
    elif case == "wrong_secret":
        headers = sign(body, secret="not-the-signing-secret")
    elif case == "no_signature":
        del headers["X-Slack-Signature"]
    elif case == "no_timestamp":
        del headers["X-Slack-Request-Timestamp"]
    elif case == "bad_timestamp":
        headers["X-Slack-Request-Timestamp"] = "nan"
    elif case == "tampered":
        body = click(action="fix")
    elif case == "no_prefix":
        headers["X-Slack-Signature"] = headers["X-Slack-Signature"][3:]
    status, text, dummy = await post(source.base, body, headers)
    assert status == 401, text
    assert SECRET.encode() not in text
    assert source.events() == []


async def test_a_replayed_request_is_refused(source):
    body = click()
    headers = sign(body)
    assert (await post(source.base, body, headers))[0] == 200
    status, text, dummy = await post(source.base, body, headers)
    assert status == 401 and b"replayed" in text
    assert len(source.events()) == 1


# --- bad payloads --------------------------------------------------------------------------------

def _form(**fields):
    return urllib.parse.urlencode(fields).encode()


@pytest.mark.parametrize("body, content_type, expected, why", [
    (_form(payload="{not json"), None, 400, "not valid JSON"),
    (_form(payload="[1, 2]"), None, 400, "JSON object"),
    (_form(payload=json.dumps({"type": "block_actions", "actions": [{"action_id": "selfheal_approve", "value": "dt-P-1"}]})),
     None, 400, "payload.user"),
    (_form(payload=json.dumps({"type": "block_actions", "user": {"id": "U0ONCALL01"}, "actions": []})), None, 400, "actions"),
    (_form(payload=json.dumps({"user": {"id": "U0ONCALL01"}})), None, 400, "payload.type"),
    (click(action="frobnicate"), None, 400, "unknown action"),
    (click(key="'; rm -rf /"), None, 400, "not an incident key"),
    (click(key=None, channel=("C1", "general")), None, 400, "no incident key"),
    (click(action_id="selfheal_approve:dt-P-9"), None, 400, "different incidents"),
    (_form(hello="world"), None, 400, "neither"),
    (b"payload=a&payload=b", None, 400, "repeated"),
    (b"payload=%ff", None, 400, "UTF-8"),
    (b"\xff\xfe", None, 400, "UTF-8"),
    (b"just-text", None, 400, "form"),
    (b"&".join(b"f%d=1" % n for n in range(101)), None, 400, "more than 100"),
    (_form(command="/selfheal", text="approve dt-P-1", channel_id="C1", trigger_id="t"), None, 400, "user_id"),
    (_form(command="/selfheal", text="x" * 4001, user_id="U1", channel_id="C1", trigger_id="t"), None, 400, "text"),
    (json.dumps({"payload": {}}).encode(), "application/json", 415, "x-www-form-urlencoded"),
    (b"x" * 300000, None, 413, "larger"),
])
async def test_bad_payloads_are_4xx_and_emit_nothing(source, body, content_type, expected, why):
    headers = sign(body)
    if content_type:
        headers["Content-Type"] = content_type
    status, text, dummy = await post(source.base, body, headers)
    assert status == expected, text
    assert why in json.loads(text)["error"]
    assert source.events() == []


# --- button clicks and slash commands ------------------------------------------------------------

async def test_a_button_click_is_one_normalised_event_answered_with_an_empty_200(source):
    body = click()
    status, text, dummy = await post(source.base, body, sign(body))
    assert (status, text) == (200, b"")
    events = source.events()
    assert len(events) == 1
    slack = events[0]["slack"]
    received_at = slack.pop("received_at")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", received_at)
    assert slack == {
        "kind": "button", "via": "button", "action": "approve", "requested_action": "approve", "reason": None,
        "incident_key": "dt-P-1234", "user_id": "U0ONCALL01", "user_email": None, "user_name": "oncall-primary",
        "team_id": "T0SANDBOX1", "channel_id": "C0INCIDENT", "channel_name": "inc-dt-p-1234", "text": None,
        "response_url": "https://hooks.slack.com/actions/T0SANDBOX1/1/abc",
        "trigger_id": "13345224609.738474920.8088930838d88f008e0", "message_ts": "1700000000.000100",
        "action_ts": "1548426417.840180", "retry_num": None}


async def test_button_key_conventions(source):
    """value holds the key; an action_id suffix may repeat it (unique action ids); the channel name is the fallback."""
    bodies = [click(action="fix", key="dt-p-77", trigger="a"),
              click(action="escalate", key=None, action_id="selfheal_escalate:dt-P-88", trigger="b"),
              click(action="ignore", key=None, channel=("C2", "inc-dt-p-99"), trigger="c"),
              click(action="approve", action_id="other_app_button", trigger="d")]
    for body in bodies:
        assert (await post(source.base, body, sign(body)))[:2] == (200, b"")
    assert [(e["slack"]["action"], e["slack"]["incident_key"]) for e in source.events()] == [
        ("fix", "dt-P-77"), ("escalate", "dt-P-88"), ("ignore", "dt-P-99")]


async def test_other_interactions_are_answered_without_an_event(source):
    for body in (click(kind="view_submission"), click(kind="shortcut"), _form(ssl_check="1", token="x")):
        assert (await post(source.base, body, sign(body)))[:2] == (200, b"")
    assert source.events() == []


async def test_a_slash_command_is_one_event_answered_with_an_ephemeral_message(source):
    body = command("approve dt-P-1234")
    status, text, headers = await post(source.base, body, sign(body))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(text) == {"response_type": "ephemeral", "text": "Received: approve for dt-P-1234."}
    events = source.events()
    assert len(events) == 1
    slack = events[0]["slack"]
    assert (slack["kind"], slack["via"], slack["action"], slack["incident_key"], slack["user_id"], slack["channel_id"],
            slack["text"], slack["response_url"], slack["message_ts"]) == (
        "command", "command", "approve", "dt-P-1234", "U0ONCALL01", "C0INCIDENT", None,
        "https://hooks.slack.com/commands/T0SANDBOX1/2/def", None)


async def test_slash_command_forms(source):
    cases = [
        ("note dt-P-5 the disk filled  from /var/log", "inc-other", ("note", "dt-P-5", "the disk filled  from /var/log")),
        ("note restarted by hand", "inc-dt-p-1234", ("note", "dt-P-1234", "restarted by hand")),
        ("FIX", "inc-dt-p-42", ("fix", "dt-P-42", None)),
        ("escalate dt-P-7 needs the DB team", "random", ("escalate", "dt-P-7", "needs the DB team")),
    ]
    for number, (text, channel, dummy) in enumerate(cases):
        body = command(text, channel=("C9", channel), trigger="trigger-%d" % number)
        status, answer, dummy_headers = await post(source.base, body, sign(body))
        assert status == 200 and json.loads(answer)["text"].startswith("Received: ")
    assert [(e["slack"]["action"], e["slack"]["incident_key"], e["slack"]["text"]) for e in source.events()] == [
        expected for dummy, dummy_channel, expected in cases]


@pytest.mark.parametrize("text, channel, answer", [
    ("", "inc-dt-p-1", "Usage: /selfheal <approve|ignore|fix|escalate|status|note>"),
    ("help", "inc-dt-p-1", "Usage:"),
    ("reboot dt-P-1", "inc-dt-p-1", "Unknown action 'reboot'"),
    ("approve", "general", "Which incident?"),
    ("note", "inc-dt-p-1", "Nothing to note"),
])
async def test_slash_commands_that_ask_for_nothing_get_help_and_emit_nothing(source, text, channel, answer):
    body = command(text, channel=("C1", channel))
    status, reply, dummy = await post(source.base, body, sign(body))
    assert status == 200 and answer in json.loads(reply)["text"]
    assert json.loads(reply)["response_type"] == "ephemeral"
    assert source.events() == []


async def test_another_slash_command_is_told_and_emits_nothing(source):
    body = command(name="/deploy")
    status, reply, dummy = await post(source.base, body, sign(body))
    assert status == 200 and "/selfheal only" in json.loads(reply)["text"]
    assert source.events() == []


# --- delivery guarantees -------------------------------------------------------------------------

async def test_a_slack_retry_of_a_handed_over_click_emits_nothing(source):
    body = click()
    assert (await post(source.base, body, sign(body)))[0] == 200
    later = sign(body, stamp=int(time.time()) + 1)  # Slack signs every delivery again
    later["X-Slack-Retry-Num"] = "1"
    later["X-Slack-Retry-Reason"] = "http_timeout"
    assert (await post(source.base, body, later))[:2] == (200, b"")
    slash = command()
    assert (await post(source.base, slash, sign(slash)))[0] == 200
    again = sign(slash, stamp=int(time.time()) + 2)
    again["X-Slack-Retry-Num"] = "1"
    status, reply, dummy = await post(source.base, slash, again)
    assert status == 200 and json.loads(reply)["text"] == "Already received: approve for dt-P-1234."
    assert [e["slack"]["via"] for e in source.events()] == ["button", "command"]


async def test_a_busy_rules_engine_gets_503_and_the_users_next_attempt_is_delivered(run_source, rules_engine):
    engine = rules_engine()
    engine.pause()
    running = await run_source(slack_actions.main, args(handoff_timeout=0.5), engine=engine)
    first = click(trigger="first")
    assert (await post(running.base, first, sign(first)))[0] == 200  # fills ansible-rulebook's queue of one
    second = click(action="fix", trigger="second")
    started = asyncio.get_running_loop().time()
    status, dummy, headers = await post(running.base, second, sign(second))
    waited = asyncio.get_running_loop().time() - started
    assert (status, headers.get("Retry-After")) == (503, "1") and 0.4 < waited < 2.5  # inside Slack's 3 s
    engine.resume()
    retried = sign(second, stamp=int(time.time()) + 1)
    retried["X-Slack-Retry-Num"] = "1"
    assert (await post(running.base, second, retried))[0] == 200  # not a duplicate: it was never handed over
    assert [e["slack"]["action"] for e in running.events()] == ["approve", "fix"]


async def test_the_same_click_delivered_twice_at_once_is_one_event(source):
    body = click()
    results = await asyncio.gather(post(source.base, body, sign(body)), post(source.base, body, sign(body, stamp=int(time.time()) - 1)))
    assert sorted(r[0] for r in results) == [200, 200]
    assert len(source.events()) == 1


# --- authorization -------------------------------------------------------------------------------

async def test_a_user_not_on_the_allow_list_is_refused_and_the_refusal_is_an_event(run_source):
    running = await run_source(slack_actions.main, args(allowed_users={"fix": ["U0ONCALL01"], "approve": ["U0ONCALL02"]}))
    allowed = command("fix dt-P-1234", user="U0ONCALL01", trigger="ok")
    status, reply, dummy = await post(running.base, allowed, sign(allowed))
    assert json.loads(reply)["text"] == "Received: fix for dt-P-1234."
    refused = command("fix dt-P-1234", user="U10000001", trigger="no")
    status, reply, dummy = await post(running.base, refused, sign(refused))
    assert status == 200
    text = json.loads(reply)["text"]
    assert text.startswith("Refused: you may not fix dt-P-1234") and "Nothing was run" in text
    nobody = command("ignore dt-P-1234", user="U0ONCALL01", trigger="nobody")  # no entry, no default
    assert "nobody may ignore" in json.loads((await post(running.base, nobody, sign(nobody)))[1])["text"]
    anyone = command("status dt-P-1234", user="U10000001", trigger="status")  # open action
    assert json.loads((await post(running.base, anyone, sign(anyone)))[1])["text"].startswith("Received")
    events = [e["slack"] for e in running.events()]
    assert [(e["kind"], e["action"], e["requested_action"], e["user_id"]) for e in events] == [
        ("command", "fix", "fix", "U0ONCALL01"), ("refused", None, "fix", "U10000001"),
        ("refused", None, "ignore", "U0ONCALL01"), ("command", "status", "status", "U10000001")]
    assert events[1]["reason"] == "not on the allow-list for fix"


async def test_a_refused_button_click_is_told_through_its_response_url(run_source, aiohttp_server_factory):
    received = []
    told = asyncio.Event()

    async def response_url(request):
        received.append((request.path, await request.json()))
        told.set()
        return web.Response(text="ok")

    server = await aiohttp_server_factory(response_url)
    running = await run_source(slack_actions.main, args(allowed_users={"approve": ["U0ONCALL02"]},
                                                        response_url_prefix=server + "/actions/"))
    body = click(user="U0ONCALL01", response_url=server + "/actions/T0SANDBOX1/1/abc")
    assert (await post(running.base, body, sign(body)))[:2] == (200, b"")
    await asyncio.wait_for(told.wait(), 10)
    assert received[0][0] == "/actions/T0SANDBOX1/1/abc"
    assert received[0][1]["response_type"] == "ephemeral" and received[0][1]["replace_original"] is False
    assert received[0][1]["text"].startswith("Refused: you may not approve dt-P-1234")
    assert [e["slack"]["kind"] for e in running.events()] == ["refused"]
    # A response_url outside the prefix is never called (the refusal is still an event).
    elsewhere = click(user="U0ONCALL01", trigger="other", response_url="http://169.254.169.254/latest")
    assert (await post(running.base, elsewhere, sign(elsewhere)))[0] == 200
    assert len(received) == 1 and [e["slack"]["kind"] for e in running.events()] == ["refused"]


@pytest.fixture
async def aiohttp_server_factory():
    runners = []

    async def start(handler):
        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return "http://127.0.0.1:%d" % runner.addresses[0][1]

    yield start
    for runner in runners:
        await runner.cleanup()


# --- arguments and documentation -----------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    ({"signing_secret": None}, "signing_secret (or SLACK_SIGNING_SECRET) is required"),
    ({"alowed_users": {}}, "unknown argument alowed_users (did you mean allowed_users?)"),
    ({"allowed_users": {"fix": ["ops@example.com"]}}, "need api_token"),
    ({"allowed_users": {"fix": ["not a user"]}}, "is no Slack user id"),
    ({"allowed_users": {"reboot": ["*"]}}, "unknown action 'reboot'"),
    ({"allowed_users": ["*"]}, "must be a dict"),
    ({"handoff_timeout": 5}, "handoff_timeout must be between"),
    ({"handoff_timeout": 2, "lookup_timeout": 1}, "at most 2.5 s"),
    ({"command": "selfheal"}, "command must start with /"),
    ({"incident_key_pattern": "("}, "not a regular expression"),
    ({"actions": ["approve", "help"]}, "help is the slash command's own answer"),
    ({"port": 70000}, "port must be between"),
])
async def test_bad_arguments_fail_before_listening(bad, message, monkeypatch):
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    monkeypatch.delenv("SLACK_TOKEN", raising=False)
    given = args(**bad)
    given = {k: v for k, v in given.items() if v is not None}
    with pytest.raises(_webhook.ConfigError) as info:
        await slack_actions.main(asyncio.Queue(), given)
    assert message in str(info.value)
    assert SECRET not in str(info.value)


def test_documentation_examples_and_every_argument_read():
    doc = yaml.safe_load(slack_actions.DOCUMENTATION)
    assert doc["short_description"] and doc["description"]
    for option, spec in doc["options"].items():
        assert spec.get("description"), option
        assert spec.get("type") in ("str", "int", "bool", "list", "path", "dict", "float"), option
    examples = yaml.safe_load(slack_actions.EXAMPLES)
    assert examples and all("selfheal.devops.slack_actions" in str(play["sources"]) for play in examples)
    with open(slack_actions.__file__) as handle:
        read = set(re.findall(r'args(?:\.get\(|, )"([a-z_]+)"', handle.read()))
    assert read <= set(doc["options"]) and set(doc["options"]) == set(slack_actions.ARGUMENTS)
    config = slack_actions.SlackConfig(args())
    assert set(config.webhook_args({})) >= {"hmac_secret", "hmac_header", "hmac_prefix", "hmac_timestamp_header",
                                            "hmac_message_prefix", "replay_window", "handoff_timeout"}
    for option in ("handoff_timeout", "lookup_timeout", "replay_window", "max_body_bytes", "retry_after", "port"):
        assert str(doc["options"][option]["default"]) in open(slack_actions.__file__).read(), option
    assert os.path.basename(slack_actions.__file__) == "slack_actions.py"


async def test_health_tells_whether_the_rules_engine_waits_for_events(run_source, rules_engine):
    """ansible-rulebook starts its rules engine after the sources: until it waits on the queue a click gets 503."""
    engine = rules_engine()
    running = await run_source(slack_actions.main, args(), engine=engine)

    async def health():
        async with aiohttp.ClientSession() as session:
            async with session.get(running.base + PATH + "/health") as response:
                return await response.json()

    ready = await health()
    assert ready["status"] == "ok" and ready["engine_waiting"] is True and 0 <= ready["engine_lag"] < 1
    engine.pause()
    for number in range(2):  # the first is taken by the get() the engine was already waiting in; the second waits
        body = click(trigger="t%d" % number)
        assert (await post(running.base, body, sign(body)))[0] == 200
    busy = await health()
    assert busy["engine_waiting"] is False and busy["pending"] == 1
