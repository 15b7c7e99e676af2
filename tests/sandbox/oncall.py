"""On-call paging: xMatters (xmapi v1 + inbound integration trigger) and PagerDuty Events API v2.

Both services live here; state is kept in sandbox.state["xmatters"] and sandbox.state["pagerduty"].
See tests/sandbox/README.md ("xMatters and PagerDuty") for the contract, including every choice marked [U]
(behaviour the public documentation does not pin down).
"""

import asyncio
import base64
import binascii
import datetime
import json
import re
import time
import uuid
from urllib.parse import quote, urlencode

from aiohttp import web

from sandbox import credentials
from sandbox.core import SANDBOX

XMATTERS_PREFIX = credentials.XMATTERS_PREFIX
PAGERDUTY_PREFIX = credentials.PAGERDUTY_PREFIX
PREFIX = XMATTERS_PREFIX

REST = XMATTERS_PREFIX + "/api/xm/1"
TRIGGER = XMATTERS_PREFIX + "/api/integration/1/functions/{trigger_id}/triggers"

# A seeded xMatters user whose password is right but who lacks the "REST Web Service User" role: 403.
XMATTERS_NOROLE_USER = "no-rest-role"
XMATTERS_NOROLE_PASSWORD = "xm-sandbox-norole-0001"
XMATTERS_PASSWORDS = {credentials.XMATTERS_USER: credentials.XMATTERS_PASSWORD, XMATTERS_NOROLE_USER: XMATTERS_NOROLE_PASSWORD}
# URL authentication for the inbound integration (?apiKey=...).
XMATTERS_TRIGGER_API_KEY = "xm-sandbox-trigger-apikey-0001"

PRIORITIES = ("LOW", "MEDIUM", "HIGH")
EVENT_STATUSES = ("ACTIVE", "SUSPENDED", "TERMINATED")
RESPONSE_ACTIONS = ("RECORD_RESPONSE", "ASSIGN_TO_USER", "STOP_NOTIFYING_USER", "STOP_NOTIFYING_TARGET",
                    "ESCALATE", "END")
PD_ACTIONS = ("trigger", "acknowledge", "resolve")
PD_SEVERITIES = ("critical", "error", "warning", "info")
PD_MAX_BYTES = 512 * 1024
# A second Events v2 integration (another service), to show that ack/resolve with another key are dropped.
PAGERDUTY_OTHER_ROUTING_KEY = "R0UT1NGK3Y5ANDB0X000000000000002"
PD_INTEGRATIONS = {credentials.PAGERDUTY_ROUTING_KEY: "Selfheal Sandbox Service",
                   PAGERDUTY_OTHER_ROUTING_KEY: "Other Sandbox Service"}


def xm_time(epoch=None):
    """xMatters timestamps look like 2016-10-31T22:37:35.301+0000."""
    moment = datetime.datetime.fromtimestamp(time.time() if epoch is None else epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d+0000" % (moment.microsecond // 1000)


def _ms(epoch):
    """Times compare in whole milliseconds, the precision of the API's timestamps (as xm_time truncates them)."""
    return int(round(epoch * 1000000)) // 1000


def parse_time(text):
    """Epoch seconds from an ISO 8601 time (Z, +0000 or +00:00); None when it cannot be parsed."""
    value = str(text).strip()
    value = re.sub(r"Z$", "+00:00", value)
    value = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", value)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


# =================================================================================================
# xMatters
# =================================================================================================

def _person(target_name, first, last, roles):
    return dict(id=str(uuid.uuid5(uuid.NAMESPACE_URL, "xmatters/person/" + target_name)), targetName=target_name,
                firstName=first, lastName=last, recipientType="PERSON", status="ACTIVE", roles=roles)


def seed_xmatters(sandbox):
    people = [
        _person(credentials.XMATTERS_USER, "Selfheal", "Automation", ["REST Web Service User"]),
        _person(XMATTERS_NOROLE_USER, "No", "Role", ["Standard User"]),
        _person("oncall.primary", "Pat", "Primary", ["Standard User"]),
        _person("oncall.secondary", "Sam", "Secondary", ["Standard User"]),
        _person("dba.one", "Dana", "Base", ["Standard User"]),
        _person("dba.two", "Dale", "Base", ["Standard User"]),
    ]
    groups = {}
    for name in ("Ops Primary", "Database"):
        groups[name] = dict(id=str(uuid.uuid5(uuid.NAMESPACE_URL, "xmatters/group/" + name)), targetName=name,
                            recipientType="GROUP", status="ACTIVE")
    sandbox.state["xmatters"] = {
        "people": {p["targetName"]: p for p in people},
        "groups": groups,
        # group name -> people in escalation order (the current shift of the group's one schedule)
        "schedule": {"Ops Primary": ["oncall.primary", "oncall.secondary"], "Database": ["dba.one", "dba.two"]},
        "config": {"delay": 0.2, "callback_url": None, "callback_headers": {}, "api_key": XMATTERS_TRIGGER_API_KEY,
                   "default_recipients": [{"id": "Ops Primary", "recipientType": "GROUP"}]},
        "requests": {},     # requestId -> {"received", "event": uuid or None}
        "events": [],       # newest last
        "next_event_id": 981000,
    }


def xm_error(status, message):
    reasons = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
               409: "Conflict", 500: "Internal Server Error"}
    return web.json_response({"code": status, "reason": reasons.get(status, "Error"), "message": message},
                             status=status)


