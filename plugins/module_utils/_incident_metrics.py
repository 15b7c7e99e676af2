# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incident analytics. Private to the selfheal.devops collection; not a public API.

Pure Python (standard library only), so the modules, the sandbox's history seeder and the unit tests share one
definition of every figure (docs/postmortem.md explains each one):

- the **incident record**: one compact dict per incident, assembled from its timeline (the incident role's
  records), its Jira ticket, its Dynatrace problem and its on-call page (responses), whichever are available;
- the **stage times** of an incident (onset, detected, paged, acknowledged, fix started, healthy, resolved) and
  its figures: time to detect, to acknowledge, to heal, to resolve;
- summaries (count, median, p90, mean, min, max; percentiles by linear interpolation between closest ranks);
- the **report** over a period: counts per scenario, service, host and management zone, the figures split by mode
  (auto, approve, escalated), fix success and escalation rates, per-responder response times and load, the time
  the automation saved, and recurrences;
- **recurrence signatures**: two incidents are similar when they share a signature (same scenario and entity, or
  same root-cause entity and title signature).
"""

import calendar
import datetime
import hashlib
import re

RECORD_VERSION = 1
# The incident role's stages, in the order they happen.
STAGES = ("onset", "detected", "paged", "acknowledged", "fix_started", "healthy", "resolved")
MODES = ("auto", "approve", "escalated")
FIGURES = ("time_to_detect", "time_to_acknowledge", "time_to_heal", "time_to_resolve")
# The fix step each remediation playbook records (incident action "record") -> its scenario.
FIX_SCENARIOS = {
    "restart process": "process_crash",
    "clean temporary files": "full_disk",
    "switch traffic back": "bluegreen",
    "keptn rollback": "bluegreen",
}
# When no fix step tells the scenario, the problem title may (first match wins).
TITLE_SCENARIOS = (
    (re.compile(r"process|crash|unavailable", re.I), "process_crash"),
    (re.compile(r"disk|space|storage|inode", re.I), "full_disk"),
    (re.compile(r"response time|slow|degradation|latency|failure rate|release", re.I), "bluegreen"),
)
NO_ANSWER = ("", "no_response", "failed")
SIGNATURE_LABEL_PREFIX = "selfheal-sig-"
SUMMARY_PATTERN = re.compile(r"^(P-[0-9A-Za-z_-]+):\s+(.*)$")


# --- time ------------------------------------------------------------------------------------------------

def parse_time(value):
    """Epoch seconds (float) from ISO 8601 (Z, +0000, +00:00; with or without a fraction), epoch milliseconds
    (numbers above 1e11) or epoch seconds; None when empty, -1 (Dynatrace's "still open") or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if value < 0:
            return None
        return float(value) / 1000.0 if value > 1e11 else float(value)
    text = str(value).strip()
    if not text:
        return None
    if re.match(r"^-?\d+(\.\d+)?$", text):
        return parse_time(float(text))
    match = re.match(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?\s*(Z|[+-]\d\d:?\d\d)?$", text)
    if not match:
        match = re.match(r"^(\d{4})-(\d\d)-(\d\d)()()()()()$", text)
        if not match:
            return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    epoch = float(calendar.timegm(moment.timetuple()))
    if fraction:
        epoch += float("0." + fraction)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        epoch -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return epoch


def iso(epoch):
    """2026-11-30T05:00:01.250Z (milliseconds, UTC), or None."""
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(round(float(epoch), 3), datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def day_of(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d")


def week_of(epoch):
    """ISO week, for example 2026-W48."""
    year, week, dummy = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isocalendar()
    return "%04d-W%02d" % (year, week)


def duration_text(seconds):
    """A duration as people read it: 42 s, 3 min 5 s, 2 h 10 min."""
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 60:
        return "%s s" % (("%.1f" % seconds).rstrip("0").rstrip(".") if seconds < 10 else "%d" % round(seconds))
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return "%d min %d s" % (minutes, rest) if rest else "%d min" % minutes
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return "%d h %d min" % (hours, minutes) if minutes else "%d h" % hours
    days, hours = divmod(hours, 24)
    return "%d d %d h" % (days, hours) if hours else "%d d" % days


# --- statistics --------------------------------------------------------------------------------------------

def percentile(values, fraction):
    """The fraction-quantile of values by linear interpolation between closest ranks (NumPy's default,
    Excel's PERCENTILE.INC): position (n - 1) * fraction in the sorted values. None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * float(fraction)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values):
    """{count, median, p90, mean, min, max} of a list of seconds (rounded to the millisecond); None figures when
    the list is empty."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"count": 0, "median": None, "p90": None, "mean": None, "min": None, "max": None}
    return {"count": len(values), "median": _round(percentile(values, 0.5)), "p90": _round(percentile(values, 0.9)),
            "mean": _round(sum(values) / len(values)), "min": _round(min(values)), "max": _round(max(values))}


def _round(value):
    return None if value is None else round(float(value), 3)


def rate(part, whole):
    return None if not whole else round(float(part) / whole, 4)


# --- signatures ----------------------------------------------------------------------------------------------

def title_signature(title):
    """A problem title without what changes between two occurrences of the same failure: lower case, numbers,
    hexadecimal ids, quoted values and percentages replaced by '#', punctuation folded into single spaces."""
    text = str(title or "").lower()
    text = re.sub(r"\"[^\"]*\"|'[^']*'", "#", text)
    text = re.sub(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{8,}\b", "#", text)
    text = re.sub(r"\d+(\.\d+)?(\s*%)?", "#", text)
    text = re.sub(r"[^a-z#]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _hosts(incident):
    names = []
    for entity in incident.get("entities") or []:
        if entity.get("type") == "HOST" and entity.get("name") and entity["name"].lower() not in names:
            names.append(entity["name"].lower())
    for host in incident.get("hosts") or []:
        if host and host.lower() not in names:
            names.append(host.lower())
    return names


def signatures(incident):
    """The incident's signatures, the primary one first:
    - ``cause|<root-cause entity id (else name)>|<title signature>`` when the root-cause entity is known;
    - ``entity|<scenario>|<host name>`` for each host it happened on (scenario ``unknown`` when not known); without
      any host, the same with each impacted entity's id (else name);
    - ``title|<title signature>`` when the incident names no entity at all.
    Host names, not ids, for the entity signatures: a timeline or a ticket knows the host name, not Dynatrace's id."""
    found = []
    title = title_signature(incident.get("title"))
    root = incident.get("root_cause") or {}
    root_name = str(root.get("id") or root.get("name") or "").lower()
    if root_name:
        found.append("cause|%s|%s" % (root_name, title))
    scenario = incident.get("scenario") or "unknown"
    names = _hosts(incident)
    if not names:
        for entity in incident.get("entities") or []:
            name = str(entity.get("id") or entity.get("name") or "").lower()
            if name and name not in names:
                names.append(name)
    found.extend("entity|%s|%s" % (scenario, name) for name in names)
    if not found:
        found.append("title|%s" % title)
    return found


def signature_label(signature):
    """The Jira label that carries a signature: selfheal-sig-<12 hex>."""
    return SIGNATURE_LABEL_PREFIX + hashlib.sha256(signature.encode("utf-8")).hexdigest()[:12]


def describe_signature(signature):
    kind, dummy, rest = signature.partition("|")
    if kind == "cause":
        entity, dummy, title = rest.partition("|")
        return "root cause %s, '%s'" % (entity, title)
    if kind == "entity":
        scenario, dummy, entity = rest.partition("|")
        return "%s on %s" % (scenario.replace("_", " "), entity)
    return "'%s'" % rest


def similar(incident, others):
    """The incidents among others that share a signature with incident (itself excluded by key)."""
    wanted = set(incident.get("signatures") or signatures(incident))
    key = incident.get("key")
    return [o for o in others if o.get("key") != key and wanted & set(o.get("signatures") or signatures(o))]


# --- the incident record -----------------------------------------------------------------------------------------

def new_incident(key):
    return {
        "version": RECORD_VERSION, "key": key, "problem": None, "problem_id": None, "title": None, "scenario": None,
        "service": None, "hosts": [], "entities": [], "root_cause": None, "management_zones": [], "severity": None,
        "mode": None, "times": dict((stage, None) for stage in STAGES + ("opened", "escalated")),
        "detected_from": None, "fix": None, "fixed": False, "escalated": False, "resolved": False,
        "acknowledged_by": None, "approval": None, "responses": [], "pages": [], "ticket": None, "sources": [],
    }


def _record_times(record):
    end = parse_time(record.get("time"))
    if end is None:
        return None, None
    try:
        duration = max(0.0, float(record.get("duration") or 0))
    except (TypeError, ValueError):
        duration = 0.0
    return end - duration, end


def _earliest(current, candidate):
    if candidate is None:
        return current
    return candidate if current is None or candidate < current else current


def _approval_responder(detail):
    """'Approve by oncall.primary' -> ('Approve', 'oncall.primary'); 'no_response' -> ('no_response', None)."""
    text = str(detail or "").strip()
    response, dummy, responder = text.partition(" by ")
    return response.strip(), (responder.strip() or None)


def from_timeline(document):
    """An incident record from a timeline document {"incident", "problem", "records"} (the incident role's file,
    also attached to the ticket as <key>.json). Raises ValueError when the document is not a timeline."""
    if not isinstance(document, dict) or not isinstance(document.get("records"), list):
        raise ValueError("not a timeline: an object with a records list is expected")
    records = []
    for record in document["records"]:
        if not isinstance(record, dict):
            continue
        start, end = _record_times(record)
        if end is not None:
            records.append((end, start, record))
    records.sort(key=lambda item: item[0])
    key = document.get("incident") or (records[0][2].get("incident") if records else None)
    if not key:
        raise ValueError("not a timeline: no incident key")
    incident = new_incident(str(key))
    incident["problem"] = document.get("problem") or None
    times = incident["times"]
    for end, start, record in records:
        action, step, result = record.get("action"), record.get("step"), record.get("result")
        ok = result != "failed"
        times["opened"] = _earliest(times["opened"], start)
        if action == "open" and step == "page on-call" and ok:
            times["paged"] = _earliest(times["paged"], end)
        elif action == "approve" and step == "approval":
            response, responder = _approval_responder(record.get("detail"))
            incident["approval"] = {"response": response if ok else "failed", "responder": responder, "time": end}
            if ok and response not in NO_ANSWER:
                times["acknowledged"] = _earliest(times["acknowledged"], end)
                incident["responses"].append({"responder": responder, "response": response, "time": end, "paged": times["paged"],
                                              "source": "timeline"})
        elif action == "record":
            incident["fix"] = {"step": step, "system": record.get("system"), "result": result,
                               "duration": _round(end - start), "detail": record.get("detail") or ""}
            times["fix_started"] = start
            times["healthy"] = end if ok else None
            incident["fixed"] = ok
            if record.get("system") and record["system"] not in incident["hosts"]:
                incident["hosts"].append(record["system"])
            if step in FIX_SCENARIOS:
                incident["scenario"] = FIX_SCENARIOS[step]
        elif action == "resolve" and ok:
            times["resolved"] = _earliest(times["resolved"], end)
        elif action == "escalate":
            times["escalated"] = _earliest(times["escalated"], start)
    incident["sources"] = ["timeline"]
    return finish(incident)


def finish(incident):
    """Derive what follows from the collected facts: detection (estimated from the first record when no problem start
    is known), the acknowledgement and its responder, the mode, resolved/escalated, the scenario, the signatures."""
    times = incident["times"]
    if times.get("detected") is None and times.get("opened") is not None:
        times["detected"] = times["opened"]
        incident["detected_from"] = "timeline"
    elif times.get("detected") is not None and not incident.get("detected_from"):
        incident["detected_from"] = "dynatrace"
    answered = sorted((r for r in incident["responses"] if r.get("time") is not None), key=lambda r: r["time"])
    if answered:
        times["acknowledged"] = _earliest(times.get("acknowledged"), answered[0]["time"])
        incident["acknowledged_by"] = answered[0].get("responder")
    incident["escalated"] = times.get("escalated") is not None
    incident["resolved"] = times.get("resolved") is not None
    if incident["escalated"]:
        incident["mode"] = "escalated"
    elif incident.get("approval"):
        incident["mode"] = "approve"
    else:
        incident["mode"] = "auto"
    if not incident.get("scenario") and incident.get("title"):
        incident["scenario"] = next((name for pattern, name in TITLE_SCENARIOS if pattern.search(incident["title"])), None)
    incident["signatures"] = signatures(incident)
    return incident


def parse_summary(summary):
    """The incident role's ticket summary 'P-1234: <title> on <host>, <host>' -> (display id, title, hosts)."""
    match = SUMMARY_PATTERN.match(str(summary or "").strip())
    if not match:
        return None, str(summary or "").strip() or None, []
    display, rest = match.groups()
    title, sep, hosts = rest.rpartition(" on ")
    if not sep:
        return display, rest, []
    return display, title, [h.strip() for h in hosts.split(",") if h.strip()]


def apply_ticket(incident, issue, browse_url=None):
    """Add what a Jira issue (search result with summary, status, created, resolutiondate) knows."""
    fields = issue.get("fields") or {}
    display, title, hosts = parse_summary(fields.get("summary"))
    incident["problem"] = incident.get("problem") or display
    incident["title"] = incident.get("title") or title
    for host in hosts:
        if host not in incident["hosts"]:
            incident["hosts"].append(host)
    incident["ticket"] = {"key": issue.get("key"), "url": browse_url, "status": (fields.get("status") or {}).get("name"),
                          "created": parse_time(fields.get("created")), "resolved": parse_time(fields.get("resolutiondate"))}
    if incident["times"].get("resolved") is None and incident["ticket"]["resolved"] is not None:
        incident["times"]["resolved"] = incident["ticket"]["resolved"]
    _add_source(incident, "jira")
    return finish(incident)


def apply_problem(incident, problem):
    """Add what a Dynatrace problem (API v2 object, or the normalised problem of _problem.py) knows."""
    if "problemId" in problem:
        entities = []
        for stub in (problem.get("impactedEntities") or []) + (problem.get("affectedEntities") or []):
            entity_id = stub.get("entityId") or {}
            entity = {"id": entity_id.get("id"), "type": entity_id.get("type"), "name": stub.get("name")}
            if entity["id"] and all(e["id"] != entity["id"] for e in entities):
                entities.append(entity)
        root = problem.get("rootCauseEntity")
        root = {"id": (root.get("entityId") or {}).get("id"), "type": (root.get("entityId") or {}).get("type"),
                "name": root.get("name")} if root else None
        tags = dict((t.get("key"), t.get("value") or "") for t in problem.get("entityTags") or [] if t.get("key"))
        zones = [z.get("name") for z in problem.get("managementZones") or [] if z.get("name")]
        facts = {"id": problem.get("problemId"), "display_id": problem.get("displayId"), "title": problem.get("title"),
                 "severity": problem.get("severityLevel"), "entities": entities, "root_cause": root, "tags": tags,
                 "management_zones": zones, "start_time": problem.get("startTime"), "end_time": problem.get("endTime")}
        evidence = [parse_time(e.get("startTime")) for e in (problem.get("evidenceDetails") or {}).get("details") or []]
    else:
        facts = problem
        evidence = [parse_time(e.get("start_time") or e.get("startTime")) for e in problem.get("evidence") or []]
    incident["problem"] = facts.get("display_id") or incident.get("problem")
    incident["problem_id"] = facts.get("id") or incident.get("problem_id")
    incident["title"] = facts.get("title") or incident.get("title")
    incident["severity"] = facts.get("severity") or incident.get("severity")
    if facts.get("entities"):
        incident["entities"] = [{"id": e.get("id"), "type": e.get("type"), "name": e.get("name")} for e in facts["entities"]]
        for entity in incident["entities"]:
            if entity.get("type") == "HOST" and entity.get("name") and entity["name"] not in incident["hosts"]:
                incident["hosts"].append(entity["name"])
    if facts.get("root_cause"):
        root = facts["root_cause"]
        incident["root_cause"] = {"id": root.get("id"), "type": root.get("type"), "name": root.get("name")}
    incident["management_zones"] = list(facts.get("management_zones") or incident["management_zones"])
    tags = facts.get("tags") or {}
    incident["service"] = tags.get("service") or tags.get("app") or incident.get("service") or _service_entity(incident)
    if tags.get("selfheal_scenario"):
        incident["scenario"] = tags["selfheal_scenario"]
    detected = parse_time(facts.get("start_time"))
    if detected is not None:
        incident["times"]["detected"] = detected
        incident["detected_from"] = "dynatrace"
        known = [t for t in evidence if t is not None]
        if known:  # without evidence the onset is unknown (not the detection itself)
            incident["times"]["onset"] = min(known + [detected])
    _add_source(incident, "dynatrace")
    return finish(incident)


def _service_entity(incident):
    for kind in ("SERVICE", "PROCESS_GROUP", "PROCESS_GROUP_INSTANCE", "APPLICATION"):
        for entity in incident.get("entities") or []:
            if entity.get("type") == kind and entity.get("name"):
                return entity["name"]
    return None


def apply_deliveries(incident, deliveries, paged=None):
    """Add an on-call page's user deliveries: [{recipient, delivered (epoch or ISO), response, responded_at}].
    Each delivery is a page of one person; each answered one a response (the first answer acknowledges)."""
    pages = incident.setdefault("pages", [])
    # The on-call system's own record replaces what the timeline noted about the same person's answer (the timeline
    # sees an approval only when it polls for it).
    people = set(d.get("recipient") for d in deliveries if d.get("response"))
    incident["responses"] = [r for r in incident["responses"] if not (r.get("source") == "timeline" and r.get("responder") in people)]
    for delivery in deliveries:
        person = delivery.get("recipient")
        sent = parse_time(delivery.get("delivered")) or paged
        if sent is not None and all(p != [person, sent] for p in pages):
            pages.append([person, sent])
        if sent is not None:
            incident["times"]["paged"] = _earliest(incident["times"].get("paged"), sent)
        answered = parse_time(delivery.get("responded_at"))
        if delivery.get("response") and answered is not None:
            response = {"responder": person, "response": delivery["response"], "time": answered, "paged": sent,
                        "source": "oncall"}
            if all(not (r.get("responder") == person and r.get("time") == answered) for r in incident["responses"]):
                incident["responses"].append(response)
    _add_source(incident, "oncall")
    return finish(incident)


def _add_source(incident, name):
    if name not in incident["sources"]:
        incident["sources"].append(name)


def figures(incident):
    """The incident's own figures in seconds (None when a stage is unknown): time to detect (onset -> detected),
    to acknowledge (detected -> first response), to heal (detected -> healthy) and to resolve (detected -> resolved)."""
    times = incident["times"]

    def between(first, last):
        if times.get(first) is None or times.get(last) is None:
            return None
        return _round(max(0.0, times[last] - times[first]))

    return {"time_to_detect": between("onset", "detected"), "time_to_acknowledge": between("detected", "acknowledged"),
            "time_to_heal": between("detected", "healthy"), "time_to_resolve": between("detected", "resolved")}


def fixed_before_ack(incident):
    """Healthy again (by the automation) before anyone acknowledged the page, or with nobody acknowledging at all."""
    times = incident["times"]
    if not incident.get("fixed") or incident.get("escalated") or times.get("healthy") is None:
        return False
    return times.get("acknowledged") is None or times["healthy"] <= times["acknowledged"]


def fixed_by(incident):
    """Who fixed it, as the recurrence text says: 'selfheal.devops (restart process on web-01)', with the approver
    in approve mode; the responder who acknowledged an escalated incident."""
    fix = incident.get("fix") or {}
    if incident.get("fixed") and not incident.get("escalated"):
        what = "selfheal.devops (%s%s)" % (fix.get("step") or "fix", (" on %s" % fix["system"]) if fix.get("system") else "")
        if incident.get("mode") == "approve" and incident.get("acknowledged_by"):
            what += ", approved by %s" % incident["acknowledged_by"]
        return what
    if incident.get("acknowledged_by"):
        return incident["acknowledged_by"]
    return "a human (escalated)" if incident.get("escalated") else "nobody yet"


# --- the report over a period ------------------------------------------------------------------------------------

def in_period(incident, start, end):
    detected = incident["times"].get("detected")
    return detected is not None and (start is None or detected >= start) and (end is None or detected < end)


def _count(incidents, values_of):
    counts = {}
    for incident in incidents:
        for value in values_of(incident):
            counts[value] = counts.get(value, 0) + 1
    return [{"name": name, "count": count} for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def _times_by(incidents):
    out = {}
    for name in FIGURES:
        out[name] = summarize(figures(i)[name] for i in incidents)
    return out


def responder_stats(incidents):
    """Per responder: pages received, responses, first acknowledgements, response times (page -> response) and the
    weekly mean, with whether the latest week beat every earlier one ("broke their record")."""
    people = {}

    def entry(name):
        return people.setdefault(name, {"name": name, "pages": 0, "responses": 0, "acknowledged_first": 0,
                                        "incidents": set(), "times": [], "weeks": {}})

    for incident in incidents:
        for person, dummy in incident.get("pages") or []:
            if person:
                entry(person)["pages"] += 1
                entry(person)["incidents"].add(incident["key"])
        for response in incident["responses"]:
            person = response.get("responder")
            if not person:
                continue
            stats = entry(person)
            stats["responses"] += 1
            stats["incidents"].add(incident["key"])
            paged = response.get("paged") or incident["times"].get("paged") or incident["times"].get("detected")
            if paged is not None and response.get("time") is not None:
                seconds = max(0.0, response["time"] - paged)
                stats["times"].append(seconds)
                stats["weeks"].setdefault(week_of(response["time"]), []).append(seconds)
        if incident.get("acknowledged_by"):
            entry(incident["acknowledged_by"])["acknowledged_first"] += 1
    out = []
    for name in sorted(people):
        stats = people[name]
        summary = summarize(stats["times"])
        weekly = [{"week": week, "mean": _round(sum(v) / len(v)), "responses": len(v)} for week, v in sorted(stats["weeks"].items())]
        broke = len(weekly) >= 2 and all(weekly[-1]["mean"] < w["mean"] for w in weekly[:-1])
        out.append({"name": name, "pages": stats["pages"], "responses": stats["responses"],
                    "acknowledged_first": stats["acknowledged_first"], "incidents": len(stats["incidents"]),
                    "response_time": summary, "weekly": weekly, "broke_record": broke,
                    "record_week": min(weekly, key=lambda w: (w["mean"], w["week"]))["week"] if weekly else None})
    return out


def automation_savings(incidents, manual_baseline=None):
    """The time the automation saved: for each incident healed before anyone acknowledged, the human baseline
    (median time to resolve of the escalated incidents of the same scenario in the period, else of all escalated
    incidents, else manual_baseline seconds) minus its own time to heal, never below zero."""
    escalated = [i for i in incidents if i.get("escalated")]
    overall = summarize(figures(i)["time_to_resolve"] for i in escalated)["median"]
    baselines = {}
    for incident in escalated:
        baselines.setdefault(incident.get("scenario"), []).append(figures(incident)["time_to_resolve"])
    by_scenario = dict((name, summarize(values)["median"]) for name, values in baselines.items())
    fast = [i for i in incidents if fixed_before_ack(i)]
    saved, counted, baseline_used = 0.0, 0, {}
    for incident in fast:
        baseline = by_scenario.get(incident.get("scenario"))
        origin = "escalated incidents of this scenario"
        if baseline is None:
            baseline, origin = overall, "all escalated incidents"
        if baseline is None and manual_baseline is not None:
            baseline, origin = float(manual_baseline), "manual_baseline"
        heal = figures(incident)["time_to_heal"]
        if baseline is None or heal is None:
            continue
        saved += max(0.0, baseline - heal)
        counted += 1
        baseline_used[incident.get("scenario") or "unknown"] = {"seconds": _round(baseline), "from": origin}
    return {"fixed_before_ack": len(fast), "share": rate(len(fast), len(incidents)),
            "saved_seconds": _round(saved) if counted else None, "counted": counted, "baselines": baseline_used}


def recurrences(incidents, minimum=2):
    """Groups of incidents with the same primary signature, most frequent first (groups of at least minimum)."""
    groups = {}
    for incident in sorted(incidents, key=lambda i: (i["times"].get("detected") or 0, i["key"])):
        primary = (incident.get("signatures") or signatures(incident))[0]
        groups.setdefault(primary, []).append(incident)
    out = []
    for signature, members in groups.items():
        if len(members) < minimum:
            continue
        last = members[-1]
        out.append({"signature": signature, "label": signature_label(signature), "description": describe_signature(signature),
                    "count": len(members), "incidents": [m["key"] for m in members],
                    "first": iso(members[0]["times"].get("detected")), "last": iso(last["times"].get("detected")),
                    "last_fixed_by": fixed_by(last), "last_time_to_heal": figures(last)["time_to_heal"]})
    out.sort(key=lambda group: (-group["count"], group["signature"]))
    return out


def build_report(incidents, start=None, end=None, manual_baseline=None, top=10):
    """The analytics report over [start, end) (epoch seconds; None = open) of incident records."""
    chosen = sorted((i for i in incidents if in_period(i, start, end)), key=lambda i: (i["times"]["detected"], i["key"]))
    by_mode = dict((mode, [i for i in chosen if i.get("mode") == mode]) for mode in MODES)
    attempted = [i for i in chosen if i.get("fix")]
    per_day = {}
    for incident in chosen:
        day = per_day.setdefault(day_of(incident["times"]["detected"]), dict((mode, 0) for mode in MODES))
        day[incident["mode"]] += 1
    times = {"all": _times_by(chosen)}
    times.update((mode, _times_by(members)) for mode, members in by_mode.items())
    scenarios = {}
    for incident in chosen:
        scenarios.setdefault(incident.get("scenario") or "unknown", []).append(incident)
    return {
        "period": {"start": iso(start), "end": iso(end),
                   "first": iso(chosen[0]["times"]["detected"]) if chosen else None,
                   "last": iso(chosen[-1]["times"]["detected"]) if chosen else None},
        "totals": {"incidents": len(chosen), "auto": len(by_mode["auto"]), "approve": len(by_mode["approve"]),
                   "escalated": len(by_mode["escalated"]), "resolved": len([i for i in chosen if i.get("resolved")]),
                   "fix_attempted": len(attempted), "fixed": len([i for i in attempted if i.get("fixed")]),
                   "fix_success_rate": rate(len([i for i in attempted if i.get("fixed")]), len(attempted)),
                   "escalation_rate": rate(len(by_mode["escalated"]), len(chosen)),
                   "detected_from_timeline": len([i for i in chosen if i.get("detected_from") == "timeline"])},
        "counts": {
            "scenario": _count(chosen, lambda i: [i.get("scenario") or "unknown"]),
            "service": _count(chosen, lambda i: [i.get("service") or "unknown"]),
            "host": _count(chosen, lambda i: i.get("hosts") or ["unknown"]),
            "management_zone": _count(chosen, lambda i: i.get("management_zones") or ["none"]),
        },
        "per_day": [dict(day=day, **counts) for day, counts in sorted(per_day.items())],
        "times": times,
        "times_by_scenario": dict((name, _times_by(members)) for name, members in sorted(scenarios.items())),
        "responders": responder_stats(chosen),
        "automation": automation_savings(chosen, manual_baseline),
        "recurrences": recurrences(chosen)[:top],
        "incidents": [summary_row(i) for i in chosen],
    }


def summary_row(incident):
    """One incident as a row of the report."""
    row = {"key": incident["key"], "problem": incident.get("problem"), "title": incident.get("title"),
           "scenario": incident.get("scenario"), "mode": incident.get("mode"), "hosts": incident.get("hosts") or [],
           "detected": iso(incident["times"].get("detected")), "fixed": incident.get("fixed"),
           "acknowledged_by": incident.get("acknowledged_by"),
           "ticket": (incident.get("ticket") or {}).get("key")}
    row.update(figures(incident))
    return row


def recurrence_text(count, window_days, last):
    """'seen 3 times in the last 30 days, last fixed by selfheal.devops (restart process on web-01) in 12 s'."""
    if not count:
        return "first occurrence in the last %d days" % window_days
    text = "seen %d time%s in the last %d days" % (count, "" if count == 1 else "s", window_days)
    if last is not None:
        heal = figures(last)["time_to_heal"]
        if heal is None:
            heal = figures(last)["time_to_resolve"]
        text += ", last fixed by %s%s" % (fixed_by(last), (" in %s" % duration_text(heal)) if heal is not None else "")
    return text
