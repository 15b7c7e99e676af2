"""A seeded incident history across the sandbox's services, for the analytics tests, the benchmark and the demo.

    POST /_sandbox/history/seed {"count": 200, "days": 30, "seed": 7, "instance": "cloud", "project": "OPS",
                                 "end": <epoch seconds, default now>}

creates `count` past incidents spread over the last `days` days, as the collection would have left them in each
system of record:

- Dynatrace: a CLOSED problem per incident (title, severity, impacted entities, root cause, management zone, tags
  `service` and `selfheal_scenario`, evidence starting at the failure's onset, startTime = detection, endTime =
  resolution);
- xMatters: the page (TERMINATED event with the `selfheal_incident_key` property, created when paged) with one
  delivery per on-call person of the group and the responses people gave, with their times;
- Jira: the incident ticket (label `selfheal`, the incident key and its recurrence signature labels, the incident
  role's summary and description, created when the ticket was opened, resolved when the incident was), with the
  attachments the role leaves: `<key>.json` (the timeline, in the role's record format) and `<key>-slack.md`.

The same seed gives the same history (the random generator is seeded; ids that the sandbox counts, such as issue
keys and display ids, follow whatever was created before). Variety: three scenarios (process crash 50 %, full disk
30 %, slow release 20 %), services and hosts drawn with skewed weights so that some fail again and again, modes
auto / approve / escalated, responders with different habits (some acknowledge fast, some slowly, some not at all
while the automation fixes it first). The answer: `{"created", "first", "last", "keys", "tickets", "problems",
"events", "seconds"}` (keys: the first 20 incident keys).
"""

import hashlib
import importlib.util
import json
import math
import os
import random
import time
import uuid

from aiohttp import web

from sandbox import dynatrace, jira, oncall
from sandbox.core import SANDBOX

PREFIX = "/_sandbox/history"

# The collection's own signature function (pure Python), so seeded tickets carry the labels it writes.
_METRICS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins", "module_utils",
                             "_incident_metrics.py")
_spec = importlib.util.spec_from_file_location("selfheal_incident_metrics", _METRICS_PATH)
metrics = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(metrics)

SCENARIOS = (
    ("process_crash", 0.5),
    ("full_disk", 0.3),
    ("bluegreen", 0.2),
)
# service -> (hosts, management zone, on-call group, process)
SERVICES = {
    "checkout": (["web-01", "web-02", "web-03"], "shop-prod", "Ops Primary", "checkout"),
    "payments": (["pay-01", "pay-02"], "payments-prod", "Ops Primary", "payments"),
    "search": (["search-01", "search-02"], "shop-prod", "Ops Primary", "search"),
    "inventory": (["db-01", "db-02"], "data-prod", "Database", "postgres"),
    "reporting": (["batch-01"], "staging", "Database", "reporting"),
}
SERVICE_WEIGHTS = {"checkout": 5, "payments": 3, "search": 2, "inventory": 3, "reporting": 1}
TITLES = {
    "process_crash": ("Process unavailable: %s", "AVAILABILITY", "INFRASTRUCTURE"),
    "full_disk": ("Low disk space on /var", "RESOURCE_CONTENTION", "INFRASTRUCTURE"),
    "bluegreen": ("Response time degradation on %s", "PERFORMANCE", "SERVICES"),
}
FIX_STEPS = {"process_crash": "restart process", "full_disk": "clean temporary files", "bluegreen": "switch traffic back"}
FIX_SECONDS = {"process_crash": (4.0, 18.0), "full_disk": (8.0, 60.0), "bluegreen": (6.0, 30.0)}
# responder -> (median seconds to respond, share of pages answered while the automation works)
RESPONDERS = {
    "oncall.primary": (75.0, 0.6),
    "oncall.secondary": (210.0, 0.35),
    "dba.one": (120.0, 0.5),
    "dba.two": (420.0, 0.2),
}
MODES = (("auto", 0.72), ("approve", 0.18), ("escalated", 0.10))


def pick(rng, weighted):
    total = sum(weight for dummy, weight in weighted)
    point = rng.random() * total
    for value, weight in weighted:
        point -= weight
        if point <= 0:
            return value
    return weighted[-1][0]


