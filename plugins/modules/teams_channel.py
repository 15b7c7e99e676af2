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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _tasks, _teams_task


def main():
    module = AnsibleModule(argument_spec=_teams_task.argument_spec(), supports_check_mode=True, **_teams_task.CONSTRAINTS)
    _options.require_requests(module)
    try:
        result = _teams_task.execute(module)
    except _tasks.Failed as failed:
        module.fail_json(**failed.kwargs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
