# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""selfheal.devops.slack_actions: button clicks and slash commands from Slack as Event-Driven Ansible events."""

import asyncio
import concurrent.futures
import difflib
import functools
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time

DOCUMENTATION = r"""
---
short_description: Act on an incident from Slack (Block Kit button clicks and a slash command), verified and authorised.
description:
  - An event source plugin for Event-Driven Ansible. It is the request URL of a Slack app for B(interactivity)
    (Block Kit button clicks, C(block_actions)) and for a B(slash command) (C(/selfheal) by default). Both arrive as
    C(application/x-www-form-urlencoded) POSTs on the same path.
  - "Every request must carry Slack's signature: C(X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:timestamp:body>)
    with the app's signing secret and C(X-Slack-Request-Timestamp) within O(replay_window) (5 minutes, as Slack
    recommends); the compare is constant-time and a signature already accepted is refused (no replay). Anything
    else is answered C(401) and emits nothing; a body that is not a well-formed Slack payload is answered C(400)."
  - "Answers come within Slack's 3-second limit: an empty C(200) for a button click, an ephemeral JSON message for a
    slash command (for example C(Received: approve for dt-P-1234))."
  - "Delivery: C(200) is answered only once the event is in ansible-rulebook's queue. When the rules engine has no room
    within O(handoff_timeout) the answer is C(503); Slack does not retry interactions and slash commands, it shows the
    user an error (for a slash command C(failed with the error \"dispatch_failed\"), for a button a warning sign) and
    the user clicks or types again: that second attempt is delivered. A repeat of an interaction that was already handed
    over (a Slack retry carrying C(X-Slack-Retry-Num), or the same click re-signed) is answered C(200) and emits nothing."
  - "Button convention: C(action_id) is O(action_prefix) + action (C(selfheal_approve), C(selfheal_ignore),
    C(selfheal_fix), C(selfheal_escalate), ...), optionally followed by C(:<anything>) to keep action ids unique in one
    message; C(value) is the incident key (C(dt-P-1234)). Buttons whose C(action_id) does not start with
    O(action_prefix) belong to something else and are answered C(200) without an event."
  - "Slash command: C(/selfheal <action> [incident key] [text]), for example C(/selfheal approve dt-P-1234) or
    C(/selfheal note dt-P-1234 the disk filled from /var/log). Without a key, the incident channel's name gives it
    (C(inc-dt-p-1234) -> C(dt-P-1234), see O(channel_prefix)). C(help), an unknown action or a missing key get an
    ephemeral explanation and emit nothing."
  - "Authorization happens here, before the event is emitted (O(allowed_users)): a user who is not allowed gets an
    ephemeral refusal (for a button through its C(response_url)), and the event is emitted as C(kind: refused) with
    C(action: null) and C(requested_action), so a rulebook can record the refusal but a rule on C(event.slack.action)
    can never run a refused action."
  - "Event shape: C(slack) {kind (C(button), C(command) or C(refused)), via (C(button) or C(command)), action,
    requested_action, reason (refusals), incident_key, user_id, user_email (from the payload when it carries one,
    else from the Slack directory when the allow-list needed it, else null), user_name, team_id, channel_id,
    channel_name, text (slash command text after the action and key; null for buttons), response_url (Slack's
    short-lived URL to answer the user, valid 30 minutes), trigger_id, message_ts (the message whose button was
    clicked, for C(chat.update)), action_ts, retry_num, received_at}."
options:
  host:
    description: Address to listen on (V(0.0.0.0) in a controller activation behind a route or ingress).
    type: str
    default: 127.0.0.1
  port:
    description: Port to listen on (0 picks a free one).
    type: int
    default: 5002
  path:
    description: URL path of both request URLs (interactivity and slash command); C(<path>/health) answers GET.
    type: str
    default: /slack/actions
  signing_secret:
    description:
      - The Slack app's signing secret (Basic Information, App Credentials). Required; falls back to
        E(SLACK_SIGNING_SECRET).
    type: str
  replay_window:
    description: Seconds a signed timestamp stays valid (both directions); Slack recommends 5 minutes.
    type: int
    default: 300
  certfile:
    description: PEM certificate (chain) to serve HTTPS with (Slack only calls https:// request URLs).
    type: path
  keyfile:
    description: PEM private key of O(certfile).
    type: path
  cafile:
    description: CA bundle to require and verify client certificates with (mutual TLS, for a relay in front).
    type: path
  max_body_bytes:
    description: Larger requests are answered 413 (a click carries the whole message with its blocks).
    type: int
    default: 262144
  max_pending:
    description: Requests waiting for room in the rulebook's queue at once; beyond it the answer is 503 at once.
    type: int
    default: 64
  handoff_timeout:
    description:
      - Seconds a request may wait for room in the rulebook's queue before it is answered 503. With
        O(lookup_timeout) it must leave an answer within Slack's 3 seconds (at most 2, and the two together at most 2.5).
    type: float
    default: 1.5
  retry_after:
    description: Seconds sent in C(Retry-After) with a 503 answer (Slack ignores it; a relay may not).
    type: int
    default: 1
  max_connections:
    description: Open connections beyond this are closed at once.
    type: int
    default: 256
  idle_timeout:
    description: Seconds a connection may stay open without a complete request line and headers.
    type: float
    default: 15
  body_timeout:
    description: Seconds the body of a request may take to arrive (then 408).
    type: float
    default: 5
  command:
    description: The slash command this app registered; other commands get an ephemeral explanation and emit nothing.
    type: str
    default: /selfheal
  actions:
    description: The actions buttons and the slash command may ask for.
    type: list
    elements: str
    default: [approve, ignore, fix, escalate, status, note]
  action_prefix:
    description: Prefix of the C(action_id) of this collection's buttons.
    type: str
    default: selfheal_
  channel_prefix:
    description:
      - Prefix of incident channel names (as M(selfheal.devops.slack_channel) names them). A slash command without an
        incident key uses the channel's name, so C(inc-dt-p-1234) gives C(dt-P-1234). Names that do not map back to a
        key unambiguously (keys other than C(dt-P-<number>) are lowercased in channel names) need the key typed.
    type: str
    default: inc-
  incident_key_pattern:
    description: Regular expression an incident key must match (a typed key, a button value, a key from a channel name).
    type: str
    default: ^dt-[A-Za-z0-9_.-]{1,120}$
  allowed_users:
    description:
      - Who may ask for which action. A dict from an action (or C(default), for actions without their own entry) to a
        list of Slack user ids (C(U0ONCALL01)), e-mail addresses (C(oncall.primary@example.com)), user group handles
        (C(@sre-oncall)) or user group ids (C(S0123ABCD)), or C(*) for every user of the workspace.
      - An action with no entry and no C(default) is refused for everyone, except the actions in O(open_actions).
      - E-mail and user-group entries are checked against the Slack directory (C(users.info) with C(users:read.email);
        C(usergroups.list) with C(usergroups:read)) through O(api_token), cached for O(directory_ttl) seconds; when
        Slack cannot be read within O(lookup_timeout) the request is refused (fail closed).
    type: dict
    default: {}
  open_actions:
    description: Actions anyone in the workspace may ask for (read-only ones).
    type: list
    elements: str
    default: [status]
  url:
    description: Slack Web API base URL, for e-mail and user-group entries. Falls back to E(SLACK_API_URL).
    type: str
    default: https://slack.com/api
  api_token:
    description: Bot token to read the Slack directory (e-mail and user-group entries). Falls back to E(SLACK_TOKEN).
    type: str
  validate_certs:
    description: Verify the certificate of the Slack API and of C(response_url).
    type: bool
    default: true
  ca_path:
    description: CA bundle to verify the Slack API and C(response_url) with.
    type: path
  lookup_timeout:
    description: Seconds the allow-list may spend reading the Slack directory for one request (no retries).
    type: float
    default: 0.8
  directory_ttl:
    description: Seconds a user's e-mail address and the user groups' members are cached.
    type: int
    default: 300
  decision_dir:
    description:
      - Write the first Approve or Ignore to each incident into this folder (C(<incident_key>.decision.json), created
        with O_EXCL so the first answer wins, whether from Slack or from xMatters through the on-call source), where a
        playbook waiting in approve mode (the C(selfheal.devops.incident) role's C(incident_decision_dir)) sees it at
        once. A later answer is told who decided, and its event carries C(slack.decided=false).
    type: path
  response_url_prefix:
    description:
      - The source answers a refused button click with an ephemeral message posted to the click's C(response_url),
        only when that URL starts with this prefix.
    type: str
    default: https://hooks.slack.com/
"""

