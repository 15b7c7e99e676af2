# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Slack Web API service layer over the shared transport. Private to the selfheal.devops collection.

Slack answers errors with HTTP 200 and {"ok": false, "error": code}; SlackError carries the code. Rate limits
(HTTP 429 + Retry-After) are retried by the transport. Reads use GET with query parameters (the read methods
take no JSON body); writes POST JSON with the token in the Authorization header, as Slack requires.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

from ansible_collections.selfheal.devops.plugins.module_utils import _http, _options
from ansible_collections.selfheal.devops.plugins.module_utils._errors import AuthError, InvalidInput, NotFound, UnexpectedResponse

MARKER_EVENT_TYPE = "selfheal_devops_message"
INVITE_BATCH = 100          # the 2026 method metadata says 100 users per conversations.invite
MAX_PAGES = 1000
AUTH_ERRORS = ("not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "missing_scope",
               "not_allowed_token_type")
NOT_FOUND_ERRORS = ("channel_not_found", "users_not_found", "user_not_found", "thread_not_found")
HINTS = {
    "invalid_auth": "the token is not valid for this workspace",
    "not_authed": "no token was sent",
    "missing_scope": "the token lacks a scope this call needs",
    "not_in_channel": "the app is not a member of the channel",
    "is_archived": "the channel is archived",
    "users_not_found": "no Slack user has that e-mail address",
}


class SlackError(UnexpectedResponse):
    """Slack answered ok: false."""

    def __init__(self, method, code, needed=None, **kwargs):
        self.code = code
        text = "Slack %s failed: %s" % (method, code)
        if code in HINTS:
            text += " (%s)" % HINTS[code]
        if needed:
            text += "; needed scope: %s" % needed
        super(SlackError, self).__init__(text, **kwargs)


class SlackAuthError(SlackError, AuthError):
    kind = "auth"


class SlackNotFound(SlackError, NotFound):
    kind = "not_found"


def client_from_params(params, log=None):
    return _http.Client(params["url"].rstrip("/"), service="Slack", auth=_http.bearer_auth(params["token"]),
                        retry=_options.retry_policy(params), **_options.client_kwargs(params, log))


def channel_name(incident_key, prefix="inc-", suffix=""):
    """A valid Slack channel name from an incident key: lowercase, [a-z0-9_-], runs of others become '-', <= 80."""
    raw = "%s%s%s" % (prefix or "", incident_key or "", suffix or "")
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if len(name) > 80:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
        name = name[:71].rstrip("-") + "-" + digest
    if not re.search(r"[a-z0-9]", name):
        raise InvalidInput("cannot derive a Slack channel name from %r" % raw)
    return name


def valid_channel_name(name):
    return bool(name) and len(name) <= 80 and re.match(r"^[a-z0-9_-]+$", name) is not None and re.search(r"[a-z0-9]", name)


