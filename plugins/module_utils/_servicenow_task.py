# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ServiceNow incident: find by correlation_id or create, fields, notes once, attachments once, resolve, close.
Private to the selfheal.devops collection.

The logic of the servicenow_incident module, shared with the incident orchestrator (incident_sync), which runs it for
several systems at once. Functions take a task object with .params, .check_mode and .warn (an AnsibleModule, or a
_tasks.Task); execute() turns errors into _tasks.Failed, which main() of the module and _tasks.run() report.
"""

import hashlib
import mimetypes
import os

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _tasks, servicenow
from ansible_collections.selfheal.devops.plugins.module_utils._files import read_bytes
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound

TABLE = "incident"


def read_attachments(paths):
    """(name, path, size, sha256) of every file; InvalidInput before any request when one cannot be read."""
    found = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                content = handle.read()
        except (IOError, OSError) as exc:
            raise InvalidInput("attachments: cannot read %s: %s" % (path, exc.strerror or exc))
        found.append((os.path.basename(path), path, len(content), hashlib.sha256(content).hexdigest()))
    names = [item[0] for item in found]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        raise InvalidInput("attachments: several files are named %s; ServiceNow tells attachments apart by name"
                           % ", ".join(duplicates))
    return found


def read_fields(params):
    """The incident fields every read and write returns: the module's own and those of O(fields)."""
    return servicenow.INCIDENT_FIELDS + tuple(sorted(set(params["fields"] or {}) - set(servicenow.INCIDENT_FIELDS)))


def find_incident(params, service, warn):
    found = service.find_incidents(params["incident_key"], params["correlation_display"], params["number"],
                                   fields=read_fields(params))
    if len(found) > 1:
        warn("%d ServiceNow incidents match %s (%s); using the oldest, %s" % (
            len(found), params["number"] or params["incident_key"],
            ", ".join(servicenow.value(r, "number") for r in found), servicenow.value(found[0], "number")))
    return found[0] if found else None


def same(record, field, wanted):
    """Whether the record's field has the wanted value, or (reference and choice fields) that display value."""
    have, shown = servicenow.value(record, field), servicenow.display(record, field)
    if normal(have) == normal(wanted):
        return True
    return shown is not None and shown != have and normal(shown).lower() == normal(wanted).lower()


def normal(text):
    return str(text if text is not None else "").replace("\r\n", "\n").strip()


def desired_fields(params, service, record, warn):
    """The incident's fields in API form (reference fields as sys_ids), looked up only where they differ."""
    desired = {}
    for field in ("short_description", "description"):
        if params[field] is not None:
            desired[field] = params[field]
    urgency, impact = servicenow.urgency_impact(params["severity"], params["severity_map"], params["urgency"],
                                                params["impact"])
    if urgency:
        desired["urgency"] = urgency
    if impact:
        desired["impact"] = impact
    if params["incident_key"]:
        desired["correlation_id"] = params["incident_key"]
        desired["correlation_display"] = params["correlation_display"]
    group = params["assignment_group"]
    if group:
        if record is not None and same(record, "assignment_group", group):
            desired["assignment_group"] = servicenow.value(record, "assignment_group")
        else:
            found = service.find_group(group)
            if found is None:
                raise InvalidInput("ServiceNow: no assignment group is named %r (sys_user_group); nothing was written" % group)
            desired["assignment_group"] = found["sys_id"]
            desired["_assignment_group_name"] = found.get("name")
    host = params["host"]
    if host:
        names = (host, host.split(".")[0])
        if record is not None and any(same(record, "cmdb_ci", name) for name in names):
            desired["cmdb_ci"] = servicenow.value(record, "cmdb_ci")
        else:
            found = service.find_ci(host)
            if found is None:
                warn("ServiceNow: no configuration item in cmdb_ci is named %s; cmdb_ci is not set" % host)
            else:
                desired["cmdb_ci"] = found["sys_id"]
                desired["_cmdb_ci_name"] = found.get("name")
    for field, wanted in (params["fields"] or {}).items():
        desired[str(field)] = "" if wanted is None else (str(wanted).lower() if isinstance(wanted, bool) else str(wanted))
    return desired


