"""Dynatrace API v2 (problems, comments, events ingest) and its problem-notification webhook.

Mounted at PREFIX; the environment URL is base + PREFIX and the API lives under /api/v2. Auth is
`Authorization: Api-Token <credentials.DYNATRACE_TOKEN>` (or `?api-token=`). The admin side
(/_sandbox/dynatrace/...) opens, updates and resolves problems and POSTs the custom-integration
notification to the configured webhook, as Dynatrace does. See README.md for [U] choices.
"""

import base64
import calendar
import hashlib
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

from aiohttp import web

from sandbox import credentials
from sandbox.core import SANDBOX

PREFIX = credentials.DYNATRACE_PREFIX
API = PREFIX + "/api/v2"

EVENT_TYPES = {"AVAILABILITY_EVENT", "CUSTOM_ALERT", "CUSTOM_ANNOTATION", "CUSTOM_CONFIGURATION", "CUSTOM_DEPLOYMENT",
               "CUSTOM_INFO", "ERROR_EVENT", "MARKED_FOR_TERMINATION", "PERFORMANCE_EVENT",
               "RESOURCE_CONTENTION_EVENT", "WARNING"}
FIELDS = {"evidenceDetails", "impactAnalysis", "recentComments"}
SELECTOR_KEYS = {"status", "severityLevel", "impactLevel", "rootCauseEntity", "managementZoneIds", "managementZones",
                 "impactedEntities", "affectedEntities", "affectedEntityTypes", "problemId", "displayId",
                 "problemFilterIds", "problemFilterNames", "problemFilterNames.equals", "entityTags", "underMaintenance", "text"}

DEFAULT_TEMPLATE = ('{"ProblemID":"{ProblemID}","PID":"{PID}","ProblemTitle":"{ProblemTitle}","State":"{State}",'
                    '"ProblemSeverity":"{ProblemSeverity}","ProblemImpact":"{ProblemImpact}","ProblemURL":"{ProblemURL}",'
                    '"ImpactedEntity":"{ImpactedEntity}","ImpactedEntities":{ImpactedEntities},'
                    '"ProblemDetailsJSON":{ProblemDetailsJSON},"Tags":"{Tags}"}')


def seed(sandbox):
    sandbox.state["dynatrace"] = {
        "problems": {}, "comments": {}, "events": [], "next_display": 1000, "counter": 0,
        "entities": {},  # entity id -> {id, type, name, tags, managementZones}: every entity a problem named
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

# impactAnalysis.impacts[].impactType by the impacted entity's type; other entities (hosts, process groups...)
# have no impact entry, as in the API (the enum is APPLICATION, CUSTOM_APPLICATION, MOBILE, SERVICE).
IMPACT_TYPES = {"SERVICE": "SERVICE", "APPLICATION": "APPLICATION", "MOBILE_APPLICATION": "MOBILE",
                "CUSTOM_APPLICATION": "CUSTOM_APPLICATION"}
SEVERITY_LEVELS = {"AVAILABILITY", "CUSTOM_ALERT", "ERROR", "INFO", "MONITORING_UNAVAILABLE", "PERFORMANCE",
                   "RESOURCE_CONTENTION"}
IMPACT_LEVELS = {"APPLICATION", "ENVIRONMENT", "INFRASTRUCTURE", "SERVICES"}


def entity_id(kind, name):
    return "%s-%s" % (kind, hashlib.sha1(("%s/%s" % (kind, name)).encode()).hexdigest()[:16].upper())


def zone_id(name):
    """A management zone's id: a positive 63-bit decimal derived from its name, stable across starts [U]."""
    return str(int(hashlib.sha256(("dynatrace/management-zone/" + name).encode()).hexdigest()[:16], 16) >> 1)


def alerting_profile(name):
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "dynatrace/alerting-profile/" + name)), "name": name}


def stub(entity):
    return {"entityId": {"id": entity["id"], "type": entity["type"]}, "name": entity["name"]}


