"""Dynatrace API v2 (problems, comments, events ingest) and its problem-notification webhook.

Mounted at PREFIX; the environment URL is base + PREFIX and the API lives under /api/v2. Auth is
`Authorization: Api-Token <credentials.DYNATRACE_TOKEN>` (or `?api-token=`). The admin side
(/_sandbox/dynatrace/...) opens, updates and resolves problems and POSTs the custom-integration
notification to the configured webhook, as Dynatrace does. See README.md for [U] choices.
"""

import base64
import hashlib
import json
import re
import time
from datetime import datetime

from aiohttp import web

import credentials
from core import SANDBOX

PREFIX = credentials.DYNATRACE_PREFIX
API = PREFIX + "/api/v2"

EVENT_TYPES = {"AVAILABILITY_EVENT", "CUSTOM_ALERT", "CUSTOM_ANNOTATION", "CUSTOM_CONFIGURATION", "CUSTOM_DEPLOYMENT",
               "CUSTOM_INFO", "ERROR_EVENT", "MARKED_FOR_TERMINATION", "PERFORMANCE_EVENT",
               "RESOURCE_CONTENTION_EVENT", "WARNING"}
FIELDS = {"evidenceDetails", "impactAnalysis", "recentComments"}
SELECTOR_KEYS = {"status", "severityLevel", "impactLevel", "rootCauseEntity", "managementZoneIds", "managementZones",
                 "impactedEntities", "affectedEntities", "affectedEntityTypes", "problemId", "displayId",
                 "problemFilterIds", "problemFilterNames", "entityTags", "underMaintenance", "text"}

DEFAULT_TEMPLATE = ('{"ProblemID":"{ProblemID}","PID":"{PID}","ProblemTitle":"{ProblemTitle}","State":"{State}",'
                    '"ProblemSeverity":"{ProblemSeverity}","ProblemImpact":"{ProblemImpact}","ProblemURL":"{ProblemURL}",'
                    '"ImpactedEntity":"{ImpactedEntity}","ImpactedEntities":{ImpactedEntities},'
                    '"ProblemDetailsJSON":{ProblemDetailsJSON},"Tags":"{Tags}"}')


def seed(sandbox):
    sandbox.state["dynatrace"] = {
        "problems": {}, "comments": {}, "events": [], "next_display": 1000, "counter": 0,
        "webhook": {"url": None, "headers": {}, "template": DEFAULT_TEMPLATE, "notify_closed": True, "notify_merges": True},
        "rate_limits": {}, "ingest_reject_types": [],
    }


def state(request):
    return request.app[SANDBOX].state["dynatrace"]


def error(status, message, violations=None):
    body = {"error": {"code": status, "message": message}}
    if violations:
        body["error"]["constraintViolations"] = violations
    return web.json_response(body, status=status)


def violation(status, path, message, location="QUERY"):
    return error(status, "Constraints violated.", [{"path": path, "message": message, "parameterLocation": location, "location": None}])


# --- auth and rate limits -------------------------------------------------------------------------

@web.middleware
async def guard(request, handler):
    if not request.path.startswith(API):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    token = header[len("Api-Token "):] if header.startswith("Api-Token ") else request.query.get("api-token")
    if not token:
        return error(401, "Missing authorization parameter.")
    if token != credentials.DYNATRACE_TOKEN:
        return error(401, "Token Authentication failed")
    limited = rate_limited(request)
    if limited is not None:
        return limited
    return await handler(request)


def rate_limited(request):
    limits = state(request)["rate_limits"]
    endpoint = re.sub(r"/problems/[^/]+", "/problems/{id}", request.path[len(API):]) or "/"
    rule = limits.get(endpoint) or limits.get("*")
    if not rule:
        return None
    now = time.time()
    window = rule.setdefault("window_start", now)
    if now - window >= rule.get("window", 60):
        rule["window_start"], rule["used"] = now, 0
    rule["used"] = rule.get("used", 0) + 1
    remaining = rule["limit"] - rule["used"]
    reset_us = int((rule["window_start"] + rule.get("window", 60)) * 1000000)
    headers = {"X-RateLimit-Limit": str(rule["limit"]), "X-RateLimit-Remaining": str(max(remaining, 0)),
               "X-RateLimit-Reset": str(reset_us)}
    if remaining < 0:
        headers["Retry-After"] = str(max(1, int(rule["window_start"] + rule.get("window", 60) - now + 0.999)))
        response = error(429, "Too many requests")
        response.headers.update(headers)
        return response
    return None