EXAMPLES = r"""
- name: Act on incidents from Slack
  hosts: all
  sources:
    - selfheal.devops.slack_actions:
        host: 0.0.0.0
        port: 5002
        signing_secret: "{{ SLACK_SIGNING_SECRET }}"
        certfile: /etc/eda/tls/cert.pem
        keyfile: /etc/eda/tls/key.pem
        allowed_users:
          approve: ["@sre-oncall", oncall.primary@example.com]
          fix: ["@sre-oncall"]
          default: [U0ONCALL01]
  rules:
    - name: Approved in Slack
      condition: event.slack.action == "approve"
      action:
        run_playbook:
          name: selfheal.devops.remediate_process_crash
          extra_vars:
            incident_key: "{{ event.slack.incident_key }}"
            approved_by: "{{ event.slack.user_name }}"
    - name: Refusal recorded
      condition: event.slack.kind == "refused"
      action:
        debug:
          msg: "{{ event.slack.user_id }} may not {{ event.slack.requested_action }}"
"""

LOGGER = logging.getLogger("selfheal.devops.slack_actions")


# ansible-rulebook runs a source from its path (runpy), outside any collection loader: make the ansible_collections
# folder this file is installed under importable, then import the collection's own modules as usual.
_ROOT = os.path.abspath(__file__).rpartition(os.sep + "ansible_collections" + os.sep)[0]
if _ROOT and _ROOT not in sys.path:
    sys.path.append(_ROOT)