def me_tags(tags):
    """{"key": "value" or None} or ["key:value", "[AWS]key:value", "key"] -> METag objects."""
    if isinstance(tags, dict):
        tags = ["%s:%s" % (k, v) if v not in (None, "") else k for k, v in tags.items()]
    out = []
    for text in tags or []:
        context, key, value = parse_tag(str(text))
        tag = {"context": context or "CONTEXTLESS", "key": key}
        if value is not None:
            tag["value"] = value
        shown = key if value is None else "%s:%s" % (key, value)
        tag["stringRepresentation"] = shown if not context else "[%s]%s" % (context, shown)
        out.append(tag)
    return out


def union(items, key):
    seen, out = set(), []
    for item in items:
        if item[key] not in seen:
            seen.add(item[key])
            out.append(item)
    return out


def register_entity(dyn, item, tags, zones):
    """An entity of a problem, kept in the entity registry with its tags and management zones (an entity
    without its own inherits the problem's); the problem's entityTags/managementZones are their union."""
    kind = item.get("type", "HOST")
    ident = item.get("id") or entity_id(kind, item["name"])
    own_tags = me_tags(item["tags"]) if "tags" in item else tags
    own_zones = [{"id": zone_id(z), "name": z} for z in item["management_zones"]] if "management_zones" in item else zones
    entity = dyn["entities"].setdefault(ident, {"id": ident, "type": kind, "name": item["name"], "tags": [],
                                                "managementZones": []})
    entity["tags"] = union(entity["tags"] + own_tags, "stringRepresentation")
    entity["managementZones"] = union(entity["managementZones"] + own_zones, "id")
    return entity


def make_problem(dyn, spec, now_ms):
    dyn["counter"] += 1
    dyn["next_display"] += 1
    pid = "-%019d_%dV2" % (4000000000000000000 + dyn["counter"] * 7919, now_ms)
    tags = me_tags(spec.get("tags") or {})
    zones = [{"id": zone_id(z), "name": z} for z in spec.get("management_zones", [])]
    entities = [register_entity(dyn, item, tags, zones)
                for item in spec.get("entities") or [{"type": "HOST", "name": "host-%d" % dyn["counter"]}]]
    root = spec.get("root_cause")
    root_entity = next((e for e in entities if e["name"] == root), None) if isinstance(root, str) else None
    start = int(spec.get("start_time", now_ms))
    end = int(spec["end_time"]) if spec.get("end_time") is not None else -1
    return {
        "problemId": pid, "displayId": "P-%d" % dyn["next_display"], "title": spec.get("title", "Problem"),
        "impactLevel": spec.get("impact", "INFRASTRUCTURE"), "severityLevel": spec.get("severity", "AVAILABILITY"),
        "status": "OPEN" if end == -1 else "CLOSED",
        "affectedEntities": [stub(e) for e in entities], "impactedEntities": [stub(e) for e in entities],
        "rootCauseEntity": stub(root_entity) if root_entity else None,
        "managementZones": union([z for e in entities for z in e["managementZones"]], "id"),
        "entityTags": union([t for e in entities for t in e["tags"]], "stringRepresentation"),
        "problemFilters": [alerting_profile(name) for name in spec.get("problem_filters", ["Self-healing"])],
        "evidenceDetails": {"totalCount": 1, "details": [
            {"evidenceType": "EVENT", "displayName": spec.get("evidence", spec.get("title", "Problem")),
             "entity": stub(entities[0]), "groupingEntity": None, "rootCauseRelevant": True, "startTime": start}]},
        "impactAnalysis": {"impacts": impacts(entities, spec.get("affected_users", 0))},
        "startTime": start, "endTime": end,
        # not in the API's Problem object; read by the underMaintenance() criterion
        "_underMaintenance": bool(spec.get("under_maintenance", False)),
    }


def impacts(entities, users):
    return [{"impactType": IMPACT_TYPES[e["type"]], "impactedEntity": stub(e),
             "estimatedAffectedUsers": 0 if e["type"] == "SERVICE" else int(users)}
            for e in entities if e["type"] in IMPACT_TYPES]