def lognormal(rng, median, sigma=0.5):
    return median * math.exp(rng.gauss(0.0, sigma))


def stamp(epoch):
    return metrics.iso(epoch)


class Builder(object):
    """Builds one incident's timeline records the way the incident role writes them."""

    def __init__(self, key):
        self.key = key
        self.records = []

    def add(self, action, step, system, result, start, end, detail=""):
        self.records.append({"time": stamp(end), "incident": self.key, "action": action, "step": step, "system": system,
                             "result": result, "duration": round(end - start, 3), "detail": detail})
        return end


def plan_incident(rng, index, start, span):
    """The facts of one incident (times as epoch seconds), before any system is written."""
    scenario = pick(rng, SCENARIOS)
    service = pick(rng, sorted(SERVICE_WEIGHTS.items()))
    hosts, zone, group, process = SERVICES[service]
    # Skewed host choice: the first host of a service fails most (a chronic failure the report should show).
    host = hosts[0] if rng.random() < 0.55 else rng.choice(hosts)
    mode = pick(rng, MODES)
    detected = start + span * (index + rng.random()) / 1.0
    onset = detected - lognormal(rng, 90.0, 0.6)
    return {"scenario": scenario, "service": service, "host": host, "zone": zone, "group": group, "process": process,
            "mode": mode, "detected": detected, "onset": onset}


def seed_history(sandbox, count, days, seed, instance="cloud", project="OPS", end=None):
    started = time.time()
    rng = random.Random(seed)
    end = float(end if end is not None else time.time())
    begin = end - days * 86400.0
    span = (end - begin - 3600.0) / max(count, 1)  # the last one ends before now
    jira_state = sandbox.state["jira"][instance]
    dyn = sandbox.state["dynatrace"]
    xm = sandbox.state.get("xmatters")
    keys, tickets, problems, events = [], 0, 0, 0
    for index in range(count):
        plan = plan_incident(rng, index, begin, span)
        problem = make_problem(dyn, plan, rng)
        key = "dt-" + problem["displayId"]
        keys.append(key)
        story = tell(rng, key, plan, xm, end)
        if story["resolved"] is not None:
            problem["endTime"] = int(story["resolved"] * 1000)
        else:  # a person is still on it: the problem is open
            problem["status"] = "OPEN"
        dyn["problems"][problem["problemId"]] = problem
        problems += 1
        if xm is not None:
            add_page(xm, key, plan, story, seed, index)
            events += 1
        add_ticket(sandbox, instance, jira_state, project, key, plan, problem, story)
        tickets += 1
    return {"created": count, "first": stamp(begin), "last": stamp(end), "keys": keys[:20], "tickets": tickets,
            "problems": problems, "events": events, "seconds": round(time.time() - started, 3)}


def make_problem(dyn, plan, rng):
    dyn["counter"] += 1
    dyn["next_display"] += 1
    title, severity, impact = TITLES[plan["scenario"]]
    if "%s" in title:
        title = title % plan["service"]
    host = {"id": dynatrace.entity_id("HOST", plan["host"]), "type": "HOST", "name": plan["host"]}
    if plan["scenario"] == "bluegreen":
        other = {"id": dynatrace.entity_id("SERVICE", plan["service"]), "type": "SERVICE", "name": plan["service"]}
    else:
        other = {"id": dynatrace.entity_id("PROCESS_GROUP_INSTANCE", plan["process"] + "@" + plan["host"]),
                 "type": "PROCESS_GROUP_INSTANCE", "name": plan["process"]}
    entities = [host, other]
    root = other if plan["scenario"] != "full_disk" else host
    detected_ms = int(plan["detected"] * 1000)
    zone_id = str(int(hashlib.sha1(plan["zone"].encode()).hexdigest()[:15], 16))
    tags = {"service": plan["service"], "selfheal_scenario": plan["scenario"]}
    return {
        "problemId": "-%019d_%dV2" % (4000000000000000000 + dyn["counter"] * 7919, detected_ms),
        "displayId": "P-%d" % dyn["next_display"], "title": title, "impactLevel": impact, "severityLevel": severity,
        "status": "CLOSED",
        "affectedEntities": [dynatrace.stub(e) for e in entities], "impactedEntities": [dynatrace.stub(e) for e in entities],
        "rootCauseEntity": dynatrace.stub(root),
        "managementZones": [{"id": zone_id, "name": plan["zone"]}],
        "entityTags": [{"context": "CONTEXTLESS", "key": k, "value": v, "stringRepresentation": "%s:%s" % (k, v)}
                       for k, v in sorted(tags.items())],
        "problemFilters": [{"id": "ca786d1f-0000-4000-8000-000000000001", "name": "Self-healing"}],
        "evidenceDetails": {"totalCount": 1, "details": [
            {"evidenceType": "EVENT", "displayName": title, "entity": dynatrace.stub(root), "groupingEntity": None,
             "rootCauseRelevant": True, "startTime": int(plan["onset"] * 1000)}]},
        "impactAnalysis": {"impacts": [{"impactType": e["type"], "impactedEntity": dynatrace.stub(e), "estimatedAffectedUsers": 0}
                                       for e in entities]},
        "startTime": detected_ms, "endTime": -1,
    }


