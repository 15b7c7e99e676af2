# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Dynatrace problem normaliser and the collection's marker. Private to selfheal.devops.

One function, one place, shared by the event source (webhook and poll) and the Dynatrace modules: a
Problems API v2 object and a custom-integration webhook notification both become the normalised problem
of docs/architecture.md. Pure Python, no third-party imports, so the event source can use it inside the rules
engine's process and the modules on any host.
"""

import hashlib
import re

# What this collection writes to Dynatrace carries these, so the event source can ignore its own writes.
MARKER = "[selfheal.devops]"
COMMENT_CONTEXT = "selfheal.devops"
EVENT_PROPERTY = "selfheal.marker"

WEBHOOK_STATES = {"OPEN": "OPEN", "RESOLVED": "CLOSED", "CLOSED": "CLOSED"}

# How an incident ends, as the incident role writes it on the problem (comment text after the marker). The event
# source reads these to tell an unfinished incident from a finished one when it reconciles after a restart.
OUTCOME_PREFIXES = ("Resolved", "Escalated")
STARTED_PREFIX = "Remediation started"


def _text(value, what):
    """A scalar field as text: strings and numbers only (an object or list where text belongs is refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("%s must be a string, got %s" % (what, type(value).__name__))
    return str(value)


def _list(value, what):
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("%s must be a JSON array, got %s" % (what, type(value).__name__))
    return value


def _object(value, what):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("%s must be a JSON object, got %s" % (what, type(value).__name__))
    return value


def _time(value, what):
    """Epoch milliseconds (an integer; -1 for 'not yet'), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("%s must be an integer (epoch milliseconds), got %r" % (what, value))
    return value


def _entity(stub, what="an entity"):
    """An API v2 EntityStub ({entityId: {id, type}, name}) or webhook entity ({entity, type, name})."""
    if not isinstance(stub, dict):
        raise ValueError("%s must be an object, got %s" % (what, type(stub).__name__))
    entity_id = stub.get("entityId")
    if isinstance(entity_id, dict):
        ident, kind = entity_id.get("id"), entity_id.get("type")
    else:
        ident, kind = stub.get("entity") or entity_id or stub.get("id"), stub.get("type")
    ident = _text(ident, what + " id")
    if not ident:
        raise ValueError("%s needs an id" % what)
    return {"id": ident, "type": _text(kind, what + " type") or "UNKNOWN",
            "name": _text(stub.get("name"), what + " name") or ident}


def _entities(*lists):
    seen = {}
    for what, items in lists:
        for item in _list(items, what):
            entity = _entity(item, "an entity of " + what)
            seen.setdefault(entity["id"], entity)
    return list(seen.values())


def _tags_from_api(entity_tags, what="entityTags"):
    tags = {}
    for tag in _list(entity_tags, what):
        if not isinstance(tag, dict):
            raise ValueError("%s must hold objects" % what)
        key = _text(tag.get("key"), what + " key")
        if key:
            context = _text(tag.get("context"), what + " context")
            key = key if context in (None, "", "CONTEXTLESS") else "[%s]%s" % (context, key)
            tags[key] = _text(tag.get("value"), what + " value") or ""
    return tags


def _tags_from_text(text):
    """'app:checkout, env:prod, critical' -> {'app': 'checkout', 'env': 'prod', 'critical': ''}."""
    tags = {}
    for item in str(text or "").split(","):
        item = item.strip()
        if item:
            key, dummy, value = item.partition(":")
            tags[key.strip()] = value.strip()
    return tags


def _zones(zones, what="managementZones"):
    names = []
    for zone in _list(zones, what):
        if not isinstance(zone, dict):
            raise ValueError("%s must hold objects" % what)
        name = _text(zone.get("name"), what + " name") or _text(zone.get("id"), what + " id")
        if name:
            names.append(name)
    return names


def _display_id(value):
    value = (_text(value, "the display id") or "").strip()
    if value and not value.upper().startswith("P-"):
        value = "P-" + value
    return value or None


def _problem(ident, display_id, title, status, severity, impact, entities, root_cause, tags, zones, url, start, end):
    return {"id": ident, "display_id": display_id, "title": title or "", "status": status, "severity": severity,
            "impact": impact, "entities": entities, "root_cause": root_cause, "tags": tags, "management_zones": zones,
            "url": url, "start_time": start, "end_time": end}


def normalize_problem(api, environment_url=None):
    """A Problems API v2 `Problem` object -> the normalised problem (ValueError says what is wrong)."""
    if not isinstance(api, dict) or not api.get("problemId"):
        raise ValueError("not a Dynatrace problem: problemId is required")
    pid = _text(api["problemId"], "problemId")
    root = api.get("rootCauseEntity")
    url = None
    if environment_url:
        url = "%s/#problems/problemdetails;pid=%s" % (environment_url.rstrip("/"), pid)
    status = _text(api.get("status"), "status") or "OPEN"
    end = _time(api.get("endTime", -1), "endTime")
    return _problem(
        pid, _display_id(api.get("displayId")), _text(api.get("title"), "title"),
        "CLOSED" if status.upper() == "CLOSED" else "OPEN",
        _text(api.get("severityLevel"), "severityLevel"), _text(api.get("impactLevel"), "impactLevel"),
        _entities(("impactedEntities", api.get("impactedEntities")), ("affectedEntities", api.get("affectedEntities"))),
        _entity(_object(root, "rootCauseEntity"), "rootCauseEntity") if root else None,
        _tags_from_api(api.get("entityTags")), _zones(api.get("managementZones")), url,
        _time(api.get("startTime"), "startTime"), -1 if end is None else end)


def normalize_notification(payload):
    """A problem notification -> the normalised problem (ValueError says what is wrong).

    Two shapes are read:
    - the custom-integration webhook (Settings > Integration > Problem notifications): the flat placeholder
      fields (PID, ProblemID, State, ImpactedEntities, Tags, ...) and, when the payload carries it,
      ProblemDetailsJSONv2 (root cause, zones, tags, times, more entities);
    - a Davis problem event as Dynatrace Workflows send it to Event-Driven Ansible (the shape of Dynatrace's own
      dynatrace.event_driven_ansible dt_webhook source): {"eventData": {...}} or the event object itself.
    """
    if not isinstance(payload, dict):
        raise ValueError("the notification must be a JSON object")
    if "PID" not in payload and "State" not in payload and ("eventData" in payload or "event.status" in payload):
        return normalize_davis_event(payload.get("eventData", payload))
    details = _object(payload.get("ProblemDetailsJSONv2"), "ProblemDetailsJSONv2 (write the placeholder without quotes)")
    pid = payload.get("PID") or details.get("problemId")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip():
        raise ValueError("PID (the problem id) is required")
    state = payload.get("State")
    if not isinstance(state, str) or state not in WEBHOOK_STATES:
        raise ValueError("State must be OPEN or RESOLVED, got %r" % (state if isinstance(state, (str, int)) else type(state).__name__))
    for key in ("ProblemTitle", "ProblemID", "ProblemSeverity", "ProblemImpact", "ProblemURL", "Tags"):
        _text(payload.get(key), key)
    root = details.get("rootCauseEntity")
    tags = _tags_from_text(payload.get("Tags"))
    tags.update(_tags_from_api(details.get("entityTags"), "ProblemDetailsJSONv2.entityTags"))
    evidence = _object(details.get("evidenceDetails"), "ProblemDetailsJSONv2.evidenceDetails")
    _list(evidence.get("details"), "ProblemDetailsJSONv2.evidenceDetails.details")
    status = WEBHOOK_STATES[state]
    end = _time(details.get("endTime"), "ProblemDetailsJSONv2.endTime")
    return _problem(
        str(pid).strip(), _display_id(payload.get("ProblemID") or details.get("displayId")),
        _text(payload.get("ProblemTitle"), "ProblemTitle") or _text(details.get("title"), "ProblemDetailsJSONv2.title"),
        status,
        _text(payload.get("ProblemSeverity"), "ProblemSeverity") or _text(details.get("severityLevel"), "severityLevel"),
        _text(payload.get("ProblemImpact"), "ProblemImpact") or _text(details.get("impactLevel"), "impactLevel"),
        _entities(("ImpactedEntities", payload.get("ImpactedEntities")),
                  ("ProblemDetailsJSONv2.impactedEntities", details.get("impactedEntities")),
                  ("ProblemDetailsJSONv2.affectedEntities", details.get("affectedEntities"))),
        _entity(_object(root, "ProblemDetailsJSONv2.rootCauseEntity"), "the root-cause entity") if root else None,
        tags, _zones(details.get("managementZones"), "ProblemDetailsJSONv2.managementZones"),
        _text(payload.get("ProblemURL"), "ProblemURL") or None,
        _time(details.get("startTime"), "ProblemDetailsJSONv2.startTime"),
        end if end is not None else (-1 if status == "OPEN" else None))


# Davis problem events (Dynatrace Workflows, Grail dt.davis.problems) use other names for the same facts.
DAVIS_STATES = {"ACTIVE": "OPEN", "OPEN": "OPEN", "CLOSED": "CLOSED", "RESOLVED": "CLOSED"}
DAVIS_CATEGORIES = {"SLOWDOWN": "PERFORMANCE", "RESOURCE": "RESOURCE_CONTENTION"}


def _davis_time(value, what):
    """Davis event times: epoch milliseconds, epoch nanoseconds or an ISO-8601 text; None when absent."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value if value is None or value < 10 ** 15 else value // 1000000
    text = _text(value, what)
    try:
        import datetime

        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("%s must be epoch milliseconds or an ISO-8601 time, got %r" % (what, text))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp() * 1000)