from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import _webhook as webhook  # noqa: E402
from ansible_collections.selfheal.devops.plugins.module_utils import _decisions as decisions  # noqa: E402

ARGUMENTS = ("host", "port", "path", "signing_secret", "replay_window", "certfile", "keyfile", "cafile",
             "max_body_bytes", "max_pending", "handoff_timeout", "retry_after", "max_connections", "idle_timeout",
             "body_timeout", "command", "actions", "action_prefix", "channel_prefix", "incident_key_pattern",
             "allowed_users", "open_actions", "url", "api_token", "validate_certs", "ca_path", "lookup_timeout",
             "directory_ttl", "response_url_prefix", "decision_dir")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")
GROUP_ID = re.compile(r"^S[A-Z0-9]{2,30}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ACTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")
MAX_TEXT = 4000


# --- configuration ------------------------------------------------------------------------------

class SlackConfig(object):
    """The source's own arguments, validated before anything listens."""

    def __init__(self, args):
        for name in sorted(set(args) - set(ARGUMENTS)):
            if name.startswith("eda_"):
                continue  # ansible-rulebook's own (eda_feedback_queue)
            close = difflib.get_close_matches(name, ARGUMENTS, n=1, cutoff=0.8)
            if close:  # a misspelled option would silently weaken the allow-list or the limits
                raise webhook.ConfigError("unknown argument %s (did you mean %s?)" % (name, close[0]))
            LOGGER.warning("argument %s is not an option of selfheal.devops.slack_actions; ignored", name)
        self.signing_secret = args.get("signing_secret") or os.environ.get("SLACK_SIGNING_SECRET")
        if not self.signing_secret or not isinstance(self.signing_secret, str):
            raise webhook.ConfigError("signing_secret (or SLACK_SIGNING_SECRET) is required: Slack requests are verified "
                                      "with the app's signing secret")
        self.replay_window = webhook._int(args, "replay_window", 300, 1, 3600)
        self.handoff_timeout = webhook._number(args, "handoff_timeout", 1.5, 0.1, 2.0)
        self.lookup_timeout = webhook._number(args, "lookup_timeout", 0.8, 0.1, 2.0)
        if self.handoff_timeout + self.lookup_timeout > 2.5:
            raise webhook.ConfigError("handoff_timeout + lookup_timeout must be at most 2.5 s: Slack gives up after 3 s")
        self.directory_ttl = webhook._int(args, "directory_ttl", 300, 0, 86400)
        self.command = str(args.get("command", "/selfheal"))
        if not self.command.startswith("/"):
            raise webhook.ConfigError("command must start with /, got %r" % self.command)
        self.actions = _names(args.get("actions", ["approve", "ignore", "fix", "escalate", "status", "note"]), "actions")
        if "help" in self.actions:
            raise webhook.ConfigError("help is the slash command's own answer, not an action")
        self.open_actions = _names(args.get("open_actions", ["status"]), "open_actions")
        self.action_prefix = str(args.get("action_prefix", "selfheal_"))
        if not self.action_prefix:
            raise webhook.ConfigError("action_prefix must not be empty")
        self.channel_prefix = str(args.get("channel_prefix", "inc-"))
        try:
            self.key_pattern = re.compile(str(args.get("incident_key_pattern", r"^dt-[A-Za-z0-9_.-]{1,120}$")))
        except re.error as exc:
            raise webhook.ConfigError("incident_key_pattern is not a regular expression: %s" % exc)
        self.allowed = parse_allowed_users(args.get("allowed_users") or {}, self.actions)
        self.response_url_prefix = str(args.get("response_url_prefix", "https://hooks.slack.com/"))
        self.decision_dir = args.get("decision_dir") or None
        self.url = str(args.get("url") or os.environ.get("SLACK_API_URL") or "https://slack.com/api").rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise webhook.ConfigError("url must start with https:// (or http://), got %r" % self.url)
        self.api_token = args.get("api_token") or os.environ.get("SLACK_TOKEN")
        self.validate_certs = bool(args.get("validate_certs", True))
        self.ca_path = args.get("ca_path")
        if self.ca_path and not os.path.isfile(self.ca_path):
            raise webhook.ConfigError("ca_path %s is not a readable file" % self.ca_path)
        needs_directory = any(entries["emails"] or entries["groups"] for entries in self.allowed.values())
        if needs_directory and not self.api_token:
            raise webhook.ConfigError("allowed_users has e-mail or user-group entries: they need api_token (or SLACK_TOKEN), "
                                      "a bot token with users:read.email and usergroups:read")
        self.needs_directory = needs_directory
        unlisted = [a for a in self.actions if a not in self.open_actions and a not in self.allowed and "default" not in self.allowed]
        if unlisted:
            LOGGER.warning("allowed_users names nobody for %s: every request for it is refused", ", ".join(unlisted))

    def webhook_args(self, args):
        """The shared plumbing's arguments: Slack's signature scheme on top of the source's limits."""
        names = ("host", "port", "path", "certfile", "keyfile", "cafile", "max_body_bytes", "max_pending", "retry_after",
                 "max_connections", "idle_timeout", "body_timeout")
        passed = dict((k, args[k]) for k in names if k in args)
        passed.setdefault("port", 5002)
        passed.setdefault("max_body_bytes", 262144)
        passed.setdefault("max_pending", 64)
        passed.setdefault("retry_after", 1)
        passed.setdefault("max_connections", 256)
        passed.setdefault("body_timeout", 5)
        passed.update(hmac_secret=self.signing_secret, hmac_header="X-Slack-Signature", hmac_prefix="v0=",
                      hmac_algorithm="sha256", hmac_format="hex", hmac_timestamp_header="X-Slack-Request-Timestamp",
                      hmac_message_prefix="v0:", replay_window=self.replay_window, handoff_timeout=self.handoff_timeout)
        return passed