def tell(rng, key, plan, xm, now):
    """What happened, as the incident role records it, plus the responses people gave."""
    book = Builder(key)
    host, scenario, mode = plan["host"], plan["scenario"], plan["mode"]
    members = (xm or {}).get("schedule", {}).get(plan["group"], []) if xm is not None else []
    members = members or [name for name in RESPONDERS if (plan["group"] == "Database") == name.startswith("dba")]
    t = plan["detected"] + rng.uniform(1.5, 12.0)  # webhook, rulebook, job start
    t = book.add("open", "remediation started", "dynatrace", "changed", t, t + rng.uniform(0.1, 0.4))
    paged = book.add("open", "page on-call", "xmatters", "changed", t, t + rng.uniform(0.3, 1.2), ", ".join(members))
    t = book.add("open", "open ticket", "jira", "changed", paged, paged + rng.uniform(0.3, 0.9), "OPS ticket")
    t = book.add("open", "open channel", "slack", "changed", t, t + rng.uniform(0.3, 0.8), "#inc-%s" % key.lower())
    responses = []
    for person in members:
        median, share = RESPONDERS.get(person, (180.0, 0.3))
        answers = mode in ("approve", "escalated") and person == members[0]
        if answers or rng.random() < share:
            responses.append({"recipient": person, "time": paged + lognormal(rng, median, 0.7),
                              "response": "Approve" if mode != "auto" else "Acknowledge"})
    responses.sort(key=lambda r: r["time"])
    approval = responses[0] if mode == "approve" and responses else None
    if approval is not None:
        t = book.add("approve", "approval", "xmatters", "ok", t, approval["time"] + rng.uniform(0.2, 1.0),
                     "Approve by %s" % approval["recipient"])
    low, high = FIX_SECONDS[scenario]
    fix_start = t + rng.uniform(0.5, 3.0)
    fix_end = fix_start + rng.uniform(low, high)
    failed = mode == "escalated"
    step = FIX_STEPS[scenario]
    message = ("restart failed: the process exited again within 5 s" if scenario == "process_crash" else "fix did not work") \
        if failed else {"process_crash": "%s restarted, healthy" % plan["process"], "full_disk": "freed 2.1 GiB on /var",
                        "bluegreen": "traffic back on blue, 0 failed requests"}[scenario]
    t = book.add("record", step, host, "failed" if failed else "changed", fix_start, fix_end, message)
    if failed:
        t = book.add("escalate", "escalated", "dynatrace", "changed", t, t + rng.uniform(0.1, 0.3))
        t = book.add("escalate", "escalate page", "xmatters", "changed", t, t + rng.uniform(0.3, 1.0))
        t = book.add("escalate", "escalated", "jira", "changed", t, t + rng.uniform(0.2, 0.6))
        t = book.add("escalate", "escalated", "slack", "changed", t, t + rng.uniform(0.2, 0.6))
        human = responses[0]["time"] if responses else t + lognormal(rng, 600.0, 0.5)
        # A person fixes it; Dynatrace closes the problem and the rulebook's resolve_incident playbook resolves the rest.
        t = max(human, t) + lognormal(rng, 2400.0, 0.6) + rng.uniform(2.0, 10.0)
        resolution = "ok"
        if t > now:  # still being fixed by a person
            return {"records": book.records, "responses": [r for r in responses if r["time"] <= now], "paged": paged,
                    "resolved": None, "members": members, "failed": failed, "message": message}
    else:
        resolution = "changed"
    resolved = book.add("resolve", "resolved", "dynatrace", resolution, t, t + rng.uniform(0.2, 0.5), "closed")
    t = book.add("resolve", "resolve page", "xmatters", "changed", resolved, resolved + rng.uniform(0.2, 0.8))
    t = book.add("resolve", "outcome", "slack", "changed", t, t + rng.uniform(0.2, 0.5))
    t = book.add("resolve", "transcript", "slack", "changed", t, t + rng.uniform(0.2, 0.6))
    t = book.add("resolve", "resolve ticket", "jira", "changed", t, t + rng.uniform(0.3, 1.0))
    book.add("resolve", "archive channel", "slack", "changed", t, t + rng.uniform(0.2, 0.4))
    return {"records": book.records, "responses": responses, "paged": paged, "resolved": resolved, "members": members,
            "failed": failed, "message": message}