def normalize_davis_event(event):
    """A Davis problem event (as Dynatrace Workflows send it) -> the normalised problem.

    Fields read: event.id (or dt.davis.event_ids / display_id), display_id, event.name, event.status
    (ACTIVE/CLOSED), event.category, event.start, event.end, affected_entity_ids, root_cause_entity_id and
    root_cause_entity_name, entity_tags ("key:value" texts) and, for host names (meta.hosts), host.name or
    dt.entity.host.name (a text or a list, in the order of the HOST ids in affected_entity_ids).
    """
    event = _object(event, "eventData")
    pid = event.get("event.id") or event.get("display_id")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip():
        raise ValueError("event.id or display_id (the problem id) is required")
    status = event.get("event.status")
    if not isinstance(status, str) or status.upper() not in DAVIS_STATES:
        raise ValueError("event.status must be ACTIVE or CLOSED, got %r" % (status if isinstance(status, (str, int)) else type(status).__name__))
    category = _text(event.get("event.category"), "event.category")
    names = event.get("host.name", event.get("dt.entity.host.name"))
    names = [_text(n, "host.name") for n in _list(names if isinstance(names, list) else [names] if names else [], "host.name")]
    entities = []
    for ident in _list(event.get("affected_entity_ids"), "affected_entity_ids"):
        ident = _text(ident, "an affected entity id")
        kind = ident.rsplit("-", 1)[0] if "-" in ident else "UNKNOWN"
        name = names.pop(0) if kind == "HOST" and names else ident
        entities.append({"id": ident, "type": kind, "name": name})
    root_id = _text(event.get("root_cause_entity_id"), "root_cause_entity_id")
    root = None
    if root_id:
        root = {"id": root_id, "type": root_id.rsplit("-", 1)[0] if "-" in root_id else "UNKNOWN",
                "name": _text(event.get("root_cause_entity_name"), "root_cause_entity_name") or root_id}
    tags = {}
    for tag in _list(event.get("entity_tags"), "entity_tags"):
        tags.update(_tags_from_text(_text(tag, "an entity tag")))
    state = DAVIS_STATES[status.upper()]
    end = _davis_time(event.get("event.end"), "event.end")
    return _problem(
        str(pid).strip(), _display_id(event.get("display_id")), _text(event.get("event.name"), "event.name"), state,
        DAVIS_CATEGORIES.get(category, category), None, entities, root, tags, [], None,
        _davis_time(event.get("event.start"), "event.start"), end if end is not None else (-1 if state == "OPEN" else None))


