# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Dynatrace problem normaliser and the collection's marker. Private to selfheal.devops.

One function, one place, shared by the event source (webhook and poll) and the Dynatrace modules: a
Problems API v2 object and a custom-integration webhook notification both become the normalised problem
of docs/design.md. Pure Python, no third-party imports, so the event source can use it inside the rules
engine's process and the modules on any host.
"""

import re

# What this collection writes to Dynatrace carries these, so the event source can ignore its own writes.
MARKER = "[selfheal.devops]"
COMMENT_CONTEXT = "selfheal.devops"
EVENT_PROPERTY = "selfheal.marker"

WEBHOOK_STATES = {"OPEN": "OPEN", "RESOLVED": "CLOSED", "CLOSED": "CLOSED"}


def _entity(stub):
    """An API v2 EntityStub ({entityId: {id, type}, name}) or webhook entity ({entity, type, name})."""
    if not isinstance(stub, dict):
        raise ValueError("an entity must be an object, got %r" % (stub,))
    entity_id = stub.get("entityId")
    if isinstance(entity_id, dict):
        ident, kind = entity_id.get("id"), entity_id.get("type")
    else:
        ident, kind = stub.get("entity") or entity_id or stub.get("id"), stub.get("type")
    if not ident:
        raise ValueError("an entity needs an id")
    return {"id": str(ident), "type": str(kind or "UNKNOWN"), "name": str(stub.get("name") or ident)}


def _entities(*lists):
    seen = {}
    for items in lists:
        for item in items or []:
            entity = _entity(item)
            seen.setdefault(entity["id"], entity)
    return list(seen.values())


def _tags_from_api(entity_tags):
    tags = {}
    for tag in entity_tags or []:
        if isinstance(tag, dict) and tag.get("key"):
            key = tag["key"] if tag.get("context") in (None, "", "CONTEXTLESS") else "[%s]%s" % (tag["context"], tag["key"])
            tags[key] = "" if tag.get("value") is None else str(tag["value"])
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


def _zones(zones):
    return [str(z.get("name") or z.get("id")) for z in zones or [] if isinstance(z, dict)]


def _display_id(value):
    value = str(value or "").strip()
    if value and not value.upper().startswith("P-"):
        value = "P-" + value
    return value or None


def normalize_problem(api, environment_url=None):
    """A Problems API v2 `Problem` object -> the normalised problem."""
    if not isinstance(api, dict) or not api.get("problemId"):
        raise ValueError("not a Dynatrace problem: problemId is required")
    root = api.get("rootCauseEntity")
    pid = str(api["problemId"])
    url = None
    if environment_url:
        url = "%s/#problems/problemdetails;pid=%s" % (environment_url.rstrip("/"), pid)
    return {
        "id": pid,
        "display_id": _display_id(api.get("displayId")),
        "title": str(api.get("title") or ""),
        "status": "CLOSED" if str(api.get("status", "OPEN")).upper() == "CLOSED" else "OPEN",
        "severity": api.get("severityLevel"),
        "impact": api.get("impactLevel"),
        "entities": _entities(api.get("impactedEntities"), api.get("affectedEntities")),
        "root_cause": _entity(root) if root else None,
        "tags": _tags_from_api(api.get("entityTags")),
        "management_zones": _zones(api.get("managementZones")),
        "url": url,
        "start_time": api.get("startTime"),
        "end_time": api.get("endTime", -1),
    }


def normalize_notification(payload):
    """A custom-integration webhook payload -> the normalised problem (ValueError says what is wrong).

    Reads the flat placeholder fields (PID, ProblemID, State, ImpactedEntities, Tags, ...) and, when the
    payload carries it, ProblemDetailsJSONv2 (root cause, zones, tags, times, more entities).
    """
    if not isinstance(payload, dict):
        raise ValueError("the notification must be a JSON object")
    details = payload.get("ProblemDetailsJSONv2")
    if details is not None and not isinstance(details, dict):
        raise ValueError("ProblemDetailsJSONv2 must be an object (write the placeholder without quotes)")
    details = details or {}
    pid = payload.get("PID") or details.get("problemId")
    if not isinstance(pid, (str, int)) or isinstance(pid, bool) or not str(pid).strip():
        raise ValueError("PID (the problem id) is required")
    state = payload.get("State")
    if state not in WEBHOOK_STATES:
        raise ValueError("State must be OPEN or RESOLVED, got %r" % (state,))
    impacted = payload.get("ImpactedEntities", [])
    if not isinstance(impacted, list):
        raise ValueError("ImpactedEntities must be a JSON array (write the placeholder without quotes)")
    for key in ("ProblemTitle", "ProblemID", "ProblemSeverity", "ProblemImpact", "ProblemURL", "Tags"):
        if payload.get(key) is not None and not isinstance(payload[key], (str, int)):
            raise ValueError("%s must be a string" % key)
    root = details.get("rootCauseEntity")
    tags = _tags_from_text(payload.get("Tags"))
    tags.update(_tags_from_api(details.get("entityTags")))
    return {
        "id": str(pid).strip(),
        "display_id": _display_id(payload.get("ProblemID") or details.get("displayId")),
        "title": str(payload.get("ProblemTitle") or details.get("title") or ""),
        "status": WEBHOOK_STATES[state],
        "severity": payload.get("ProblemSeverity") or details.get("severityLevel"),
        "impact": payload.get("ProblemImpact") or details.get("impactLevel"),
        "entities": _entities(impacted, details.get("impactedEntities"), details.get("affectedEntities")),
        "root_cause": _entity(root) if isinstance(root, dict) else None,
        "tags": tags,
        "management_zones": _zones(details.get("managementZones")),
        "url": payload.get("ProblemURL") or None,
        "start_time": details.get("startTime"),
        "end_time": details.get("endTime", -1 if WEBHOOK_STATES[state] == "OPEN" else None),
    }


def incident_key(problem):
    """The key every record of one incident is idempotent on: 'dt-P-1234'."""
    stem = problem.get("display_id") or problem["id"]
    return "dt-" + re.sub(r"[^A-Za-z0-9_.-]", "-", str(stem))


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