def _basic_user(request, state):
    """The authenticated targetName, or an error response."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None, xm_error(401, "Authentication is required to access this resource.")
    try:
        user, password = base64.b64decode(header[6:].strip()).decode("utf-8").split(":", 1)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, xm_error(401, "Malformed basic authentication header.")
    if user not in state["people"] or XMATTERS_PASSWORDS.get(user) != password:
        return None, xm_error(401, "Bad credentials.")
    return user, None


def _rest_auth(request):
    state = request.app[SANDBOX].state["xmatters"]
    user, error = _basic_user(request, state)
    if error is not None:
        return None, error
    if "REST Web Service User" not in state["people"][user]["roles"]:
        return None, xm_error(403, "The user %s does not have permission to access the REST API." % user)
    return user, None


def _offset_limit(request):
    try:
        offset = int(request.query.get("offset", 0))
        limit = int(request.query.get("limit", 100))
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"code": 400, "reason": "Bad Request",
                                                  "message": "offset and limit must be integers"}),
                                 content_type="application/json")
    if offset < 0 or limit < 1 or limit > 1000:
        raise web.HTTPBadRequest(text=json.dumps({"code": 400, "reason": "Bad Request",
                                                  "message": "offset must be >= 0 and limit between 1 and 1000"}),
                                 content_type="application/json")
    return offset, limit


def _page(request, items, offset, limit):
    """The xmapi pagination envelope; links.next only while more items remain."""
    chunk = items[offset:offset + limit]
    links = {"self": _self_link(request, offset, limit)}
    if offset + limit < len(items):
        links["next"] = _self_link(request, offset + limit, limit)
    return {"count": len(chunk), "total": len(items), "data": chunk, "links": links}


def _self_link(request, offset, limit):
    """The same query at another offset, URL-encoded (a value with & or # survives), relative to the instance root."""
    query = [(k, v) for k, v in request.query.items() if k not in ("offset", "limit")]
    query += [("offset", str(offset)), ("limit", str(limit))]
    path = request.path[len(XMATTERS_PREFIX):]
    return "%s?%s" % (quote(path), urlencode(query, quote_via=quote))


def _person_ref(person):
    return {"id": person["id"], "targetName": person["targetName"], "recipientType": "PERSON",
            "links": {"self": "/api/xm/1/people/%s" % person["id"]}}


def _person_full(person):
    return {"id": person["id"], "targetName": person["targetName"], "firstName": person["firstName"],
            "lastName": person["lastName"], "recipientType": "PERSON", "status": person["status"],
            "links": {"self": "/api/xm/1/people/%s" % person["id"]}}


def _group_ref(group):
    return {"id": group["id"], "targetName": group["targetName"], "recipientType": "GROUP",
            "links": {"self": "/api/xm/1/groups/%s" % group["id"]}}


def _find_event(state, ident):
    for event in state["events"]:
        if ident in (event["id"], event["eventId"]):
            return event
    return None


def _base_name(name):
    """Property names may carry a language suffix (Country#en)."""
    return str(name).split("#", 1)[0]


def _property_matches(event, name, value, operator):
    for key, stored in event["properties"].items():
        if key != name and _base_name(key) != _base_name(name):
            continue
        if operator == "CONTAINS":
            if str(value).lower() in str(stored).lower():
                return True
        elif str(stored) == str(value):
            return True
    return False


EVENT_EMBEDS = {"properties", "recipients", "responseOptions", "annotations"}


def _status_at(event, at):
    """The event's status at epoch `at` (None: now), from its status history."""
    if at is None:
        return event["status"]
    status = event["history"][0]["status"]
    for change in event["history"]:
        if _ms(change["at"]) <= _ms(at):
            status = change["status"]
    return status


def _render_event(event, embed, at=None):
    out = {key: event[key] for key in ("id", "eventId", "name", "eventType", "priority", "incident", "status",
                                       "created", "terminated", "floodControl", "otherResponseCountThreshold",
                                       "otherResponseCount", "responseCountsEnabled", "requestId", "submitter",
                                       "plan", "form")}
    if at is not None:
        out["status"] = _status_at(event, at)
        if out["status"] != "TERMINATED":
            out["terminated"] = None
    out["links"] = {"self": "/api/xm/1/events/%s" % event["id"]}
    if "properties" in embed:
        out["properties"] = dict(event["properties"])
    if "recipients" in embed:
        recipients = event["recipients"]
        out["recipients"] = {"count": len(recipients), "total": len(recipients), "data": recipients}
    if "responseOptions" in embed:
        options = event["responseOptions"]
        out["responseOptions"] = {"count": len(options), "total": len(options), "data": options}
    if "annotations" in embed:
        notes = event["annotations"]
        out["annotations"] = {"count": len(notes), "total": len(notes), "data": notes}
    return out


def _embed(request):
    """The embed list; a value the sandbox does not implement is a 400, not silently dropped."""
    wanted = set(filter(None, (part.strip() for part in request.query.get("embed", "").split(","))))
    unknown = wanted - EVENT_EMBEDS
    if unknown:
        raise _bad_request("embed %s is not supported by the sandbox (supported: %s)"
                           % (", ".join(sorted(unknown)), ", ".join(sorted(EVENT_EMBEDS))))
    return wanted


def _bad_request(message):
    return web.HTTPBadRequest(text=json.dumps({"code": 400, "reason": "Bad Request", "message": message}),
                              content_type="application/json")


def _normalise_recipients(raw, state):
    """Recipients as the trigger stores them; unknown names are kept (xMatters reports them, notifies nobody)."""
    result = []
    for item in raw or []:
        if isinstance(item, str):
            item = {"id": item}
        if not isinstance(item, dict) or not item.get("id") and not item.get("targetName"):
            continue
        name = str(item.get("id") or item.get("targetName"))
        kind = str(item.get("recipientType") or "").upper()
        if not kind:
            kind = "GROUP" if name in state["groups"] else "PERSON"
        target = (state["groups"] if kind == "GROUP" else state["people"]).get(name)
        if target is None:  # by id
            pool = state["groups"] if kind == "GROUP" else state["people"]
            target = next((t for t in pool.values() if t["id"] == name), None)
        if target is None:
            result.append({"id": name, "targetName": name, "recipientType": kind, "resolved": False})
        else:
            ref = _group_ref(target) if kind == "GROUP" else _person_ref(target)
            ref["resolved"] = True
            result.append(ref)
    return result


def _targeted_people(recipients, state):
    """targetNames to notify: people directly, groups through the on-call schedule, in order, no duplicates."""
    names = []
    for recipient in recipients:
        if not recipient.get("resolved"):
            continue
        if recipient["recipientType"] == "PERSON":
            candidates = [recipient["targetName"]]
        else:
            candidates = state["schedule"].get(recipient["targetName"], [])
        for name in candidates:
            if name not in names and name in state["people"]:
                names.append(name)
    return names


def _response_options(raw):
    options = []
    for index, item in enumerate(raw or []):
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict) or not item.get("text"):
            continue
        action = str(item.get("action") or "RECORD_RESPONSE").upper()
        options.append({"id": item.get("id") or str(uuid.uuid4()), "number": index + 1, "text": str(item["text"]),
                        "description": item.get("description") or str(item["text"]),
                        "action": action if action in RESPONSE_ACTIONS else "RECORD_RESPONSE",
                        "contribution": str(item.get("contribution") or "NEUTRAL").upper(),
                        "allowComments": bool(item.get("allowComments", True)), "order": index + 1})
    return options


