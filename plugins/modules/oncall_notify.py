#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: oncall_notify
short_description: Page the on-call engineer through xMatters or PagerDuty, idempotently per incident
version_added: 0.1.0
description:
  - Pages the on-call engineer for an incident, and resolves the page, through xMatters (xmapi v1 and an
    inbound integration) or the PagerDuty Events API v2.
  - The incident key (for example V(dt-P-1234)) makes every write idempotent. In xMatters it is stored in an
    event property (O(key_property)); an open (C(ACTIVE) or C(SUSPENDED)) event with the same key means no new page. In PagerDuty it is
    the C(dedup_key).
  - "xMatters: O(state=triggered) triggers the workflow's inbound integration with recipients (O(groups),
    O(people)), priority, properties and response options, then finds the event it created (xMatters creates
    events asynchronously) and returns who is on call for O(groups) and who was notified. With
    O(wait_for_response=true) it waits for the first response and returns the responder and the option chosen.
    O(state=resolved) terminates the open events with that key. O(comment) adds an annotation once."
  - "PagerDuty: O(state=triggered), V(acknowledged) and V(resolved) send C(trigger), C(acknowledge) and
    C(resolve) events with C(dedup_key=incident_key). The Events API v2 offers no way to read an alert back, so
    C(changed) reports that an event was sent. Sending the same trigger again does not open a second alert:
    PagerDuty adds it to the open alert with that C(dedup_key) (after a resolve, the same key opens a new one)."
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.oncall
  - selfheal.devops.connection
  - selfheal.devops.attributes
  - selfheal.devops.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: partial
    details:
      - Nothing is sent. For xMatters the module still reads (active event with the same key, annotations,
        on-call), so C(changed) is a true prediction and RV(would_send) shows the trigger it would send.
      - An xMatters page cannot be predicted further (event id, who gets notified, any response); for PagerDuty,
        which has no read-back, check mode always predicts C(changed=true) and shows RV(would_send).
  diff_mode:
    support: partial
    details:
      - xMatters shows the event's status and key before and after. PagerDuty shows only the event that is sent.
  action_group:
    membership:
      - selfheal.devops.oncall
