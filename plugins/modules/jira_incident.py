#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: jira_incident
short_description: Open, update, comment on, attach to and resolve a Jira incident, once per incident key
version_added: 0.1.0
description:
  - Manages one Jira issue per incident on Jira Cloud (REST v3 with Atlassian Document Format, or v2) and Jira
    Data Center (REST v2), optionally created through Jira Service Management.
  - The issue is found by O(key), or by the label O(incident_key) with a bounded JQL search (enhanced
    C(/search/jql) with C(nextPageToken) on Cloud, C(/search) with C(startAt) on Data Center) before anything is
    created, so a re-run finds the issue it created instead of opening a second one.
  - O(state=present) creates the issue or brings O(summary), O(description), O(priority), O(labels),
    O(components) and O(custom_fields) to the given values, with a diff of the changed fields.
  - O(comment) adds a comment once; it ends with a small grey marker line C([selfheal:<id>]) by which a re-run
    recognises it. O(state=commented) only comments on an existing issue.
  - O(state=resolved), O(status) or O(transition) move the issue through its workflow; nothing happens when it is
    already there. An unknown or unavailable transition fails, naming the transitions that are available.
  - O(attachments) uploads each file once.
  - O(description) and O(comment) take plain text or simple Markdown (paragraphs, C(#) headings, C(-) and C(1.)
    lists, fenced code blocks, C(**bold**), C(`code`), C([text](url)) links and bare URLs); the module sends ADF on
    REST v3 and wiki markup on REST v2.
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.jira
  - selfheal.devops.connection
  - selfheal.devops.attributes
  - selfheal.devops.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details:
      - Reads the issue, its comments and transitions, writes nothing, and returns the predicted result.
      - When the issue does not exist yet, C(key), C(id), C(url) and C(status) are null and a requested
        transition is predicted without checking it against the workflow.
  diff_mode:
    support: full
    details: Shows the changed fields, the status, the added comment and the added attachments before and after.
  action_group:
    membership:
      - selfheal.devops.jira
options:
  key:
    description:
      - Key (or id) of an existing issue, for example V(OPS-24). Takes precedence over O(incident_key) for finding
        the issue; the O(incident_key) label is still added to it.
    type: str
  incident_key:
    description:
      - Incident key, for example V(dt-P-1234). Used as a Jira label, always present on the issue, and searched
        for (in O(project) when given) to find the issue.
      - When several issues carry the label, the oldest one is used and a warning names the others.
    type: str
  project:
    description:
      - Project key. Required to create an issue (O(state=present) without O(key)); narrows the search by
        O(incident_key).
    type: str
  issue_type:
    description: Issue type name used when creating the issue.
    type: str
    default: Incident
  state:
    description:
      - V(present) creates the issue when it does not exist and updates the given fields.
      - V(commented) requires an existing issue and O(comment).
      - V(resolved) requires an existing issue and moves it to a resolved status (a status of the C(done)
        category, preferring one named C(Resolved) or C(Done)) unless it already has one; with O(status), to
        exactly that status. O(comment) is then posted with the transition, as the resolution comment, and not at
        all when the issue was already resolved.
    type: str
    choices: [present, commented, resolved]
    default: present
  summary:
    description: Issue summary. Required to create an issue.
    type: str
  description:
    description:
      - Issue description as plain text or simple Markdown (see above).
      - Compared with the issue's description after conversion, so a re-run with the same text changes nothing.
    type: str
  priority:
    description: Priority name, for example V(High).
    type: str
  labels:
    description:
      - Labels that must be on the issue (with O(incident_key)); labels already on the issue are kept.
    type: list
    elements: str
    default: []
  components:
    description: Component names that must be on the issue; components already on the issue are kept.
    type: list
    elements: str
    default: []
  custom_fields:
    description:
      - Custom field values by field id (V(customfield_10050)) or unique field name, in the API's form (for
        example a select option as a dict with a C(value) key, see EXAMPLES).
      - A string for a multi-line text field is converted like O(description) (ADF on REST v3, wiki markup on v2).
      - A value counts as unchanged when the issue's value contains it (for example C(value) of an option).
    type: dict
    default: {}
  comment:
    description: Text of a comment to add once (plain text or simple Markdown).
    type: str
  comment_id:
    description:
      - Identifies the comment in its marker. Defaults to a hash of O(comment), so the same text is added once;
        set it to add a comment once per event even when its text changes between runs.
    type: str
  comment_internal:
    description:
      - Jira Service Management - make the comment internal (visible to agents only), through the comment
        property C(sd.public.comment). Ignored by Jira on projects that are not service desks.
    type: bool
    default: false
  status:
    description:
      - Status the issue must have, for example V(In Progress) or V(Closed). The module picks an available
        transition that leads there (or uses O(transition)).
    type: str
  transition:
    description:
      - Name of the transition to run, for example V(Resolve Issue).
      - Without O(status) (and outside O(state=resolved)) a re-run can tell the issue is already there only on
        Jira Cloud, which lists unavailable transitions with their target; on Data Center set O(status) too.
    type: str
  resolution:
    description:
      - Resolution to set with the transition, for example V(Fixed). Sent only when the transition's screen has
        the resolution field (a warning says when it has not).
    type: str
  attachments:
    description:
      - Files to attach. A file is skipped when the issue already has an attachment with the same file name and
        size; Jira exposes no content hash, so a file changed without changing its size is not uploaded again.
      - Files are read into memory (so a retried upload can be sent again); at most 60 go in one request.
    type: list
    elements: path
    default: []
  service_desk_id:
    description:
      - Jira Service Management service desk id. With O(request_type_id), a new issue is created as a customer
        request (C(POST /rest/servicedeskapi/request) with summary and description), then the other fields and the
        O(incident_key) label are set through the issue API.
    type: str
  request_type_id:
    description: Jira Service Management request type id, with O(service_desk_id).
    type: str
