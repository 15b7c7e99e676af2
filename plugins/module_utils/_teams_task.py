# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Microsoft Teams incident channel: find or create, add people, post once, transcript, rename or archive.
Private to the selfheal.devops collection.

The logic of the teams_channel module, shared with the incident orchestrator (incident_sync), which runs it for
several systems at once. Functions take a task object with .params, .check_mode and .warn (an AnsibleModule, or a
_tasks.Task); execute() turns errors into _tasks.Failed, which main() of the module and _tasks.run() report.
"""

import hashlib
import json
import re

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _tasks, msgraph
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput
from ansible_collections.selfheal.devops.plugins.module_utils._files import write_atomically

MARKER_LINE = re.compile(r"\s*\[selfheal:[A-Za-z0-9._-]+\]\s*$")


def message_id_of(params):
    if params["message_id"]:
        if not re.match(r"^[A-Za-z0-9._-]+$", params["message_id"]):
            raise InvalidInput("message_id may contain letters, digits, '.', '_' and '-' only")
        return params["message_id"]
    content = json.dumps([params["incident_key"], params["text"], params["reply_to"]])
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def channel_names(params):
    """(name, closed name) of the incident's channel, validated against Teams' rules."""
    name = params["name"] or msgraph.channel_name(params["incident_key"], params["name_prefix"])
    problem = msgraph.name_problem(name)
    if problem:
        raise InvalidInput("invalid Teams channel name %r: %s" % (name, problem))
    closed = (params["closed_prefix"] or "") + name
    if len(closed) > msgraph.NAME_MAX:
        closed = closed[:msgraph.NAME_MAX].rstrip(" .")
    if "rename" in params["close_action"] and msgraph.name_problem(closed):
        raise InvalidInput("invalid closed channel name %r: %s" % (closed, msgraph.name_problem(closed)))
    return name, closed


def view(channel):
    if channel is None:
        return None
    return dict((k, channel.get(k)) for k in ("id", "displayName", "description", "membershipType", "isArchived", "webUrl"))


def resolve_users(graph, idents):
    """Object ids for UPNs, e-mail addresses and ids; every unknown one is named before anything is written."""
    ids, unknown = [], []
    for ident in idents:
        user = graph.user(ident)
        if user is None:
            unknown.append(ident)
        else:
            ids.append(user["id"])
    if unknown:
        raise InvalidInput("Microsoft Teams: no user has the name or e-mail address %s (Graph /users)" % ", ".join(unknown))
    return list(dict.fromkeys(ids))


def find(graph, team_id, name, closed):
    channel = graph.find_channel(team_id, name)
    if channel is None and closed != name:
        channel = graph.find_channel(team_id, closed)
    return channel


def ensure_present(module, graph, team, names, result, diff):
    params, check = module.params, module.check_mode
    before, after = diff
    if params["post_as"] == "bot" and params["text"] and not (params["tenant_id"] and params["client_id"] and params["client_secret"]):
        raise InvalidInput("post_as=bot needs tenant_id, client_id and client_secret (the app's bot credentials)")
    if params["post_as"] == "graph" and params["text"] and not params["token"]:
        raise InvalidInput("post_as=graph needs a delegated token: Graph refuses channel messages from an application "
                           "token (they may only be imported in migration mode); use post_as=bot")
    owners = resolve_users(graph, params["owners"])
    members = [uid for uid in resolve_users(graph, params["members"]) if uid not in owners]
    private = params["membership_type"] == "private"
    if private and not owners:
        raise InvalidInput("a private channel needs owners (an app must name at least one when it creates one)")
    name, closed = names
    channel = find(graph, team["id"], name, closed)
    if channel is not None and (channel.get("membershipType") or "standard") != params["membership_type"]:
        raise InvalidInput("Teams channel %r exists as a %s channel, not %s" % (
            channel["displayName"], channel.get("membershipType"), params["membership_type"]))
    if channel is None:
        result["created"] = True
        before["channel"], after["channel"] = None, name
        if not check:
            channel, result["created"] = graph.create_channel(team["id"], name, params["description"],
                                                              params["membership_type"], owners)
            if result["created"]:
                result["written"].append("channel %s" % name)
    elif channel.get("isArchived"):
        if not params["unarchive"]:
            raise InvalidInput("Teams channel %r exists and is archived (unarchive=false)" % channel["displayName"])
        before["isArchived"], after["isArchived"] = True, False
        result["unarchived"] = True
        if not check:
            graph.unarchive_channel(team["id"], channel["id"])
            result["written"].append("unarchived %s" % channel["displayName"])
        channel = dict(channel, isArchived=False)
    add_members(module, graph, team, channel, owners, members, result, after)
    if params["text"]:
        post_once(module, graph, team, channel, result, after)
    result["channel"] = view(channel)


def add_members(module, graph, team, channel, owners, members, result, after):
    """Add who is missing: to the team (standard channel) or to the private channel."""
    private = module.params["membership_type"] == "private"
    wanted = members if private else owners + members
    if private and result["created"]:
        have = set(owners)
    elif private:
        have = set(m.get("userId") for m in graph.members(team["id"], channel["id"]))
    else:
        have = set(m.get("userId") for m in graph.members(team["id"]))
    missing = [uid for uid in wanted if uid not in have]
    if private and not result["created"]:
        missing += [uid for uid in owners if uid not in have]
    if not missing:
        return
    result["added"] = missing
    after["members_added"] = missing
    if module.check_mode:
        return
    for uid in missing:
        role = ["owner"] if private and uid in owners else []
        graph.add_member(team["id"], uid, channel_id=channel["id"] if private else None, roles=role)
        result["written"].append("member %s" % uid)


def post_once(module, graph, team, channel, result, after):
    params = module.params
    message_id = message_id_of(params)
    result["message_id"] = message_id
    found = None
    if channel is not None and not result["created"]:
        found = find_marked(graph.messages(team["id"], channel["id"]), message_id, params["reply_to"])
    if found is not None:
        result["message"] = found["id"]
        return
    result["posted"] = True
    after["message"] = params["text"]
    if module.check_mode:
        return
    text = "%s\n\n%s" % (params["text"].rstrip(), msgraph.message_marker(message_id))
    if params["post_as"] == "bot":
        bot = msgraph.bot_from_params(params, log=module.warn)
        result["message"] = bot.post(channel["id"], text, reply_to=params["reply_to"])
    else:
        posted = graph.post_message(team["id"], channel["id"], msgraph.text_to_html(text), reply_to=params["reply_to"])
        result["message"] = posted.get("id")
    result["written"].append("message %s" % message_id)


def find_marked(messages, message_id, reply_to=None):
    """The message carrying the marker (among the replies of reply_to when given), or None."""
    if reply_to:
        parent = next((m for m in messages if m.get("id") == reply_to), None)
        if parent is None:
            raise InvalidInput("reply_to: no message %s in the channel" % reply_to)
        messages = parent.get("replies") or []
    for message in messages:
        if message_id in msgraph.markers_in((message.get("body") or {}).get("content")):
            return message
    return None


def close(module, graph, team, names, result, diff):
    params, check = module.params, module.check_mode
    before, after = diff
    name, closed = names
    channel = find(graph, team["id"], name, closed)
    if channel is None:
        module.warn("Teams channel %r does not exist in %s; nothing to close" % (name, team["displayName"]))
        return
    if "rename" in params["close_action"] and channel["displayName"] != closed:
        if channel.get("isArchived"):
            module.warn("Teams channel %r is archived; it cannot be renamed" % channel["displayName"])
        else:
            before["displayName"], after["displayName"] = channel["displayName"], closed
            result["renamed"] = True
            if not check:
                graph.update_channel(team["id"], channel["id"], displayName=closed)
                result["written"].append("renamed to %s" % closed)
            channel = dict(channel, displayName=closed)
    if "archive" in params["close_action"] and not channel.get("isArchived"):
        before["isArchived"], after["isArchived"] = False, True
        result["archived"] = True
        if not check:
            graph.archive_channel(team["id"], channel["id"])
            result["written"].append("archived %s" % channel["displayName"])
        channel = dict(channel, isArchived=True)
    result["channel"] = view(channel)


def transcript(module, graph, team, names, result):
    params = module.params
    name, closed = names
    channel = find(graph, team["id"], name, closed)
    if channel is None:
        raise InvalidInput("Teams channel %r does not exist in team %s" % (name, team["displayName"]))
    result["channel"] = view(channel)
    entries = transcript_entries(graph.messages(team["id"], channel["id"]))
    result["transcript"] = entries
    result["message_count"] = len(entries)
    if params["transcript_path"] and not module.check_mode:
        content = render(team, channel, entries, params["transcript_format"])
        result["path"] = params["transcript_path"]
        if read_text(params["transcript_path"]) != content:
            try:
                write_atomically(params["transcript_path"], content)
            except (IOError, OSError) as exc:
                raise InvalidInput("cannot write the transcript to %s: %s" % (params["transcript_path"], exc))
            result["changed_file"] = True


def entry(message, parent=None):
    origin = message.get("from") or {}
    who = origin.get("user") or origin.get("application") or origin.get("device") or {}
    text = msgraph.html_to_text((message.get("body") or {}).get("content"))
    return {"id": message.get("id"), "time": message.get("createdDateTime"), "author": who.get("displayName") or "unknown",
            "text": MARKER_LINE.sub("", text), "reply_to": parent}


def transcript_entries(messages):
    """User messages oldest first, each thread's replies (oldest first) right after their parent."""
    out = []
    for message in sorted(messages, key=lambda m: m.get("createdDateTime") or ""):
        if message.get("messageType") != "message" or message.get("deletedDateTime"):
            continue
        out.append(entry(message))
        replies = [r for r in message.get("replies") or [] if r.get("messageType") == "message" and not r.get("deletedDateTime")]
        out.extend(entry(reply, message.get("id")) for reply in sorted(replies, key=lambda r: r.get("createdDateTime") or ""))
    return out