def _names(value, option):
    if not isinstance(value, list) or not all(isinstance(v, str) and ACTION_NAME.match(v) for v in value):
        raise webhook.ConfigError("%s must be a list of lowercase action names" % option)
    return list(value)


def parse_allowed_users(value, actions):
    """{action or 'default': {"anyone", "ids", "emails", "groups"}} from the allowed_users option."""
    if not isinstance(value, dict):
        raise webhook.ConfigError("allowed_users must be a dict of action -> list of users")
    parsed = {}
    for action, entries in value.items():
        if action != "default" and action not in actions:
            raise webhook.ConfigError("allowed_users names an unknown action %r (actions: %s)" % (action, ", ".join(actions)))
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, list):
            raise webhook.ConfigError("allowed_users.%s must be a list" % action)
        rule = {"anyone": False, "ids": set(), "emails": set(), "groups": set()}
        for entry in entries:
            entry = str(entry).strip()
            if entry == "*":
                rule["anyone"] = True
            elif USER_ID.match(entry):
                rule["ids"].add(entry)
            elif EMAIL.match(entry):
                rule["emails"].add(entry.lower())
            elif entry.startswith("@") and len(entry) > 1:
                rule["groups"].add(entry[1:].lower())
            elif GROUP_ID.match(entry):
                rule["groups"].add(entry)
            else:
                raise webhook.ConfigError("allowed_users.%s: %r is no Slack user id, e-mail address, @user-group handle, "
                                          "user group id or *" % (action, entry))
        parsed[action] = rule
    return parsed


# --- what a Slack request asks for -------------------------------------------------------------

class Ask(object):
    """One request for an action on an incident, from a button or the slash command."""

    __slots__ = ("via", "action", "incident_key", "user_id", "user_name", "user_email", "team_id", "channel_id",
                 "channel_name", "text", "response_url", "trigger_id", "message_ts", "action_ts", "identity")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class Reply(object):
    """An answer that emits nothing: (status, body) for the HTTP response."""

    def __init__(self, status, body):
        self.status = status
        self.body = body


