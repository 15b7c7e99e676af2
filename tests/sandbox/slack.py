"""Slack Web API (the methods an incident channel needs), as `https://slack.com/api/{method}` behaves.

Mounted at PREFIX (`/slack/api`): `POST|GET /slack/api/{method}`. Auth: `Authorization: Bearer <SLACK_TOKEN>`, or
a `token` field in a form body (never in a JSON body, as Slack). Errors are HTTP 200 `{"ok": false, "error": ...}`;
rate limits are HTTP 429 + `Retry-After` + `{"ok": false, "error": "ratelimited"}` (inject them with
/_sandbox/faults, per method path). Read methods take query or form parameters; write methods take form or JSON.
Cursor pagination (`response_metadata.next_cursor`, "" at the end). State: sandbox.state["slack"].
Messages keep their Block Kit `blocks` as posted (a test reads the buttons from conversations.history); chat.update
replaces text and blocks as Slack documents it. User groups (`usergroups.list`) are seeded with `@sre-oncall`.
Admin: `POST /_sandbox/slack/messages` posts as a user (a responder chatting), one message or a list;
`POST /_sandbox/slack/usergroups` creates or replaces a user group.
"""

import base64
import json
import re
import time

from aiohttp import web

from sandbox import credentials
from sandbox.core import SANDBOX

PREFIX = credentials.SLACK_PREFIX
TEAM_ID = "T0SANDBOX1"
BOT_ID = "U0SELFHEAL"
NAME_CHARS = re.compile(r"^[a-z0-9_-]+$")
READ_METHODS = {"auth.test", "conversations.history", "conversations.replies", "conversations.list",
                "conversations.members", "conversations.info", "users.lookupByEmail", "users.info", "usergroups.list"}
# The xMatters people of the on-call sandbox, so that an on-call responder can be invited by e-mail.
ONCALL_PEOPLE = ("oncall.primary", "oncall.secondary", "dba.one", "dba.two")
SEEDED_USERS = 300


def seed(sandbox):
    users = {BOT_ID: user_record(BOT_ID, "selfheal", None, bot=True)}
    for number, name in enumerate(ONCALL_PEOPLE, start=1):
        uid = "U0ONCALL%02d" % number
        users[uid] = user_record(uid, name.replace(".", "-"), "%s@example.com" % name)
    for number in range(1, SEEDED_USERS + 1):
        uid = "U1%07d" % number
        users[uid] = user_record(uid, "user%03d" % number, "user%03d@example.com" % number)
    groups = {"S0SREONCALL": usergroup_record("S0SREONCALL", "sre-oncall", "SRE on call", ["U0ONCALL01", "U0ONCALL02"])}
    sandbox.state["slack"] = {"team_id": TEAM_ID, "bot_user": BOT_ID, "users": users, "channels": {},
                              "messages": {}, "threads": {}, "last_ts": 0.0, "usergroups": groups}


def usergroup_record(gid, handle, name, members):
    now = int(time.time())
    return {"id": gid, "team_id": TEAM_ID, "is_usergroup": True, "is_subteam": True, "name": name, "description": "",
            "handle": handle, "is_external": False, "date_create": now, "date_update": now, "date_delete": 0,
            "auto_type": None, "auto_provision": False, "created_by": BOT_ID, "updated_by": BOT_ID, "deleted_by": None,
            "prefs": {"channels": [], "groups": []}, "users": list(members), "user_count": len(members)}


def user_record(uid, name, email, bot=False):
    profile = {"display_name": name, "real_name": name.replace("-", " ").title()}
    if email:
        profile["email"] = email
    return {"id": uid, "team_id": TEAM_ID, "name": name, "real_name": profile["real_name"], "deleted": False,
            "is_bot": bot, "tz": "Europe/Vienna", "profile": profile}


def state(request):
    return request.app[SANDBOX].state["slack"]


def ok(**fields):
    body = {"ok": True}
    body.update(fields)
    return web.json_response(body)


def fail(code, **fields):
    body = {"ok": False, "error": code}
    body.update(fields)
    return web.json_response(body)


def next_ts(slack):
    stamp = max(time.time(), slack["last_ts"] + 0.000001)
    slack["last_ts"] = stamp
    return "%.6f" % stamp


def cursor_for(offset):
    return base64.b64encode(("offset:%d" % offset).encode()).decode()


