#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: teams_channel
short_description: Open a Microsoft Teams channel per incident, add the responders, post once, export its transcript, archive it
version_added: 0.1.0
description:
  - Manages one channel per incident in a configured team through Microsoft Graph v1.0, with an app registration's
    application permissions (client credentials from the Microsoft identity platform; the token is cached for its
    lifetime and fetched again when it expires or Graph answers 401).
  - The channel is O(name), or derived from O(incident_key) with O(name_prefix), following Teams' rules for channel
    names (at most 50 characters, none of the characters Teams refuses; see O(name)).
  - O(state=present) finds the channel by display name (C($filter=displayName eq 'name')) before creating it, so a
    re-run never creates a second one; an archived one is unarchived unless O(unarchive=false). It adds O(members)
    (user principal names, e-mail addresses or object ids, all looked up before anything is written - an unknown
    one fails naming it) - to the team for a standard channel (its members are the team's), to the channel for a
    private one (O(owners) become its owners). It posts O(text) once.
  - A message is posted once per O(message_id) (default a hash of O(incident_key), O(text) and O(reply_to)); it ends with a marker
    line C([selfheal:<id>]) that a re-run looks for in the channel's messages (or the thread's replies).
  - Messages are posted as the app's bot through the Bot Framework connector (O(post_as=bot)), because Graph lets
    an application token post channel messages only when importing into a channel in migration mode. With a
    delegated O(token) (a service account with C(ChannelMessage.Send)), O(post_as=graph) posts through Graph.
  - O(state=transcript) reads every message and its replies (C($expand=replies), pages through
    C(@odata.nextLink)), returns them oldest first and, with O(transcript_path), writes them as Markdown or JSON
    (atomically, only when the content changed).
  - O(state=closed) archives the channel (Graph v1.0 C(POST .../channels/{id}/archive), asynchronous on the Teams side) and/or renames
    it with O(closed_prefix), as O(close_action) says. To archive a whole team that was made for one incident, use
    Graph's C(POST /teams/{id}/archive) outside this module.
  - HTTP 429 is retried after C(Retry-After); Graph's error C(code) and C(message) end up in the failure message.
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.msgraph
  - selfheal.devops.connection
  - selfheal.devops.attributes
  - selfheal.devops.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details:
      - Reads the team, the users, the channel, its members and messages and reports what would change; creates,
        adds, posts, renames and archives nothing. O(state=transcript) returns the transcript but writes no file.
  diff_mode:
    support: full
    details: Shows the channel, the members added, the message posted, the name and the archived flag before and after.
  action_group:
    membership:
      - selfheal.devops.teams