INTERNAL = {"_underMaintenance"}
HIDDEN = FIELDS | INTERNAL


def internal_free(problem):
    return {k: v for k, v in problem.items() if k not in INTERNAL}


def public(problem, fields, comments=()):
    body = {k: v for k, v in problem.items() if k not in HIDDEN}
    if "evidenceDetails" in fields:
        body["evidenceDetails"] = problem["evidenceDetails"]
    if "impactAnalysis" in fields:
        body["impactAnalysis"] = problem["impactAnalysis"]
    if "recentComments" in fields:
        recent = sorted(comments, key=lambda c: -c["createdAtTimestamp"])[:10]
        body["recentComments"] = {"comments": recent, "totalCount": len(comments), "pageSize": 10, "nextPageKey": None}
    return body


# --- selectors -----------------------------------------------------------------------------------------
# One parser for both selector languages: criteria joined by commas (AND), `name(values)` where a value is
# quoted ("...", `~` escapes `"` and `~`) or bare, and `not(...)`, `caseSensitive(...)` and relationships
# taking criteria. The problem selector wants every value quoted; the entity selector only when needed.

class SelectorError(ValueError):
    """A selector the API rejects (400 with a constraint violation)."""


class Criterion(object):
    def __init__(self, name, values=None, children=None):
        self.name, self.values, self.children = name, values or [], children or []
        self.lowered = {v.lower() for v in self.values}


NESTED = ("not", "caseSensitive")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")
BARE = re.compile(r'[^,()"]+')


class Parser(object):
    def __init__(self, text, quoted_only):
        self.text, self.position, self.quoted_only = text, 0, quoted_only

    def fail(self, message):
        raise SelectorError("%s at position %d" % (message, self.position))

    def skip(self):
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1

    def peek(self):
        self.skip()
        return self.text[self.position] if self.position < len(self.text) else ""

    def expect(self, char):
        if self.peek() != char:
            self.fail("expected %r" % char)
        self.position += 1

    def criteria(self):
        found = [self.criterion()]
        while self.peek() == ",":
            self.position += 1
            found.append(self.criterion())
        return found

    def criterion(self):
        self.skip()
        match = NAME.match(self.text, self.position)
        if not match:
            self.fail("expected a criterion")
        name = match.group(0)
        self.position = match.end()
        self.expect("(")
        if name in NESTED or name.startswith(("fromRelationships.", "toRelationships.")):
            node = Criterion(name, children=self.criteria())
        else:
            node = Criterion(name, values=self.values(name))
        self.expect(")")
        return node

    def values(self, name):
        found = []
        if self.peek() == ")":
            return found
        while True:
            found.append(self.value(name))
            if self.peek() != ",":
                return found
            self.position += 1

    def value(self, name):
        if self.peek() == '"':
            self.position += 1
            chars = []
            while self.position < len(self.text) and self.text[self.position] != '"':
                if self.text[self.position] == "~":
                    self.position += 1
                    if self.position >= len(self.text):
                        break
                chars.append(self.text[self.position])
                self.position += 1
            if self.position >= len(self.text):
                self.fail("unterminated quoted value")
            self.position += 1
            return "".join(chars)
        match = BARE.match(self.text, self.position)
        if not match or not match.group(0).strip():
            self.fail("expected a value")
        if self.quoted_only and name != "underMaintenance":
            self.fail("the values of %s must be quoted" % name)
        self.position = match.end()
        return match.group(0).strip()


def parse_selector(text, quoted_only=False):
    """'status("open"),displayId("P-1")' -> [Criterion]; SelectorError on anything else."""
    if not text:
        return []
    parser = Parser(text, quoted_only)
    found = parser.criteria()
    if parser.peek():
        parser.fail("unexpected %r" % parser.peek())
    return found