# --- model ----------------------------------------------------------------------------------------

def entity_id(kind, name):
    return "%s-%s" % (kind, hashlib.sha1(("%s/%s" % (kind, name)).encode()).hexdigest()[:16].upper())


def stub(entity):
    return {"entityId": {"id": entity["id"], "type": entity["type"]}, "name": entity["name"]}


def make_problem(dyn, spec, now_ms):
    dyn["counter"] += 1
    dyn["next_display"] += 1
    pid = "-%019d_%dV2" % (4000000000000000000 + dyn["counter"] * 7919, now_ms)
    entities = []
    for item in spec.get("entities") or [{"type": "HOST", "name": "host-%d" % dyn["counter"]}]:
        kind = item.get("type", "HOST")
        entities.append({"id": item.get("id") or entity_id(kind, item["name"]), "type": kind, "name": item["name"]})
    tags = spec.get("tags") or {}
    if isinstance(tags, list):
        tags = dict((t.split(":", 1) + [None])[:2] for t in tags)
    root = spec.get("root_cause")
    root_entity = next((e for e in entities if e["name"] == root), None) if isinstance(root, str) else None
    return {
        "problemId": pid, "displayId": "P-%d" % dyn["next_display"], "title": spec.get("title", "Problem"),
        "impactLevel": spec.get("impact", "INFRASTRUCTURE"), "severityLevel": spec.get("severity", "AVAILABILITY"),
        "status": "OPEN",
        "affectedEntities": [stub(e) for e in entities], "impactedEntities": [stub(e) for e in entities],
        "rootCauseEntity": stub(root_entity) if root_entity else None,
        "managementZones": [{"id": str(abs(hash(z)) % 10 ** 18), "name": z} for z in spec.get("management_zones", [])],
        "entityTags": [{"context": "CONTEXTLESS", "key": k, **({"value": v} if v not in (None, "") else {}),
                        "stringRepresentation": k if v in (None, "") else "%s:%s" % (k, v)} for k, v in tags.items()],
        "problemFilters": [{"id": "ca786d1f-0000-4000-8000-000000000001", "name": "Self-healing"}],
        "evidenceDetails": {"totalCount": 1, "details": [
            {"evidenceType": "EVENT", "displayName": spec.get("evidence", spec.get("title", "Problem")),
             "entity": stub(entities[0]), "groupingEntity": None, "rootCauseRelevant": True, "startTime": now_ms}]},
        "impactAnalysis": {"impacts": [{"impactType": e["type"], "impactedEntity": stub(e), "estimatedAffectedUsers": 0}
                                       for e in entities]},
        "startTime": int(spec.get("start_time", now_ms)), "endTime": -1,
    }


def public(problem, fields, comments=()):
    body = {k: v for k, v in problem.items() if k not in FIELDS}
    if "evidenceDetails" in fields:
        body["evidenceDetails"] = problem["evidenceDetails"]
    if "impactAnalysis" in fields:
        body["impactAnalysis"] = problem["impactAnalysis"]
    if "recentComments" in fields:
        recent = sorted(comments, key=lambda c: -c["createdAtTimestamp"])[:10]
        body["recentComments"] = {"comments": recent, "totalCount": len(comments), "pageSize": 10, "nextPageKey": None}
    return body


# --- selectors and time ---------------------------------------------------------------------------

CRITERION = re.compile(r'\s*([A-Za-z.]+)\(((?:\s*"(?:[^"~]|~.)*"\s*,?)*)\)\s*(?:,|$)')
VALUE = re.compile(r'"((?:[^"~]|~.)*)"')