class SlackService(object):
    """The Slack methods an incident channel needs."""

    def __init__(self, client):
        self.client = client

    # transport ------------------------------------------------------------------------------------------
    def call(self, method, read=False, **params):
        params = dict((k, v) for k, v in params.items() if v is not None)
        if read:
            return self._answer(method, self.client.get(method, params=params))

        def send():
            return self._answer(method, self.client.post(method, json_body=params,
                                                         headers={"Content-Type": "application/json; charset=utf-8"}))

        recovery = WRITE_LOOKUPS.get(method)
        if recovery is None:
            return send()
        # A write whose answer is lost (502/504, dropped connection, timeout) is looked up, never re-sent blindly.
        what, key, lookup = recovery(self, params)
        return _http.write_once(self.client, send, lookup, what, key, resend=True)

    def _answer(self, method, response):
        body = response.json
        if not isinstance(body, dict) or "ok" not in body:
            raise UnexpectedResponse("Slack %s answered something that is not a Slack response" % method, url=response.url)
        if not body["ok"]:
            code = str(body.get("error") or "unknown_error")
            kind = SlackAuthError if code in AUTH_ERRORS else SlackNotFound if code in NOT_FOUND_ERRORS else SlackError
            error = kind(method, code, needed=body.get("needed"), url=response.url)
            error.body = body
            raise error
        return body

    # Lookups by idempotency key, for writes whose answer was lost: (what, key, lookup() -> answer or None).
    # Each read is authoritative (Slack reads are consistent), so a write not found was not applied.
    def _created_lookup(self, params):
        def lookup():
            channel = self.find_channel(params["name"])
            return {"ok": True, "channel": channel} if channel is not None else None
        return "Slack channel", "#%s" % params["name"], lookup

    def _posted_lookup(self, params):
        payload = (params.get("metadata") or {}).get("event_payload") or {}
        marked = (params.get("metadata") or {}).get("event_type") == MARKER_EVENT_TYPE and payload.get("message_id")

        def lookup():
            if not marked:
                return None
            found = self.find_marked(params["channel"], payload.get("incident_key"), payload["message_id"], params.get("thread_ts"))
            return {"ok": True, "channel": params["channel"], "ts": found["ts"], "message": found} if found else None
        key = "%s/%s" % (payload.get("incident_key"), payload.get("message_id")) if marked else "(the message carries no marker)"
        return "Slack message", key, lookup

    def _invited_lookup(self, params):
        wanted = [uid for uid in params["users"].split(",") if uid]

        def lookup():
            members = set(self.members(params["channel"]))
            return {"ok": True, "channel": {"id": params["channel"]}} if all(uid in members for uid in wanted) else None
        return "Slack channel membership", "of %s in %s" % (params["users"], params["channel"]), lookup

    def _channel_state_lookup(self, params, check):
        def lookup():
            channel = self.info(params["channel"])
            return {"ok": True, "channel": channel} if check(channel) else None
        return lookup

    def _topic_lookup(self, params):
        lookup = self._channel_state_lookup(params, lambda c: (c.get("topic") or {}).get("value") == params["topic"])
        return "Slack channel topic", "of %s" % params["channel"], lookup

    def _purpose_lookup(self, params):
        lookup = self._channel_state_lookup(params, lambda c: (c.get("purpose") or {}).get("value") == params["purpose"])
        return "Slack channel purpose", "of %s" % params["channel"], lookup

    def _archived_lookup(self, params):
        lookup = self._channel_state_lookup(params, lambda c: bool(c.get("is_archived")))
        return "archived state", "of %s" % params["channel"], lookup

    def _unarchived_lookup(self, params):
        lookup = self._channel_state_lookup(params, lambda c: not c.get("is_archived"))
        return "unarchived state", "of %s" % params["channel"], lookup

    def paged(self, method, key, **params):
        """Every item of a cursor-paginated read method."""
        cursor = None
        for dummy in range(MAX_PAGES):
            body = self.call(method, read=True, cursor=cursor, **params)
            yield from body.get(key) or []
            cursor = (body.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return
        raise UnexpectedResponse("Slack %s returned more than %d pages" % (method, MAX_PAGES))

    # channels ---------------------------------------------------------------------------------------------
    def find_channel(self, name):
        """The channel with that name, archived ones included (conversations.list), or None."""
        for channel in self.paged("conversations.list", "channels", limit=999, exclude_archived="false",
                                  types="public_channel,private_channel"):
            if channel.get("name") == name:
                return channel
        return None

    def create_channel(self, name, private=False):
        """(channel, created): create, or find the existing one on name_taken."""
        try:
            return self.call("conversations.create", name=name, is_private=private)["channel"], True
        except SlackError as exc:
            if exc.code != "name_taken":
                raise
        channel = self.find_channel(name)
        if channel is None:
            raise InvalidInput("Slack channel name %s is taken by a channel this app cannot see "
                               "(a private channel it is not a member of?)" % name)
        return channel, False

    def info(self, channel_id):
        return self.call("conversations.info", read=True, channel=channel_id)["channel"]

    def members(self, channel_id):
        return list(self.paged("conversations.members", "members", channel=channel_id, limit=999))

    def invite(self, channel_id, user_ids):
        for start in range(0, len(user_ids), INVITE_BATCH):
            batch = user_ids[start:start + INVITE_BATCH]
            try:
                self.call("conversations.invite", channel=channel_id, users=",".join(batch))
            except SlackError as exc:
                if exc.code != "already_in_channel":
                    raise
                # Somebody joined meanwhile: invite the rest of the batch, skipping who is in already.
                self.call("conversations.invite", channel=channel_id, users=",".join(batch), force=True)

    def lookup_email(self, email):
        return self.call("users.lookupByEmail", read=True, email=email)["user"]

    # messages --------------------------------------------------------------------------------------------
    def history(self, channel_id, with_metadata=False):
        """Every top-level message, newest first."""
        return self.paged("conversations.history", "messages", channel=channel_id, limit=200,
                          include_all_metadata="true" if with_metadata else None)

    def replies(self, channel_id, ts, with_metadata=False):
        return list(self.paged("conversations.replies", "messages", channel=channel_id, ts=ts, limit=200,
                               include_all_metadata="true" if with_metadata else None))

    def find_marked(self, channel_id, incident_key, message_id, thread_ts=None):
        """The message posted earlier with this marker (in the thread thread_ts when given), or None."""
        if thread_ts:
            messages = self.replies(channel_id, thread_ts, with_metadata=True)
        else:
            messages = self.history(channel_id, with_metadata=True)
        for message in messages:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if (message.get("metadata") or {}).get("event_type") == MARKER_EVENT_TYPE and \
                    payload.get("incident_key") == incident_key and payload.get("message_id") == message_id:
                return message
        return None

    def transcript(self, channel_id):
        """Every message, oldest first, each thread's replies (oldest first) right after their parent."""
        messages = []
        for message in reversed(list(self.history(channel_id))):
            messages.append(message)
            if message.get("reply_count"):
                messages.extend(m for m in self.replies(channel_id, message["ts"]) if m.get("ts") != message["ts"])
        return messages


WRITE_LOOKUPS = {
    "conversations.create": SlackService._created_lookup,
    "chat.postMessage": SlackService._posted_lookup,
    "conversations.invite": SlackService._invited_lookup,
    "conversations.setTopic": SlackService._topic_lookup,
    "conversations.setPurpose": SlackService._purpose_lookup,
    "conversations.archive": SlackService._archived_lookup,
    "conversations.unarchive": SlackService._unarchived_lookup,
}
