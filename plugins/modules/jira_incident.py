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

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _options, jira
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, SelfHealError, UnexpectedResponse


def read_attachments(paths):
    """(name, path, size) of every file to attach; InvalidInput before any write when one cannot be read."""
    found = []
    for path in paths:
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise InvalidInput("attachments: %s is not a readable file" % path)
        found.append((os.path.basename(path), path, os.path.getsize(path)))
    names = [name for name, dummy, dummy2 in found]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        raise InvalidInput("attachments: several files are named %s; Jira tells attachments apart by name" % ", ".join(duplicates))
    return found


def desired_fields(params, service):
    """The fields the issue must have, in API form (labels and components as names)."""
    desired = {}
    if params["summary"] is not None:
        desired["summary"] = params["summary"]
    if params["description"] is not None:
        desired["description"] = service.rich(params["description"])
    if params["priority"]:
        desired["priority"] = {"name": params["priority"]}
    labels = list(params["labels"])
    if params["incident_key"] and params["incident_key"] not in labels:
        labels.append(params["incident_key"])
    if labels:
        desired["labels"] = labels
    if params["components"]:
        desired["components"] = list(params["components"])
    if params["custom_fields"]:
        custom = params["custom_fields"]
        needs_lookup = any(not str(name).startswith("customfield_") or isinstance(value, str) for name, value in custom.items())
        if needs_lookup:
            custom = jira.resolve_custom_fields(custom, service.field_list(), service.version)
        desired.update(custom)
    return desired


def create_fields(params, desired):
    fields = {"project": {"key": params["project"]}, "issuetype": {"name": params["issue_type"]}}
    for field_id, value in desired.items():
        if field_id == "components":
            fields[field_id] = [{"name": name} for name in value]
        else:
            fields[field_id] = value
    return fields


def find_issue(params, service, warn):
    """The full issue this run manages, or None."""
    if params["key"]:
        return service.get_issue(params["key"])
    found = service.find_by_label(params["incident_key"], params["project"])
    if not found:
        return None
    if len(found) > 1:
        warn("%d issues carry the label %s (%s); using the oldest, %s" % (
            len(found), params["incident_key"], ", ".join(i.get("key") for i in found), found[0].get("key")))
    return service.get_issue(found[0]["key"])


def create_issue(params, service, desired):
    """Create the issue (through JSM when asked, then the other fields through the issue API); returns its key."""
    if params["service_desk_id"]:
        values = {"summary": params["summary"]}
        if params["description"] is not None:
            values["description"] = jira.markdown_to_wiki(params["description"])
        created = service.create_request(params["service_desk_id"], params["request_type_id"], values)
        key = created["issueKey"]
        issue = service.get_issue(key)
        payload = jira.plan_field_changes(issue.get("fields") or {}, desired)[0]
        if payload:
            service.update_issue(key, payload)
        return key
    return service.create_issue(create_fields(params, desired))["key"]


def wanted_transition(params):
    """(status, transition, resolved) the run asks for; all None/False when it asks for none."""
    resolved = params["state"] == "resolved"
    return params["status"], params["transition"], resolved