def plan_changes(record, desired):
    """(body, before, after): the fields that differ, with display values for the diff."""
    body, before, after = {}, {}, {}
    for field, wanted in desired.items():
        if field.startswith("_"):
            continue
        if record is not None and same(record, field, wanted):
            continue
        body[field] = wanted
        if record is not None:
            before[field] = servicenow.display(record, field)
        after[field] = desired.get("_%s_name" % field) or wanted
    return body, before, after


def plan_notes(params, record, body, result, after):
    """Add the work note and the comment to the write unless the journal shows their markers."""
    for kind, text_key, id_key, flag in (("work_notes", "work_note", "work_note_id", "work_note_added"),
                                         ("comments", "comment", "comment_id", "comment_added")):
        text = params[text_key]
        if text is None:
            continue
        marker = servicenow.marker(text, params[id_key])
        result[id_key] = marker
        journal = servicenow.display(record, kind) if record is not None else ""
        if marker in servicenow.markers_in(journal):
            continue
        body[kind] = servicenow.marked(text, marker)
        result[flag] = True
        after[kind] = text


def plan_state(params, record, body, result, before, after):
    """Add the state change of O(state=resolved) / O(state=closed) to the write, when the incident is not there yet."""
    wanted = params["state"]
    current = servicenow.value(record, "state")
    if wanted == "resolved" and current not in servicenow.DONE_STATES:
        target = servicenow.STATE_RESOLVED
    elif wanted == "closed" and current not in (servicenow.STATE_CLOSED, servicenow.STATE_CANCELED):
        target = servicenow.STATE_CLOSED
    else:
        return
    if current != servicenow.STATE_RESOLVED or not servicenow.value(record, "close_notes"):
        if not params["close_notes"]:
            raise InvalidInput("close_notes is required to %s ServiceNow incident %s" % (
                "resolve" if wanted == "resolved" else "close", servicenow.value(record, "number")))
        body["close_code"] = params["close_code"]
        body["close_notes"] = params["close_notes"]
        after["close_code"], after["close_notes"] = params["close_code"], params["close_notes"]
    body["state"] = target
    name_from = servicenow.display(record, "state") or servicenow.STATE_NAMES.get(current)
    result["transitioned"] = {"from": name_from, "to": servicenow.STATE_NAMES[target]}
    before["state"], after["state"] = name_from, servicenow.STATE_NAMES[target]


def plan_attachments(service, record, files, match="content"):
    """Files the incident lacks: no attachment of that name with the same hash (or size, without a hash); with
    match=name, no attachment of that name at all."""
    if not files:
        return [], []
    have = service.attachments(TABLE, servicenow.value(record, "sys_id")) if record is not None else []
    names = sorted(a.get("file_name") for a in have)
    missing = []
    for name, path, size, digest in files:
        same_file = [a for a in have if a.get("file_name") == name and (match == "name" or (
            a.get("hash") == digest if a.get("hash") else str(a.get("size_bytes")) == str(size)))]
        if not same_file:
            missing.append((name, path))
    return missing, names


