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
    the same SHA-256 hash (or, when the instance reports no hash, the same size), or of that name only (see
    O(attachment_match)).
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
  attachment_match:
    description:
      - When a file counts as attached already. V(content) - the incident has an attachment of that name with the
        same SHA-256 hash (or, when the instance reports no hash, the same size), so a changed file is attached
        again. V(name) - the incident has an attachment of that name, whatever its content (a file that grows, such
        as an incident's timeline, is attached once).
    type: str
    choices: [content, name]
    default: content
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _servicenow_task, _tasks


def main():
    module = AnsibleModule(argument_spec=_servicenow_task.argument_spec(), supports_check_mode=True,
                           **_servicenow_task.CONSTRAINTS)
    _options.require_requests(module)
    try:
        result = _servicenow_task.execute(module)
    except _tasks.Failed as failed:
        module.fail_json(**failed.kwargs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