def offset_of(cursor):
    try:
        kind, value = base64.b64decode(cursor.encode(), validate=True).decode().split(":", 1)
        if kind != "offset" or int(value) < 0:
            raise ValueError(cursor)
        return int(value)
    except (ValueError, UnicodeDecodeError):
        return None


def page(items, params, default_limit=100, max_limit=1000):
    """(items of this page, next cursor or '') or None for an invalid cursor / limit."""
    try:
        limit = int(params.get("limit") or default_limit)
    except ValueError:
        return None
    limit = max(1, min(limit, max_limit))
    start = offset_of(params["cursor"]) if params.get("cursor") else 0
    if start is None:
        return None
    end = start + limit
    return items[start:end], (cursor_for(end) if end < len(items) else "")


def truthy(value):
    return value is True or str(value).lower() in ("1", "true", "yes")


async def read_params(request, method):
    """Query, form or JSON parameters; (params, token_from_body, error code or None)."""
    params = dict(request.query)
    body_token = None
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            if method in READ_METHODS:
                return params, None, "invalid_arguments"  # read methods take query or form parameters only
            try:
                data = json.loads((await request.read()) or b"{}")
            except ValueError:
                return params, None, "invalid_json"
            if not isinstance(data, dict):
                return params, None, "invalid_json"
            params.update(data)
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params.update(dict(form.items()))
            body_token = params.pop("token", None)
        else:
            return params, None, "invalid_form_data"
    return params, body_token, None


def channel_view(slack, channel):
    view = {k: v for k, v in channel.items() if k != "members"}
    view["is_member"] = slack["bot_user"] in channel["members"]
    view["num_members"] = len(channel["members"])
    return view


def find_channel(slack, ident):
    ident = str(ident or "").lstrip("#")
    channel = slack["channels"].get(ident)
    if channel is None:
        channel = next((c for c in slack["channels"].values() if c["name"] == ident), None)
    return channel


def message_view(message, with_metadata):
    view = {k: v for k, v in message.items() if k != "metadata" or with_metadata}
    return view


# --- methods --------------------------------------------------------------------------------------------

def auth_test(slack, params, request):
    return ok(url="%s/" % request.app[SANDBOX].public_url if request.app[SANDBOX].public_url else "https://sandbox.slack.com/",
              team="Sandbox", user="selfheal", team_id=TEAM_ID, user_id=slack["bot_user"], bot_id="B0SELFHEAL")


def conversations_create(slack, params, request):
    name = params.get("name")
    if not name:
        return fail("invalid_name_required")
    name = str(name)
    if len(name) > 80:
        return fail("invalid_name_maxlength")
    if not NAME_CHARS.match(name):
        return fail("invalid_name_specials")
    if not re.search(r"[a-z0-9]", name):
        return fail("invalid_name_punctuation")
    if any(c["name"] == name for c in slack["channels"].values()):
        return fail("name_taken")  # archived channels keep their name too
    number = request.app[SANDBOX].next_id()
    cid = "C%09d" % number
    now = int(time.time())
    private = truthy(params.get("is_private"))
    channel = {"id": cid, "name": name, "name_normalized": name, "is_channel": True, "is_group": private,
               "is_private": private, "is_archived": False, "created": now, "creator": slack["bot_user"],
               "topic": {"value": "", "creator": "", "last_set": 0}, "purpose": {"value": "", "creator": "", "last_set": 0},
               "previous_names": [], "members": [slack["bot_user"]]}
    slack["channels"][cid] = channel
    slack["messages"][cid] = []
    return ok(channel=channel_view(slack, channel))


def with_channel(handler, member=True, writable=False):
    def wrapped(slack, params, request):
        if not params.get("channel"):
            return fail("channel_not_found")
        channel = find_channel(slack, params["channel"])
        if channel is None:
            return fail("channel_not_found")
        if writable and channel["is_archived"]:
            return fail("is_archived")
        if member and slack["bot_user"] not in channel["members"]:
            return fail("not_in_channel")
        return handler(slack, params, request, channel)
    return wrapped


def conversations_info(slack, params, request, channel):
    return ok(channel=channel_view(slack, channel))