def parse_selector(text, allowed):
    """'status("open"),displayId("P-1")' -> [(name, [values])]; ValueError on anything else."""
    criteria, position = [], 0
    while position < len(text):
        match = CRITERION.match(text, position)
        if not match or match.end() == position:
            raise ValueError("invalid selector syntax at position %d" % position)
        name = match.group(1)
        if allowed is not None and name not in allowed:
            raise ValueError("unknown criterion %s" % name)
        values = [re.sub(r"~(.)", r"\1", v) for v in VALUE.findall(match.group(2))]
        if not values:
            raise ValueError("criterion %s needs at least one quoted value" % name)
        criteria.append((name, values))
        position = match.end()
    return criteria


def parse_time(value, now_ms, default):
    if value is None or value == "":
        return default
    if re.fullmatch(r"\d+", value):
        return int(value)
    relative = re.fullmatch(r"now(?:-(\d+)([smhdwMy]))?(?:/[smhdwMy])?", value)
    if relative:
        if not relative.group(1):
            return now_ms
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}[relative.group(2)]
        return now_ms - int(relative.group(1)) * unit * 1000
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise ValueError("cannot parse time %r" % value)


def entities_of(problem):
    return problem["impactedEntities"] + problem["affectedEntities"]


def entity_matches(selector, stub_):
    for name, values in selector:
        if name == "type" and stub_["entityId"]["type"] not in values:
            return False
        if name == "entityId" and stub_["entityId"]["id"] not in values:
            return False
        if name == "entityName.equals" and stub_["name"] not in values:
            return False
        if name == "entityName.startsWith" and not any(stub_["name"].startswith(v) for v in values):
            return False
    return True


def problem_matches(problem, criteria, comments):
    for name, values in criteria:
        lowered = [v.lower() for v in values]
        if name == "status" and problem["status"].lower() not in lowered:
            return False
        if name == "severityLevel" and problem["severityLevel"].lower() not in lowered:
            return False
        if name == "impactLevel" and problem["impactLevel"].lower() not in lowered:
            return False
        if name == "problemId" and problem["problemId"] not in values:
            return False
        if name == "displayId" and problem["displayId"] not in values:
            return False
        if name == "managementZones" and not {z["name"] for z in problem["managementZones"]} & set(values):
            return False
        if name == "entityTags" and not {t["stringRepresentation"] for t in problem["entityTags"]} & {
                re.sub(r"^\[CONTEXTLESS\]", "", v) for v in values}:
            return False
        if name == "text" and not any(v.lower() in problem["title"].lower() for v in values):
            return False
        if name in ("impactedEntities", "affectedEntities") and not {
                e["entityId"]["id"] for e in problem[name]} & set(values):
            return False
        if name == "rootCauseEntity" and (problem["rootCauseEntity"] or {}).get("entityId", {}).get("id") not in values:
            return False
    return True


def encode_key(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode_key(key):
    try:
        return json.loads(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)))
    except ValueError:
        raise ValueError("invalid nextPageKey")


# --- API handlers -----------------------------------------------------------------------------------

def page_size(value, default):
    if value is None:
        return default
    if not re.fullmatch(r"\d+", value):
        raise LookupError("must be a number")
    size = int(value)
    if size > 500:
        raise LookupError("must be less than or equal to 500")
    if size < 1:
        raise LookupError("must be greater than or equal to 1")
    return size


