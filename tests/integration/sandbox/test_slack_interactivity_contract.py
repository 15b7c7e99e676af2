"""Contract of the sandbox's Slack interactivity side (tests/sandbox/slack_interactivity.py): the requests it sends are
signed as Slack signs them (checked with slack_sdk's own SignatureVerifier), carry Slack's documented payload shapes,
wait at most Slack's 3 seconds for the answer, and response_url behaves as documented."""

import asyncio
import json
import time
import urllib.parse

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from sandbox import credentials

SIGNING_SECRET = "sandbox-app-signing-secret"
BUTTONS = [{"type": "section", "block_id": "summary", "text": {"type": "mrkdwn", "text": "*dt-P-1234* web down"},
            "accessory": {"type": "button", "action_id": "selfheal_status", "value": "dt-P-1234",
                          "text": {"type": "plain_text", "text": "Status"}}},
           {"type": "actions", "block_id": "selfheal_actions", "elements": [
               {"type": "button", "action_id": "selfheal_approve", "value": "dt-P-1234", "style": "primary",
                "text": {"type": "plain_text", "text": "Approve fix"}},
               {"type": "button", "action_id": "selfheal_ignore", "value": "dt-P-1234",
                "text": {"type": "plain_text", "text": "Ignore"}}]}]


class App(object):
    """The Slack app's request URL: verifies each request with slack_sdk and answers as told."""

    def __init__(self):
        self.requests = []
        self.verifier = SignatureVerifier(SIGNING_SECRET)
        self.status = 200
        self.hold = None  # an asyncio.Event the handler waits for (a slow app)

    async def handle(self, request):
        body = await request.read()
        self.requests.append({"headers": dict(request.headers), "body": body,
                              "verified": self.verifier.is_valid_request(body, dict(request.headers))})
        if self.hold is not None:
            await self.hold.wait()
        fields = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        if "command" in fields:
            return web.json_response({"response_type": "ephemeral", "text": "Received: " + fields["text"]}, status=self.status)
        return web.Response(status=self.status)


@pytest.fixture
async def app():
    receiver = App()
    application = web.Application()
    application.router.add_post("/slack/actions", receiver.handle)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = "http://127.0.0.1:%d/slack/actions" % runner.addresses[0][1]
    yield receiver
    if receiver.hold is not None:
        receiver.hold.set()
    await runner.cleanup()


async def admin(sandbox, method, path, body=None):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, sandbox.url + path, json=body) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)


async def slack_api(sandbox, method, body, http="POST"):
    headers = {"Authorization": "Bearer " + credentials.SLACK_TOKEN}
    async with aiohttp.ClientSession() as session:
        if http == "GET":
            async with session.get(sandbox.url + credentials.SLACK_PREFIX + "/" + method, params=body, headers=headers) as response:
                return await response.json()
        async with session.post(sandbox.url + credentials.SLACK_PREFIX + "/" + method, json=body, headers=headers) as response:
            return await response.json()


async def incident_channel(sandbox):
    channel = (await slack_api(sandbox, "conversations.create", {"name": "inc-dt-p-1234"}))["channel"]["id"]
    posted = await slack_api(sandbox, "chat.postMessage", {"channel": channel, "text": "web down", "blocks": BUTTONS})
    return channel, posted["ts"]


async def configure(sandbox, app):
    status, config = await admin(sandbox, "POST", "/_sandbox/slack/interactivity/config",
                                 {"url": app.url, "signing_secret": SIGNING_SECRET})
    assert status == 200 and config == {"url": app.url, "command_url": app.url, "signing_secret_set": True}


async def test_configuration_never_shows_the_secret_and_is_validated(sandbox, app):
    assert (await admin(sandbox, "POST", "/_sandbox/slack/click", {"channel": "x", "action_id": "a"}))[0] == 409
    assert (await admin(sandbox, "POST", "/_sandbox/slack/interactivity/config", {"url": "ftp://x"}))[0] == 400
    assert (await admin(sandbox, "POST", "/_sandbox/slack/interactivity/config", {"secret": "x"}))[0] == 400
    await configure(sandbox, app)
    status, shown = await admin(sandbox, "GET", "/_sandbox/slack/interactivity/config")
    assert SIGNING_SECRET not in json.dumps(shown)
    assert SIGNING_SECRET not in json.dumps((await admin(sandbox, "GET", "/_sandbox/state"))[1])