def conversations_list(slack, params, request):
    types = set(str(params.get("types") or "public_channel").split(","))
    if not types <= {"public_channel", "private_channel", "mpim", "im"}:
        return fail("invalid_types")
    exclude = truthy(params.get("exclude_archived"))
    items = [channel_view(slack, c) for c in slack["channels"].values()
             if (("private_channel" in types) if c["is_private"] else ("public_channel" in types))
             and not (exclude and c["is_archived"])]
    paged = page(items, params)
    if paged is None:
        return fail("invalid_cursor")
    return ok(channels=paged[0], response_metadata={"next_cursor": paged[1]})


def conversations_members(slack, params, request, channel):
    paged = page(list(channel["members"]), params)
    if paged is None:
        return fail("invalid_cursor")
    return ok(members=paged[0], response_metadata={"next_cursor": paged[1]})


def conversations_join(slack, params, request, channel):
    if slack["bot_user"] not in channel["members"]:
        channel["members"].append(slack["bot_user"])
    return ok(channel=channel_view(slack, channel))


def conversations_invite(slack, params, request, channel):
    raw = params.get("users")
    ids = [u.strip() for u in (raw if isinstance(raw, list) else str(raw or "").split(",")) if u.strip()]
    if not ids:
        return fail("no_user")
    if len(ids) > 1000:
        return fail("too_many_users")
    errors = []
    for uid in ids:
        if uid == slack["bot_user"]:
            errors.append({"user": uid, "ok": False, "error": "cant_invite_self"})
        elif uid not in slack["users"] or slack["users"][uid]["deleted"]:
            errors.append({"user": uid, "ok": False, "error": "user_not_found"})
        elif uid in channel["members"]:
            errors.append({"user": uid, "ok": False, "error": "already_in_channel"})
    force = truthy(params.get("force"))
    if errors and not force:
        return fail(errors[0]["error"], errors=errors)  # nobody is invited when one invite fails
    failed = set(e["user"] for e in errors)
    for uid in ids:
        if uid not in failed and uid not in channel["members"]:
            channel["members"].append(uid)
    extra = {"errors": errors} if errors else {}
    return ok(channel=channel_view(slack, channel), **extra)


def set_text(field, limit):
    def handler(slack, params, request, channel):
        value = str(params.get(field) or "")
        if len(value) > limit:
            return fail("too_long")
        channel[field] = {"value": value, "creator": slack["bot_user"], "last_set": int(time.time())}
        return ok(channel=channel_view(slack, channel))
    return handler


def conversations_archive(slack, params, request, channel):
    if channel["is_archived"]:
        return fail("already_archived")
    channel["is_archived"] = True
    return ok()


def conversations_unarchive(slack, params, request):
    channel = find_channel(slack, params.get("channel"))
    if channel is None:
        return fail("channel_not_found")
    if not channel["is_archived"]:
        return fail("not_archived")
    channel["is_archived"] = False
    if slack["bot_user"] not in channel["members"]:
        channel["members"].append(slack["bot_user"])
    return ok()


def post(slack, channel, user, params):
    """Store one message (or thread reply); returns (message, error code)."""
    text = params.get("text")
    blocks, code = parse_blocks(params)
    if code:
        return None, code
    if not text and not blocks:
        return None, "no_text"
    metadata = params.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return None, "invalid_metadata_format"
    if metadata is not None and (not isinstance(metadata, dict) or "event_type" not in metadata
                                 or not isinstance(metadata.get("event_payload", {}), dict)):
        return None, "invalid_metadata_format"
    message = {"type": "message", "user": user, "text": text or "", "ts": next_ts(slack), "team": TEAM_ID}
    if user == slack["bot_user"]:
        message.update(subtype="bot_message", bot_id="B0SELFHEAL")
    if blocks:
        message["blocks"] = blocks
    if metadata:
        message["metadata"] = {"event_type": metadata["event_type"], "event_payload": metadata.get("event_payload", {})}
    parent_ts = params.get("thread_ts")
    if parent_ts:
        parent = next((m for m in slack["messages"][channel["id"]] if m["ts"] == str(parent_ts)), None)
        if parent is None:
            return None, "thread_not_found"
        message["thread_ts"] = parent["ts"]
        parent.setdefault("thread_ts", parent["ts"])
        parent["reply_count"] = parent.get("reply_count", 0) + 1
        parent["latest_reply"] = message["ts"]
        parent["reply_users"] = sorted(set(parent.get("reply_users", [])) | {user})
        slack["threads"].setdefault("%s:%s" % (channel["id"], parent["ts"]), []).append(message)
    else:
        slack["messages"][channel["id"]].append(message)
    return message, None