options:
  provider:
    description:
      - The on-call service to page through.
    type: str
    required: true
    choices: [xmatters, pagerduty]
  state:
    description:
      - V(triggered) pages (or finds the open page for O(incident_key)).
      - V(acknowledged) acknowledges the PagerDuty alert. xMatters has no acknowledge; responders answer with a
        response option (see O(wait_for_response)).
      - V(resolved) terminates the xMatters event or resolves the PagerDuty alert.
    type: str
    default: triggered
    choices: [triggered, acknowledged, resolved]
  incident_key:
    description:
      - The deterministic key of the incident, for example V(dt-P-1234).
      - The xMatters property O(key_property) and the PagerDuty C(dedup_key) (at most 255 characters).
    type: str
    required: true
  summary:
    description:
      - One-line description of the problem. Required to trigger.
      - PagerDuty C(payload.summary) (cut to 1024 characters); xMatters property C(summary).
    type: str
  source:
    description:
      - The affected system, preferably a host name. Required to trigger on PagerDuty.
    type: str
  severity:
    description:
      - Severity of the problem. Also sets the xMatters priority when O(priority) is not given
        (V(critical), V(error) -> C(HIGH), V(warning) -> C(MEDIUM), V(info) -> C(LOW)).
    type: str
    default: error
    choices: [critical, error, warning, info]
  component:
    description:
      - Component of the source that is affected (PagerDuty C(payload.component); xMatters property).
    type: str
  group:
    description:
      - Logical grouping of components (PagerDuty C(payload.group); xMatters property).
    type: str
  event_class:
    description:
      - Class or type of the event (PagerDuty C(payload.class); xMatters property C(class)).
    type: str
  custom_details:
    description:
      - Problem details (PagerDuty C(payload.custom_details); xMatters properties, nested values as JSON text).
    type: dict
  links:
    description:
      - Links for the responder (PagerDuty C(links); xMatters property C(links)).
    type: list
    elements: dict
    suboptions:
      href:
        description: The URL.
        type: str
        required: true
      text:
        description: Text shown for the link.
        type: str
  priority:
    description:
      - xMatters event priority. Defaults from O(severity).
    type: str
    choices: [low, medium, high]
  groups:
    description:
      - xMatters groups to notify; the module also returns who is on call for them (RV(on_call)).
    type: list
    elements: str
    default: []
  people:
    description:
      - xMatters people (target names) to notify directly.
    type: list
    elements: str
    default: []
  properties:
    description:
      - Extra xMatters event properties (flat values), as the workflow's form expects them.
    type: dict
    default: {}
  key_property:
    description:
      - Name of the xMatters property that holds O(incident_key).
    type: str
    default: selfheal_incident_key
  response_options:
    description:
      - xMatters response options offered to the responders, for example Restart / Roll back / Ignore.
    type: list
    elements: dict
    suboptions:
      text:
        description: The response text the responder picks.
        type: str
        required: true
      description:
        description: Longer description of the option.
        type: str
      action:
        description: What xMatters does when the option is chosen.
        type: str
        choices: [record_response, assign_to_user, stop_notifying_user, stop_notifying_target, escalate, end]
  approve_response:
    description:
      - xMatters only. The response option that approves an action (for example V(Approve) or V(Restart)).
      - Checked at the start, before anything is sent - the module fails when it is not the text of one of
        O(response_options), since no responder could then approve. With no O(response_options) the xMatters
        form's own options apply and the module only warns.
      - With O(wait_for_response=true), RV(approved) says whether the responder picked it.
    type: str
  comment:
    description:
      - xMatters only. A comment added once as an event annotation, prefixed with C([selfheal.devops]); a re-run
        that finds the same annotation adds nothing. Ignored, with a warning, for PagerDuty (no comments in
        Events v2).
    type: str
  wait_for_response:
    description:
      - xMatters only. Wait until a responder picks a response option (or O(response_timeout) passes).
    type: bool
    default: false
  response_timeout:
    description:
      - Seconds to wait for a response when O(wait_for_response=true).
    type: float
    default: 300
  poll_interval:
    description:
      - Seconds between two reads while waiting for the event to appear or for a response (at least 0.2).
    type: float
    default: 5
  fail_on_no_response:
    description:
      - Fail when nobody responded within O(response_timeout). By default the module returns
        RV(response=no_response) and succeeds.
    type: bool
    default: false
  event_timeout:
    description:
      - Seconds to wait for xMatters to create the event after the trigger was accepted.
    type: float
    default: 30
notes:
  - The routing key, the xMatters password and the trigger URL (which can carry an C(apiKey)) never appear in
    results, warnings or errors.
  - "Inputs are checked before anything is sent: timings, empty names, response options (and O(approve_response)),
    and, for xMatters, that every group in O(groups) exists (the on-call read) and, before a new page, every person
    in O(people) (C(GET /people/{targetName})). An unknown group or person fails naming it, with nothing sent."
  - When a run fails after it wrote something (a page sent but its event never appeared, an annotation, a terminated
    event), the failure says C(changed=true) and lists it in RV(written).
  - PagerDuty C(trigger), C(acknowledge) and C(resolve) are sent as idempotent requests (their C(dedup_key) makes a
    repeat harmless), so they are retried after a reset connection or read timeout as well as after 429/5xx.
seealso:
  - name: xMatters REST API
    description: Events, on-call and user deliveries.
    link: https://help.xmatters.com/xmapi/
  - name: PagerDuty Events API v2
    description: Trigger, acknowledge and resolve alerts.
    link: https://developer.pagerduty.com/docs/events-api-v2/overview/
"""

EXAMPLES = r"""
- name: Page the Ops Primary on-call through xMatters and wait for an approval
  selfheal.devops.oncall_notify:
    provider: xmatters
    incident_key: dt-P-1234
    summary: "Disk full on web01"
    severity: critical
    groups: [Ops Primary]
    custom_details:
      problem_url: https://abc123.live.dynatrace.com/#problems/problemdetails;pid=-1234
    response_options:
      - text: Clean up
      - text: Ignore
        action: stop_notifying_target
    wait_for_response: true
    response_timeout: 600
  register: page

- name: Act only on an approval
  ansible.builtin.debug:
    msg: "{{ page.responder }} chose {{ page.response }}"
  when: page.response == 'Clean up'

