# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jira incident ticket: find or create by label, fields, comment once, attachments once, transition. Private to the selfheal.devops collection.

The logic of the jira_incident module, shared with the incident orchestrator (incident_sync), which runs it for several
systems at once. Functions take a task object with .params, .check_mode and .warn (an AnsibleModule, or a
_tasks.Task); main() of the module and _tasks.run_task() are the only callers that turn errors into results.
"""

import os

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _tasks, jira
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, SelfHealError, UnexpectedResponse
from ansible_collections.selfheal.devops.plugins.module_utils._files import read_bytes


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


CONSTRAINTS = dict(required_one_of=[("key", "incident_key")], required_together=[("service_desk_id", "request_type_id")],
                   required_if=[("state", "commented", ("comment",))])


def execute(task):
    """The module's result (changed, key, issue, ...); _tasks.Failed when it failed."""
    params = task.params
    deployment = "dc" if (not params["user"] and params["api_version"] == "2") else "cloud"
    try:
        client = jira.client_from_params(params, log=task.warn)
        service = jira.JiraService(client, params["api_version"], deployment)
        changed, result, diff = run(task, service)
    except SelfHealError as error:
        raise _tasks.Failed(error.to_fail_kwargs())
    if task._diff:
        result["diff"] = diff
    result["changed"] = changed
    return result