def _create_event(sandbox, state, request_id, body, submitter):
    """Turn an accepted trigger into an event (runs after the configured delay, like xMatters does)."""
    if sandbox.state.get("xmatters") is not state:  # reset in between: the request is gone
        return
    state["next_event_id"] += 1
    event_id = str(state["next_event_id"])
    priority = str(body.get("priority") or "MEDIUM").upper()
    recipients_raw = body.get("recipients") if body.get("recipients") else state["config"]["default_recipients"]
    recipients = _normalise_recipients(recipients_raw, state)
    now = time.time()
    properties = body.get("properties") if isinstance(body.get("properties"), dict) else {}
    event = {
        "id": str(uuid.uuid4()), "eventId": event_id, "name": str(properties.get("summary") or "Incident Alert"),
        "eventType": "USER", "priority": priority if priority in PRIORITIES else "MEDIUM",
        "incident": "INCIDENT_ID-%s" % event_id, "status": "ACTIVE", "created": xm_time(now), "created_epoch": now,
        "history": [{"status": "ACTIVE", "at": now}],
        "terminated": None, "floodControl": False, "otherResponseCountThreshold": 2, "otherResponseCount": 0,
        "responseCountsEnabled": False, "requestId": request_id,
        "submitter": _person_ref(state["people"][submitter]) if submitter in state["people"] else None,
        "plan": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "xmatters/plan")), "name": "Selfheal Sandbox"},
        "form": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "xmatters/form")), "name": "Incident Alert"},
        "properties": dict(properties), "recipients": recipients,
        "responseOptions": _response_options(body.get("responseOptions")), "annotations": [],
        "deliveries": [], "body": body,
    }
    for name in _targeted_people(recipients, state):
        person = state["people"][name]
        device = {"id": str(uuid.uuid4()), "name": "Work Email", "recipientType": "DEVICE",
                  "targetName": name + "|Work Email"}
        notification = {"id": str(uuid.uuid4()), "recipient": device,
                        "deliveryStatus": "DELIVERED", "created": xm_time(now), "delivered": xm_time(now),
                        "responded": None, "responses": {"count": 0, "total": 0, "data": []}}
        event["deliveries"].append({"person": _person_ref(person), "deliveryStatus": "DELIVERED",
                                    "created": xm_time(now), "created_epoch": now,
                                    "notifications": {"count": 1, "total": 1, "data": [notification]},
                                    "response": None})
    state["events"].append(event)
    state["requests"][request_id]["event"] = event["id"]