def incident_key(problem):
    """The key every record of one incident is idempotent on: 'dt-P-1234'.

    Characters outside [A-Za-z0-9_.-] become '-'; when that changed anything, a short hash of the original id is
    appended, so two different ids can never share a key (and so a ticket, channel or page).
    """
    stem = str(problem.get("display_id") or problem["id"])
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", stem)
    if safe != stem:
        safe += "-" + hashlib.sha256(stem.encode("utf-8")).hexdigest()[:8]
    return "dt-" + safe


def problem_hosts(problem):
    """Names of the HOST entities of a problem, in order, without repeats (rulebook `meta.hosts`)."""
    hosts = []
    for entity in problem.get("entities") or []:
        if entity.get("type") == "HOST" and entity["name"] not in hosts:
            hosts.append(entity["name"])
    return hosts


def is_own(text=None, properties=None, context=None):
    """Whether a comment or event was written by this collection."""
    if context == COMMENT_CONTEXT:
        return True
    if isinstance(properties, dict) and EVENT_PROPERTY in properties:
        return True
    return bool(text) and MARKER in str(text)


def foreign_evidence(raw):
    """Evidence of a problem (API object or webhook payload) that this collection did not write."""
    source = raw.get("ProblemDetailsJSONv2") if isinstance(raw, dict) and "ProblemDetailsJSONv2" in raw else raw
    if not isinstance(source, dict):
        return []
    details = (source.get("evidenceDetails") or {}).get("details") if isinstance(source.get("evidenceDetails"), dict) else None
    evidence = []
    for item in details or []:
        if not isinstance(item, dict) or is_own(item.get("displayName"), item.get("properties")):
            continue
        entity = item.get("entity") if isinstance(item.get("entity"), dict) else {}
        entity_id = entity.get("entityId") if isinstance(entity.get("entityId"), dict) else {}
        evidence.append("%s|%s|%s" % (item.get("evidenceType"), item.get("displayName"), entity_id.get("id")))
    return evidence


def own_comment_steps(comments):
    """The steps this collection wrote as comments on a problem: a set of 'started', 'resolved', 'escalated'."""
    steps = set()
    for comment in comments or []:
        if not isinstance(comment, dict):
            continue
        content = str(comment.get("content") or comment.get("message") or "")
        if not (comment.get("context") == COMMENT_CONTEXT or content.startswith(MARKER)):
            continue
        text = content[len(MARKER):].strip() if content.startswith(MARKER) else content
        if text.startswith(STARTED_PREFIX):
            steps.add("started")
        for prefix in OUTCOME_PREFIXES:
            if text.startswith(prefix):
                steps.add(prefix.lower())
    return steps
