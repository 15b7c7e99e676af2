"""Slack's side of an app's interactivity and slash commands: signed deliveries to the app's request URL, and the
`response_url` an app answers through.

Slack sends a button click (`block_actions`) as `application/x-www-form-urlencoded` with one `payload` field holding
the JSON interaction payload, and a slash command as form fields (`command`, `text`, `user_id`, `channel_id`,
`response_url`, `trigger_id`, ...). Each request carries `X-Slack-Request-Timestamp` and `X-Slack-Signature:
v0=<hex HMAC-SHA256 of "v0:" + timestamp + ":" + raw body>` with the app's signing secret ("Verifying requests from
Slack"). Slack waits 3 seconds for the answer, then shows the user an error (`operation_timeout`) and drops the
connection; a non-200 answer is shown as an error too (`dispatch_failed` for a slash command [U: the exact text the
user sees]). Slack does not retry interactions or slash commands.

Admin routes (the sandbox plays Slack and the person clicking):
- `POST /_sandbox/slack/interactivity/config` `{"url", "signing_secret", "command_url"}`: the app's request URLs
  (interactivity, and the slash command's, `command_url` defaulting to `url`); `GET` shows them (never the secret).
- `POST /_sandbox/slack/click` `{"channel": id or name, "user": id or e-mail, "action_id", "value", "message_ts"}`:
  the user clicks the button with that `action_id` (and `value`, when given) on a message of the channel (the one at
  `message_ts`, else the newest carrying such a button: a button must exist to be clicked, as in Slack; 404 else).
- `POST /_sandbox/slack/command` `{"channel", "user", "command", "text"}`: the user types a slash command.
  Both deliver one signed request and answer, once it was answered or after 3 s, `{"ok", "interaction", "delivery":
  {"status", "error", "body", "elapsed"}, "response_url"}`: `body` is what the app answered (the ephemeral message of
  a slash command, shown to the user by Slack).
- `POST /_sandbox/slack/response/{id}`: the `response_url` of an interaction. JSON `{"text", "blocks",
  "response_type": "ephemeral" (default) | "in_channel", "replace_original", "delete_original", "thread_ts"}`; at most 5
  uses within 30 minutes, then 404 `{"ok": false, "error": "expired_url"}` [U: Slack documents the limits, not the
  answer]; `in_channel` posts to the channel as the app, `replace_original`/`delete_original` change the clicked
  message; answers `{"ok": true}` [U].
- `GET /_sandbox/slack/interactions`: every interaction (kind, user, channel, action or command, delivery, responses).
State: `sandbox.state["slack_interactivity"]`; deliveries are also listed in `GET /_sandbox/outbound` (with `response`).
"""

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse

from aiohttp import ClientSession, ClientTimeout, web

from sandbox import slack as slack_api
from sandbox.core import SANDBOX

PREFIX = "/_sandbox/slack/interactivity"
ANSWER_WITHIN = 3.0        # Slack's limit for the app's answer
RESPONSE_URL_USES = 5      # "up to 5 times within 30 minutes"
RESPONSE_URL_LIFETIME = 1800.0
APP_ID = "A0SELFHEAL"
VERIFICATION_TOKEN = "sandbox-deprecated-verification-token"  # Slack still sends the deprecated token field


SESSION = web.AppKey("slack_interactivity_session", ClientSession)


class Secret(object):
    """The signing secret, kept out of every dump (GET /_sandbox/state shows <redacted>)."""

    def __init__(self, value):
        self.value = value

    def __str__(self):
        return "<redacted>"

    __repr__ = __str__


def seed(sandbox):
    sandbox.state["slack_interactivity"] = {"config": {"url": None, "command_url": None, "signing_secret": None},
                                            "interactions": []}


def state(request):
    return request.app[SANDBOX].state["slack_interactivity"]


def admin_error(status, message):
    return web.json_response({"error": message}, status=status)


def signed_headers(secret, body, stamp=None):
    """Slack's request signature for body (bytes), as Slack computes it."""
    stamp = str(int(time.time()) if stamp is None else stamp)
    digest = hmac.new(secret.encode("utf-8"), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + digest,
            "Content-Type": "application/x-www-form-urlencoded"}


def trigger_id():
    return "%d.%d.%s" % (int(time.time() * 1000), secrets.randbelow(10 ** 11), secrets.token_hex(16))


async def _json(request):
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _user(slack, ident):
    ident = str(ident or "")
    return next((u for u in slack["users"].values()
                 if u["id"] == ident or (ident and u["profile"].get("email", "").lower() == ident.lower())), None)


def _buttons(message):
    """Every button of a message's blocks (actions blocks and section accessories)."""
    for block in message.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("type") == "button":
                yield block.get("block_id"), element


def _find_button(messages, action_id, value, message_ts):
    for message in reversed(messages):
        if message_ts and message["ts"] != message_ts:
            continue
        for block_id, button in _buttons(message):
            if button.get("action_id") == action_id and (value is None or button.get("value") == value):
                return message, block_id, button
    return None, None, None