async def xm_trigger(request):
    sandbox = request.app[SANDBOX]
    state = sandbox.state["xmatters"]
    if request.match_info["trigger_id"] != credentials.XMATTERS_TRIGGER_ID:
        return xm_error(404, "No inbound integration or HTTP trigger with this id.")
    api_key = request.query.get("apiKey")
    submitter = credentials.XMATTERS_USER
    if api_key is not None:
        if api_key != state["config"]["api_key"]:
            return xm_error(401, "Invalid API key.")
    else:
        user, error = _basic_user(request, state)
        if error is not None:
            return error
        submitter = user
    try:
        body = await request.json()
    except ValueError:
        return xm_error(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return xm_error(400, "The request body must be a JSON object.")
    request_id = str(uuid.uuid4())
    state["requests"][request_id] = {"received": xm_time(), "event": None, "submitter": submitter}
    delay = float(state["config"]["delay"])
    loop = asyncio.get_running_loop()
    if delay > 0:
        loop.call_later(delay, _create_event, sandbox, state, request_id, body, submitter)
    else:
        loop.call_soon(_create_event, sandbox, state, request_id, body, submitter)
    return web.json_response({"requestId": request_id}, status=202)


EVENT_QUERY = {"status", "priority", "propertyName", "propertyValue", "propertyValueOperator", "requestId",
               "incidentId", "plan", "form", "from", "to", "at", "search", "fields", "submitter",
               "targetedRecipients", "resolvedUsers", "eventType", "embed", "sortBy", "sortOrder", "offset", "limit"}
SORTS = {"START_TIME": lambda e: (e["created_epoch"], int(e["eventId"])), "PRIORITY": lambda e: PRIORITIES.index(e["priority"]),
         "STATUS": lambda e: EVENT_STATUSES.index(e["status"]), "NAME": lambda e: e["name"].lower()}


def _csv(query, name, allowed=None):
    values = [part.strip() for part in query.get(name, "").split(",") if part.strip()]
    if allowed is not None:
        bad = [v for v in values if v.upper() not in allowed]
        if bad:
            raise _bad_request("%s must be among %s (got %s)" % (name, ", ".join(allowed), ", ".join(bad)))
        values = [v.upper() for v in values]
    return values


def _time_param(query, name):
    if not query.get(name):
        return None
    moment = parse_time(query[name])
    if moment is None:
        raise _bad_request("%s must be an ISO 8601 time" % name)
    return moment


def _property_filter(query):
    """[(name, value, operator)]: one pair, or comma lists paired by position (propertyName=a,b&propertyValue=x,y)."""
    if not (query.get("propertyName") or query.get("propertyValue")):
        return []
    if not (query.get("propertyName") and query.get("propertyValue")):
        raise _bad_request("propertyName and propertyValue must be used together.")
    names = [n.strip() for n in query["propertyName"].split(",")]
    values = [query["propertyValue"]] if len(names) == 1 else [v.strip() for v in query["propertyValue"].split(",")]
    operators = _csv(query, "propertyValueOperator", ("EQUALS", "CONTAINS")) or ["EQUALS"]
    if len(values) != len(names) or len(operators) not in (1, len(names)):
        raise _bad_request("propertyName, propertyValue and propertyValueOperator must list as many entries.")
    operators = operators * len(names) if len(operators) == 1 else operators
    return list(zip(names, values, operators))


def _names_and_ids(refs):
    return {ref.get("id") for ref in refs} | {ref.get("targetName") for ref in refs}


def _search_matches(event, terms, fields):
    texts = []
    if "NAME" in fields:
        texts.append(event["name"])
    if "PROPERTIES" in fields:
        texts.extend(str(v) for v in event["properties"].values())
    haystack = " ".join(texts).lower()
    return all(term.lower() in haystack for term in terms)


def _filter_events(state, query):
    """GET /events filters (every documented one; an unknown parameter is a 400 rather than ignored [U])."""
    unknown = sorted(set(query) - EVENT_QUERY)
    if unknown:
        raise _bad_request("unknown query parameter(s) for GET /events: %s" % ", ".join(unknown))
    events = list(state["events"])
    at = _time_param(query, "at")
    if at is not None:
        events = [e for e in events if _ms(e["created_epoch"]) <= _ms(at)]
    start, end = _time_param(query, "from"), _time_param(query, "to")
    if start is not None:
        events = [e for e in events if _ms(e["created_epoch"]) >= _ms(start)]
    if end is not None:
        events = [e for e in events if _ms(e["created_epoch"]) <= _ms(end)]
    statuses = _csv(query, "status", EVENT_STATUSES)
    if statuses:
        events = [e for e in events if _status_at(e, at) in statuses]
    priorities = _csv(query, "priority", PRIORITIES)
    if priorities:
        events = [e for e in events if e["priority"] in priorities]
    kinds = _csv(query, "eventType", ("USER", "SYSTEM"))
    if kinds:
        events = [e for e in events if e["eventType"] in kinds]
    for name, key in (("requestId", "requestId"), ("incidentId", "incident")):
        wanted = _csv(query, name)
        if wanted:
            events = [e for e in events if e[key] in wanted]
    for name in ("plan", "form"):
        wanted = set(_csv(query, name))
        if wanted:
            events = [e for e in events if wanted & {e[name]["id"], e[name]["name"]}]
    if query.get("submitter"):
        events = [e for e in events if e["submitter"] and query["submitter"] in _names_and_ids([e["submitter"]])]
    targeted = set(_csv(query, "targetedRecipients"))
    if targeted:
        events = [e for e in events if targeted & _names_and_ids(e["recipients"])]
    resolved = set(_csv(query, "resolvedUsers"))
    if resolved:
        events = [e for e in events if resolved & _names_and_ids([d["person"] for d in e["deliveries"]])]
    for name, value, operator in _property_filter(query):
        events = [e for e in events if _property_matches(e, name, value, operator)]
    if query.get("search"):
        fields = _csv(query, "fields", ("NAME", "PROPERTIES")) or ["NAME", "PROPERTIES"]
        events = [e for e in events if _search_matches(e, query["search"].split(), fields)]
    elif query.get("fields"):
        raise _bad_request("fields only qualifies search")
    sort_by = (query.get("sortBy") or "START_TIME").upper()
    order = (query.get("sortOrder") or "DESCENDING").upper()
    if sort_by not in SORTS or order not in ("ASCENDING", "DESCENDING"):
        raise _bad_request("sortBy must be one of %s and sortOrder ASCENDING or DESCENDING" % ", ".join(sorted(SORTS)))
    return sorted(events, key=SORTS[sort_by], reverse=order == "DESCENDING"), at


async def xm_events(request):
    user, error = _rest_auth(request)
    if error is not None:
        return error
    state = request.app[SANDBOX].state["xmatters"]
    if request.method == "POST":
        return await _xm_change_status(request, state)
    offset, limit = _offset_limit(request)
    embed = _embed(request)
    events, at = _filter_events(state, request.query)
    return web.json_response(_page(request, [_render_event(e, embed, at) for e in events], offset, limit))


async def _xm_change_status(request, state):
    try:
        body = await request.json()
    except ValueError:
        return xm_error(400, "The request body is not valid JSON.")
    if not isinstance(body, dict) or not body.get("id") or body.get("status") not in EVENT_STATUSES:
        return xm_error(400, "Expected {\"id\": <event id>, \"status\": ACTIVE|SUSPENDED|TERMINATED}.")
    event = _find_event(state, str(body["id"]))
    if event is None:
        return xm_error(404, "Could not find an event with id %s." % body["id"])
    if event["status"] == "TERMINATED" and body["status"] != "TERMINATED":
        return xm_error(409, "Event %s is terminated and cannot change status." % event["eventId"])
    if event["status"] != body["status"]:
        now = time.time()
        event["status"] = body["status"]
        event["history"].append({"status": body["status"], "at": now})
        if body["status"] == "TERMINATED":
            event["terminated"] = xm_time(now)
    return web.json_response(_render_event(event, {"properties"}))


async def xm_event(request):
    user, error = _rest_auth(request)
    if error is not None:
        return error
    state = request.app[SANDBOX].state["xmatters"]
    event = _find_event(state, request.match_info["event"])
    if event is None:
        return xm_error(404, "Could not find an event with id %s." % request.match_info["event"])
    unknown = sorted(set(request.query) - {"embed", "at"})
    if unknown:
        return xm_error(400, "query parameter(s) not supported by the sandbox: %s" % ", ".join(unknown))
    at = _time_param(request.query, "at")
    if at is not None and _ms(event["created_epoch"]) > _ms(at):
        return xm_error(404, "Event %s did not exist at %s." % (event["eventId"], request.query["at"]))
    return web.json_response(_render_event(event, _embed(request), at))


async def xm_annotations(request):
    user, error = _rest_auth(request)
    if error is not None:
        return error
    state = request.app[SANDBOX].state["xmatters"]
    event = _find_event(state, request.match_info["event"])
    if event is None:
        return xm_error(404, "Could not find an event with id %s." % request.match_info["event"])
    if request.method == "GET":
        offset, limit = _offset_limit(request)
        return web.json_response(_page(request, event["annotations"], offset, limit))
    try:
        body = await request.json()
    except ValueError:
        return xm_error(400, "The request body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("comment"), str) or not body["comment"].strip():
        return xm_error(400, "comment is required.")
    annotation = {"id": str(uuid.uuid4()), "event": {"id": event["id"], "eventId": event["eventId"]},
                  "author": _person_ref(state["people"][user]), "comment": body["comment"], "created": xm_time()}
    event["annotations"].append(annotation)
    return web.json_response(annotation, status=201)


async def xm_annotation(request):
    user, error = _rest_auth(request)
    if error is not None:
        return error
    event = _find_event(request.app[SANDBOX].state["xmatters"], request.match_info["event"])
    if event is None:
        return xm_error(404, "Could not find an event with id %s." % request.match_info["event"])
    note = next((a for a in event["annotations"] if a["id"] == request.match_info["annotation"]), None)
    if note is None:
        return xm_error(404, "Could not find an annotation with id %s." % request.match_info["annotation"])
    return web.json_response(note)


async def xm_user_deliveries(request):
    user, error = _rest_auth(request)
    if error is not None:
        return error
    state = request.app[SANDBOX].state["xmatters"]
    event = _find_event(state, request.match_info["event"])
    if event is None:
        return xm_error(404, "Could not find an event with id %s." % request.match_info["event"])
    if not request.query.get("at"):
        return xm_error(400, "The 'at' query parameter is required.")
    at = parse_time(request.query["at"])
    if at is None:
        return xm_error(400, "The 'at' query parameter must be an ISO 8601 time.")
    unknown = sorted(set(request.query) - {"at", "deliveryStatus", "offset", "limit"})
    if unknown:
        return xm_error(400, "query parameter(s) not supported by the sandbox: %s" % ", ".join(unknown))
    offset, limit = _offset_limit(request)
    wanted = request.query.get("deliveryStatus")
    items = []
    for delivery in event["deliveries"]:
        if _ms(delivery["created_epoch"]) > _ms(at):
            continue
        if wanted and delivery["deliveryStatus"] not in wanted.upper().split(","):
            continue
        items.append(_delivery_as_at(event, delivery, at))
    return web.json_response(_page(request, items, offset, limit))


def _delivery_as_at(event, delivery, at):
    """One user-deliveries item as it stood at epoch `at`: responses received later are not there yet."""
    notifications = []
    for notification in delivery["notifications"]["data"]:
        responses = [r for r in notification["responses"]["data"] if _ms(r["received_epoch"]) <= _ms(at)]
        shown = {k: v for k, v in notification.items() if k != "responses"}
        shown["responded"] = responses[-1]["received"] if responses else None
        shown["responses"] = {"count": len(responses), "total": len(responses),
                              "data": [{k: v for k, v in r.items() if k != "received_epoch"} for r in responses]}
        notifications.append(shown)
    item = {"event": {"id": event["id"], "eventId": event["eventId"],
                      "links": {"self": "/api/xm/1/events/%s" % event["id"]}},
            "person": delivery["person"], "deliveryStatus": delivery["deliveryStatus"],
            "notifications": {"count": len(notifications), "total": len(notifications), "data": notifications},
            "links": {"self": "/api/xm/1/events/%s/user-deliveries" % event["id"]}}
    latest = [r for n in notifications for r in n["responses"]["data"]]
    if latest:
        last = latest[-1]
        item["response"] = {"text": last["text"], "notification": last["notification"], "received": last["received"]}
    return item


def _on_call_item(state, group):
    members = []
    for position, name in enumerate(state["schedule"].get(group["targetName"], []), start=1):
        person = state["people"].get(name)
        if person is None:
            continue
        members.append({"position": position, "delay": 0 if position == 1 else 5 * (position - 1),
                        "escalationType": "NONE", "member": _person_full(person), "replacements": {"count": 0, "total": 0, "data": []}})
    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"group": _group_ref(group),
            "shift": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "xmatters/shift/" + group["targetName"])), "name": "24x7",
                      "links": {"self": "/api/xm/1/groups/%s/shifts/24x7" % group["id"]}},
            "start": xm_time(today.timestamp()), "end": xm_time(today.timestamp() + 86400),
            "members": {"count": len(members), "total": len(members), "data": members}}