def ephemeral(text):
    return {"response_type": "ephemeral", "text": text}


def _text(value, name, limit=255, required=True):
    if value is None or value == "":
        if required:
            raise webhook.BadInput("%s is required" % name)
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise webhook.BadInput("%s must be a string of at most %d characters" % (name, limit))
    return value


def _identity(*parts):
    return hashlib.sha256("\x1f".join(str(p or "") for p in parts).encode("utf-8")).hexdigest()


class Parser(object):
    """Slack's form bodies -> Ask objects (or a Reply that emits nothing); BadInput for malformed payloads."""

    def __init__(self, config):
        self.config = config

    def key(self, raw):
        """The incident key in raw (typed, a button value), normalised (dt-p-12 -> dt-P-12), or None."""
        if not raw:
            return None
        key = re.sub(r"^dt-p-(\d+)$", r"dt-P-\1", raw.strip(), flags=re.IGNORECASE)
        return key if self.config.key_pattern.match(key) else None

    def key_from_channel(self, name):
        prefix = self.config.channel_prefix
        if not name or not name.startswith(prefix):
            return None
        stem = name[len(prefix):]
        if not re.match(r"^dt-p-\d+$", stem):
            return None  # lowercased in the name: the key's case cannot be recovered
        return self.key(stem)

    def parse(self, fields):
        if fields.get("ssl_check") == "1":
            return Reply(200, None)  # Slack checking the certificate of a slash command's URL
        if "payload" in fields:
            return self.interaction(fields["payload"])
        if "command" in fields:
            return self.command(fields)
        raise webhook.BadInput("neither an interactivity payload nor a slash command")

    # buttons ------------------------------------------------------------------------------------
    def interaction(self, text):
        data = webhook.decode_json(text.encode("utf-8"))
        kind = data.get("type")
        if not isinstance(kind, str):
            raise webhook.BadInput("payload.type is required")
        if kind != "block_actions":
            return Reply(200, None)  # shortcuts, view submissions, ...: not this source's business
        user = data.get("user")
        if not isinstance(user, dict):
            raise webhook.BadInput("payload.user is required")
        actions = data.get("actions")
        if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
            raise webhook.BadInput("payload.actions must be a non-empty list of objects")
        channel = data.get("channel") if isinstance(data.get("channel"), dict) else {}
        container = data.get("container") if isinstance(data.get("container"), dict) else {}
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        team = data.get("team") if isinstance(data.get("team"), dict) else {}
        common = dict(
            via="button", user_id=_text(user.get("id"), "payload.user.id", 64),
            user_name=_text(user.get("username") or user.get("name"), "payload.user.username", 255, required=False),
            user_email=_text(user.get("email"), "payload.user.email", 255, required=False),
            team_id=_text(team.get("id") or user.get("team_id"), "payload.team.id", 64, required=False),
            channel_id=_text(channel.get("id") or container.get("channel_id"), "payload.channel.id", 64, required=False),
            channel_name=_text(channel.get("name"), "payload.channel.name", 255, required=False),
            response_url=_text(data.get("response_url"), "payload.response_url", 2048, required=False),
            trigger_id=_text(data.get("trigger_id"), "payload.trigger_id", 255, required=False),
            message_ts=_text(container.get("message_ts") or message.get("ts"), "payload.container.message_ts", 64,
                             required=False))
        asks = []
        for action in actions:
            action_id = _text(action.get("action_id"), "payload.actions[].action_id", 255)
            if not action_id.startswith(self.config.action_prefix):
                continue  # another app's (or another feature's) button
            name, dummy, suffix = action_id[len(self.config.action_prefix):].partition(":")
            if name not in self.config.actions:
                raise webhook.BadInput("unknown action %r in action_id (actions: %s)" % (name[:40], ", ".join(self.config.actions)))
            value = _text(action.get("value"), "payload.actions[].value", 2000, required=False)
            key = self.key(value) if value else None
            if value and key is None:
                raise webhook.BadInput("the button's value is not an incident key")
            if suffix and self.key(suffix) and key and self.key(suffix) != key:
                raise webhook.BadInput("the button's action_id and value name different incidents")
            key = key or self.key(suffix) or self.key_from_channel(common["channel_name"])
            if key is None:
                raise webhook.BadInput("the button names no incident key (value, action_id suffix or incident channel)")
            action_ts = _text(action.get("action_ts"), "payload.actions[].action_ts", 64, required=False)
            asks.append(Ask(action=name, incident_key=key, text=None, action_ts=action_ts,
                            identity=_identity("button", common["team_id"], common["user_id"], common["trigger_id"],
                                               action_id, action_ts, common["message_ts"], value), **common))
        if not asks:
            return Reply(200, None)
        return asks

    # the slash command --------------------------------------------------------------------------
    def command(self, fields):
        command = _text(fields.get("command"), "command", 64)
        user_id = _text(fields.get("user_id"), "user_id", 64)
        channel_id = _text(fields.get("channel_id"), "channel_id", 64)
        trigger_id = _text(fields.get("trigger_id"), "trigger_id", 255)
        text = _text(fields.get("text"), "text", MAX_TEXT, required=False) or ""
        if command != self.config.command:
            return Reply(200, ephemeral("This endpoint answers %s only, not %s." % (self.config.command, command)))
        words = text.strip().split(None, 1)
        action = words[0].lower() if words else "help"
        rest = words[1] if len(words) > 1 else ""
        if action not in self.config.actions:
            return Reply(200, ephemeral(self.usage(None if action == "help" else action)))
        first = rest.split(None, 1)
        key = self.key(first[0]) if first else None
        if key is not None:
            rest = first[1] if len(first) > 1 else ""
        channel_name = _text(fields.get("channel_name"), "channel_name", 255, required=False)
        key = key or self.key_from_channel(channel_name)
        if key is None:
            return Reply(200, ephemeral("Which incident? Type its key (%s %s dt-P-1234) or use the command in the "
                                        "incident's channel." % (self.config.command, action)))
        if action == "note" and not rest.strip():
            return Reply(200, ephemeral("Nothing to note: %s note %s <text>" % (self.config.command, key)))
        return [Ask(via="command", action=action, incident_key=key, user_id=user_id,
                    user_name=_text(fields.get("user_name"), "user_name", 255, required=False), user_email=None,
                    team_id=_text(fields.get("team_id"), "team_id", 64, required=False), channel_id=channel_id,
                    channel_name=channel_name, text=rest.strip() or None,
                    response_url=_text(fields.get("response_url"), "response_url", 2048, required=False),
                    trigger_id=trigger_id, message_ts=None, action_ts=None,
                    identity=_identity("command", fields.get("team_id"), user_id, trigger_id, text))]

    def usage(self, unknown):
        head = "Unknown action %r. " % unknown[:40] if unknown else ""
        return "%sUsage: %s <%s> [incident key] [text] (the key is optional in the incident's channel)." % (
            head, self.config.command, "|".join(self.config.actions))