def run(module, service):
    """Ensure the issue, its fields, comment, attachments and status; returns (changed, result, diff)."""
    params, check = module.params, module.check_mode
    files = read_attachments(params["attachments"])
    result = {"key": None, "id": None, "url": None, "status": None, "created": False, "updated_fields": [],
              "commented": False, "transitioned": None, "attached": []}
    before, after = {}, {}
    desired = desired_fields(params, service)
    issue = find_issue(params, service, module.warn)
    status, transition, resolved = wanted_transition(params)

    if issue is None:
        if params["state"] != "present":
            scope = " in project %s" % params["project"] if params["project"] else ""
            raise NotFound("No Jira issue carries the label %s%s; nothing to %s" % (
                params["incident_key"], scope, "comment on" if params["state"] == "commented" else "resolve"))
        if not params["project"] or not params["summary"]:
            raise InvalidInput("No Jira issue carries the label %s yet; project and summary are required to create it"
                               % params["incident_key"])
        result["created"] = True
        after.update(dict((k, jira.readable(k, v)) for k, v in desired.items()))
        if check:
            predicted = {"key": None, "id": None, "fields": dict(desired, components=[{"name": n} for n in desired.get(
                "components", [])], priority=desired.get("priority"), status=None, attachment=[])}
            return predict_new(params, result, predicted, files, before, after, service)
        key = create_issue(params, service, desired)
        issue = service.get_issue(key)
    else:
        payload, changed_before, changed_after = jira.plan_field_changes(issue.get("fields") or {}, desired)
        if payload:
            if not check:
                service.update_issue(issue["key"], payload)
            result["updated_fields"] = sorted(payload)
            before.update(changed_before)
            after.update(changed_after)

    key = issue["key"]
    fields = issue.get("fields") or {}
    current_status = fields.get("status") or {}
    result["status"] = current_status.get("name")

    if params["comment"] is not None and not resolved:
        marker = jira.marker_id(params["comment"], params["comment_id"])
        result["comment_id"] = marker
        existing = [] if result["created"] else embedded_or_listed_comments(service, key, fields)
        if not any(marker in jira.markers_in(c.get("body")) for c in existing):
            if not check:
                service.add_comment(key, jira.comment_body(params["comment"], marker, service.version),
                                    internal=params["comment_internal"])
            result["commented"] = True
            after["comment"] = params["comment"]

    if files:
        have = set((a.get("filename"), a.get("size")) for a in fields.get("attachment") or [])
        missing = [(name, path, size) for name, path, size in files if (name, size) not in have]
        if missing:
            if not check:
                service.add_attachments(key, [(name, read_bytes(path), "application/octet-stream")
                                              for name, path, dummy in missing])
            result["attached"] = [name for name, dummy, dummy2 in missing]
            before["attachments"] = sorted(name for name, dummy in have)
            after["attachments"] = sorted(before["attachments"] + result["attached"])

    if status or transition or resolved:
        current_category = ((current_status.get("statusCategory") or {}).get("key"))
        already = (status and result["status"] and result["status"].lower() == status.lower()) or (
            resolved and not status and current_category == "done")
        if not already:
            available = service.transitions(key, include_unavailable=bool(transition))
            chosen = jira.plan_transition(available, result["status"], status, transition, resolved, current_category)
            if chosen is not None:
                do_transition(module, service, key, chosen, result, before, after)

    changed = bool(result["created"] or result["updated_fields"] or result["commented"] or result["attached"]
                   or result["transitioned"])
    if changed and not check:
        issue = service.get_issue(key)
    summary = jira.issue_summary(issue, service.browse_url(key))
    if check:
        summary = predicted_summary(summary, desired, result)
        summary["status"] = result["status"]
    result.update(key=key, id=issue.get("id"), url=summary["url"], status=summary["status"], issue=summary)
    return changed, result, {"before": before, "after": after}


def embedded_or_listed_comments(service, key, fields):
    """The issue's comments: those embedded in the issue when they are all there, else every page of the list."""
    embedded = fields.get("comment") or {}
    comments = embedded.get("comments")
    if isinstance(comments, list) and embedded.get("total") == len(comments):
        return comments
    return service.comments(key)