options:
  team:
    description: The team, by id (a GUID) or display name (one team must have it).
    type: str
    required: true
  incident_key:
    description: Incident key, for example V(dt-P-1234); names the channel (without O(name)) and keys the message ids.
    type: str
    required: true
  name:
    description:
      - Channel display name. Default derived from O(incident_key) (characters Teams refuses become C(-)).
      - "Teams refuses names longer than 50 characters, names with any of C(~ # % & * { } + / \\ : < > ? | ' \" ,)
        or C(..), and names that start with C(_) or C(.) or end with C(.)."
    type: str
  name_prefix:
    description: Prefix of the derived channel name.
    type: str
    default: inc-
  state:
    description: What to do with the channel.
    type: str
    choices: [present, closed, transcript]
    default: present
  description:
    description: Channel description, set when the channel is created.
    type: str
  membership_type:
    description: V(standard) (the team's members) or V(private) (its own members; needs O(owners)).
    type: str
    choices: [standard, private]
    default: standard
  members:
    description: People to add, as user principal names, e-mail addresses or Entra object ids.
    type: list
    elements: str
    default: []
  owners:
    description:
      - Owners of a private channel (user principal names, e-mail addresses or object ids), given when it is
        created; an app must name at least one. For a standard channel they are added to the team as members.
    type: list
    elements: str
    default: []
  unarchive:
    description: With O(state=present), unarchive the incident's channel when it is archived; V(false) fails instead.
    type: bool
    default: true
  text:
    description: Message to post once (Markdown as Teams renders it for bots; plain text through Graph).
    type: str
  reply_to:
    description: Post the message as a reply in this thread (the Graph id of the thread's first message).
    type: str
  message_id:
    description: Identifies the message for posting once; default a hash of O(incident_key), O(text) and O(reply_to).
    type: str
  post_as:
    description:
      - V(bot) posts as the app's bot through the Bot Framework connector (O(bot_url)); the app must be registered
        as an Azure Bot and installed in the team.
      - V(graph) posts through Graph; this needs a delegated O(token) (application tokens are refused by Graph).
    type: str
    choices: [bot, graph]
    default: bot
  close_action:
    description: What O(state=closed) does - V(archive) the channel, V(rename) it with O(closed_prefix), or both.
    type: list
    elements: str
    choices: [archive, rename]
    default: [archive]
  closed_prefix:
    description: Prefix a closed channel's name gets with O(close_action=rename).
    type: str
    default: closed-
  transcript_path:
    description: With O(state=transcript), write the transcript to this file (its folder must exist).
    type: path
  transcript_format:
    description: Format of O(transcript_path).
    type: str
    choices: [markdown, json]
    default: markdown
notes:
  - "Application permissions (admin consent) - C(Team.ReadBasic.All), C(Channel.Create), C(Channel.ReadBasic.All),
    C(ChannelSettings.ReadWrite.All) (rename, archive), C(TeamMember.ReadWrite.All) (standard channels),
    C(ChannelMember.ReadWrite.All) (private channels), C(User.Read.All) (people by UPN or e-mail) and
    C(ChannelMessage.Read.All) (find posted messages, transcript; a protected API that Microsoft must approve for the
    app). See docs/teams.md."
seealso:
  - module: selfheal.devops.slack_channel
  - name: Microsoft Graph Teams API
    description: channels, members, messages and replies.
    link: https://learn.microsoft.com/en-us/graph/api/resources/teams-api-overview?view=graph-rest-1.0
"""

EXAMPLES = r"""
- name: Open the incident channel with the on-call responders
  selfheal.devops.teams_channel:
    team: Operations
    incident_key: "{{ incident_key }}"
    description: "P-1234: web crashed on web-01 | INC0010001"
    members:
      - oncall.primary@example.com
    text: "**P-1234** web crashed on web-01. Restarting it now; ticket INC0010001."
  register: channel

- name: Post progress in the thread
  selfheal.devops.teams_channel:
    team: Operations
    incident_key: "{{ incident_key }}"
    reply_to: "{{ channel.message }}"
    text: "Restarted web on web-01; healthy."

- name: Export the transcript for the tickets
  selfheal.devops.teams_channel:
    team: Operations
    incident_key: "{{ incident_key }}"
    state: transcript
    transcript_path: "/var/tmp/selfheal/{{ incident_key }}-teams.md"

- name: Archive the channel
  selfheal.devops.teams_channel:
    team: Operations
    incident_key: "{{ incident_key }}"
    state: closed
"""

RETURN = r"""
team:
  description: The team (id, displayName).
  returned: always
  type: dict
  sample: {"id": "0a6f3e2b-1c4d-4e5f-8a9b-0c1d2e3f4a5b", "displayName": "Operations"}
channel:
  description: The channel (null when it does not exist, or in check mode before it is created).
  returned: always
  type: dict
  sample: {"id": "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2", "displayName": "inc-dt-P-1234",
           "membershipType": "standard", "isArchived": false, "webUrl": "https://teams.microsoft.com/l/channel/..."}
created:
  description: Whether this run created the channel.
  returned: always
  type: bool
added:
  description: Object ids of the people added by this run.
  returned: always
  type: list
  elements: str
posted:
  description: Whether this run posted the message.
  returned: always
  type: bool
message:
  description: Graph id of the message (posted by this run or found from an earlier run); the O(reply_to) of replies.
  returned: when O(text) is given, outside check mode
  type: str
  sample: "1700000000123"
message_id:
  description: The marker id of the message (C([selfheal:<id>])).
  returned: when O(text) is given
  type: str
transcript:
  description: Every message, oldest first, thread replies after their parent (id, time, author, text, reply_to).
  returned: O(state=transcript)
  type: list
  elements: dict
message_count:
  description: Number of messages in the transcript.
  returned: O(state=transcript)
  type: int
path:
  description: The file the transcript was written to.
  returned: O(state=transcript) with O(transcript_path), outside check mode
  type: str
written:
  description: On a failure after something was written, what was written (the run is then reported changed).
  returned: on failure after a write
  type: list
  elements: str
"""

import hashlib
import json
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _options, msgraph
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, SelfHealError
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


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _options.require_requests(module)
    result = {"team": None, "channel": None, "created": False, "added": [], "posted": False, "written": []}
    try:
        graph = msgraph.graph_from_params(module.params, log=module.warn)
        changed, diff = run(module, graph, result)
    except SelfHealError as error:
        failure = error.to_fail_kwargs()
        if result["written"]:
            failure.update(changed=True, written=result["written"],
                           msg="%s (written before the failure: %s)" % (failure["msg"], "; ".join(result["written"])))
        module.fail_json(**failure)
    del result["written"]
    if module._diff:
        result["diff"] = diff
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