# --- the allow-list ----------------------------------------------------------------------------

class LookupFailed(Exception):
    """The Slack directory could not be read in time: the request is refused (fail closed)."""


class Directory(object):
    """E-mail addresses and user-group members from the Slack Web API, through the collection's one transport.

    The transport is synchronous; calls run on a small thread pool, bounded by lookup_timeout, and without retries
    (Slack waits 3 seconds for the answer). Results are cached for directory_ttl seconds.
    """

    def __init__(self, config, clock=time.monotonic):
        from ansible_collections.selfheal.devops.plugins.module_utils import _http as http
        from ansible_collections.selfheal.devops.plugins.module_utils import slack as service
        self.config = config
        self.clock = clock
        client = http.Client(config.url, service="Slack", auth=http.bearer_auth(config.api_token),
                             timeout=config.lookup_timeout, connect_timeout=config.lookup_timeout,
                             validate_certs=config.validate_certs, ca_path=config.ca_path,
                             retry=http.RetryPolicy(max_attempts=1, max_wait=0), log=LOGGER.warning)
        self.service = service.SlackService(client)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="selfheal-slack")
        self.emails = {}   # user id -> (email or None, expiry)
        self.groups = None  # (handle or id -> set of user ids, expiry)
        self.lock = threading.Lock()

    async def _call(self, function, *args):
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self.executor, functools.partial(function, *args)),
                                          self.config.lookup_timeout + 0.2)
        except asyncio.TimeoutError:
            raise LookupFailed("Slack did not answer within %.1f s" % self.config.lookup_timeout)
        except Exception as exc:  # noqa: BLE001 - typed transport errors, already redacted
            raise LookupFailed(str(exc))

    async def email(self, user_id):
        cached = self.emails.get(user_id)
        if cached and cached[1] > self.clock():
            return cached[0]
        body = await self._call(self._user_info, user_id)
        email = ((body.get("user") or {}).get("profile") or {}).get("email")
        email = email.lower() if isinstance(email, str) else None
        if len(self.emails) > 10000:
            self.emails.clear()
        self.emails[user_id] = (email, self.clock() + self.config.directory_ttl)
        return email

    def _user_info(self, user_id):
        return self.service.call("users.info", read=True, user=user_id)

    def _usergroups(self):
        return self.service.call("usergroups.list", read=True, include_users="true", include_disabled="false")

    async def group_members(self):
        if self.groups and self.groups[1] > self.clock():
            return self.groups[0]
        body = await self._call(self._usergroups)
        members = {}
        for group in body.get("usergroups") or []:
            if not isinstance(group, dict):
                continue
            users = set(u for u in group.get("users") or [] if isinstance(u, str))
            if group.get("id"):
                members[str(group["id"])] = users
            if group.get("handle"):
                members[str(group["handle"]).lower()] = users
        self.groups = (members, self.clock() + self.config.directory_ttl)
        return members

    def close(self):
        self.executor.shutdown(wait=False)