def parse_blocks(params):
    """(blocks, error code): blocks absent (None), a list, or invalid_blocks_format."""
    blocks = params.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return None, "invalid_blocks_format"
    if blocks is not None and not isinstance(blocks, list):
        return None, "invalid_blocks_format"
    return blocks, None


def chat_update(slack, params, request, channel):
    """chat.update: channel (an id, not a name) + ts; text and/or blocks. Without blocks the old blocks stay only when
    no text is given either; with text and no blocks the blocks are removed (Slack's documented behaviour)."""
    if params.get("channel") != channel["id"]:
        return fail("channel_not_found")  # chat.update takes the channel id only
    ts = str(params.get("ts") or "")
    message = next((m for m in slack["messages"][channel["id"]] if m["ts"] == ts), None)
    if message is None:  # a thread reply
        replies = (m for key, thread in slack["threads"].items() if key.startswith(channel["id"] + ":") for m in thread)
        message = next((m for m in replies if m["ts"] == ts), None)
    if message is None:
        return fail("message_not_found")
    if message.get("user") != slack["bot_user"]:
        return fail("cant_update_message")
    blocks, code = parse_blocks(params)
    if code:
        return fail(code)
    text = params.get("text")
    if not text and blocks is None:
        return fail("no_text")
    if text is not None:
        message["text"] = str(text)
        message["edited"] = {"user": slack["bot_user"], "ts": next_ts(slack)}
        if blocks is None:
            message.pop("blocks", None)
    if blocks is not None:
        if blocks:
            message["blocks"] = blocks
        else:
            message.pop("blocks", None)
    view = {"text": message["text"], "user": message["user"], "bot_id": message.get("bot_id"), "type": "message"}
    if message.get("blocks"):
        view["blocks"] = message["blocks"]
    return ok(channel=channel["id"], ts=message["ts"], text=message["text"], message=view)


def usergroups_list(slack, params, request):
    include_users = truthy(params.get("include_users"))
    include_disabled = truthy(params.get("include_disabled"))
    groups = []
    for group in slack["usergroups"].values():
        if group["date_delete"] and not include_disabled:
            continue
        view = dict(group)
        if not include_users:
            view.pop("users")
        groups.append(view)
    return ok(usergroups=groups)


def chat_post_message(slack, params, request, channel):
    message, code = post(slack, channel, slack["bot_user"], params)
    if code:
        return fail(code)
    return ok(channel=channel["id"], ts=message["ts"], message=message)


def ts_value(value, default):
    if value in (None, ""):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def conversations_history(slack, params, request, channel):
    oldest, latest = ts_value(params.get("oldest"), 0.0), ts_value(params.get("latest"), float("inf"))
    if oldest is None:
        return fail("invalid_ts_oldest")
    if latest is None:
        return fail("invalid_ts_latest")
    inclusive = truthy(params.get("inclusive"))
    newest_first = [m for m in reversed(slack["messages"][channel["id"]])
                    if (oldest <= float(m["ts"]) <= latest if inclusive else oldest < float(m["ts"]) < latest)]
    paged = page(newest_first, params, max_limit=999)
    if paged is None:
        return fail("invalid_cursor")
    metadata = truthy(params.get("include_all_metadata"))
    return ok(messages=[message_view(m, metadata) for m in paged[0]], has_more=bool(paged[1]), pin_count=0,
              response_metadata={"next_cursor": paged[1]})


def conversations_replies(slack, params, request, channel):
    ts = str(params.get("ts") or "")
    parent = next((m for m in slack["messages"][channel["id"]] if m["ts"] == ts), None)
    if parent is None:
        return fail("thread_not_found")
    thread = [parent] + slack["threads"].get("%s:%s" % (channel["id"], ts), [])
    paged = page(thread, params, max_limit=999)
    if paged is None:
        return fail("invalid_cursor")
    metadata = truthy(params.get("include_all_metadata"))
    return ok(messages=[message_view(m, metadata) for m in paged[0]], has_more=bool(paged[1]),
              response_metadata={"next_cursor": paged[1]})


def users_lookup_by_email(slack, params, request):
    email = str(params.get("email") or "").lower()
    user = next((u for u in slack["users"].values() if u["profile"].get("email", "").lower() == email and email), None)
    if user is None or user["deleted"]:
        return fail("users_not_found")
    return ok(user=user)