async def xm_on_call(request):
    user, error = _rest_auth(request)
    if error is not None:
        return error
    state = request.app[SANDBOX].state["xmatters"]
    names = [name.strip() for name in request.query.get("groups", "").split(",") if name.strip()]
    if not names:
        return xm_error(400, "The 'groups' query parameter is required.")
    items = []
    for name in names:
        group = state["groups"].get(name) or next((g for g in state["groups"].values() if g["id"] == name), None)
        if group is None:
            return xm_error(404, "Could not find a group with id or name %s." % name)
        items.append(_on_call_item(state, group))
    offset, limit = _offset_limit(request)
    return web.json_response(_page(request, items, offset, limit))


async def xm_people(request):
    user, error = _rest_auth(request)
    if error is not None:
        return error
    state = request.app[SANDBOX].state["xmatters"]
    ident = request.match_info.get("person")
    if ident is not None:
        person = state["people"].get(ident) or next((p for p in state["people"].values() if p["id"] == ident), None)
        if person is None:
            return xm_error(404, "Could not find a person with id or targetName %s." % ident)
        return web.json_response(_person_full(person))
    people = sorted(state["people"].values(), key=lambda p: p["targetName"])
    if request.query.get("targetName"):
        people = [p for p in people if p["targetName"] == request.query["targetName"]]
    offset, limit = _offset_limit(request)
    return web.json_response(_page(request, [_person_full(p) for p in people], offset, limit))