class Authorizer(object):
    """Decides whether a user may ask for an action: (allowed, reason, email looked up or None)."""

    def __init__(self, config, directory=None):
        self.config = config
        self.directory = directory

    async def check(self, ask):
        action = ask.action
        if action in self.config.open_actions:
            return True, None, None
        rule = self.config.allowed.get(action, self.config.allowed.get("default"))
        if rule is None:
            return False, "nobody may %s from Slack (allowed_users has no entry for it)" % action, None
        if rule["anyone"] or ask.user_id in rule["ids"]:
            return True, None, None
        email = ask.user_email.lower() if ask.user_email else None
        try:
            if rule["emails"]:
                if email is None:
                    email = await self.directory.email(ask.user_id)
                if email and email in rule["emails"]:
                    return True, None, email
            if rule["groups"]:
                members = await self.directory.group_members()
                if any(ask.user_id in members.get(group, ()) for group in rule["groups"]):
                    return True, None, email
        except LookupFailed as exc:
            return False, "the allow-list could not be checked (%s)" % exc, email
        return False, "not on the allow-list for %s" % action, email


# --- intake --------------------------------------------------------------------------------------

def make_event(ask, allowed, reason, email, retry_num):
    slack = {
        "kind": ask.via if allowed else "refused",
        "via": ask.via,
        "action": ask.action if allowed else None,
        "requested_action": ask.action,
        "reason": reason,
        "incident_key": ask.incident_key,
        "user_id": ask.user_id,
        "user_email": ask.user_email or email,
        "user_name": ask.user_name,
        "team_id": ask.team_id,
        "channel_id": ask.channel_id,
        "channel_name": ask.channel_name,
        "text": ask.text,
        "response_url": ask.response_url,
        "trigger_id": ask.trigger_id,
        "message_ts": ask.message_ts,
        "action_ts": ask.action_ts,
        "retry_num": retry_num,
        "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return {"slack": slack}


def decode(content_type, body, headers):
    """The webhook decoder: Slack's form fields plus the retry number of the delivery."""
    fields = webhook.form_body(content_type, body, headers)
    retry = (headers or {}).get("X-Slack-Retry-Num")
    try:
        retry_num = int(retry) if retry is not None else None
    except ValueError:
        raise webhook.BadInput("X-Slack-Retry-Num must be a number")
    return {"fields": fields, "retry_num": retry_num}


class Intake(object):
    """Parse -> authorise -> hand over once per interaction (per-interaction lock, remembered once handed over)."""

    def __init__(self, config, authorizer, notifier=None):
        self.config = config
        self.parser = Parser(config)
        self.authorizer = authorizer
        self.notifier = notifier
        self.locks = webhook.KeyedLocks()
        self.seen = {}
        self.emitted = 0

    async def handle(self, payload, deliver):
        try:
            parsed = self.parser.parse(payload["fields"])
        except webhook.BadInput as exc:
            return 400, {"status": "rejected", "error": str(exc)}
        if isinstance(parsed, Reply):
            return parsed.status, parsed.body
        answers = []
        for ask in parsed:
            status, text = await self.locks(ask.identity, lambda ask=ask: self._once(ask, payload["retry_num"], deliver))
            if status != 200:
                return status, {"status": "retry", "error": text}
            answers.append(text)
        if parsed[0].via == "button":
            return 200, None
        return 200, ephemeral(" ".join(answers))

    async def _once(self, ask, retry_num, deliver):
        if ask.identity in self.seen:
            return 200, "Already received: %s for %s." % (ask.action, ask.incident_key)
        allowed, reason, email = await self.authorizer.check(ask)
        event = make_event(ask, allowed, reason, email, retry_num)
        late = self.decide(ask, event) if allowed else None
        if late is not None:
            if ask.via == "button" and self.notifier is not None:
                self.notifier.tell(ask.response_url, late)
        if not await deliver(event):
            return 503, "the rulebook did not take the event in time; click or type again"
        self.emitted += 1
        self.seen[ask.identity] = True
        if len(self.seen) > 100000:  # bounded memory: forget the oldest half (dicts keep insertion order)
            for old in list(self.seen)[:50000]:
                del self.seen[old]
        if late is not None:
            return 200, late
        if allowed:
            return 200, "Received: %s for %s." % (ask.action, ask.incident_key)
        LOGGER.warning("refused: %s asked to %s %s from Slack: %s", ask.user_id, ask.action, ask.incident_key, reason)
        text = "Refused: you may not %s %s (%s). Nothing was run; the refusal is recorded." % (
            ask.action, ask.incident_key, reason)
        if ask.via == "button" and self.notifier is not None:
            self.notifier.tell(ask.response_url, text)
        return 200, text

    def decide(self, ask, event):
        """Approve and Ignore are answers to the incident: the first one (from Slack or xMatters) wins. Returns the
        text for a late one, else None."""
        if not self.config.decision_dir or ask.action not in ("approve", "ignore") or not ask.incident_key:
            return None
        try:
            decision, ours = decisions.write(self.config.decision_dir, ask.incident_key, {
                "source": "slack", "action": ask.action,
                "responder": "%s (%s)" % (ask.user_name, ask.user_id) if ask.user_name else ask.user_email or ask.user_id})
        except (OSError, ValueError) as exc:
            LOGGER.warning("decision for %s not written to %s: %s", ask.incident_key, self.config.decision_dir, exc)
            return None
        event["slack"]["decided"] = ours
        event["slack"]["decision"] = decision
        if ours:
            return None
        return "Already decided for %s: %s. Your %s changes nothing." % (ask.incident_key, decisions.describe(decision), ask.action)


class Notifier(object):
    """Posts ephemeral messages to a click's response_url (the only way to answer a button), in the background."""

    def __init__(self, config):
        self.config = config
        from ansible_collections.selfheal.devops.plugins.module_utils import _http
        self.http = _http
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="selfheal-slack-reply")
        self.sent = 0

    def tell(self, response_url, text):
        if not response_url or not response_url.startswith(self.config.response_url_prefix):
            LOGGER.warning("refusal not shown to the user: the click's response_url does not start with %s",
                           self.config.response_url_prefix)
            return None
        return self.executor.submit(self._post, response_url, text)

    def _post(self, response_url, text):
        client = self.http.Client(response_url, service="Slack response_url", timeout=5,
                                  validate_certs=self.config.validate_certs, ca_path=self.config.ca_path,
                                  retry=self.http.RetryPolicy(max_attempts=3, max_wait=5), log=LOGGER.warning,
                                  extra_secrets=(response_url,))
        try:
            client.post(response_url, json_body={"response_type": "ephemeral", "replace_original": False, "text": text})
            self.sent += 1
        except Exception as exc:  # noqa: BLE001 - typed transport errors (the URL is redacted)
            LOGGER.warning("could not show the refusal to the user: %s", exc)

    def close(self):
        self.executor.shutdown(wait=False)


async def main(queue, args):
    """Run until cancelled; bad arguments raise ConfigError before anything listens."""
    config = SlackConfig(args)
    webhook_config = webhook.WebhookConfig(config.webhook_args(args), default_path="/slack/actions",
                                           default_max_body=262144, default_port=5002)
    directory = Directory(config) if config.needs_directory else None
    notifier = Notifier(config)
    intake = Intake(config, Authorizer(config, directory), notifier)
    try:
        await webhook.serve(webhook_config, queue, intake.handle, decode=decode)
    finally:
        notifier.close()
        if directory is not None:
            directory.close()


if __name__ == "__main__":
    class PrintQueue(asyncio.Queue):
        async def put(self, item):
            print(json.dumps(item, indent=2), flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(PrintQueue(), {"port": int(sys.argv[1]) if len(sys.argv) > 1 else 5002,
                                    "allowed_users": {"default": ["*"]}}))