def do_transition(module, service, key, chosen, result, before, after):
    params = module.params
    fields = None
    if params["resolution"]:
        if "resolution" in (chosen.get("fields") or {}):
            fields = {"resolution": {"name": params["resolution"]}}
        else:
            module.warn("resolution %s ignored: transition '%s' has no resolution field on its screen" % (
                params["resolution"], chosen.get("name")))
    comment = None
    if params["comment"] is not None and params["state"] == "resolved":
        marker = jira.marker_id(params["comment"], params["comment_id"])
        result["comment_id"] = marker
        comment = jira.comment_body(params["comment"], marker, service.version)
        result["commented"] = True
        after["comment"] = params["comment"]
    if not module.check_mode:
        try:
            service.transition(key, chosen["id"], fields=fields, comment=comment)
        except UnexpectedResponse as error:
            if error.status != 400:
                raise
            # The workflow changed under us, or the screen refused a field: say what is possible now.
            listing = jira.describe_transitions(service.transitions(key))
            raise UnexpectedResponse("%s. Available transitions of %s now: %s" % (error.message.rstrip("."), key, listing),
                                     status=400, url=error.url)
    target = (chosen.get("to") or {}).get("name")
    result["transitioned"] = {"from": result["status"], "to": target, "transition": chosen.get("name")}
    before["status"], after["status"] = result["status"], target
    result["status"] = target


def predict_new(params, result, predicted, files, before, after, service):
    """Check mode for an issue that does not exist yet: what the run would create and do."""
    status, transition, dummy = wanted_transition(params)
    if params["comment"] is not None:
        result["commented"] = True
        result["comment_id"] = jira.marker_id(params["comment"], params["comment_id"])
        after["comment"] = params["comment"]
    if files:
        result["attached"] = [name for name, dummy2, dummy3 in files]
        after["attachments"] = sorted(result["attached"])
    if status or transition:
        result["transitioned"] = {"from": None, "to": status, "transition": transition}
        after["status"] = status
    summary = jira.issue_summary(predicted, None)
    summary["status"] = status
    result.update(status=status, issue=summary)
    return True, result, {"before": before, "after": after}


def predicted_summary(summary, desired, result):
    """The issue summary with the changes check mode did not make."""
    out = dict(summary)
    for field_id in ("summary", "labels"):
        if field_id in desired and field_id in result["updated_fields"]:
            out[field_id] = list(dict.fromkeys(out[field_id] + desired[field_id])) if field_id == "labels" else desired[field_id]
    if "priority" in result["updated_fields"]:
        out["priority"] = desired["priority"]["name"]
    if "components" in result["updated_fields"]:
        out["components"] = list(dict.fromkeys(out["components"] + desired["components"]))
    out["attachments"] = out["attachments"] + [{"filename": name, "size": None} for name in result["attached"]]
    return out


def read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        raise InvalidInput("attachments: cannot read %s: %s" % (path, exc))


def argument_spec():
    return _options.argument_spec(
        "jira",
        key=dict(type="str", no_log=False),
        incident_key=dict(type="str", no_log=False),
        project=dict(type="str"),
        issue_type=dict(type="str", default="Incident"),
        state=dict(type="str", choices=["present", "commented", "resolved"], default="present"),
        summary=dict(type="str"),
        description=dict(type="str"),
        priority=dict(type="str"),
        labels=dict(type="list", elements="str", default=[]),
        components=dict(type="list", elements="str", default=[]),
        custom_fields=dict(type="dict", default={}),
        comment=dict(type="str"),
        comment_id=dict(type="str"),
        comment_internal=dict(type="bool", default=False),
        status=dict(type="str"),
        transition=dict(type="str"),
        resolution=dict(type="str"),
        attachments=dict(type="list", elements="path", default=[]),
        service_desk_id=dict(type="str"),
        request_type_id=dict(type="str"),
    )


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_one_of=[("key", "incident_key")],
        required_together=[("service_desk_id", "request_type_id")],
        required_if=[("state", "commented", ("comment",))],
    )
    _options.require_requests(module)
    params = module.params
    deployment = "dc" if (not params["user"] and params["api_version"] == "2") else "cloud"
    try:
        client = jira.client_from_params(params, log=module.warn)
        service = jira.JiraService(client, params["api_version"], deployment)
        changed, result, diff = run(module, service)
    except SelfHealError as error:
        module.fail_json(**error.to_fail_kwargs())
    if module._diff:
        result["diff"] = diff
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