# --- xMatters admin: play the responder, configure ---------------------------------------------------------

def admin_error(status, message):
    return web.json_response({"error": message}, status=status)


def callback_payload(event, person_name, option, annotation, device="Work Email"):
    """What the sandbox POSTs to the response callback URL (shape of an xMatters "Notification Responses"
    outbound integration; see the README for which fields are [U])."""
    return {
        "recipient": person_name,
        "device": device,
        "response": option["text"],
        "annotation": annotation if annotation else "null",
        "date": xm_time(),
        "eventIdentifier": int(event["eventId"]),
        "eventProperties": [{key: value} for key, value in event["properties"].items()],
        # sandbox additions [U]: the event UUID and the chosen option's id/number
        "id": event["id"],
        "responseOption": {"id": option["id"], "number": option["number"], "action": option["action"]},
    }


async def admin_xm_respond(request):
    sandbox = request.app[SANDBOX]
    state = sandbox.state["xmatters"]
    try:
        body = await request.json()
    except ValueError:
        return admin_error(400, "expected a JSON object")
    event = None
    if body.get("event"):
        event = _find_event(state, str(body["event"]))
    elif body.get("requestId"):
        event = next((e for e in state["events"] if e["requestId"] == body["requestId"]), None)
    if event is None:
        return admin_error(404, "no such event (give event: uuid or eventId, or requestId)")
    if event["status"] != "ACTIVE":
        return admin_error(409, "event %s is %s" % (event["eventId"], event["status"]))
    text = body.get("response")
    option = next((o for o in event["responseOptions"] if text and o["text"].lower() == str(text).lower()), None)
    if option is None:
        return admin_error(400, "response must be one of %s" % [o["text"] for o in event["responseOptions"]])
    name = body.get("recipient")
    delivery = next((d for d in event["deliveries"] if name is None or d["person"]["targetName"] == name), None)
    if delivery is None:
        return admin_error(400, "%s was not notified for this event" % name)
    epoch = time.time()
    now = xm_time(epoch)
    notification = delivery["notifications"]["data"][0]
    notification["responded"] = now
    notification["responses"]["data"].append({"id": str(uuid.uuid4()), "text": option["text"], "received": now,
                                              "received_epoch": epoch, "notification": notification["id"],
                                              "comment": body.get("annotation")})
    notification["responses"]["count"] = notification["responses"]["total"] = len(notification["responses"]["data"])
    delivery["response"] = {"text": option["text"], "notification": notification["id"], "received": now}
    event["otherResponseCount"] += 1
    if body.get("annotation"):
        event["annotations"].append({"id": str(uuid.uuid4()), "event": {"id": event["id"], "eventId": event["eventId"]},
                                     "author": delivery["person"], "comment": body["annotation"], "created": now})
    payload = callback_payload(event, delivery["person"]["targetName"], option, body.get("annotation"))
    url = state["config"].get("callback_url")
    if url:
        sandbox.deliver(url, payload, headers=dict(state["config"].get("callback_headers") or {}))
    return web.json_response({"ok": True, "callback": payload, "delivered_to": url})