async def list_problems(request):
    dyn, query = state(request), dict(request.query)
    query.pop("api-token", None)
    fields = [f for f in query.pop("fields", "").split(",") if f]
    unknown_fields = [f for f in fields if f not in FIELDS]
    if unknown_fields:
        return violation(400, "fields", "unknown field(s): %s" % ",".join(unknown_fields))
    if "nextPageKey" in query:
        extra = sorted(k for k in query if k != "nextPageKey")
        if extra:
            return violation(400, "nextPageKey", "must not be combined with other query parameters except fields (got %s)" % ", ".join(extra))
        try:
            cursor = decode_key(query["nextPageKey"])
        except ValueError:
            return violation(400, "nextPageKey", "invalid nextPageKey")
        query, offset = cursor["query"], cursor["offset"]
    else:
        offset = 0
    try:
        size = page_size(query.get("pageSize"), 50)
    except LookupError as exc:
        return violation(400, "pageSize", str(exc))
    now_ms = request.app[SANDBOX].now_ms()
    try:
        start = parse_time(query.get("from"), now_ms, now_ms - 2 * 3600 * 1000)
        end = parse_time(query.get("to"), now_ms, now_ms)
        criteria = parse_selector(query.get("problemSelector", ""), SELECTOR_KEYS)
        entity_selector = parse_selector(query.get("entitySelector", ""), None)
    except ValueError as exc:
        return violation(400, "problemSelector/entitySelector/from/to", str(exc))
    if entity_selector and not any(name in ("type", "entityId") for name, dummy in entity_selector):
        return violation(400, "entitySelector", "must contain type(...) or entityId(...)")
    if [v for name, v in criteria if name == "status" and len(v) > 1]:
        return violation(400, "problemSelector", "status accepts only one value")
    matching = []
    for problem in dyn["problems"].values():
        if problem["startTime"] > end or (problem["endTime"] != -1 and problem["endTime"] < start):
            continue
        if not problem_matches(problem, criteria, dyn["comments"].get(problem["problemId"], [])):
            continue
        if entity_selector and not any(entity_matches(entity_selector, e) for e in entities_of(problem)):
            continue
        matching.append(problem)
    for part in reversed([p.strip() for p in query.get("sort", "-startTime").split(",") if p.strip()]):
        key = part.lstrip("+-")
        if key not in ("status", "startTime"):
            return violation(400, "sort", "unsupported sort field %s" % key)
        matching.sort(key=lambda p, k=key: p[k], reverse=part.startswith("-"))
    window = matching[offset:offset + size]
    more = offset + size < len(matching)
    return web.json_response({
        "totalCount": len(matching), "pageSize": size,
        "nextPageKey": encode_key({"query": query, "offset": offset + size}) if more else None,
        "problems": [public(p, fields, dyn["comments"].get(p["problemId"], [])) for p in window],
        "warnings": [],
    })


def find(request):
    return state(request)["problems"].get(request.match_info["problem_id"])


def not_found(request):
    return error(404, "Problem with ID %s not found" % request.match_info["problem_id"])


async def get_problem(request):
    problem = find(request)
    if problem is None:
        return not_found(request)
    fields = [f for f in request.query.get("fields", "").split(",") if f]
    return web.json_response(public(problem, fields, state(request)["comments"].get(problem["problemId"], [])))


async def json_body(request):
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": {"code": 400, "message": "Could not map JSON at '' near line 1"}}),
                                 content_type="application/json")
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": {"code": 400, "message": "Request body must be an object"}}),
                                 content_type="application/json")
    return body


def new_comment(request, problem, message, context):
    sandbox = request.app[SANDBOX]
    comment = {"id": str(sandbox.next_id()), "content": message, "authorName": "api-user",
               "context": context, "createdAtTimestamp": sandbox.now_ms()}
    state(request)["comments"].setdefault(problem["problemId"], []).append(comment)
    return comment


async def close_problem(request):
    problem = find(request)
    if problem is None:
        return not_found(request)
    body = await json_body(request)
    if not isinstance(body.get("message"), str) or not body["message"]:
        return violation(400, "message", "must not be null", "PAYLOAD_BODY")
    if problem["status"] == "CLOSED":
        return web.Response(status=204)
    comment = new_comment(request, problem, body["message"], body.get("context"))
    close(request.app[SANDBOX], problem)
    return web.json_response({"problemId": problem["problemId"], "closing": True,
                              "closeTimestamp": problem["endTime"], "comment": comment})


async def list_comments(request):
    problem = find(request)
    if problem is None:
        return not_found(request)
    comments = sorted(state(request)["comments"].get(problem["problemId"], []), key=lambda c: -c["createdAtTimestamp"])
    query = dict(request.query)
    query.pop("api-token", None)
    if "nextPageKey" in query:
        try:
            offset, size = decode_key(query["nextPageKey"])
        except (ValueError, TypeError):
            return violation(400, "nextPageKey", "invalid nextPageKey")
    else:
        offset = 0
        try:
            size = page_size(query.get("pageSize"), 10)
        except LookupError as exc:
            return violation(400, "pageSize", str(exc))
    window = comments[offset:offset + size]
    more = offset + size < len(comments)
    return web.json_response({"comments": window, "totalCount": len(comments), "pageSize": size,
                              "nextPageKey": encode_key([offset + size, size]) if more else None})