# --- admin: configuration -------------------------------------------------------------------------

async def admin_config(request):
    config = state(request)["config"]
    if request.method == "POST":
        body = await _json(request)
        if body is None:
            return admin_error(400, "expected a JSON object")
        unknown = sorted(set(body) - set(config))
        if unknown:
            return admin_error(400, "unknown settings: %s" % unknown)
        for key in ("url", "command_url"):
            if body.get(key) is not None and not str(body[key]).startswith(("http://", "https://")):
                return admin_error(400, "%s must be an http(s) URL" % key)
        if "signing_secret" in body and (not isinstance(body["signing_secret"], str) or not body["signing_secret"]):
            return admin_error(400, "signing_secret must be a non-empty string")
        config.update(body)
        if body.get("signing_secret"):
            config["signing_secret"] = Secret(body["signing_secret"])
    return web.json_response({"url": config["url"], "command_url": config["command_url"] or config["url"],
                              "signing_secret_set": bool(config["signing_secret"])})


# --- delivery --------------------------------------------------------------------------------------

async def _deliver(request, url, form, record):
    """POST the signed form to the app and wait for its answer, as Slack does (3 s, then the user sees an error)."""
    sandbox = request.app[SANDBOX]
    config = state(request)["config"]
    body = urllib.parse.urlencode(form).encode()
    headers = signed_headers(config["signing_secret"].value, body)
    outbound = dict(url=url, time=time.time(), payload=record["sent"], status=None, error=None, response=None)
    started = time.monotonic()
    session = request.app[SESSION]
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            async with session.post(url, data=body, headers=headers) as response:
                outbound["status"] = response.status
                text = (await response.read()).decode("utf-8", "replace")[:20000]
                try:
                    outbound["response"] = json.loads(text) if text else None
                except ValueError:
                    outbound["response"] = text
    except TimeoutError:
        outbound["error"] = "operation_timeout"
    except Exception as exc:  # noqa: BLE001 - recorded for the test to see, as Slack shows the user an error
        outbound["error"] = "%s: %s" % (type(exc).__name__, exc)
    outbound["elapsed"] = round(time.monotonic() - started, 3)
    sandbox.outbound.append(outbound)
    if outbound["error"] is None and outbound["status"] != 200:
        outbound["error"] = "dispatch_failed" if record["kind"] == "command" else "failed"
    record["delivery"] = {"status": outbound["status"], "error": outbound["error"], "body": outbound["response"],
                          "elapsed": outbound["elapsed"]}
    return record["delivery"]


def _new_interaction(request, kind, user, channel, sent, message_ts=None):
    sandbox = request.app[SANDBOX]
    interactions = state(request)["interactions"]
    ident = "%d%s" % (sandbox.next_id(), secrets.token_hex(8))
    origin = sandbox.public_url or "%s://%s" % (request.scheme, request.host)
    record = {"id": ident, "kind": kind, "user": user["id"], "channel": channel["id"], "message_ts": message_ts,
              "sent": sent, "created": time.time(), "uses": 0, "responses": [], "delivery": None,
              "response_url": "%s/_sandbox/slack/response/%s" % (origin, ident)}
    interactions.append(record)
    return record


def _common(request, body):
    """(slack state, user, channel) or an error response."""
    slack = request.app[SANDBOX].state.get("slack")
    if slack is None:
        return None, None, None, admin_error(409, "the Slack service is not loaded")
    config = state(request)["config"]
    if not config["url"] or not config["signing_secret"]:
        return None, None, None, admin_error(409, "configure the app first: POST %s/config {url, signing_secret}" % PREFIX)
    user = _user(slack, body.get("user") or "U0ONCALL01")
    if user is None:
        return None, None, None, admin_error(404, "no such user %r" % body.get("user"))
    channel = slack_api.find_channel(slack, body.get("channel"))
    if channel is None:
        return None, None, None, admin_error(404, "no such channel %r" % body.get("channel"))
    return slack, user, channel, None


async def admin_click(request):
    body = await _json(request)
    if body is None or not isinstance(body.get("action_id"), str):
        return admin_error(400, "expected {channel, user, action_id, value?, message_ts?}")
    slack, user, channel, error = _common(request, body)
    if error is not None:
        return error
    value = body.get("value")
    message, block_id, button = _find_button(slack["messages"][channel["id"]], body["action_id"],
                                             None if value is None else str(value), body.get("message_ts"))
    if message is None:
        return admin_error(404, "no message in #%s carries a button with action_id %r%s" % (
            channel["name"], body["action_id"], "" if value is None else " and value %r" % value))
    action = {"type": "button", "action_id": button["action_id"], "block_id": block_id or "",
              "text": button.get("text") or {"type": "plain_text", "text": button["action_id"]},
              "action_ts": "%.6f" % time.time()}
    if "value" in button:
        action["value"] = button["value"]
    if "style" in button:
        action["style"] = button["style"]
    payload = {"type": "block_actions",
               "user": {"id": user["id"], "username": user["name"], "name": user["name"], "team_id": slack["team_id"]},
               "api_app_id": APP_ID, "token": VERIFICATION_TOKEN,
               "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel["id"],
                             "is_ephemeral": False},
               "trigger_id": trigger_id(), "team": {"id": slack["team_id"], "domain": "sandbox"},
               "enterprise": None, "is_enterprise_install": False,
               "channel": {"id": channel["id"], "name": channel["name"]},
               "message": message, "state": {"values": {}}, "actions": [action]}
    record = _new_interaction(request, "click", user, channel, None, message_ts=message["ts"])
    payload["response_url"] = record["response_url"]
    record["sent"] = payload
    delivery = await _deliver(request, state(request)["config"]["url"], {"payload": json.dumps(payload)}, record)
    return web.json_response({"ok": delivery["error"] is None, "interaction": record["id"], "delivery": delivery,
                              "response_url": record["response_url"], "trigger_id": payload["trigger_id"]})