def parse_tag(text):
    """'[context]key:value' / 'key:value' / 'key' (a colon escaped with a backslash is part of the text)."""
    context = None
    match = re.match(r"\[([^\]]*)\](.*)$", text, re.S)
    if match:
        context, text = match.group(1), match.group(2)
    parts = re.split(r"(?<!\\):", text, maxsplit=1)
    key = parts[0].replace("\\:", ":")
    value = parts[1].replace("\\:", ":") if len(parts) > 1 else None
    return context, key, value


def tag_matches(wanted, tag):
    """A tag criterion without a value matches the key whatever its value; without a context, any context [U]."""
    context, key, value = wanted
    if context is not None and context != tag["context"]:
        return False
    return key == tag["key"] and (value is None or value == tag.get("value"))


# --- the entity selector ------------------------------------------------------------------------------------

SINGLE = {"type", "entityName", "entityName.startsWith", "entityName.equals"}
MULTIPLE = {"entityId", "entityName.in", "tag", "mzId", "mzName"}
NAMES = {"entityName", "entityName.startsWith", "entityName.equals", "entityName.in"}


def check_entity_selector(criteria, same_type=True):
    """Reject what the API rejects, and what the sandbox does not implement (400 rather than ignore it)."""
    names = [c.name for c in criteria]
    if "type" not in names and "entityId" not in names:
        raise SelectorError("must contain type(...) or entityId(...)")
    if names.count("type") > 1:
        raise SelectorError("you can select only one type of entity per query")
    for criterion in criteria:
        check_entity_criterion(criterion, same_type)


def check_entity_criterion(criterion, same_type):
    name = criterion.name
    if name == "not":
        if len(criterion.children) != 1 or criterion.children[0].name == "type":
            raise SelectorError("not() takes one criterion other than type")
        return check_entity_criterion(criterion.children[0], same_type)
    if name == "caseSensitive":
        if len(criterion.children) != 1 or criterion.children[0].name not in NAMES:
            raise SelectorError("caseSensitive() takes one entity name criterion")
        return check_entity_criterion(criterion.children[0], same_type)
    if name in SINGLE and len(criterion.values) != 1:
        raise SelectorError("%s takes exactly one value" % name)
    if name in MULTIPLE and not criterion.values:
        raise SelectorError("%s needs at least one value" % name)
    if name not in SINGLE and name not in MULTIPLE:
        raise SelectorError("criterion %s is not supported by the sandbox" % name)
    if name == "entityId" and same_type and len({v.split("-", 1)[0] for v in criterion.values}) > 1:
        raise SelectorError("all requested entities of entityId() must be of the same type")
    return None


def entity_matches(criteria, entity, case_sensitive=False):
    return all(entity_criterion(c, entity, case_sensitive) for c in criteria)


def entity_criterion(criterion, entity, case_sensitive=False):
    name, values = criterion.name, criterion.values
    if name == "not":
        return not entity_criterion(criterion.children[0], entity)
    if name == "caseSensitive":
        return entity_criterion(criterion.children[0], entity, True)
    if name == "type":
        return entity["type"].upper() == values[0].upper()
    if name == "entityId":
        return entity["id"] in values
    if name in NAMES:
        fold = (lambda s: s) if case_sensitive else (lambda s: s.lower())
        have, wanted = fold(entity["name"]), [fold(v) for v in values]
        if name == "entityName":
            return wanted[0] in have
        if name == "entityName.startsWith":
            return have.startswith(wanted[0])
        return have in wanted
    if name == "tag":
        return any(tag_matches(parse_tag(v), tag) for v in values for tag in entity["tags"])
    if name == "mzId":
        return any(z["id"] in values for z in entity["managementZones"])
    return any(z["name"] in values for z in entity["managementZones"])  # mzName


# --- the problem selector ------------------------------------------------------------------------------------