def find_comment(request):
    problem = find(request)
    if problem is None:
        return None, None
    comments = state(request)["comments"].get(problem["problemId"], [])
    return problem, next((c for c in comments if c["id"] == request.match_info["comment_id"]), None)


async def get_comment(request):
    problem, comment = find_comment(request)
    if problem is None:
        return not_found(request)
    if comment is None:
        return error(404, "Comment not found")
    return web.json_response(comment)


async def add_comment(request):
    problem = find(request)
    if problem is None:
        return not_found(request)
    body = await json_body(request)
    if not isinstance(body.get("message"), str) or not body["message"]:
        return violation(400, "message", "must not be null", "PAYLOAD_BODY")
    new_comment(request, problem, body["message"], body.get("context"))
    return web.Response(status=201)


async def update_comment(request):
    problem, comment = find_comment(request)
    if problem is None:
        return not_found(request)
    if comment is None:
        return error(404, "Comment not found")
    body = await json_body(request)
    if not isinstance(body.get("message"), str) or not body["message"]:
        return violation(400, "message", "must not be null", "PAYLOAD_BODY")
    comment["content"], comment["context"] = body["message"], body.get("context")
    return web.Response(status=204)


async def delete_comment(request):
    problem, comment = find_comment(request)
    if problem is None:
        return not_found(request)
    if comment is None:
        return error(404, "Comment not found")
    state(request)["comments"][problem["problemId"]].remove(comment)
    return web.Response(status=204)


async def ingest_event(request):
    dyn, sandbox = state(request), request.app[SANDBOX]
    body = await json_body(request)
    if body.get("eventType") not in EVENT_TYPES:
        return violation(400, "eventType", "must be one of %s" % ", ".join(sorted(EVENT_TYPES)), "PAYLOAD_BODY")
    if not isinstance(body.get("title"), str) or not body["title"]:
        return violation(400, "title", "must not be null", "PAYLOAD_BODY")
    properties = body.get("properties") or {}
    if not isinstance(properties, dict) or len(properties) > 100:
        return violation(400, "properties", "must be a map of at most 100 entries", "PAYLOAD_BODY")
    for key, value in properties.items():
        if len(key) > 100 or len(str(value)) > 4096:
            return violation(400, "properties", "keys are limited to 100 and values to 4096 characters", "PAYLOAD_BODY")
    selector_text = body.get("entitySelector")
    targets = []
    if selector_text:
        try:
            selector = parse_selector(selector_text, None)
        except ValueError as exc:
            return violation(400, "entitySelector", str(exc), "PAYLOAD_BODY")
        ids = [v for name, values in selector if name == "entityId" for v in values]
        known = {}
        for problem in dyn["problems"].values():
            for item in entities_of(problem):
                known[item["entityId"]["id"]] = item
        if ids:
            targets = [known.get(i, {"entityId": {"id": i, "type": i.split("-")[0]}, "name": i}) for i in ids]
        else:
            targets = [item for item in known.values() if entity_matches(selector, item)]
    else:
        targets = [{"entityId": {"id": "environment", "type": "ENVIRONMENT"}, "name": "environment"}]
    results, now_ms = [], sandbox.now_ms()
    for target in targets:
        status = "INVALID_ENTITY_TYPE" if target["entityId"]["type"] in dyn["ingest_reject_types"] else "OK"
        correlation = "%016x" % sandbox.next_id()
        results.append({"correlationId": correlation, "status": status})
        if status != "OK":
            continue
        event = {"correlationId": correlation, "eventType": body["eventType"], "title": body["title"],
                 "entityId": target["entityId"]["id"], "properties": properties, "startTime": body.get("startTime", now_ms),
                 "timeout": min(int(body.get("timeout", 15)), 360)}
        dyn["events"].append(event)
        for problem in dyn["problems"].values():  # Davis merges events on a problem's entities into it
            if problem["status"] == "OPEN" and any(e["entityId"]["id"] == event["entityId"] for e in entities_of(problem)):
                problem["evidenceDetails"]["details"].append({
                    "evidenceType": "EVENT", "displayName": body["title"], "entity": target, "groupingEntity": None,
                    "rootCauseRelevant": False, "startTime": now_ms, "properties": properties})
                problem["evidenceDetails"]["totalCount"] = len(problem["evidenceDetails"]["details"])
    return web.json_response({"reportCount": len(results), "eventIngestResults": results}, status=201)