async def admin_xm_config(request):
    state = request.app[SANDBOX].state["xmatters"]
    if request.method == "POST":
        body = await request.json()
        unknown = set(body) - set(state["config"])
        if unknown:
            return admin_error(400, "unknown settings: %s" % sorted(unknown))
        if "delay" in body and (not isinstance(body["delay"], (int, float)) or not 0 <= body["delay"] <= 30):
            return admin_error(400, "delay must be a number of seconds between 0 and 30")
        state["config"].update(body)
    return web.json_response(state["config"])


async def admin_xm_schedule(request):
    """GET the on-call schedule; POST {"group": name, "members": [targetName, ...]} to replace one shift."""
    state = request.app[SANDBOX].state["xmatters"]
    if request.method == "POST":
        body = await request.json()
        group = body.get("group")
        members = body.get("members")
        if not group or not isinstance(members, list):
            return admin_error(400, "expected {group, members: [targetName, ...]}")
        unknown = [m for m in members if m not in state["people"]]
        if unknown:
            return admin_error(400, "unknown people: %s" % unknown)
        if group not in state["groups"]:
            state["groups"][group] = dict(id=str(uuid.uuid5(uuid.NAMESPACE_URL, "xmatters/group/" + group)),
                                          targetName=group, recipientType="GROUP", status="ACTIVE")
        state["schedule"][group] = list(members)
    return web.json_response(state["schedule"])


# =================================================================================================
# PagerDuty Events API v2
# =================================================================================================

def seed_pagerduty(sandbox):
    sandbox.state["pagerduty"] = {
        # routing keys are not kept in the state dump; integrations are named by a short fingerprint
        "integrations": {_fingerprint(key): {"service": name} for key, name in PD_INTEGRATIONS.items()},
        "config": {"rate_limit": 120, "window": 60.0},
        "alerts": [],       # {id, dedup_key, integration, status, ..., log: [events]}
        "events": [],       # every event received, with its outcome
    }
    sandbox.pd_windows = {}


def _fingerprint(routing_key):
    return "...%s" % str(routing_key)[-4:]


def pd_invalid(errors, status="invalid event"):
    return web.json_response({"status": status, "message": "Event object is invalid", "errors": errors}, status=400)


def _pd_validate(body):
    errors = []
    key = body.get("routing_key")
    if not isinstance(key, str) or not key:
        return ["'routing_key' is missing or blank"]
    if len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    if not key.isalnum():
        errors.append("'routing_key' cannot contain non-alphanumeric characters.")
    if errors:
        return errors
    if key not in PD_INTEGRATIONS:
        return ["Invalid routing key"]
    action = body.get("event_action")
    if action not in PD_ACTIONS:
        errors.append("'event_action' is missing or invalid (expected trigger, acknowledge or resolve)")
    dedup_key = body.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is required for %s events" % action)
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or not an object")
        else:
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary.strip():
                errors.append("'payload.summary' is missing or blank")
            elif len(summary) > 1024:
                errors.append("'payload.summary' is too long (maximum 1024 characters)")
            if not isinstance(payload.get("source"), str) or not payload.get("source", "").strip():
                errors.append("'payload.source' is missing or blank")
            if payload.get("severity") not in PD_SEVERITIES:
                errors.append("'payload.severity' is invalid (expected critical, error, warning or info)")
            if "custom_details" in payload and not isinstance(payload["custom_details"], (dict, list, str, int, float)):
                errors.append("'payload.custom_details' is invalid")
    for image in body.get("images") or []:
        if not isinstance(image, dict) or not str(image.get("src", "")).startswith("https://"):
            errors.append("'images[].src' must be an HTTPS URL")
    for link in body.get("links") or []:
        if not isinstance(link, dict) or not link.get("href"):
            errors.append("'links[].href' is required")
    return errors