- name: Resolve the xMatters page with a note
  selfheal.devops.oncall_notify:
    provider: xmatters
    state: resolved
    incident_key: dt-P-1234
    comment: "Fixed automatically: 2.1 GB of temporary files removed."

- name: Trigger, then resolve, a PagerDuty alert (connection from module_defaults)
  module_defaults:
    group/selfheal.devops.oncall:
      routing_key: "{{ vault_pagerduty_routing_key }}"
  block:
    - name: Trigger
      selfheal.devops.oncall_notify:
        provider: pagerduty
        incident_key: dt-P-1234
        summary: "Disk full on web01"
        source: web01.example.com
        severity: error
        links:
          - href: https://abc123.live.dynatrace.com/#problems
            text: Dynatrace problem
    - name: Resolve
      selfheal.devops.oncall_notify:
        provider: pagerduty
        state: resolved
        incident_key: dt-P-1234
"""

RETURN = r"""
provider:
  description: The provider used.
  returned: always
  type: str
  sample: xmatters
incident_key:
  description: The incident key (xMatters property value, PagerDuty dedup_key).
  returned: always
  type: str
  sample: dt-P-1234
event:
  description: The xMatters event (triggered, found or terminated); null when none exists (or in check mode before a
    trigger).
  returned: provider is xmatters
  type: dict
  sample: {"id": "116f41dc-395c-4bba-a806-df1eda88f4aa", "eventId": "981006", "status": "ACTIVE", "priority": "HIGH",
           "incident_key": "dt-P-1234", "requestId": "0b6d7e2a-6d1a-4c56-9d7e-1b1f0d1f6a01"}
request_id:
  description: The xMatters requestId of the trigger this run sent.
  returned: when an xMatters trigger was sent
  type: str
on_call:
  description: Who is on call now for each of O(groups), in escalation order.
  returned: provider is xmatters and O(state=triggered)
  type: list
  elements: dict
  sample: [{"group": "Ops Primary", "shift": "24x7", "members": [{"target_name": "oncall.primary", "name": "Pat Primary",
            "position": 1, "type": "PERSON"}]}]
notified:
  description: The people the event was delivered to, with their delivery status and response, if any.
  returned: provider is xmatters and an event exists
  type: list
  elements: dict
  sample: [{"recipient": "oncall.primary", "delivery_status": "DELIVERED", "response": null, "responded_at": null}]
response:
  description: The response option chosen by the first responder, or V(no_response) when nobody answered in time.
  returned: O(wait_for_response=true)
  type: str
  sample: Clean up
responder:
  description: Target name of the person who responded.
  returned: O(wait_for_response=true) and someone responded
  type: str
  sample: oncall.primary
annotation_added:
  description: Whether this run added O(comment) as an annotation.
  returned: provider is xmatters and O(comment) is set
  type: bool
dedup_key:
  description: The PagerDuty dedup_key the event was sent with.
  returned: provider is pagerduty
  type: str
  sample: dt-P-1234
event_action:
  description: The PagerDuty event action sent (or that would be sent in check mode).
  returned: provider is pagerduty
  type: str
  sample: trigger
api_response:
  description: PagerDuty's answer to the event.
  returned: provider is pagerduty and not in check mode
  type: dict
  sample: {"status": "success", "message": "Event processed", "dedup_key": "dt-P-1234"}
elapsed:
  description: Seconds the module took, waits included.
  returned: success
  type: float
  sample: 1.27
approved:
  description: Whether the responder picked O(approve_response).
  returned: O(approve_response) is set and the module waited for a response
  type: bool
  sample: true
would_send:
  description: The request this run would send (xMatters trigger body, or PagerDuty event without the routing key).
  returned: check mode, when something would be sent
  type: dict
written:
  description: What this run had written when it failed (the failure then says C(changed=true)).
  returned: on failure after a write
  type: list
  elements: str
  sample: ["triggered an xMatters event (requestId 0b6d7e2a-6d1a-4c56-9d7e-1b1f0d1f6a01)"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _oncall_task, _options, _tasks


def main():
    module = AnsibleModule(argument_spec=_oncall_task.argument_spec(), supports_check_mode=True, **_oncall_task.CONSTRAINTS)
    _options.require_requests(module)
    try:
        result = _oncall_task.execute(module)
    except _tasks.Failed as failed:
        module.fail_json(**failed.kwargs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