def render(team, channel, entries, form):
    if form == "json":
        return json.dumps({"team": {"id": team["id"], "displayName": team["displayName"]}, "channel": view(channel),
                           "messages": entries}, indent=2) + "\n"
    lines = ["# Microsoft Teams transcript of %s / %s" % (team["displayName"], channel["displayName"]), ""]
    for item in entries:
        stamp = (item["time"] or "").replace("T", " ")[:19]
        indent = "    " if item["reply_to"] else ""
        text = item["text"].replace("\n", "\n" + indent + "  ")
        lines.append("%s- `%s` **%s**: %s" % (indent, stamp, item["author"], text))
    return "\n".join(lines) + "\n"


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def run(module, graph, result):
    """Do what O(state) asks; fills result and returns (changed, diff)."""
    params = module.params
    names = channel_names(params)
    diff = ({}, {})
    team = graph.team(params["team"])
    result["team"] = {"id": team["id"], "displayName": team.get("displayName")}
    if params["state"] == "present":
        if team.get("isArchived"):
            raise InvalidInput("Microsoft Teams: team %s is archived; a channel cannot be opened in it" % team.get("displayName"))
        ensure_present(module, graph, team, names, result, diff)
    elif params["state"] == "closed":
        close(module, graph, team, names, result, diff)
    else:
        transcript(module, graph, team, names, result)
    flags = [result.pop(flag, False) for flag in ("unarchived", "renamed", "archived", "changed_file")]
    changed = bool(result["created"] or result["added"] or result["posted"] or any(flags))
    return changed, {"before": diff[0], "after": diff[1]}


