"""Keptn v1 (1.4.x, archived) control plane behind its API gateway: events, sequence state, datastore.

Mounted at PREFIX (the gateway): /api/v1 (api-service), /api/controlPlane (shipyard-controller) and
/api/mongodb-datastore (read-only through the gateway). Auth: `x-token: <credentials.KEPTN_TOKEN>`.
A triggered sequence appears after `appear_delay` seconds, runs for `finish_delay` seconds and then finishes
with `result` (pass | fail), like helm-service's rollback (rollback.started, rollback.finished); with
`manual: true` it stays started until /_sandbox/keptn/sequences/{context}/finish or abort. Sequence state is
derived from the clock on every read, so tests are deterministic. [U] choices are in README.md.
"""

import json
import re
import time
import uuid

from aiohttp import web

from sandbox import credentials
from sandbox.core import SANDBOX

PREFIX = credentials.KEPTN_PREFIX
CONTEXT_NAMESPACE = uuid.UUID("6f2b1d8e-2b0c-4bd5-9a8a-8a5c0c9f4e11")  # [U] the real derivation is not public API
SEQUENCE_TYPE = re.compile(r"^sh\.keptn\.event\.([a-z0-9-]+)\.([a-z0-9-]+)\.triggered$")
TASK_TYPE = re.compile(r"^sh\.keptn\.event\.([a-z0-9-]+)\.(started|status\.changed|finished|invalidated|triggered)$")
SPECIAL_TYPES = {"sh.keptn.log.error", "sh.keptn.events.problem", "sh.keptn.event.monitoring.configure"}
MAX_EVENT_BYTES = 64 * 1024


def seed(sandbox):
    sandbox.state["keptn"] = {
        "projects": {"sockshop": {"stages": ["dev", "staging", "production"], "services": ["carts", "orders"]}},
        "config": {"appear_delay": 0.3, "finish_delay": 0.5, "result": "pass", "manual": False},
        "sequences": {}, "events": [],
    }


def error(status, message):
    return web.json_response({"code": status, "message": message}, status=status)


@web.middleware
async def gateway(request, handler):
    if not request.path.startswith(PREFIX + "/api/"):
        return await handler(request)
    if request.headers.get("x-token") != credentials.KEPTN_TOKEN:
        return error(401, "unauthenticated or invalid credentials")
    if request.path.startswith(PREFIX + "/api/mongodb-datastore/") and request.method not in ("GET", "HEAD", "OPTIONS"):
        return web.Response(status=403, text="<html><body><h1>403 Forbidden</h1></body></html>", content_type="text/html")
    return await handler(request)


def keptn(request):
    return request.app[SANDBOX].state["keptn"]


def derive_context(value):
    """A valid UUID is kept; any other non-empty string maps deterministically to a UUID; none -> new."""
    if not value:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(CONTEXT_NAMESPACE, value))


def iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % int((seconds % 1) * 1000)


def record_event(state, event_type, context, data, source, triggered_id=None, at=None):
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": source, "type": event_type,
             "datacontenttype": "application/json", "shkeptncontext": context, "shkeptnspecversion": "0.2.4",
             "time": iso(at or time.time()), "data": data}
    if triggered_id:
        event["triggeredid"] = triggered_id
    state["events"].append(event)
    return event


def sequence_view(state, sequence, now):
    """The sequence as the shipyard-controller reports it at `now`, or None while it is not visible yet."""
    age = now - sequence["created"]
    if age < sequence["appear_delay"]:
        return None
    if sequence.get("ended"):
        status, result = sequence["ended"]["state"], sequence["ended"]["result"]
    elif not sequence["manual"] and age >= sequence["appear_delay"] + sequence["finish_delay"]:
        status, result = "finished", sequence["result"]
        finish(state, sequence, result, sequence["created"] + sequence["appear_delay"] + sequence["finish_delay"])
    else:
        status, result = "started", None
        if not sequence.get("started_event"):
            sequence["started_event"] = record_event(state, "sh.keptn.event.%s.started" % sequence["task"], sequence["context"],
                                                     dict(sequence["data_base"], status="succeeded"), "helm-service",
                                                     sequence["triggered_id"], sequence["created"] + sequence["appear_delay"])["id"]
    stage_state = {"finished": "succeeded" if result == "pass" else "failed", "aborted": "aborted"}.get(status, status)
    latest = [e for e in state["events"] if e["shkeptncontext"] == sequence["context"]][-1]
    return {"name": sequence["name"], "project": sequence["project"], "service": sequence["service"],
            "shkeptncontext": sequence["context"], "state": status, "time": iso(sequence["created"]),
            "problemTitle": "", "stages": [{
                "name": sequence["stage"], "state": stage_state, "image": "docker.io/keptnexamples/%s:0.13.1" % sequence["service"],
                "latestEvent": {"id": latest["id"], "type": latest["type"], "time": latest["time"]},
                "latestFailedEvent": None if result != "fail" else {"id": latest["id"], "type": latest["type"], "time": latest["time"]},
                "latestEvaluation": None}]}