# --- notifications ----------------------------------------------------------------------------------

def render(template, problem, base_url):
    entities = problem["impactedEntities"]
    number = problem["displayId"][2:] if problem["displayId"].startswith("P-") else problem["displayId"]
    tags = ", ".join(t["stringRepresentation"] for t in problem["entityTags"])
    url = "%s%s/#problems/problemdetails;pid=%s" % (base_url or "", PREFIX, problem["problemId"])
    details_v1 = {"ID": problem["problemId"], "displayName": number, "status": problem["status"],
                  "startTime": problem["startTime"], "endTime": problem["endTime"], "tagsOfAffectedEntities": tags}
    details_v2 = dict(problem)
    strings = {"ProblemID": number, "PID": problem["problemId"], "ProblemTitle": problem["title"],
               "State": "OPEN" if problem["status"] == "OPEN" else "RESOLVED",
               "ProblemSeverity": problem["severityLevel"], "ProblemImpact": problem["impactLevel"], "ProblemURL": url,
               "ImpactedEntity": ", ".join(e["name"] for e in entities),
               "ImpactedEntityNames": ", ".join(e["name"] for e in entities), "Tags": tags}
    objects = {"ImpactedEntities": [{"type": e["entityId"]["type"], "name": e["name"], "entity": e["entityId"]["id"]}
                                    for e in entities],
               "ProblemDetailsJSON": details_v1, "ProblemDetailsJSONv2": details_v2}

    def substitute(match):
        name = match.group(1)
        if name in objects:
            return json.dumps(objects[name])
        if name in strings:
            return json.dumps(str(strings[name]))[1:-1]
        return match.group(0)

    return re.sub(r"\{([A-Za-z0-9]+)\}", substitute, template)


def notify(sandbox, problem, kind):
    """Send the custom-integration notification for an OPEN, MERGE or RESOLVED change, if configured."""
    hook = sandbox.state["dynatrace"]["webhook"]
    if not hook["url"] or (kind == "MERGE" and not hook["notify_merges"]) or (kind == "RESOLVED" and not hook["notify_closed"]):
        return None
    body = render(hook["template"], problem, sandbox.public_url).encode()
    return sandbox.deliver(hook["url"], None, headers=hook["headers"], raw_body=body)


def close(sandbox, problem):
    problem["status"] = "CLOSED"
    problem["endTime"] = sandbox.now_ms()
    notify(sandbox, problem, "RESOLVED")


# --- admin --------------------------------------------------------------------------------------------

async def admin_open(request):
    sandbox, dyn = request.app[SANDBOX], state(request)
    spec = await request.json()
    problem = make_problem(dyn, spec, sandbox.now_ms())
    dyn["problems"][problem["problemId"]] = problem
    notify(sandbox, problem, "OPEN")
    return web.json_response(problem, status=201)


async def admin_bulk(request):
    sandbox, dyn = request.app[SANDBOX], state(request)
    spec = await request.json()
    now_ms = sandbox.now_ms()
    created = []
    for number in range(int(spec.get("count", 1))):
        item = dict(spec.get("problem") or {})
        item.setdefault("entities", [{"type": "HOST", "name": "bulk-host-%d" % number}])
        problem = make_problem(dyn, item, now_ms - number)
        if spec.get("status") == "CLOSED":
            problem["status"], problem["endTime"] = "CLOSED", now_ms
        dyn["problems"][problem["problemId"]] = problem
        created.append(problem["problemId"])
    return web.json_response({"created": len(created), "first": created[:1]}, status=201)


def admin_find(request):
    dyn = state(request)
    ident = request.match_info["problem_id"]
    return dyn["problems"].get(ident) or next((p for p in dyn["problems"].values() if p["displayId"] == ident), None)