notes:
  - Jira Cloud's search is eventually consistent; two runs started within a second or two for the same new
    incident may both miss the other's issue. Run one play per incident at a time (the rulebooks throttle per
    problem).
  - In the JSM path the label is set by a second request right after the request is created; if that request
    fails, the next run cannot find the issue by O(incident_key).
seealso:
  - module: selfheal.devops.dynatrace_problem
"""

EXAMPLES = r"""
- name: Open (or update) the incident ticket
  selfheal.devops.jira_incident:
    project: OPS
    incident_key: "{{ incident_key }}"
    summary: "Dynatrace {{ problem.display_id }}: {{ problem.title }}"
    description: |
      Opened by **selfheal.devops** for [{{ problem.display_id }}]({{ problem.url }}).

      - Impacted: {{ problem.entities | map(attribute='name') | join(', ') }}
      - Severity: {{ problem.severity }}
    priority: High
    components: [checkout]
    custom_fields:
      customfield_10060: {value: Major}
  register: ticket

- name: Record the remediation
  selfheal.devops.jira_incident:
    key: "{{ ticket.key }}"
    state: commented
    comment: "Restarted `checkout` on web-01; health check passed."
    comment_id: "{{ incident_key }}-restart"

- name: Attach the Slack transcript and resolve
  selfheal.devops.jira_incident:
    project: OPS
    incident_key: "{{ incident_key }}"
    state: resolved
    resolution: Fixed
    comment: Resolved automatically after a verified fix.
    attachments:
      - "{{ transcript_path }}"

- name: Jira Data Center with a personal access token (REST v2)
  selfheal.devops.jira_incident:
    url: https://jira.example.com
    token: "{{ jira_pat }}"
    api_version: "2"
    project: OPS
    incident_key: "{{ incident_key }}"
    summary: Disk full on db-01
    status: In Progress

- name: Create through Jira Service Management, with module defaults for the connection
  module_defaults:
    group/selfheal.devops.jira:
      url: https://example.atlassian.net
      user: automation@example.com
      token: "{{ jira_api_token }}"
  block:
    - name: Open the customer request
      selfheal.devops.jira_incident:
        service_desk_id: "10"
        request_type_id: "25"
        project: OPS
        incident_key: "{{ incident_key }}"
        summary: Checkout is slow
"""

RETURN = r"""
key:
  description: Issue key (null in check mode when the issue would be created).
  returned: always
  type: str
  sample: OPS-24
id:
  description: Issue id.
  returned: always
  type: str
  sample: "10000"
url:
  description: Browse URL of the issue.
  returned: always
  type: str
  sample: https://example.atlassian.net/browse/OPS-24
status:
  description: Status of the issue after the run (predicted in check mode).
  returned: always
  type: str
  sample: Resolved
created:
  description: Whether the issue was created (would be, in check mode).
  returned: always
  type: bool
updated_fields:
  description: Ids of the fields that were changed on an existing issue.
  returned: always
  type: list
  elements: str
  sample: [description, labels]
commented:
  description: Whether a comment was added.
  returned: always
  type: bool
comment_id:
  description: The marker id of the comment (C([selfheal:<id>])), when O(comment) was given.
  returned: when O(comment) was given
  type: str
  sample: 3f2c9a1b7d0e
transitioned:
  description: The transition that ran (from, to, transition name), or null.
  returned: always
  type: dict
  sample: {"from": "Open", "to": "Resolved", "transition": "Resolve Issue"}
attached:
  description: File names uploaded in this run.
  returned: always
  type: list
  elements: str
  sample: [slack-transcript.txt]
issue:
  description: The issue after the run (predicted in check mode).
  returned: always
  type: dict
  sample: {"key": "OPS-24", "id": "10000", "url": "https://example.atlassian.net/browse/OPS-24",
           "summary": "Dynatrace P-1234: Response time degradation", "status": "Open", "resolution": null,
           "priority": "High", "labels": ["dt-P-1234"], "components": ["checkout"], "attachments": []}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _jira_task, _options, _tasks


def main():
    module = AnsibleModule(argument_spec=_jira_task.argument_spec(), supports_check_mode=True, **_jira_task.CONSTRAINTS)
    _options.require_requests(module)
    try:
        result = _jira_task.execute(module)
    except _tasks.Failed as failed:
        module.fail_json(**failed.kwargs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
