#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: keptn_rollback
short_description: Ask Keptn v1 to run its rollback sequence for a service, once per incident
version_added: 0.1.0
description:
  - Triggers the Keptn v1 sequence C(sh.keptn.event.<stage>.<sequence>.triggered) (a task-level
    C(rollback.triggered) is rejected by Keptn when sent from outside) for O(project), O(stage), O(service).
  - The C(shkeptncontext) is derived from O(incident_key), so Keptn maps a retry to the same sequence, and the
    event carries the label C(selfheal-incident); before triggering, the module looks for a sequence already
    triggered for the incident and does not start a second one (C(changed=false)).
  - With O(wait=true) it waits until the sequence is finished, aborted or timed out and returns its state and
    result; a C(fail) result fails the module unless O(fail_on_result=false).
  - B(Keptn v1 reached end of life on December 22, 2023) (C(keptn/keptn) is archived); this module is for
    installations that still run it. For VM or legacy blue-green set-ups, switch the router directly with the
    C(selfheal.devops.bluegreen_switch) role.
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.keptn
  - selfheal.devops.connection
  - selfheal.devops.attributes
  - selfheal.devops.attributes.ACTION_GROUP
attributes:
  check_mode:
    support: full
    details: Looks for an existing sequence, sends nothing, and returns the event it would send.
  diff_mode:
    support: none
  action_group:
    membership:
      - selfheal.devops.keptn
options:
  project:
    description: Keptn project.
    type: str
    required: true
  stage:
    description: Stage whose rollback sequence runs.
    type: str
    required: true
  service:
    description: Service to roll back.
    type: str
    required: true
  incident_key:
    description: Incident key (for example V(dt-P-1234)); one rollback per incident and service.
    type: str
    required: true
  sequence:
    description: Name of the shipyard sequence that rolls back.
    type: str
    default: rollback
  labels:
    description: Extra labels for the event (Keptn shows them in the bridge).
    type: dict
    default: {}
  event_message:
    description: Message carried by the event.
    type: str
    default: Rollback requested by selfheal.devops
  wait:
    description: Wait until the sequence reaches a terminal state.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait with O(wait=true); past it the module fails and returns the context to follow up.
      - At least 1. Checked before any request, like every other option.
    type: int
    default: 300
  poll_interval:
    description:
      - Longest pause between two reads of the sequence state (polls start at 0.2 s and double).
      - At least 0.2 and at most 300.
    type: float
    default: 5
  fail_on_result:
    description: Fail when the sequence finished with result C(fail) or was aborted.
    type: bool
    default: true
seealso:
  - module: selfheal.devops.dynatrace_problem