def users_info(slack, params, request):
    user = slack["users"].get(str(params.get("user") or ""))
    if user is None:
        return fail("user_not_found")
    return ok(user=user)


METHODS = {
    "auth.test": auth_test,
    "conversations.create": conversations_create,
    "conversations.info": with_channel(conversations_info, member=False),
    "conversations.list": conversations_list,
    "conversations.members": with_channel(conversations_members, member=False),
    "conversations.join": with_channel(conversations_join, member=False, writable=True),
    "conversations.invite": with_channel(conversations_invite, writable=True),
    "conversations.setTopic": with_channel(set_text("topic", 250), writable=True),
    "conversations.setPurpose": with_channel(set_text("purpose", 250), writable=True),
    "conversations.archive": with_channel(conversations_archive),
    "conversations.unarchive": conversations_unarchive,
    "conversations.history": with_channel(conversations_history),
    "conversations.replies": with_channel(conversations_replies),
    "chat.postMessage": with_channel(chat_post_message, writable=True),
    "chat.update": with_channel(chat_update, member=False, writable=True),
    "usergroups.list": usergroups_list,
    "users.lookupByEmail": users_lookup_by_email,
    "users.info": users_info,
}


async def dispatch(request):
    method = request.match_info["method"]
    handler = METHODS.get(method)
    if handler is None:
        return web.json_response({"ok": False, "error": "unknown_method", "req_method": method}, status=404)
    params, body_token, problem = await read_params(request, method)
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else body_token
    if not token:
        return fail("not_authed")
    if token != credentials.SLACK_TOKEN:
        return fail("invalid_auth")
    if problem:
        return fail(problem)
    return handler(state(request), params, request)


async def admin_messages(request):
    """Post as users: {"channel": id or name, "user": id or e-mail, "text": ..., "thread_ts": ...} or a list."""
    slack = state(request)
    body = await request.json()
    posted = []
    for item in body if isinstance(body, list) else [body]:
        channel = find_channel(slack, item.get("channel"))
        if channel is None:
            return web.json_response({"error": "no such channel %r" % item.get("channel")}, status=404)
        user = item.get("user") or "U0ONCALL01"
        if "@" in user:
            user = next((u["id"] for u in slack["users"].values() if u["profile"].get("email") == user), None)
        if user not in slack["users"]:
            return web.json_response({"error": "no such user %r" % item.get("user")}, status=404)
        message, code = post(slack, channel, user, item)
        if code:
            return web.json_response({"error": code}, status=400)
        posted.append(message["ts"])
    return web.json_response({"ok": True, "ts": posted}, status=201)


async def admin_usergroups(request):
    """Create or replace a user group: {"handle": "sre-oncall", "name": ..., "users": [user id or e-mail, ...]}."""
    slack = state(request)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "expected a JSON object"}, status=400)
    handle = body.get("handle") if isinstance(body, dict) else None
    if not isinstance(handle, str) or not NAME_CHARS.match(handle) or not isinstance(body.get("users"), list):
        return web.json_response({"error": "expected {handle: lowercase name, users: [id or e-mail, ...]}"}, status=400)
    members = []
    for user in body["users"]:
        uid = next((u["id"] for u in slack["users"].values() if u["id"] == user or u["profile"].get("email") == user), None)
        if uid is None:
            return web.json_response({"error": "no such user %r" % user}, status=404)
        members.append(uid)
    existing = next((g for g in slack["usergroups"].values() if g["handle"] == handle), None)
    gid = existing["id"] if existing else "S%09d" % request.app[SANDBOX].next_id()
    slack["usergroups"][gid] = usergroup_record(gid, handle, str(body.get("name") or handle), members)
    return web.json_response(slack["usergroups"][gid], status=200 if existing else 201)


def error_shape(status, message):
    """Slack's answer for a path that is no method (unknown_method) and for a failure (internal_error)."""
    return web.json_response({"ok": False, "error": "unknown_method" if status in (404, 405) else "internal_error"},
                             status=status)


def setup(sandbox, app):
    sandbox.add_seeder(seed)
    sandbox.add_error_shape(PREFIX, error_shape)
    app.router.add_route("*", PREFIX + "/{method}", dispatch)
    app.router.add_post("/_sandbox/slack/messages", admin_messages)
    app.router.add_post("/_sandbox/slack/usergroups", admin_usergroups)