def finish(state, sequence, result, at):
    if sequence.get("ended"):
        return
    sequence["ended"] = {"state": "finished", "result": result}
    data = dict(sequence["data_base"], status="succeeded" if result == "pass" else "errored", result=result,
                message="Finished rollback" if result == "pass" else "Rollback failed")
    if not sequence.get("started_event"):
        sequence["started_event"] = record_event(state, "sh.keptn.event.%s.started" % sequence["task"], sequence["context"],
                                                 dict(sequence["data_base"], status="succeeded"), "helm-service",
                                                 sequence["triggered_id"], at)["id"]
    record_event(state, "sh.keptn.event.%s.finished" % sequence["task"], sequence["context"], data, "helm-service",
                 sequence["triggered_id"], at)
    record_event(state, "sh.keptn.event.%s.%s.finished" % (sequence["stage"], sequence["name"]), sequence["context"],
                 dict(data, message="sequence finished"), "shipyard-controller", sequence["triggered_id"], at)


# --- api-service ------------------------------------------------------------------------------------

async def metadata(request):
    return web.json_response({"keptnversion": "1.4.5", "shipyardversion": "0.2.0", "bridgeversion": "1.4.5",
                              "namespace": "keptn", "keptnlabel": "keptn", "automaticprovisioning": False})


async def post_event(request):
    state, now = keptn(request), time.time()
    body = await request.read()
    if len(body) > MAX_EVENT_BYTES:
        return error(413, "event exceeds the maximum size of 64 KB")
    try:
        event = json.loads(body)
    except ValueError:
        return error(400, "request body is not valid JSON")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return error(400, "type is required")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    sequence_match = SEQUENCE_TYPE.match(event["type"])
    task_match = TASK_TYPE.match(event["type"])
    if not sequence_match and event["type"] not in SPECIAL_TYPES:
        if task_match and task_match.group(2) == "triggered":
            return error(400, "unknown event type action: triggered")
        if not task_match:
            return error(400, "unknown event type: %s" % event["type"])
    if not all(data.get(key) for key in ("project", "stage", "service")):
        return error(400, "mandatory field(s) 'project', 'stage' or 'service' missing")
    if sequence_match and sequence_match.group(1) != data["stage"]:
        return error(400, "stage name in event data and in event type does not match")
    project = state["projects"].get(data["project"])
    if project is None:
        return error(400, "project %s does not exist" % data["project"])
    if data["stage"] not in project["stages"] or data["service"] not in project["services"]:
        return error(400, "stage %s or service %s does not exist in project %s" % (data["stage"], data["service"], data["project"]))
    context = derive_context(event.get("shkeptncontext"))
    stored = record_event(state, event["type"], context, data, event.get("source") or "https://github.com/keptn/keptn/api")
    if sequence_match and context not in state["sequences"]:
        config = state["config"]
        name = sequence_match.group(2)
        state["sequences"][context] = {
            "context": context, "name": name, "task": "rollback" if name == "rollback" else name,
            "project": data["project"], "stage": data["stage"], "service": data["service"],
            "created": now, "appear_delay": float(config["appear_delay"]), "finish_delay": float(config["finish_delay"]),
            "manual": bool(config["manual"]), "result": config["result"], "triggered_id": stored["id"],
            "data_base": {k: data[k] for k in ("project", "stage", "service")}}
    return web.json_response({"keptnContext": context})


