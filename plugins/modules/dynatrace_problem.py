#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dynatrace_problem
short_description: Comment on, push events onto, and close a Dynatrace problem, idempotently
version_added: 0.1.0
description:
  - Acts on one Dynatrace problem, found by internal id or display id (V(P-1234)), so that responders see in
    the problem what automation did.
  - O(comment) ensures a comment with this text and O(comment_context) exists; a re-run adds no duplicate.
  - O(state=closed) closes the problem with O(close_message); an already closed problem is not changed.
  - O(event) pushes an event (for example C(CUSTOM_INFO) or C(CUSTOM_DEPLOYMENT)) onto the problem's
    impacted or root-cause entities. Dynatrace answers HTTP 201 even when it applied the event to no entity
    or rejected an entity; the module fails then, naming the entities and their status.
  - Everything the module writes carries the collection's marker (comment context C(selfheal.devops) and event
    property C(selfheal.marker)), so the C(selfheal.devops.dynatrace) event source ignores changes caused only
    by its own writes.
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.dynatrace
  - selfheal.devops.connection
  - selfheal.devops.attributes
  - selfheal.devops.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details: Reads the problem and its comments, writes nothing, and returns the predicted result.
  diff_mode:
    support: full
    details: Shows the problem's status and the collection's comments before and after.
  action_group:
    membership:
      - selfheal.devops.dynatrace
options:
  problem_id:
    description: Internal problem id, or display id such as V(P-1234).
    type: str
    required: true
  state:
    description:
      - V(present) leaves the problem open or closed as it is; V(closed) closes it.
    type: str
    choices: [present, closed]
    default: present
  comment:
    description: Text of a comment that must exist on the problem (added once).
    type: str
  comment_context:
    description: Context of the comment; together with the text it identifies the comment.
    type: str
    default: selfheal.devops
  close_message:
    description: Message Dynatrace records when O(state=closed) closes the problem.
    type: str
    default: Closed by selfheal.devops after a verified remediation.
  event:
    description:
      - An event to push onto the problem's entities.
      - Dynatrace offers no way to read back ingested events by a key, so the module looks for an event with the
        same title among the problem's evidence (Davis merges events on the problem's entities into it). An info
        event that Dynatrace does not merge into the problem can be sent again by a re-run.
    type: dict
    suboptions:
      event_type:
        description: Dynatrace event type.
        type: str
        default: CUSTOM_INFO
        choices: [CUSTOM_INFO, CUSTOM_ANNOTATION, CUSTOM_DEPLOYMENT, CUSTOM_CONFIGURATION, ERROR_EVENT,
                  AVAILABILITY_EVENT, PERFORMANCE_EVENT, RESOURCE_CONTENTION_EVENT, CUSTOM_ALERT, WARNING,
                  MARKED_FOR_TERMINATION]
      title:
        description: Event title.
        type: str
        required: true
      properties:
        description: Event properties (string values; at most 100).
        type: dict
        default: {}
      timeout:
        description: Minutes the event stays active (Dynatrace caps it at 360).
        type: int
      target:
        description: Which of the problem's entities get the event.
        type: str
        choices: [impacted, root_cause, host, service]
        default: impacted
  incident_key:
    description: Incident key (for example V(dt-P-1234)) written into the event's C(selfheal.marker) property.
    type: str
  return_raw:
    description: Also return the problem as the API returned it.
    type: bool
    default: false
seealso:
  - module: selfheal.devops.dynatrace_problem_info
"""

EXAMPLES = r"""
- name: Tell responders that remediation started
  selfheal.devops.dynatrace_problem:
    problem_id: "{{ ansible_eda.event.problem.id }}"
    comment: "[selfheal.devops] Restarting checkout on web-01 (job {{ tower_job_id | default('local') }})"

- name: Record the rollback as a deployment event on the impacted services
  selfheal.devops.dynatrace_problem:
    problem_id: P-1234
    incident_key: dt-P-1234
    event:
      event_type: CUSTOM_DEPLOYMENT
      title: Switched checkout back to blue
      target: service
      properties:
        dt.event.deployment.name: checkout rollback
        dt.event.deployment.version: blue

- name: Close the problem once the fix is verified
  selfheal.devops.dynatrace_problem:
    problem_id: P-1234
    state: closed
    comment: "[selfheal.devops] Free space back to 62 %; temp files removed: 18,402"
"""

RETURN = r"""
problem:
  description: The normalised problem after the changes.
  returned: always
  type: dict
  sample: {"id": "-615640_16698V2", "display_id": "P-1234", "title": "Process unavailable", "status": "CLOSED",
           "severity": "AVAILABILITY", "impact": "INFRASTRUCTURE",
           "entities": [{"id": "HOST-E371A974A078CC54", "type": "HOST", "name": "web-01"}], "root_cause": null,
           "tags": {"app": "checkout"}, "management_zones": ["prod"], "url": "https://env/#problems/problemdetails;pid=-615640_16698V2",
           "start_time": 1669823466223, "end_time": 1669823999999}
commented:
  description: Whether the comment was added (false when it already existed).
  returned: always
  type: bool
closed:
  description: Whether the problem was closed by this run.
  returned: always
  type: bool
event:
  description: The ingest answer (reportCount, eventIngestResults), or null when no event was sent.
  returned: always
  type: dict
  sample: {"reportCount": 1, "eventIngestResults": [{"correlationId": "eba82f647696e485", "status": "OK"}]}
raw:
  description: The problem as the API returned it.
  returned: when O(return_raw=true)
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _dynatrace_task, _options, _tasks


def main():
    module = AnsibleModule(argument_spec=_dynatrace_task.argument_spec(), supports_check_mode=True)
    _options.require_requests(module)
    try:
        result = _dynatrace_task.execute(module)
    except _tasks.Failed as failed:
        module.fail_json(**failed.kwargs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
