#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: servicenow_incident
short_description: Open, update, note, attach to, resolve and close a ServiceNow incident, once per incident key
version_added: 0.1.0
description:
  - Manages one ServiceNow ITSM incident per incident key through the Table API (C(/api/now/table/incident)) and the
    Attachment API (C(/api/now/attachment)).
  - The incident is found by O(incident_key) in its C(correlation_id) (and O(correlation_display)), or by O(number),
    with one read (C(sysparm_display_value=all), paged with C(sysparm_offset) and the C(Link) header) before
    anything is written, so a re-run finds the incident it created instead of opening a second one.
  - O(state=present) creates the incident or brings O(short_description), O(description), urgency and impact,
    O(assignment_group), the configuration item of O(host) and O(fields) to the given values. O(state=updated) does
    the same on an existing incident only.
  - Urgency and impact come from O(urgency) and O(impact), else from the Dynatrace O(severity) through a documented
    mapping (see O(severity_map)); the instance derives the priority from them.
  - O(assignment_group) is a group name or C(sys_id); an unknown group fails before anything is written. O(host)
    is looked up in C(cmdb_ci) by name or FQDN (and short name); a missing CI is a warning, not a failure.
  - O(work_note) and O(comment) are added once each; the entry ends with a marker line C([selfheal:<id>]) that a
    re-run finds in the incident's journal.
  - O(state=resolved) sets state Resolved with O(close_code) and O(close_notes); O(state=closed) sets state Closed
    (also from Resolved). Nothing happens when the incident is already there.
  - O(attachments) uploads each file once; a file is skipped when the incident has an attachment of that name with
    the same SHA-256 hash (or, when the instance reports no hash, the same size).
  - All changes of one run go in one C(POST) or C(PATCH) (plus one upload per new attachment).
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.servicenow
  - selfheal.devops.connection
  - selfheal.devops.attributes
  - selfheal.devops.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details:
      - Reads the incident, the assignment group, the CI and the attachments, writes nothing and returns the
        predicted result. A new incident has no C(number) or C(sys_id) in check mode.
  diff_mode:
    support: full
    details: Shows the changed fields (display values), the state, the notes and the attachments before and after.
  action_group:
    membership:
      - selfheal.devops.servicenow