notes:
  - Every input is checked before the first request (names as Keptn accepts them, timings, the event's size); a
    wrong value fails with nothing sent.
  - When the sequence was triggered and a later step fails (waiting, reading its state), the failure reports
    C(changed=true), RV(keptn_context) and RV(written), so that a retry or a person can follow the sequence up.
"""

EXAMPLES = r"""
- name: Roll carts back in production through Keptn
  selfheal.devops.keptn_rollback:
    project: sockshop
    stage: production
    service: carts
    incident_key: "{{ ansible_eda.event.incident_key }}"
    labels:
      dt-problem: "{{ ansible_eda.event.problem.display_id }}"
  register: rollback
"""

RETURN = r"""
keptn_context:
  description: The Keptn context of the rollback sequence (null in check mode when none exists yet).
  returned: always
  type: str
  sample: 4cfa6a83-2b42-5d5c-a1b5-3fa1f2bcd5d7
state:
  description: Sequence state (triggered, started, finished, aborted, timedOut), C(pending) while Keptn has not
    created it yet, or null when not waiting and unknown.
  returned: always
  type: str
  sample: finished
result:
  description: Result of the rollback task (pass, warning, fail), when finished.
  returned: always
  type: str
  sample: pass
sequence:
  description: The sequence as the shipyard controller reports it.
  returned: when known
  type: dict
would_send:
  description: The CloudEvent the module would send.
  returned: in check mode when no sequence exists
  type: dict
written:
  description: What this run had written when it failed (the failure then says C(changed=true)).
  returned: on failure after the sequence was triggered
  type: list
  elements: str
  sample: ["triggered sh.keptn.event.production.rollback.triggered (context 4cfa6a83-2b42-5d5c-a1b5-3fa1f2bcd5d7)"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _tasks, keptn
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, SelfHealError, UnexpectedResponse

MIN_POLL_INTERVAL = 0.2
MAX_POLL_INTERVAL = 300.0


def validate(params):
    """Refuse, before any request, what Keptn would reject or what would make the wait misbehave."""
    for name in ("project", "stage", "service", "sequence"):
        if not keptn.valid_name(params[name]):
            raise InvalidInput("%s %r is not a Keptn name: lowercase letters, digits and '-', starting with a letter, "
                               "at most %d characters" % (name, params[name], keptn.MAX_NAME_LENGTH))
    if not params["incident_key"].strip():
        raise InvalidInput("incident_key must not be empty")
    if any(not str(name).strip() for name in params["labels"]):
        raise InvalidInput("labels: a label name must not be empty")
    if params["wait_timeout"] < 1:
        raise InvalidInput("wait_timeout must be at least 1 second (got %s)" % params["wait_timeout"])
    if not MIN_POLL_INTERVAL <= params["poll_interval"] <= MAX_POLL_INTERVAL:
        raise InvalidInput("poll_interval must be between %.1f and %.0f seconds (got %s)"
                           % (MIN_POLL_INTERVAL, MAX_POLL_INTERVAL, params["poll_interval"]))
    size = keptn.event_size(build_event(params))
    if size > keptn.MAX_EVENT_BYTES:
        raise InvalidInput("the event would be %d bytes; Keptn accepts at most %d (shorten labels or event_message)"
                           % (size, keptn.MAX_EVENT_BYTES))


def build_event(params):
    labels = dict((k, str(v)) for k, v in params["labels"].items())
    labels[keptn.INCIDENT_LABEL] = params["incident_key"]
    return {
        "specversion": "1.0", "type": keptn.sequence_event_type(params["stage"], params["sequence"]),
        "source": "selfheal.devops", "datacontenttype": "application/json", "shkeptnspecversion": "0.2.4",
        "shkeptncontext": keptn.context_seed(params["sequence"], params["project"], params["stage"], params["service"],
                                             params["incident_key"]),
        "data": {"project": params["project"], "stage": params["stage"], "service": params["service"],
                 "labels": labels, "message": params["event_message"]},
    }


def new_result():
    return {"keptn_context": None, "state": None, "result": None, "written": []}


def run(module, service, result):
    """Fills result (so that a failure after the trigger can say what was written); returns changed."""
    params = module.params
    context = service.find_context(params["project"], params["stage"], params["service"], params["sequence"],
                                   params["incident_key"])
    changed = context is None
    if context is None:
        event = build_event(params)
        if module.check_mode:
            result["would_send"] = event
            return True
        context = service.trigger(event)
        result["written"].append("triggered %s (context %s)" % (event["type"], context))
    result["keptn_context"] = context
    if params["wait"]:
        sequence, done = service.wait(params["project"], context, params["wait_timeout"], params["poll_interval"])
        if not done:
            raise UnexpectedResponse("Keptn rollback %s did not finish within %d s (state: %s); follow it in the bridge"
                                     % (context, params["wait_timeout"], (sequence or {}).get("state", "pending")),
                                     details=dict(result, state=(sequence or {}).get("state", "pending")))
    else:
        sequence = service.sequence(params["project"], context)
    result["sequence"] = sequence
    result["state"] = (sequence or {}).get("state", "pending")
    if result["state"] == "finished":
        finished = service.finished_event(context, params["sequence"])
        result["result"] = ((finished or {}).get("data") or {}).get("result")
    return changed


def failure(error, result):
    """fail_json arguments for an error; after a write, changed=true and what was written."""
    return _tasks.failure(error, dict((k, v) for k, v in result.items() if v not in (None, []) or k == "written"))


def main():
    spec = _options.argument_spec(
        "keptn",
        project=dict(type="str", required=True),
        stage=dict(type="str", required=True),
        service=dict(type="str", required=True),
        incident_key=dict(type="str", required=True, no_log=False),
        sequence=dict(type="str", default="rollback"),
        labels=dict(type="dict", default={}),
        event_message=dict(type="str", default="Rollback requested by selfheal.devops"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=300),
        poll_interval=dict(type="float", default=5.0),
        fail_on_result=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    _options.require_requests(module)
    result = new_result()
    try:
        validate(module.params)
        service = keptn.KeptnService(keptn.client_from_params(module.params, log=module.warn))
        changed = run(module, service, result)
    except SelfHealError as error:
        module.fail_json(**failure(error, result))
    if not result["written"]:
        del result["written"]
    if module.params["fail_on_result"] and (result["result"] == "fail" or result["state"] == "aborted"):
        outcome = " with result fail" if result["result"] == "fail" else ""
        module.fail_json(msg="Keptn rollback %s ended %s%s" % (result["keptn_context"], result["state"], outcome),
                         changed=changed, **result)
    result.pop("written", None)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