async def admin_update(request):
    sandbox = request.app[SANDBOX]
    problem = admin_find(request)
    if problem is None:
        return web.json_response({"error": "no such problem"}, status=404)
    spec = await request.json()
    for item in spec.get("entities", []):
        kind = item.get("type", "HOST")
        entity = {"id": item.get("id") or entity_id(kind, item["name"]), "type": kind, "name": item["name"]}
        if all(e["entityId"]["id"] != entity["id"] for e in problem["impactedEntities"]):
            problem["impactedEntities"].append(stub(entity))
            problem["affectedEntities"].append(stub(entity))
    for name in spec.get("evidence", []):
        problem["evidenceDetails"]["details"].append({"evidenceType": "EVENT", "displayName": name,
                                                      "entity": problem["impactedEntities"][0], "groupingEntity": None,
                                                      "rootCauseRelevant": False, "startTime": sandbox.now_ms()})
    problem["evidenceDetails"]["totalCount"] = len(problem["evidenceDetails"]["details"])
    if "title" in spec:
        problem["title"] = spec["title"]
    notify(sandbox, problem, "MERGE")
    return web.json_response(problem)


async def admin_resolve(request):
    problem = admin_find(request)
    if problem is None:
        return web.json_response({"error": "no such problem"}, status=404)
    if problem["status"] == "OPEN":
        close(request.app[SANDBOX], problem)
    return web.json_response(problem)


async def admin_notify(request):
    """Send the notification for a problem again (as Dynatrace retries or an operator re-sends it)."""
    problem = admin_find(request)
    if problem is None:
        return web.json_response({"error": "no such problem"}, status=404)
    spec = await request.json() if request.can_read_body else {}
    count = int(spec.get("count", 1))
    tasks = [notify(request.app[SANDBOX], problem, "OPEN" if problem["status"] == "OPEN" else "RESOLVED") for dummy in range(count)]
    return web.json_response({"sent": len([t for t in tasks if t is not None])})


async def admin_webhook(request):
    hook = state(request)["webhook"]
    if request.method == "POST":
        spec = await request.json()
        for key in ("url", "headers", "template", "notify_closed", "notify_merges"):
            if key in spec:
                hook[key] = spec[key]
    return web.json_response(hook)


async def admin_settings(request):
    dyn = state(request)
    spec = await request.json()
    if "rate_limits" in spec:
        dyn["rate_limits"] = {path: {"limit": int(rule["limit"]), "window": float(rule.get("window", 60))}
                              for path, rule in spec["rate_limits"].items()}
    if "ingest_reject_types" in spec:
        dyn["ingest_reject_types"] = list(spec["ingest_reject_types"])
    return web.json_response({"rate_limits": dyn["rate_limits"], "ingest_reject_types": dyn["ingest_reject_types"]})


def setup(sandbox, app):
    sandbox.add_seeder(seed)
    sandbox.add_error_shape(PREFIX, error)  # unknown paths and failed handlers: the ErrorEnvelope
    app.middlewares.append(guard)
    router = app.router
    router.add_get(API + "/problems", list_problems)
    router.add_get(API + "/problems/{problem_id}", get_problem)
    router.add_post(API + "/problems/{problem_id}/close", close_problem)
    router.add_get(API + "/problems/{problem_id}/comments", list_comments)
    router.add_post(API + "/problems/{problem_id}/comments", add_comment)
    router.add_get(API + "/problems/{problem_id}/comments/{comment_id}", get_comment)
    router.add_put(API + "/problems/{problem_id}/comments/{comment_id}", update_comment)
    router.add_delete(API + "/problems/{problem_id}/comments/{comment_id}", delete_comment)
    router.add_post(API + "/events/ingest", ingest_event)
    router.add_post("/_sandbox/dynatrace/problems", admin_open)
    router.add_post("/_sandbox/dynatrace/problems/bulk", admin_bulk)
    router.add_post("/_sandbox/dynatrace/problems/{problem_id}/update", admin_update)
    router.add_post("/_sandbox/dynatrace/problems/{problem_id}/resolve", admin_resolve)
    router.add_post("/_sandbox/dynatrace/problems/{problem_id}/notify", admin_notify)
    router.add_route("*", "/_sandbox/dynatrace/webhook", admin_webhook)
    router.add_post("/_sandbox/dynatrace/settings", admin_settings)