# --- shipyard-controller ------------------------------------------------------------------------------

async def get_sequences(request):
    state, now = keptn(request), time.time()
    project = request.match_info["project"]
    if project not in state["projects"]:
        return error(404, "project not found: %s" % project)
    contexts = [c for c in request.query.get("keptnContext", "").split(",") if c]
    states = []
    for sequence in state["sequences"].values():
        if sequence["project"] != project or (contexts and sequence["context"] not in contexts):
            continue
        if request.query.get("name") and sequence["name"] != request.query["name"]:
            continue
        view = sequence_view(state, sequence, now)
        if view is None or (request.query.get("state") and view["state"] != request.query["state"]):
            continue
        states.append(view)
    return web.json_response({"states": states, "nextPageKey": 0, "pageSize": len(states), "totalCount": len(states)})


async def control_sequence(request):
    state = keptn(request)
    sequence = state["sequences"].get(request.match_info["context"])
    if sequence is None or sequence["project"] != request.match_info["project"]:
        return error(404, "sequence not found")
    try:
        body = await request.json()
    except ValueError:
        return error(400, "invalid body")
    if body.get("state") not in ("pause", "resume", "abort"):
        return error(400, "state must be pause, resume or abort")
    if body["state"] == "abort" and not sequence.get("ended"):
        sequence["ended"] = {"state": "aborted", "result": None}
    return web.json_response({})


# --- datastore ------------------------------------------------------------------------------------------

async def datastore_events(request):
    state, query = keptn(request), request.query
    for sequence in list(state["sequences"].values()):
        sequence_view(state, sequence, time.time())  # bring clock-driven events up to date
    events = state["events"]
    for key, field in (("keptnContext", "shkeptncontext"), ("type", "type"), ("source", "source"), ("eventID", "id")):
        if query.get(key):
            events = [e for e in events if e[field] == query[key]]
    for key in ("project", "stage", "service"):
        if query.get(key):
            events = [e for e in events if e["data"].get(key) == query[key]]
    events = list(reversed(events))  # newest first
    try:
        size = min(int(query.get("pageSize", 20)), 100)
        offset = int(query.get("nextPageKey", 0))
    except ValueError:
        return error(400, "invalid pageSize or nextPageKey")
    window = events[offset:offset + size]
    more = offset + size < len(events)
    return web.json_response({"events": window, "nextPageKey": str(offset + size) if more else "0",
                              "totalCount": len(events), "pageSize": size})


# --- admin ----------------------------------------------------------------------------------------------

async def admin_config(request):
    config = keptn(request)["config"]
    if request.method == "POST":
        for key, value in (await request.json()).items():
            if key in config:
                config[key] = value
    return web.json_response(config)


async def admin_end(request):
    state = keptn(request)
    sequence = state["sequences"].get(request.match_info["context"])
    if sequence is None:
        return web.json_response({"error": "no such sequence"}, status=404)
    body = await request.json() if request.can_read_body else {}
    if request.match_info["action"] == "abort":
        sequence["ended"] = {"state": "aborted", "result": None}
    else:
        finish(state, sequence, body.get("result", "pass"), time.time())
    return web.json_response(sequence_view(state, sequence, time.time() + 3600) or {})


def setup(sandbox, app):
    sandbox.add_seeder(seed)
    sandbox.add_error_shape(PREFIX, error)  # go-swagger's {"code", "message"} for unknown paths and failures
    app.middlewares.append(gateway)
    app.router.add_get(PREFIX + "/api/v1/metadata", metadata)
    app.router.add_post(PREFIX + "/api/v1/event", post_event)
    app.router.add_get(PREFIX + "/api/controlPlane/v1/sequence/{project}", get_sequences)
    app.router.add_post(PREFIX + "/api/controlPlane/v1/sequence/{project}/{context}/control", control_sequence)
    app.router.add_route("*", PREFIX + "/api/mongodb-datastore/event", datastore_events)
    app.router.add_route("*", "/_sandbox/keptn/config", admin_config)
    app.router.add_post("/_sandbox/keptn/sequences/{context}/{action:finish|abort}", admin_end)