def check_problem_selector(criteria):
    for criterion in criteria:
        name, values = criterion.name, criterion.values
        if name not in SELECTOR_KEYS:
            raise SelectorError("unknown criterion %s" % name)
        if not values:
            raise SelectorError("criterion %s needs at least one quoted value" % name)
        if name == "status" and (len(values) > 1 or values[0].lower() not in ("open", "closed")):
            raise SelectorError('status takes one value, "open" or "closed"')
        if name == "severityLevel" and {v.upper() for v in values} - SEVERITY_LEVELS:
            raise SelectorError("severityLevel must be one of %s" % ", ".join(sorted(SEVERITY_LEVELS)))
        if name == "impactLevel" and {v.upper() for v in values} - IMPACT_LEVELS:
            raise SelectorError("impactLevel must be one of %s" % ", ".join(sorted(IMPACT_LEVELS)))
        if name == "underMaintenance" and (len(values) > 1 or values[0].lower() not in ("true", "false")):
            raise SelectorError("underMaintenance takes true or false")
        if name == "text" and (len(values) > 1 or len(values[0]) > 30):
            raise SelectorError("text takes one value of at most 30 characters")


def text_score(problem, text):
    """text(): case-insensitive partial match on the title, event titles, display id and entity ids [U weights]."""
    needle = text.lower()
    score = 3 if needle in problem["title"].lower() else 0
    score += 2 if any(needle in e["displayName"].lower() for e in problem["evidenceDetails"]["details"]) else 0
    score += 2 if needle in problem["displayId"].lower() else 0
    score += 1 if any(needle in e["entityId"]["id"].lower() for e in entities_of(problem)) else 0
    return score


def problem_criterion(problem, criterion):
    name, values, lowered = criterion.name, criterion.values, criterion.lowered
    if name in ("status", "severityLevel", "impactLevel"):
        return problem[name].lower() in lowered
    if name in ("problemId", "displayId"):
        return problem[name] in values
    if name == "managementZones":
        return any(z["name"] in values for z in problem["managementZones"])
    if name == "managementZoneIds":
        return any(z["id"] in values for z in problem["managementZones"])
    if name == "entityTags":
        return any(tag_matches(parse_tag(v), tag) for v in values for tag in problem["entityTags"])
    if name == "text":
        return text_score(problem, values[0]) > 0
    if name in ("impactedEntities", "affectedEntities"):
        return any(e["entityId"]["id"] in values for e in problem[name])
    if name == "affectedEntityTypes":
        return any(e["entityId"]["type"].lower() in lowered for e in problem["affectedEntities"])
    if name == "rootCauseEntity":
        return (problem["rootCauseEntity"] or {}).get("entityId", {}).get("id") in values
    if name == "problemFilterIds":
        return any(f["id"] in values for f in problem["problemFilters"])
    if name == "problemFilterNames":  # contains, case-insensitive
        return any(v in f["name"].lower() for v in lowered for f in problem["problemFilters"])
    if name == "problemFilterNames.equals":  # exact, case-insensitive
        return any(f["name"].lower() in lowered for f in problem["problemFilters"])
    return problem["_underMaintenance"] == (values[0].lower() == "true")  # underMaintenance


def problem_matches(problem, criteria):
    for criterion in criteria:
        if not problem_criterion(problem, criterion):
            return False
    return True


def entities_of(problem):
    return problem["impactedEntities"] + problem["affectedEntities"]


# --- time ------------------------------------------------------------------------------------------------------

ISO_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?(Z|[+-]\d\d:?\d\d)?")
RELATIVE = re.compile(r"now(?:-(\d+)([mhdwMy]))?(?:/([mhdwMy]))?")