def run(module, service, result):
    """Find, create or update the incident, its notes, state and attachments; fills result, returns (changed, diff)."""
    params, check = module.params, module.check_mode
    files = read_attachments(params["attachments"])
    record = find_incident(params, service, module.warn)
    if record is None and params["state"] != "present":
        what = "number %s" % params["number"] if params["number"] else "correlation_id %s" % params["incident_key"]
        raise NotFound("No ServiceNow incident has %s; nothing to %s" % (what, {
            "updated": "update", "resolved": "resolve", "closed": "close"}[params["state"]]))
    if record is None and not params["short_description"]:
        raise InvalidInput("No ServiceNow incident has correlation_id %s yet; short_description is required to create it"
                           % params["incident_key"])
    desired = desired_fields(params, service, record, module.warn)
    body, before, after = plan_changes(record, desired)
    plan_notes(params, record, body, result, after)
    if record is not None:
        plan_state(params, record, body, result, before, after)
        result["updated_fields"] = sorted(f for f in body if f not in ("work_notes", "comments", "state"))
    missing, have_names = plan_attachments(service, record, files, params["attachment_match"])

    if record is None:
        result["created"] = True
        if not check:
            record = service.create(TABLE, body, read_fields(params))
            result["written"].append("incident %s" % servicenow.value(record, "number"))
    elif body and not check:
        record = service.update(TABLE, servicenow.value(record, "sys_id"), body, read_fields(params))
        result["written"].append("incident %s: %s" % (servicenow.value(record, "number"), ", ".join(sorted(body))))

    if missing:
        result["attached"] = [name for name, dummy in missing]
        before["attachments"], after["attachments"] = have_names, sorted(have_names + result["attached"])
        if not check:
            for name, path in missing:
                content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
                service.upload(TABLE, servicenow.value(record, "sys_id"), name, read_bytes(path), content_type)
                result["written"].append("attachment %s" % name)

    view = servicenow.summary(record, service.base_url) if record is not None else None
    if check:
        view = predicted(view, body, desired)
    result.update(incident=view, number=view["number"], sys_id=view["sys_id"], url=view["url"])
    changed = bool(result["created"] or body or missing)
    return changed, {"before": before, "after": after}


def predicted(view, body, desired):
    """The incident summary with the changes check mode did not make."""
    out = dict(view or {"sys_id": None, "number": None, "url": None, "state": servicenow.STATE_NEW,
                        "state_name": "New", "priority": None, "priority_name": None})
    for field in ("short_description", "urgency", "impact", "correlation_id", "correlation_display", "close_code",
                  "close_notes", "assignment_group", "cmdb_ci"):
        if field in body:
            out[field] = body[field]
    for field in ("assignment_group", "cmdb_ci"):
        if field in body:
            out[field + "_name"] = desired.get("_%s_name" % field) or out.get(field + "_name")
    if "state" in body:
        out["state"], out["state_name"] = body["state"], servicenow.STATE_NAMES[body["state"]]
    return out


def argument_spec():
    return _options.argument_spec(
        "servicenow",
        incident_key=dict(type="str", no_log=False),
        correlation_display=dict(type="str", default=servicenow.DEFAULT_CORRELATION_DISPLAY),
        number=dict(type="str"),
        state=dict(type="str", choices=["present", "updated", "resolved", "closed"], default="present"),
        short_description=dict(type="str"),
        description=dict(type="str"),
        severity=dict(type="str"),
        severity_map=dict(type="dict", default={}),
        urgency=dict(type="int", choices=[1, 2, 3]),
        impact=dict(type="int", choices=[1, 2, 3]),
        assignment_group=dict(type="str"),
        host=dict(type="str"),
        fields=dict(type="dict", default={}),
        work_note=dict(type="str"),
        work_note_id=dict(type="str"),
        comment=dict(type="str"),
        comment_id=dict(type="str"),
        close_code=dict(type="str", default="Solution provided"),
        close_notes=dict(type="str"),
        attachments=dict(type="list", elements="path", default=[]),
        attachment_match=dict(type="str", choices=["content", "name"], default="content"),
    )


CONSTRAINTS = dict(required_one_of=[("incident_key", "number")])


def new_result():
    return {"created": False, "updated_fields": [], "work_note_added": False, "comment_added": False,
            "transitioned": None, "attached": [], "written": []}


def execute(task):
    """The module's result (changed, number, incident, ...); _tasks.Failed when it failed (saying what was written)."""
    return _tasks.execute_writes(task, lambda: servicenow.client_from_params(task.params, log=task.warn), run,
                                 new_result())
