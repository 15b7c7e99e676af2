# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dynatrace problem: comment once, events once, close. Private to the selfheal.devops collection.

The logic of the dynatrace_problem module, shared with the incident orchestrator (incident_sync), which runs it for several
systems at once. Functions take a task object with .params, .check_mode and .warn (an AnsibleModule, or a
_tasks.Task); main() of the module and _tasks.run_task() are the only callers that turn errors into results.
"""

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _tasks, dynatrace
from ansible_collections.selfheal.devops.plugins.module_utils._errors import SelfHealError


def comment_exists(comments, message, context):
    return any(c.get("content") == message and c.get("context") == context for c in comments)


def event_already_sent(raw, title):
    details = ((raw.get("evidenceDetails") or {}).get("details")) or []
    return any(item.get("displayName") == title for item in details)


def build_event(problem, spec, incident_key):
    properties = dict((k, str(v)) for k, v in (spec.get("properties") or {}).items())
    properties[dynatrace.EVENT_PROPERTY] = incident_key or problem["display_id"] or problem["id"]
    event = {"eventType": spec["event_type"], "title": spec["title"], "properties": properties,
             "entitySelector": dynatrace.entity_selector(problem, spec["target"])}
    if spec.get("timeout"):
        event["timeout"] = spec["timeout"]
    return event


def run(module, service):
    """Ensure the requested comment, event and state; returns (changed, result, diff)."""
    params, check = module.params, module.check_mode
    raw = service.get_problem(params["problem_id"], fields=("evidenceDetails",))
    problem = service.normalize(raw)
    pid = problem["id"]
    result = {"commented": False, "closed": False, "event": None}
    before = {"status": problem["status"], "comments": []}
    after = {"status": problem["status"], "comments": []}

    if params["comment"]:
        ours = [c for c in service.comments(pid) if c.get("context") == params["comment_context"]]
        before["comments"] = after["comments"] = [c["content"] for c in ours]
        if not comment_exists(ours, params["comment"], params["comment_context"]):
            if not check:
                service.add_comment(pid, params["comment"], params["comment_context"])
            after["comments"] = before["comments"] + [params["comment"]]
            result["commented"] = True

    if params["event"]:
        event = build_event(problem, params["event"], params["incident_key"])
        if not event_already_sent(raw, params["event"]["title"]):
            result["event"] = {"would_send": event} if check else service.ingest_event(event)

    if params["state"] == "closed" and problem["status"] == "OPEN":
        result["closed"] = check or service.close(pid, params["close_message"]) is not None
        after["status"] = "CLOSED"

    changed = bool(result["commented"] or result["event"] or result["closed"])
    if changed and not check:
        raw = service.get_problem(pid, fields=("evidenceDetails",))
        problem = service.normalize(raw)
    elif check and result["closed"]:
        problem = dict(problem, status="CLOSED")
    result["problem"] = problem
    if params["return_raw"]:
        result["raw"] = raw
    return changed, result, {"before": before, "after": after}


def argument_spec():
    return _options.argument_spec(
        "dynatrace",
        problem_id=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "closed"], default="present"),
        comment=dict(type="str"),
        comment_context=dict(type="str", default=dynatrace.COMMENT_CONTEXT),
        close_message=dict(type="str", default="Closed by selfheal.devops after a verified remediation."),
        event=dict(type="dict", options=dict(
            event_type=dict(type="str", default="CUSTOM_INFO",
                            choices=["CUSTOM_INFO", "CUSTOM_ANNOTATION", "CUSTOM_DEPLOYMENT", "CUSTOM_CONFIGURATION",
                                     "ERROR_EVENT", "AVAILABILITY_EVENT", "PERFORMANCE_EVENT", "RESOURCE_CONTENTION_EVENT",
                                     "CUSTOM_ALERT", "WARNING", "MARKED_FOR_TERMINATION"]),
            title=dict(type="str", required=True),
            properties=dict(type="dict", default={}),
            timeout=dict(type="int"),
            target=dict(type="str", choices=["impacted", "root_cause", "host", "service"], default="impacted"),
        )),
        incident_key=dict(type="str", no_log=False),
        return_raw=dict(type="bool", default=False),
    )


CONSTRAINTS = {}


def execute(task):
    """The module's result (changed, comment, closed, ...); _tasks.Failed when it failed."""
    try:
        client = dynatrace.client_from_params(task.params, log=task.warn)
        service = dynatrace.DynatraceService(client, task.params["url"])
        changed, result, diff = run(task, service)
    except SelfHealError as error:
        raise _tasks.Failed(error.to_fail_kwargs())
    if task._diff:
        result["diff"] = diff
    result["changed"] = changed
    return result