options:
  incident_key:
    description:
      - Incident key, for example V(dt-P-1234). Stored in the incident's C(correlation_id) and used to find it.
    type: str
  correlation_display:
    description:
      - Stored in C(correlation_display) and part of the lookup, so that another tool's incident with the same
        C(correlation_id) is never taken for this one.
    type: str
    default: selfheal.devops
  number:
    description:
      - Number of an existing incident, for example V(INC0010001). Takes precedence over O(incident_key) for finding
        it; O(incident_key) is then still written to C(correlation_id).
    type: str
  state:
    description:
      - V(present) creates the incident when there is none and updates the given fields.
      - V(updated) updates an existing incident (fails when there is none).
      - V(resolved) moves an existing incident to Resolved with O(close_code) and O(close_notes); no change when it
        is Resolved, Closed or Canceled already.
      - V(closed) moves an existing incident to Closed; no change when it is Closed or Canceled already.
    type: str
    choices: [present, updated, resolved, closed]
    default: present
  short_description:
    description: Short description. Required to create an incident.
    type: str
  description:
    description: Description (plain text).
    type: str
  severity:
    description:
      - Dynatrace severity level (V(AVAILABILITY), V(ERROR), V(PERFORMANCE), V(RESOURCE_CONTENTION),
        V(MONITORING_UNAVAILABLE), V(CUSTOM_ALERT), V(INFO)) that sets urgency and impact unless O(urgency) /
        O(impact) are given.
      - "Default mapping (urgency/impact, and the base system's priority) - AVAILABILITY 1/1 (P1 Critical),
        ERROR 1/2 (P2 High), PERFORMANCE 2/2 (P3 Moderate), RESOURCE_CONTENTION 2/3 (P4 Low),
        MONITORING_UNAVAILABLE 3/2 (P4 Low), CUSTOM_ALERT and INFO 3/3 (P5 Planning)."
    type: str
  severity_map:
    description:
      - "Overrides of the severity mapping, for example C({PERFORMANCE: {urgency: 1, impact: 2}})."
    type: dict
    default: {}
  urgency:
    description: Urgency (1 high, 2 medium, 3 low); overrides the one from O(severity).
    type: int
    choices: [1, 2, 3]
  impact:
    description: Impact (1 high, 2 medium, 3 low); overrides the one from O(severity).
    type: int
    choices: [1, 2, 3]
  assignment_group:
    description: Assignment group name or C(sys_id) (C(sys_user_group)). An unknown group fails before any write.
    type: str
  host:
    description:
      - Host name of the problem's entity. The incident's C(cmdb_ci) is set to the configuration item with that
        name or FQDN (or the host's short name); when there is none, a warning says so and C(cmdb_ci) is left alone.
    type: str
  fields:
    description:
      - "Other incident fields by column name, for example C({category: software, caller_id: Abel Tuter})."
      - A field counts as unchanged when its value or its display value equals the given one, so reference fields
        may be given by sys_id or by display value.
    type: dict
    default: {}
  work_note:
    description: Work note (internal) to add once.
    type: str
  work_note_id:
    description: Identifies the work note in its marker; default a hash of O(work_note).
    type: str
  comment:
    description: Additional comment (visible to the caller) to add once.
    type: str
  comment_id:
    description: Identifies the comment in its marker; default a hash of O(comment).
    type: str
  close_code:
    description:
      - Resolution code for O(state=resolved) and O(state=closed). The base system's codes since the Utah release
        include V(Solution provided), V(Workaround provided), V(Resolved by change); older instances use for
        example V(Solved (Permanently)).
    type: str
    default: Solution provided
  close_notes:
    description: Resolution notes; required to resolve (or to close an incident that is not resolved yet).
    type: str
  attachments:
    description: Files to attach once each (read into memory, so that a retried upload can be sent again).
    type: list
    elements: path
    default: []
notes:
  - Roles - C(itil) (read and write incidents, add attachments); reading C(sys_user_group) and C(cmdb_ci) too.
  - Work notes and comments are read back from the journal fields' display values, which the Table API returns
    with C(sysparm_display_value=all).
  - The certified C(servicenow.itsm) collection manages incidents too; this module adds the incident key
    (correlation lookup), notes and attachments posted once, the Dynatrace severity mapping and one write per run.
    Both read the same C(SN_*) environment variables; see docs/servicenow.md.
seealso:
  - module: selfheal.devops.jira_incident
  - name: ServiceNow Table API
    description: GET, POST and PATCH of records, sysparm parameters.
    link: https://www.servicenow.com/docs/bundle/yokohama-api-reference/page/integrate/inbound-rest/concept/c_TableAPI.html
"""

EXAMPLES = r"""
- name: Open (or update) the incident for a Dynatrace problem
  selfheal.devops.servicenow_incident:
    incident_key: "{{ incident_key }}"
    short_description: "Dynatrace {{ problem.display_id }}: {{ problem.title }}"
    description: "Opened by selfheal.devops for {{ problem.url }}"
    severity: "{{ problem.severity }}"
    assignment_group: Linux Operations
    host: web-01.example.com
    work_note: "Automatic remediation started: restarting the web service."
  register: ticket

- name: Record progress once
  selfheal.devops.servicenow_incident:
    incident_key: "{{ incident_key }}"
    state: updated
    work_note: "Restarted web on web-01; health check passed."
    work_note_id: "{{ incident_key }}-restart"

- name: Attach the chat transcript and resolve
  selfheal.devops.servicenow_incident:
    incident_key: "{{ incident_key }}"
    state: resolved
    close_code: Solution provided
    close_notes: Resolved automatically after a verified fix.
    attachments:
      - "/var/tmp/selfheal/{{ incident_key }}-teams.md"

- name: OAuth with a client of the application registry, connection set once
  module_defaults:
    group/selfheal.devops.servicenow:
      url: https://example.service-now.com
      client_id: "{{ sn_client_id }}"
      client_secret: "{{ sn_client_secret }}"
      user: selfheal.integration
      password: "{{ sn_password }}"
  block:
    - name: Close the incident
      selfheal.devops.servicenow_incident:
        incident_key: "{{ incident_key }}"
        state: closed
        close_notes: Closed after review.
"""

RETURN = r"""
number:
  description: Incident number (null in check mode when it would be created).
  returned: always
  type: str
  sample: INC0010001
sys_id:
  description: Incident sys_id.
  returned: always
  type: str
  sample: 9d385017c611228701d22104cc95c371
url:
  description: Link to the incident in the instance's UI.
  returned: always
  type: str
created:
  description: Whether the incident was created (would be, in check mode).
  returned: always
  type: bool
updated_fields:
  description: Fields changed on an existing incident.
  returned: always
  type: list
  elements: str
  sample: [urgency, impact]
work_note_added:
  description: Whether the work note was added.
  returned: always
  type: bool
comment_added:
  description: Whether the comment was added.
  returned: always
  type: bool
work_note_id:
  description: The marker id of the work note (C([selfheal:<id>])).
  returned: when O(work_note) was given
  type: str
comment_id:
  description: The marker id of the comment.
  returned: when O(comment) was given
  type: str
transitioned:
  description: The state change (from, to) of this run, or null.
  returned: always
  type: dict
  sample: {"from": "In Progress", "to": "Resolved"}
attached:
  description: File names uploaded in this run.
  returned: always
  type: list
  elements: str
incident:
  description: The incident after the run (predicted in check mode), values and display values.
  returned: always
  type: dict
  sample: {"number": "INC0010001", "sys_id": "9d385017c611228701d22104cc95c371", "state": "6",
           "state_name": "Resolved", "urgency": "1", "impact": "2", "priority": "2", "priority_name": "2 - High",
           "assignment_group": "287ebd7da9fe198100f92cc8d1d2154e", "assignment_group_name": "Linux Operations",
           "cmdb_ci": "27d32778c0a8000b00db970eeaa60f16", "cmdb_ci_name": "web-01", "correlation_id": "dt-P-1234",
           "correlation_display": "selfheal.devops", "close_code": "Solution provided",
           "close_notes": "Resolved automatically.", "short_description": "Dynatrace P-1234: web crashed",
           "url": "https://example.service-now.com/nav_to.do?uri=incident.do?sys_id=9d38..."}
written:
  description: On a failure after something was written, what was written (the run is then reported changed).
  returned: on failure after a write
  type: list
  elements: str
"""

import hashlib
import mimetypes
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _options, servicenow
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, SelfHealError

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


def plan_attachments(service, record, files):
    """Files the incident lacks: no attachment of that name with the same hash (or size, without a hash)."""
    if not files:
        return [], []
    have = service.attachments(TABLE, servicenow.value(record, "sys_id")) if record is not None else []
    names = sorted(a.get("file_name") for a in have)
    missing = []
    for name, path, size, digest in files:
        same_file = [a for a in have if a.get("file_name") == name and (
            a.get("hash") == digest if a.get("hash") else str(a.get("size_bytes")) == str(size))]
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
    missing, have_names = plan_attachments(service, record, files)

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


def read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        raise InvalidInput("attachments: cannot read %s: %s" % (path, exc))


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
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[("incident_key", "number")])
    _options.require_requests(module)
    result = {"created": False, "updated_fields": [], "work_note_added": False, "comment_added": False,
              "transitioned": None, "attached": [], "written": []}
    try:
        service = servicenow.client_from_params(module.params, log=module.warn)
        changed, diff = run(module, service, result)
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