def argument_spec():
    return _options.argument_spec(
        "msgraph",
        team=dict(type="str", required=True),
        incident_key=dict(type="str", required=True, no_log=False),
        name=dict(type="str"),
        name_prefix=dict(type="str", default="inc-"),
        state=dict(type="str", choices=["present", "closed", "transcript"], default="present"),
        description=dict(type="str"),
        membership_type=dict(type="str", choices=["standard", "private"], default="standard"),
        members=dict(type="list", elements="str", default=[]),
        owners=dict(type="list", elements="str", default=[]),
        unarchive=dict(type="bool", default=True),
        text=dict(type="str"),
        reply_to=dict(type="str"),
        message_id=dict(type="str"),
        post_as=dict(type="str", choices=["bot", "graph"], default="bot"),
        close_action=dict(type="list", elements="str", choices=["archive", "rename"], default=["archive"]),
        closed_prefix=dict(type="str", default="closed-"),
        transcript_path=dict(type="path"),
        transcript_format=dict(type="str", choices=["markdown", "json"], default="markdown"),
    )


CONSTRAINTS = {}


def new_result():
    return {"team": None, "channel": None, "created": False, "added": [], "posted": False, "written": []}


def execute(task):
    """The module's result (changed, team, channel, ...); _tasks.Failed when it failed (saying what was written)."""
    return _tasks.execute_writes(task, lambda: msgraph.graph_from_params(task.params, log=task.warn), run, new_result())