def months_back(moment, count):
    month = moment.year * 12 + moment.month - 1 - count
    year, month = divmod(month, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def align(moment, unit):
    """Round down to the start of the unit (weeks start on Monday) [U: UTC, Monday]."""
    moment = moment.replace(second=0, microsecond=0)
    if unit in "hdwMy":
        moment = moment.replace(minute=0)
    if unit in "dwMy":
        moment = moment.replace(hour=0)
    if unit == "w":
        moment -= timedelta(days=moment.weekday())
    if unit in "My":
        moment = moment.replace(day=1)
    if unit == "y":
        moment = moment.replace(month=1)
    return moment


def parse_time(value, now_ms, default):
    """from/to: UTC milliseconds, ISO-8601 (no offset = UTC; space for T; seconds and fractions optional) or
    now-NU[/A] with U and A in m h d w M y."""
    if value is None or value == "":
        return default
    if re.fullmatch(r"\d+", value):
        return int(value)
    relative = RELATIVE.fullmatch(value)
    if relative:
        moment = datetime.fromtimestamp(now_ms / 1000.0, timezone.utc)
        count, unit, alignment = relative.groups()
        if count:
            count = int(count)
            if unit in "My":
                moment = months_back(moment, count * (12 if unit == "y" else 1))
            else:
                moment -= timedelta(minutes=count * {"m": 1, "h": 60, "d": 1440, "w": 10080}[unit])
        if alignment:
            moment = align(moment, alignment)
        return int(moment.timestamp() * 1000)
    match = ISO_TIME.fullmatch(value)
    if not match:
        raise SelectorError("cannot parse time %r (milliseconds, ISO-8601 or now-NU/A)" % value)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone = timezone.utc
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=zone)
    except ValueError:
        raise SelectorError("cannot parse time %r" % value)
    millis = int((fraction or "0").ljust(3, "0")[:3])
    return int(moment.timestamp()) * 1000 + millis


def in_window(problem, start, end, now_ms):
    """A problem is listed when its start or its end lies in the timeframe; an open problem's end is now [U]."""
    finish = problem["endTime"] if problem["endTime"] != -1 else now_ms
    return start <= problem["startTime"] <= end or start <= finish <= end


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
    now_ms = request.app[SANDBOX].now_ms()
    if "nextPageKey" in query:
        extra = sorted(k for k in query if k != "nextPageKey")
        if extra:
            return violation(400, "nextPageKey", "must not be combined with other query parameters except fields (got %s)" % ", ".join(extra))
        try:
            cursor = decode_key(query["nextPageKey"])
            query, offset, window = dict(cursor["query"]), int(cursor["offset"]), cursor["window"]
        except (ValueError, TypeError, KeyError):
            return violation(400, "nextPageKey", "invalid nextPageKey")
    else:
        offset, window = 0, None
    try:
        size = page_size(query.get("pageSize"), 50)
    except LookupError as exc:
        return violation(400, "pageSize", str(exc))
    if window is None:  # the timeframe is resolved once; later pages keep it
        window = []
        for name, default in (("from", now_ms - 2 * 3600 * 1000), ("to", now_ms)):
            try:
                window.append(parse_time(query.get(name), now_ms, default))
            except SelectorError as exc:
                return violation(400, name, str(exc))
    start, end = window
    text = query.get("entitySelector", "")
    try:
        criteria = parse_selector(query.get("problemSelector", ""), quoted_only=True)
        check_problem_selector(criteria)
    except SelectorError as exc:
        return violation(400, "problemSelector", str(exc))
    try:
        if len(text) > 2000:
            raise SelectorError("the entity selector is limited to 2,000 characters")
        entity_selector = parse_selector(text)
        if entity_selector:
            check_entity_selector(entity_selector)
    except SelectorError as exc:
        return violation(400, "entitySelector", str(exc))
    registry = dyn["entities"]
    matching = []
    for problem in dyn["problems"].values():
        if not in_window(problem, start, end, now_ms) or not problem_matches(problem, criteria):
            continue
        if entity_selector and not any(entity_matches(entity_selector, registry[e["entityId"]["id"]])
                                       for e in entities_of(problem)):
            continue
        matching.append(problem)
    text_value = next((c.values[0] for c in criteria if c.name == "text"), None)
    try:
        sort_problems(matching, query.get("sort", "-startTime"), text_value)
    except SelectorError as exc:
        return violation(400, "sort", str(exc))
    page = matching[offset:offset + size]
    more = offset + size < len(matching)
    return web.json_response({
        "totalCount": len(matching), "pageSize": size,
        "nextPageKey": encode_key({"query": query, "offset": offset + size, "window": window}) if more else None,
        "problems": [public(p, fields, dyn["comments"].get(p["problemId"], [])) for p in page],
        "warnings": [],
    })