async def test_a_click_is_a_signed_block_actions_payload_from_an_existing_button(sandbox, app):
    await configure(sandbox, app)
    channel, ts = await incident_channel(sandbox)
    status, missing = await admin(sandbox, "POST", "/_sandbox/slack/click",
                                  {"channel": channel, "user": "U0ONCALL01", "action_id": "selfheal_fix"})
    assert status == 404 and "no message" in missing["error"] and app.requests == []
    status, clicked = await admin(sandbox, "POST", "/_sandbox/slack/click", {
        "channel": "inc-dt-p-1234", "user": "oncall.primary@example.com", "action_id": "selfheal_approve",
        "value": "dt-P-1234"})
    assert status == 200 and clicked["ok"] and clicked["delivery"]["status"] == 200 and clicked["delivery"]["body"] is None
    sent = app.requests[0]
    assert sent["verified"], "slack_sdk's SignatureVerifier rejected the sandbox's signature"
    assert sent["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert abs(int(sent["headers"]["X-Slack-Request-Timestamp"]) - time.time()) < 30
    fields = urllib.parse.parse_qs(sent["body"].decode(), strict_parsing=True)
    assert list(fields) == ["payload"]
    payload = json.loads(fields["payload"][0])
    assert payload["type"] == "block_actions" and payload["user"]["id"] == "U0ONCALL01"
    assert payload["user"]["username"] == "oncall-primary" and payload["team"]["id"] == "T0SANDBOX1"
    assert payload["channel"] == {"id": channel, "name": "inc-dt-p-1234"}
    assert payload["container"] == {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False}
    assert payload["message"]["ts"] == ts and payload["message"]["blocks"] == BUTTONS
    action = payload["actions"][0]
    assert (action["action_id"], action["value"], action["block_id"], action["type"]) == (
        "selfheal_approve", "dt-P-1234", "selfheal_actions", "button")
    assert float(action["action_ts"]) > 0 and len(payload["trigger_id"].split(".")) == 3
    assert payload["response_url"] == clicked["response_url"]
    # A section accessory button can be clicked too; another click has its own trigger_id.
    status, accessory = await admin(sandbox, "POST", "/_sandbox/slack/click",
                                    {"channel": channel, "user": "U0ONCALL02", "action_id": "selfheal_status"})
    second = json.loads(urllib.parse.parse_qs(app.requests[1]["body"].decode())["payload"][0])
    assert second["actions"][0]["block_id"] == "summary" and second["trigger_id"] != payload["trigger_id"]
    outbound = [o for o in sandbox.outbound() if o["url"] == app.url]
    assert [o["status"] for o in outbound] == [200, 200]


async def test_a_slash_command_is_signed_form_fields_and_its_answer_is_recorded(sandbox, app):
    await configure(sandbox, app)
    channel, dummy = await incident_channel(sandbox)
    status, typed = await admin(sandbox, "POST", "/_sandbox/slack/command", {
        "channel": channel, "user": "U0ONCALL02", "command": "/selfheal", "text": "note dt-P-1234 disk & logs"})
    assert status == 200 and typed["ok"]
    assert typed["delivery"]["body"] == {"response_type": "ephemeral", "text": "Received: note dt-P-1234 disk & logs"}
    sent = app.requests[0]
    assert sent["verified"]
    fields = dict(urllib.parse.parse_qsl(sent["body"].decode(), keep_blank_values=True))
    assert {k: fields[k] for k in ("command", "text", "user_id", "user_name", "channel_id", "channel_name", "team_id")} == {
        "command": "/selfheal", "text": "note dt-P-1234 disk & logs", "user_id": "U0ONCALL02", "user_name": "oncall-secondary",
        "channel_id": channel, "channel_name": "inc-dt-p-1234", "team_id": "T0SANDBOX1"}
    assert fields["response_url"] == typed["response_url"] and fields["trigger_id"]
    assert (await admin(sandbox, "POST", "/_sandbox/slack/command", {"channel": channel, "command": "selfheal"}))[0] == 400
    assert (await admin(sandbox, "POST", "/_sandbox/slack/command", {"channel": "nope", "command": "/selfheal"}))[0] == 404
    assert (await admin(sandbox, "POST", "/_sandbox/slack/command",
                        {"channel": channel, "user": "nobody", "command": "/selfheal"}))[0] == 404


async def test_an_app_slower_than_three_seconds_or_failing_is_an_error_for_the_user(sandbox, app):
    await configure(sandbox, app)
    channel, dummy = await incident_channel(sandbox)
    app.hold = asyncio.Event()
    started = time.monotonic()
    status, slow = await admin(sandbox, "POST", "/_sandbox/slack/command",
                               {"channel": channel, "command": "/selfheal", "text": "status"})
    assert slow["delivery"]["error"] == "operation_timeout" and 2.9 < time.monotonic() - started < 6
    app.hold.set()
    app.hold = None
    app.status = 503
    status, failed = await admin(sandbox, "POST", "/_sandbox/slack/command", {"channel": channel, "command": "/selfheal"})
    assert (failed["ok"], failed["delivery"]["status"], failed["delivery"]["error"]) == (False, 503, "dispatch_failed")
    status, click = await admin(sandbox, "POST", "/_sandbox/slack/click", {"channel": channel, "action_id": "selfheal_ignore"})
    assert (click["ok"], click["delivery"]["status"]) == (False, 503)


async def test_response_url_ephemeral_in_channel_replace_and_expiry(sandbox, app):
    await configure(sandbox, app)
    channel, ts = await incident_channel(sandbox)
    status, clicked = await admin(sandbox, "POST", "/_sandbox/slack/click",
                                  {"channel": channel, "user": "U0ONCALL01", "action_id": "selfheal_approve"})
    url = clicked["response_url"]
    async with aiohttp.ClientSession() as session:
        async def respond(body):
            async with session.post(url, json=body) as response:
                return response.status, await response.json()

        assert await respond({"text": "Refused: you may not approve dt-P-1234"}) == (200, {"ok": True})
        assert await respond({"response_type": "in_channel", "text": "Approved by oncall-primary"}) == (200, {"ok": True})
        decided = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approved by <@U0ONCALL01>"}}]
        assert await respond({"replace_original": True, "text": "approved", "blocks": decided}) == (200, {"ok": True})
        assert (await respond({}))[0] == 400
        assert (await respond({"response_type": "loud", "text": "x"}))[0] == 400
        assert await respond({"text": "4"}) == (200, {"ok": True})
        assert await respond({"text": "5"}) == (200, {"ok": True})
        assert await respond({"text": "6"}) == (404, {"ok": False, "error": "expired_url"})
        async with session.post(sandbox.url + "/_sandbox/slack/response/unknown", json={"text": "x"}) as response:
            assert response.status == 404
    history = (await slack_api(sandbox, "conversations.history", {"channel": channel}, http="GET"))["messages"]
    assert [m["text"] for m in history] == ["Approved by oncall-primary", "approved"]
    assert history[1]["ts"] == ts and history[1]["blocks"] == decided  # the clicked message was replaced
    status, interactions = await admin(sandbox, "GET", "/_sandbox/slack/interactions")
    responses = interactions[0]["responses"]
    assert [(r["response_type"], r["text"]) for r in responses][:2] == [
        ("ephemeral", "Refused: you may not approve dt-P-1234"), ("in_channel", "Approved by oncall-primary")]
    assert len(responses) == 5 and interactions[0]["user"] == "U0ONCALL01" and interactions[0]["kind"] == "click"