async def admin_command(request):
    body = await _json(request)
    if body is None or not isinstance(body.get("command"), str) or not body["command"].startswith("/"):
        return admin_error(400, "expected {channel, user, command: /name, text}")
    slack, user, channel, error = _common(request, body)
    if error is not None:
        return error
    record = _new_interaction(request, "command", user, channel, None)
    form = {"token": VERIFICATION_TOKEN, "team_id": slack["team_id"], "team_domain": "sandbox",
            "channel_id": channel["id"], "channel_name": channel["name"], "user_id": user["id"],
            "user_name": user["name"], "command": body["command"], "text": str(body.get("text") or ""),
            "api_app_id": APP_ID, "is_enterprise_install": "false", "response_url": record["response_url"],
            "trigger_id": trigger_id()}
    record["sent"] = form
    config = state(request)["config"]
    delivery = await _deliver(request, config["command_url"] or config["url"], form, record)
    return web.json_response({"ok": delivery["error"] is None, "interaction": record["id"], "delivery": delivery,
                              "response_url": record["response_url"], "trigger_id": form["trigger_id"]})


# --- response_url --------------------------------------------------------------------------------

def _expired():
    return web.json_response({"ok": False, "error": "expired_url"}, status=404)


async def response_url(request):
    sandbox = request.app[SANDBOX]
    record = next((r for r in state(request)["interactions"] if r["id"] == request.match_info["id"]), None)
    if record is None or time.time() - record["created"] > RESPONSE_URL_LIFETIME or record["uses"] >= RESPONSE_URL_USES:
        return _expired()
    body = await _json(request)
    if body is None:
        return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
    kind = body.get("response_type", "ephemeral")
    if kind not in ("ephemeral", "in_channel"):
        return web.json_response({"ok": False, "error": "invalid_response_type"}, status=400)
    blocks, code = slack_api.parse_blocks(body)
    if code:
        return web.json_response({"ok": False, "error": code}, status=400)
    if not body.get("text") and not blocks and not body.get("delete_original"):
        return web.json_response({"ok": False, "error": "no_text"}, status=400)
    slack = sandbox.state["slack"]
    messages = slack["messages"].get(record["channel"], [])
    original = next((m for m in messages if m["ts"] == record["message_ts"]), None) if record["message_ts"] else None
    if (body.get("replace_original") or body.get("delete_original")) and original is None:
        return web.json_response({"ok": False, "error": "message_not_found"}, status=404)
    record["uses"] += 1
    entry = {"response_type": kind, "text": body.get("text"), "blocks": blocks, "time": time.time(),
             "replace_original": bool(body.get("replace_original")), "delete_original": bool(body.get("delete_original")),
             "thread_ts": body.get("thread_ts")}
    record["responses"].append(entry)
    if body.get("delete_original"):
        messages.remove(original)
    elif body.get("replace_original"):
        original["text"] = str(body.get("text") or "")
        if blocks is not None:
            original["blocks"] = blocks
        else:
            original.pop("blocks", None)
    elif kind == "in_channel":
        channel = slack["channels"][record["channel"]]
        message, code = slack_api.post(slack, channel, slack["bot_user"], {"text": body.get("text"), "blocks": blocks,
                                                                           "thread_ts": body.get("thread_ts")})
        if code:
            return web.json_response({"ok": False, "error": code}, status=400)
        entry["ts"] = message["ts"]
    return web.json_response({"ok": True})


async def admin_interactions(request):
    interactions = state(request)["interactions"]
    return web.json_response([dict(r) for r in interactions])


def setup(sandbox, app):
    sandbox.add_seeder(seed)

    async def open_session(app_):
        app_[SESSION] = ClientSession(timeout=ClientTimeout(total=ANSWER_WITHIN + 1))

    async def close_session(app_):
        await app_[SESSION].close()

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", PREFIX + "/config", admin_config)
    app.router.add_post("/_sandbox/slack/click", admin_click)
    app.router.add_post("/_sandbox/slack/command", admin_command)
    app.router.add_post("/_sandbox/slack/response/{id}", response_url)
    app.router.add_get("/_sandbox/slack/interactions", admin_interactions)