def add_page(xm, key, plan, story, seed, index):
    xm["next_event_id"] += 1
    event_id = str(xm["next_event_id"])
    paged = story["paged"]
    summary = "%s on %s" % (TITLES[plan["scenario"]][0].replace("%s", plan["service"]), plan["host"])
    event = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "history/%s/%d" % (seed, index))), "eventId": event_id, "name": summary,
        "eventType": "USER", "priority": "HIGH", "incident": "INCIDENT_ID-%s" % event_id, "status": "TERMINATED" if story["resolved"] else "ACTIVE",
        "created": oncall.xm_time(paged), "created_epoch": paged,
        "terminated": oncall.xm_time(story["resolved"]) if story["resolved"] else None,
        "history": [{"status": "ACTIVE", "at": paged}] + (
            [{"status": "TERMINATED", "at": story["resolved"]}] if story["resolved"] else []),
        "floodControl": False, "otherResponseCountThreshold": 2, "otherResponseCount": len(story["responses"]),
        "responseCountsEnabled": False, "requestId": str(uuid.uuid5(uuid.NAMESPACE_URL, "history-request/%s/%d" % (seed, index))),
        "submitter": None, "plan": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "xmatters/plan")), "name": "Selfheal Sandbox"},
        "form": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "xmatters/form")), "name": "Incident Alert"},
        "properties": {"selfheal_incident_key": key, "summary": summary, "source": plan["host"]},
        "recipients": [{"id": plan["group"], "recipientType": "GROUP", "targetName": plan["group"]}],
        "responseOptions": [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "history/option/%s" % text)), "number": number,
                             "text": text, "description": text, "action": "RECORD_RESPONSE", "contribution": "NEUTRAL",
                             "allowComments": True, "order": number}
                            for number, text in enumerate(("Acknowledge", "Approve", "Reject"), start=1)],
        "annotations": [], "deliveries": [], "body": {},
    }
    answered = dict((r["recipient"], r) for r in story["responses"])
    for person in story["members"]:
        ref = xm["people"].get(person)
        person_ref = {"id": ref["id"], "targetName": person, "recipientType": "PERSON",
                      "links": {"self": "/api/xm/1/people/%s" % ref["id"]}} if ref else {"targetName": person}
        notification = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "history/n/%s/%d/%s" % (seed, index, person))),
                        "recipient": {"targetName": person + "|Work Email", "recipientType": "DEVICE", "name": "Work Email"},
                        "deliveryStatus": "DELIVERED", "created": oncall.xm_time(paged), "delivered": oncall.xm_time(paged),
                        "responded": None, "responses": {"count": 0, "total": 0, "data": []}}
        delivery = {"person": person_ref, "deliveryStatus": "DELIVERED", "created": oncall.xm_time(paged),
                    "created_epoch": paged, "notifications": {"count": 1, "total": 1, "data": [notification]},
                    "response": None}
        answer = answered.get(person)
        if answer is not None:
            received = oncall.xm_time(answer["time"])
            notification["responded"] = received
            notification["responses"] = {"count": 1, "total": 1, "data": [{
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "history/r/%s/%d/%s" % (seed, index, person))),
                "text": answer["response"], "received": received, "received_epoch": answer["time"],
                "notification": notification["id"], "comment": None}]}
            delivery["response"] = {"text": answer["response"], "notification": notification["id"], "received": received}
        event["deliveries"].append(delivery)
    xm["events"].append(event)