def _pd_rate_limited(sandbox, key):
    config = sandbox.state["pagerduty"]["config"]
    now = time.monotonic()
    window = sandbox.pd_windows.setdefault(_fingerprint(key), [])
    window[:] = [stamp for stamp in window if now - stamp < float(config["window"])]
    if len(window) >= int(config["rate_limit"]):
        return True
    window.append(now)
    return False


async def pd_enqueue(request):
    sandbox = request.app[SANDBOX]
    state = sandbox.state["pagerduty"]
    raw = await request.read()
    if len(raw) > PD_MAX_BYTES:
        return pd_invalid(["Event payload is larger than 512 KB"])
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return pd_invalid(["Request body is not valid JSON"], status="Unrecognized object")
    if not isinstance(body, dict):
        return pd_invalid(["Request body is not a JSON object"], status="Unrecognized object")
    errors = _pd_validate(body)
    if errors:
        return pd_invalid(errors)
    key = body["routing_key"]
    if _pd_rate_limited(sandbox, key):
        return web.json_response({"status": "throttle event",
                                  "message": "Requests for this service are arriving too quickly. Please retry later."},
                                 status=429)
    action = body["event_action"]
    dedup_key = body.get("dedup_key") or uuid.uuid4().hex
    integration = _fingerprint(key)
    alert = next((a for a in reversed(state["alerts"]) if a["dedup_key"] == dedup_key
                  and a["integration"] == integration and a["status"] != "resolved"), None)
    received = xm_time()
    record = {"received": received, "event_action": action, "dedup_key": dedup_key, "integration": integration}
    if action == "trigger":
        payload = body["payload"]
        if alert is None:
            alert = {"id": "Q%s" % uuid.uuid4().hex[:13].upper(), "dedup_key": dedup_key, "integration": integration,
                     "status": "triggered", "created": received, "acknowledged_at": None, "resolved_at": None,
                     "log": []}
            state["alerts"].append(alert)
            record["outcome"] = "created"
            # the alert keeps the details of the trigger that opened it; later triggers only join its log [U]
            for field in ("summary", "source", "severity", "component", "group", "class", "custom_details",
                          "timestamp"):
                if field in payload:
                    alert[field] = payload[field]
            for field in ("links", "images", "client", "client_url"):
                if field in body:
                    alert[field] = body[field]
        else:
            record["outcome"] = "deduplicated"
        record["summary"] = payload["summary"]
    elif alert is None:
        record["outcome"] = "dropped"
    elif action == "acknowledge":
        record["outcome"] = "acknowledged" if alert["status"] == "triggered" else "dropped"
        if alert["status"] == "triggered":
            alert["status"] = "acknowledged"
            alert["acknowledged_at"] = received
    else:
        record["outcome"] = "resolved"
        alert["status"] = "resolved"
        alert["resolved_at"] = received
    if alert is not None:
        alert["log"].append({"received": received, "event_action": action, "outcome": record["outcome"]})
        record["alert"] = alert["id"]
    state["events"].append(record)
    return web.json_response({"status": "success", "message": "Event processed", "dedup_key": dedup_key}, status=202)


async def admin_pd_config(request):
    state = request.app[SANDBOX].state["pagerduty"]
    if request.method == "POST":
        body = await request.json()
        unknown = set(body) - set(state["config"])
        if unknown:
            return admin_error(400, "unknown settings: %s" % sorted(unknown))
        state["config"].update(body)
        request.app[SANDBOX].pd_windows = {}
    return web.json_response(state["config"])


# =================================================================================================

def pd_error(status, message):
    """PagerDuty Events v2 error body ({status, message, errors}) for unknown paths and failures [U]."""
    reason = {404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}.get(status, "Error")
    return web.json_response({"status": reason, "message": message, "errors": [message]}, status=status)


def setup(sandbox, app):
    sandbox.add_error_shape(XMATTERS_PREFIX, xm_error)
    sandbox.add_error_shape(PAGERDUTY_PREFIX, pd_error)
    sandbox.add_seeder(seed_xmatters)
    sandbox.add_seeder(seed_pagerduty)
    router = app.router
    router.add_post(TRIGGER, xm_trigger)
    router.add_route("GET", REST + "/events", xm_events)
    router.add_route("POST", REST + "/events", xm_events)
    router.add_get(REST + "/events/{event}", xm_event)
    router.add_route("*", REST + "/events/{event}/annotations", xm_annotations)
    router.add_get(REST + "/events/{event}/annotations/{annotation}", xm_annotation)
    router.add_get(REST + "/events/{event}/user-deliveries", xm_user_deliveries)
    router.add_get(REST + "/on-call", xm_on_call)
    router.add_get(REST + "/people", xm_people)
    router.add_get(REST + "/people/{person}", xm_people)
    router.add_post("/_sandbox/xmatters/respond", admin_xm_respond)
    router.add_route("*", "/_sandbox/xmatters/config", admin_xm_config)
    router.add_route("*", "/_sandbox/xmatters/on-call", admin_xm_schedule)
    router.add_post(PAGERDUTY_PREFIX + "/v2/enqueue", pd_enqueue)
    router.add_route("*", "/_sandbox/pagerduty/config", admin_pd_config)
