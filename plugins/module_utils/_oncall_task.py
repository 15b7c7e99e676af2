# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""On-call page: xMatters events and PagerDuty Events v2, once per incident key. Private to the selfheal.devops collection.

The logic of the oncall_notify module, shared with the incident orchestrator (incident_sync), which runs it for several
systems at once. Functions take a task object with .params, .check_mode and .warn (an AnsibleModule, or a
_tasks.Task); main() of the module and _tasks.run_task() are the only callers that turn errors into results.
"""

import time

from ansible_collections.selfheal.devops.plugins.module_utils import _options, _tasks, oncall
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, SelfHealError


PD_ACTIONS = {"triggered": "trigger", "acknowledged": "acknowledge", "resolved": "resolve"}
MIN_POLL_INTERVAL = 0.2


class NoResponse(SelfHealError):
    """Nobody answered the page in time and the caller asked to fail then."""

    kind = "no_response"


def validate(params):
    """Refuse, before any request, what cannot work; nothing has been sent when this raises."""
    for name in ("response_timeout", "event_timeout"):
        if params[name] <= 0:
            raise InvalidInput("%s must be greater than 0 (got %s)" % (name, params[name]))
    if params["poll_interval"] < MIN_POLL_INTERVAL:
        raise InvalidInput("poll_interval must be at least %.1f seconds (got %s)" % (MIN_POLL_INTERVAL, params["poll_interval"]))
    if not params["incident_key"].strip():
        raise InvalidInput("incident_key must not be empty")
    for name in ("groups", "people"):
        if any(not item.strip() for item in params[name]):
            raise InvalidInput("%s: a name must not be empty" % name)
    texts = [option["text"] for option in params["response_options"] or []]
    if any(not text.strip() for text in texts):
        raise InvalidInput("response_options: the text of an option must not be empty")
    repeated = sorted(set(text for text in texts if texts.count(text) > 1))
    if repeated:
        raise InvalidInput("response_options: %s offered more than once" % ", ".join(repeated))
    approve = params["approve_response"]
    if approve is not None and texts and approve not in texts:
        raise InvalidInput("approve_response %r is not one of the response_options (%s): no answer could approve; "
                           "nothing was sent" % (approve, ", ".join(texts)))


def failure(error, result, params):
    """fail_json arguments: the error, what the run learnt and, when it wrote something, changed=true and what."""
    kwargs = _tasks.failure(error, result)
    kwargs.update(provider=params["provider"], incident_key=params["incident_key"])
    return kwargs


# --- xMatters -------------------------------------------------------------------------------------

def _trigger_body(params):
    options = [dict((k, v) for k, v in option.items() if v is not None) for option in params["response_options"] or []]
    return oncall.xmatters_trigger_body(
        params["incident_key"], params["key_property"], summary=params["summary"], priority=params["priority"],
        severity=params["severity"], groups=params["groups"], people=params["people"], source=params["source"],
        component=params["component"], group=params["group"], event_class=params["event_class"],
        custom_details=params["custom_details"], links=params["links"], properties=params["properties"],
        response_options=options)


def _annotate_once(service, event, comment, check_mode, result):
    """Add the marked comment unless the event already carries it; returns whether it was (or would be) added."""
    text = oncall.marked(comment)
    if any(note.get("comment") == text for note in service.annotations(event["id"])):
        return False
    if not check_mode:
        service.annotate(event["id"], text)
        result["written"].append("annotated xMatters event %s" % event.get("eventId"))
    return True


def _page(module, service, result, body):
    """Send the trigger (after checking that every person exists) and wait for the event xMatters creates."""
    params = module.params
    unknown = service.unknown_people(params["people"])
    if unknown:
        raise InvalidInput("unknown xMatters people: %s; nothing was sent" % ", ".join(unknown))
    if module.check_mode:
        result["would_send"] = body
        return None
    result["request_id"] = service.trigger(body)
    result["written"].append("triggered an xMatters event (requestId %s)" % result["request_id"])
    return service.wait_for_request(result["request_id"], params["event_timeout"], params["poll_interval"])


def _wait_for_answer(module, service, event, result):
    params = module.params
    answer, deliveries = service.wait_for_response(event["id"], params["response_timeout"], params["poll_interval"])
    result["notified"] = deliveries
    result["response"] = answer["response"] if answer is not None else "no_response"
    if answer is not None:
        result["responder"] = answer["recipient"]
    if params["approve_response"] is not None:
        result["approved"] = result["response"] == params["approve_response"]
    if answer is None and params["fail_on_no_response"]:
        raise NoResponse("Nobody responded to xMatters event %s (incident %s) within %.0f s"
                         % (event.get("eventId"), params["incident_key"], params["response_timeout"]))


def xmatters_triggered(module, service, result):
    params = module.params
    if not params["summary"]:
        raise InvalidInput("summary is required to trigger an xMatters event")
    if params["approve_response"] is not None and not params["response_options"]:
        module.warn("response_options is empty, so the xMatters form's own options apply: make sure one of them is %r"
                    % params["approve_response"])
    key = params["incident_key"]
    result["event"] = None
    active = service.find_open_events(params["key_property"], key)
    event = active[0] if active else None
    body = _trigger_body(params)
    # Read before any write: an unknown group (or, before a page, person) fails here with nothing sent.
    result["on_call"] = service.on_call_checked(params["groups"])
    changed = event is None
    if event is None:
        event = _page(module, service, result, body)
    diff = {"before": {}, "after": {}}
    if event is not None:
        result["event"] = oncall.event_summary(event, params["key_property"])
        diff["after"] = {"incident_key": key, "status": event.get("status"), "eventId": event.get("eventId"),
                         "priority": event.get("priority")}
        if not changed:
            diff["before"] = dict(diff["after"])
    else:
        diff["after"] = {"incident_key": key, "status": "ACTIVE", "priority": body["priority"],
                         "recipients": [r["id"] for r in body.get("recipients", [])]}
    if params["comment"] is not None:
        # No event yet only happens in check mode before a trigger: the new event would get the comment.
        added = True if event is None else _annotate_once(service, event, params["comment"], module.check_mode, result)
        result["annotation_added"] = added
        if added:
            changed = True
            diff["after"]["annotation"] = oncall.marked(params["comment"])
    if event is not None:
        if params["wait_for_response"] and not module.check_mode:
            _wait_for_answer(module, service, event, result)
        else:
            result["notified"] = service.deliveries(event["id"])
    return changed, diff


def xmatters_resolved(module, service, result):
    params = module.params
    key = params["incident_key"]
    active = service.find_open_events(params["key_property"], key)
    result["event"] = None
    changed = False
    diff = {"before": {}, "after": {}}
    target = active[0] if active else None
    if target is None:  # nothing open: report (and annotate) the latest event with that key, if any
        latest = service.find_events(params["key_property"], key)
        target = latest[0] if latest else None
    if params["comment"] is not None:
        added = target is not None and _annotate_once(service, target, params["comment"], module.check_mode, result)
        result["annotation_added"] = bool(added)
        changed = changed or result["annotation_added"]
    if active:
        diff["before"] = {"incident_key": key, "status": [e.get("status") for e in active],
                          "eventIds": [e.get("eventId") for e in active]}
        diff["after"] = {"incident_key": key, "status": "TERMINATED", "eventIds": [e.get("eventId") for e in active]}
        changed = True
        for event in active:
            if module.check_mode:
                event = dict(event, status="TERMINATED")
            else:
                updated = service.set_status(event["id"], "TERMINATED")
                result["written"].append("terminated xMatters event %s" % event.get("eventId"))
                event = updated or dict(event, status="TERMINATED")
            if result["event"] is None:
                result["event"] = oncall.event_summary(event, params["key_property"])
    elif target is not None:
        result["event"] = oncall.event_summary(target, params["key_property"])
    return changed, diff


# --- PagerDuty ------------------------------------------------------------------------------------

def pagerduty_run(module, service, result):
    params = module.params
    for name in ("comment", "approve_response"):
        if params[name] is not None:
            module.warn("%s is ignored for PagerDuty: the Events API v2 has no comments or responses" % name)
    if params["wait_for_response"]:
        module.warn("wait_for_response is ignored for PagerDuty: the Events API v2 cannot be read back")
    action = PD_ACTIONS[params["state"]]
    body = oncall.pagerduty_event(
        action, params["incident_key"], summary=params["summary"], source=params["source"], severity=params["severity"],
        component=params["component"], group=params["group"], event_class=params["event_class"],
        custom_details=params["custom_details"], links=params["links"])
    if action == "trigger" and params["summary"] and len(params["summary"]) > oncall.PD_SUMMARY_MAX:
        module.warn("summary cut to %d characters (PagerDuty's limit)" % oncall.PD_SUMMARY_MAX)
    result.update(dedup_key=params["incident_key"], event_action=action)
    if module.check_mode:
        result["would_send"] = body
    else:
        result["api_response"] = service.send(body)
        result["dedup_key"] = result["api_response"]["dedup_key"]
    diff = {"before": {}, "after": body, "before_header": "PagerDuty (no read-back)",
            "after_header": "event sent to PagerDuty"}
    return True, diff


def run(module, service, result):
    """Dispatch on provider and state; fills result (result["written"] lists every write done); returns (changed, diff)."""
    params = module.params
    if params["provider"] == "pagerduty":
        return pagerduty_run(module, service, result)
    if params["state"] == "acknowledged":
        raise InvalidInput("xMatters events have no acknowledge: responders answer with a response option "
                           "(use state=triggered with wait_for_response) and state=resolved terminates the event")
    if params["state"] == "resolved":
        return xmatters_resolved(module, service, result)
    return xmatters_triggered(module, service, result)


def argument_spec():
    link = dict(href=dict(type="str", required=True), text=dict(type="str"))
    option = dict(text=dict(type="str", required=True), description=dict(type="str"),
                  action=dict(type="str", choices=["record_response", "assign_to_user", "stop_notifying_user",
                                                   "stop_notifying_target", "escalate", "end"]))
    return _options.argument_spec(
        "oncall",
        provider=dict(type="str", required=True, choices=["xmatters", "pagerduty"]),
        state=dict(type="str", default="triggered", choices=["triggered", "acknowledged", "resolved"]),
        incident_key=dict(type="str", required=True, no_log=False),
        summary=dict(type="str"),
        source=dict(type="str"),
        severity=dict(type="str", default="error", choices=["critical", "error", "warning", "info"]),
        component=dict(type="str"),
        group=dict(type="str"),
        event_class=dict(type="str"),
        custom_details=dict(type="dict"),
        links=dict(type="list", elements="dict", options=link),
        priority=dict(type="str", choices=["low", "medium", "high"]),
        groups=dict(type="list", elements="str", default=[]),
        people=dict(type="list", elements="str", default=[]),
        properties=dict(type="dict", default={}),
        key_property=dict(type="str", default="selfheal_incident_key", no_log=False),
        response_options=dict(type="list", elements="dict", options=option),
        approve_response=dict(type="str"),
        comment=dict(type="str"),
        wait_for_response=dict(type="bool", default=False),
        response_timeout=dict(type="float", default=300.0),
        poll_interval=dict(type="float", default=5.0),
        fail_on_no_response=dict(type="bool", default=False),
        event_timeout=dict(type="float", default=30.0),
    )


CONSTRAINTS = dict(required_if=[("provider", "pagerduty", ["routing_key"]),
                                ("provider", "xmatters", ["xmatters_url", "xmatters_user", "xmatters_password",
                                                          "xmatters_trigger_url"])])


def execute(task):
    """The module's result (changed, event, notified, response, ...); _tasks.Failed when it failed."""
    params = task.params
    started = time.time()
    result = {"written": []}
    try:
        validate(params)
        service = oncall.client_from_params(params, log=task.warn)
        changed, diff = run(task, service, result)
    except SelfHealError as error:
        raise _tasks.Failed(failure(error, result, params))
    del result["written"]
    result.update(changed=changed, provider=params["provider"], incident_key=params["incident_key"],
                  elapsed=round(time.time() - started, 3))
    if task._diff:
        result["diff"] = diff
    return result