def add_ticket(sandbox, instance, jira_state, project_key, key, plan, problem, story):
    project = jira_state["projects"][project_key]
    jira_state["counters"][project_key] += 1
    ticket_key = "%s-%d" % (project_key, jira_state["counters"][project_key])
    title = problem["title"]
    summary = "%s: %s on %s" % (problem["displayId"], title, plan["host"])
    records = story["records"]
    created = metrics.parse_time(records[2]["time"])  # the "open ticket" record
    incident = metrics.from_timeline({"incident": key, "problem": problem["displayId"], "records": records})
    incident = metrics.apply_ticket(incident, {"key": ticket_key, "fields": {"summary": summary}})
    incident = metrics.apply_problem(incident, problem)  # what the recurrence module knows when it labels the ticket
    labels = ["selfheal", key] + [metrics.signature_label(s) for s in incident["signatures"]]
    done = story["resolved"] is not None
    last = story["resolved"] if done else metrics.parse_time(records[-1]["time"])
    issue = {"id": str(sandbox.next_id()), "key": ticket_key, "project": project_key, "created": jira.jira_time(created),
             "updated": jira.jira_time(last), "created_ts": created,
             "fields": {"summary": summary,
                        "description": "Opened by **selfheal.devops** for Dynatrace problem %s.\n\n- Problem: %s\n- Incident key: `%s`"
                                       % (problem["displayId"], title, key),
                        "issuetype": "Incident", "priority": "High", "labels": labels, "components": [],
                        "status": "Resolved" if done else "In Progress", "resolution": "Fixed" if done else None,
                        "resolutiondate": jira.jira_time(story["resolved"]) if done else None, "custom": {}},
             "comments": [], "attachments": [], "transitions": [], "api_version": "3"}
    jira_state["issues"][ticket_key] = issue
    timeline = json.dumps({"incident": key, "problem": problem["displayId"], "records": records}, indent=4, sort_keys=True) + "\n"
    jira.store_attachment(sandbox, instance, issue, key + ".json", timeline.encode(), "application/json", created=last)
    transcript = "# Slack transcript of #inc-%s\n\n- %s selfheal: :rotating_light: *%s*\n- %s selfheal: %s\n" % (
        key.lower(), stamp(created), summary, stamp(last),
        ("Escalated to a human: " if story["failed"] else ":white_check_mark: Resolved: ") + story["message"])
    jira.store_attachment(sandbox, instance, issue, key + "-slack.md", transcript.encode(), "text/markdown", created=last)


async def seed_route(request):
    sandbox = request.app[SANDBOX]
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return web.json_response({"error": "expected a JSON object"}, status=400)
    body = body if isinstance(body, dict) else {}
    try:
        count = int(body.get("count", 200))
        days = float(body.get("days", 30))
        seed = int(body.get("seed", 1))
        end = float(body["end"]) if body.get("end") is not None else None
    except (TypeError, ValueError):
        return web.json_response({"error": "count, days, seed and end must be numbers"}, status=400)
    instance = body.get("instance", "cloud")
    project = body.get("project", "OPS")
    if not 0 < count <= 100000 or not 0 < days <= 3650:
        return web.json_response({"error": "count must be 1..100000 and days 1..3650"}, status=400)
    if instance not in sandbox.state.get("jira", {}) or project not in sandbox.state["jira"][instance]["projects"]:
        return web.json_response({"error": "unknown Jira instance or project"}, status=400)
    return web.json_response(seed_history(sandbox, count, days, seed, instance, project, end), status=201)


def setup(sandbox, app):
    """Register the seed route once (jira.setup also calls this, so the route exists whenever Jira is served)."""
    if getattr(sandbox, "history_routes", False):
        return
    sandbox.history_routes = True
    app.router.add_post(PREFIX + "/seed", seed_route)