def sort_problems(problems, sort, text):
    """sort: +status (open first), startTime, relevance (only with text()); no sign means +."""
    keys = {"status": lambda p: 0 if p["status"] == "OPEN" else 1, "startTime": lambda p: p["startTime"],
            "relevance": lambda p: text_score(p, text)}
    for part in reversed([p.strip() for p in sort.split(",") if p.strip()]):
        name = part.lstrip("+-")
        if name not in keys:
            raise SelectorError("unsupported sort field %s" % name)
        if name == "relevance" and text is None:
            raise SelectorError("relevance can only be used together with text()")
        problems.sort(key=keys[name], reverse=part.startswith("-"))


def find(request):
    return state(request)["problems"].get(request.match_info["problem_id"])


def not_found(request):
    return error(404, "Problem with ID %s not found" % request.match_info["problem_id"])


async def get_problem(request):
    problem = find(request)
    if problem is None:
        return not_found(request)
    fields = [f for f in request.query.get("fields", "").split(",") if f]
    unknown_fields = [f for f in fields if f not in FIELDS]
    if unknown_fields:
        return violation(400, "fields", "unknown field(s): %s" % ",".join(unknown_fields))
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


def ingest_targets(dyn, text):
    """The entities an event attaches to: the environment without a selector; entityId(...) always matches
    (known or not), other criteria select among the entities seen (the problems' entities). Mixed entity types
    in entityId(...) are accepted here [U: the docs state the one-type rule for selectors in general]."""
    if not text:
        return [{"entityId": {"id": "environment", "type": "ENVIRONMENT"}, "name": "environment"}]
    if len(text) > 2000:
        raise SelectorError("the entity selector is limited to 2,000 characters")
    selector = parse_selector(text)
    check_entity_selector(selector, same_type=False)
    registry = dyn["entities"]
    ids = next((c.values for c in selector if c.name == "entityId"), None)
    if ids is not None:
        candidates = [registry.get(i) or {"id": i, "type": i.split("-")[0], "name": i, "tags": [], "managementZones": []}
                      for i in ids]
    else:
        candidates = list(registry.values())
    return [stub(e) for e in candidates if entity_matches(selector, e)]


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
    try:
        targets = ingest_targets(dyn, body.get("entitySelector"))
    except SelectorError as exc:
        return violation(400, "entitySelector", str(exc), "PAYLOAD_BODY")
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
    details_v2 = internal_free(problem)
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
    return web.json_response(internal_free(problem), status=201)


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
    dyn = state(request)
    for item in spec.get("entities", []):
        entity = register_entity(dyn, item, problem["entityTags"], problem["managementZones"])
        if all(e["entityId"]["id"] != entity["id"] for e in problem["impactedEntities"]):
            problem["impactedEntities"].append(stub(entity))
            problem["affectedEntities"].append(stub(entity))
            problem["entityTags"] = union(problem["entityTags"] + entity["tags"], "stringRepresentation")
            problem["managementZones"] = union(problem["managementZones"] + entity["managementZones"], "id")
            problem["impactAnalysis"]["impacts"] += impacts([entity], 0)
    for name in spec.get("evidence", []):
        problem["evidenceDetails"]["details"].append({"evidenceType": "EVENT", "displayName": name,
                                                      "entity": problem["impactedEntities"][0], "groupingEntity": None,
                                                      "rootCauseRelevant": False, "startTime": sandbox.now_ms()})
    problem["evidenceDetails"]["totalCount"] = len(problem["evidenceDetails"]["details"])
    if "title" in spec:
        problem["title"] = spec["title"]
    notify(sandbox, problem, "MERGE")
    return web.json_response(internal_free(problem))


async def admin_resolve(request):
    problem = admin_find(request)
    if problem is None:
        return web.json_response({"error": "no such problem"}, status=404)
    if problem["status"] == "OPEN":
        close(request.app[SANDBOX], problem)
    return web.json_response(internal_free(problem))


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
