#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: slack_channel
short_description: Open an incident channel in Slack, invite the responders, post once, archive it and export its transcript
version_added: 0.1.0
description:
  - Manages one Slack channel per incident. Its name is O(name), or derived from O(incident_key) (with
    O(name_prefix)) and cleaned to Slack's rules (lowercase letters, digits, C(-) and C(_), at most 80 characters).
  - O(state=present) looks the channel up first (paging C(conversations.list), archived channels included; an
    archived one is unarchived unless O(unarchive=false)) and creates it only when it does not exist, so a re-run
    sends no C(conversations.create); a C(name_taken) answer (a channel created meanwhile) finds it instead. It sets
    O(topic) and O(purpose) when they differ; invites O(users) (Slack ids or e-mail addresses looked up with
    C(users.lookupByEmail)) who are not members yet, in batches of 100; posts O(text) and/or O(blocks) once.
  - Before the first write, every e-mail address is looked up and every user id that is not a member yet is read
    (C(users.info)); an unknown or deactivated one fails, naming it, with nothing created. When a later step fails
    after something was written, the failure says C(changed=true) and lists it in RV(written).
  - A message is posted once per O(message_id) (default a hash of the text and blocks). The message carries Slack
    message metadata (C(event_type) C(selfheal_devops_message), with the incident key and the message id), which
    a re-run looks for in the channel history (or the thread) before posting.
  - O(state=archived) archives the channel (no change when it is archived already or does not exist).
  - O(state=transcript) reads the whole history, thread replies included, oldest first, returns it and, with
    O(transcript_path), writes it as Markdown or JSON (atomically) for attaching to the ticket.
  - Slack's HTTP 200 C(ok=false) answers become clear failures naming the Slack error. HTTP 429 is retried
    after C(Retry-After).
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.slack
  - selfheal.devops.connection
  - selfheal.devops.attributes
  - selfheal.devops.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details:
      - Reads the channel, its members and history and reports what would change; creates, invites, posts and
        archives nothing. O(state=transcript) reads and returns the transcript but writes no file.
      - O(state=transcript) is V(changed) only when the file's content changed.
  diff_mode:
    support: full
    details: Shows the channel's topic, purpose, members added, archived flag and posted message before and after.
  action_group:
    membership:
      - selfheal.devops.slack
options:
  incident_key:
    description: Incident key, for example V(dt-P-1234); names the channel (without O(name)) and marks the messages.
    type: str
    required: true
  name:
    description: Channel name; must already follow Slack's rules. Default derived from O(incident_key).
    type: str
  name_prefix:
    description: Prefix of the derived channel name.
    type: str
    default: inc-
  state:
    description: What to do with the channel.
    type: str
    choices: [present, archived, transcript]
    default: present
  private:
    description: Create a private channel.
    type: bool
    default: false
  unarchive:
    description: With O(state=present), unarchive the incident's channel when it exists archived; V(false) fails instead.
    type: bool
    default: true
  topic:
    description: Channel topic (at most 250 characters).
    type: str
  purpose:
    description: Channel purpose (at most 250 characters).
    type: str
  users:
    description: People to invite, as Slack user ids (V(U0123ABCD)) or e-mail addresses.
    type: list
    elements: str
    default: []
  text:
    description: Message to post once (Slack mrkdwn). Also the notification fallback when O(blocks) is given.
    type: str
  blocks:
    description: Block Kit blocks of the message.
    type: list
    elements: dict
  thread_ts:
    description: Post the message as a reply in this thread (the parent message's C(ts)).
    type: str
  message_id:
    description: Identifies the message for posting once; default a hash of O(text) and O(blocks).
    type: str
  transcript_path:
    description:
      - With O(state=transcript), write the transcript to this file (atomically).
      - Folders above it that do not exist yet are created, readable by their owner only (mode C(0700)); an
        existing folder is used as it is. A path that cannot be written fails with the reason.
    type: path
  transcript_format:
    description: Format of O(transcript_path).
    type: str
    choices: [markdown, json]
    default: markdown
notes:
  - Bot token scopes - C(channels:manage), C(channels:read), C(channels:history) (for private channels
    C(groups:write), C(groups:read), C(groups:history)), C(chat:write), C(users:read) (C(users.info)) and
    C(users:read.email) (C(users.lookupByEmail); Slack grants it only together with C(users:read)).
seealso:
  - module: selfheal.devops.jira_incident
  - name: Slack Web API methods
    description: conversations.*, chat.postMessage, users.lookupByEmail.
    link: https://docs.slack.dev/reference/methods
"""

EXAMPLES = r"""
- name: Open the incident channel with the on-call responders (process crash)
  selfheal.devops.slack_channel:
    incident_key: "{{ incident_key }}"
    topic: "P-1234: web crashed on web-01 | OPS-24"
    users:
      - oncall.primary@example.com
      - U0123ABCD
    text: ":rotating_light: *P-1234* web crashed on web-01. Restarting it now; ticket OPS-24."
  register: channel

- name: Post progress in a thread (full disk)
  selfheal.devops.slack_channel:
    incident_key: "{{ incident_key }}"
    thread_ts: "{{ channel.ts }}"
    text: "Deleted 1,204 temporary files (2.1 GB) on db-01; /var is 61 % used."

- name: Export the transcript for the ticket, then archive (blue-green rollback)
  selfheal.devops.slack_channel:
    incident_key: "{{ incident_key }}"
    state: transcript
    transcript_path: "/var/tmp/selfheal/{{ incident_key }}-slack.md"

- name: Archive the channel
  selfheal.devops.slack_channel:
    incident_key: "{{ incident_key }}"
    state: archived
"""

RETURN = r"""
channel:
  description: The channel (null when it does not exist, or in check mode before it is created).
  returned: always
  type: dict
  sample: {"id": "C0EAQDV4Z", "name": "inc-dt-p-1234", "is_archived": false, "topic": "P-1234: web crashed"}
created:
  description: Whether this run created the channel.
  returned: always
  type: bool
invited:
  description: Slack ids invited by this run.
  returned: always
  type: list
  elements: str
ts:
  description: The C(ts) of the message (posted by this run or found from an earlier run).
  returned: when O(text) or O(blocks) is given
  type: str
  sample: "1700000000.000100"
posted:
  description: Whether this run posted the message.
  returned: always
  type: bool
transcript:
  description: Every message, oldest first, thread replies after their parent (user, text, ts, thread_ts).
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
  description: What this run had written when it failed (the failure then says C(changed=true)).
  returned: on failure after a write
  type: list
  elements: str
  sample: ["created channel #inc-dt-p-1234", "set the topic"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _slack_task, _tasks


def main():
    module = AnsibleModule(argument_spec=_slack_task.argument_spec(), supports_check_mode=True)
    _options.require_requests(module)
    try:
        result = _slack_task.execute(module)
    except _tasks.Failed as failed:
        module.fail_json(**failed.kwargs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
