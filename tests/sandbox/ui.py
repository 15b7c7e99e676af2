"""The sandbox's watch page: `GET /` shows problems, pages, tickets, channels and Keptn sequences as they change.

`GET /_sandbox/view` is the summary the page polls every second (one JSON document, also handy in tests); the
page renders it with a few lines of vanilla JavaScript that only ever set textContent, so a title such as
`<script>...` is shown, never parsed. A Content-Security-Policy allows nothing but the page's own inline script
and style (by hash) and fetches to the sandbox itself. Reading the view never changes any service's state.

Tickets come from Jira (both instances) and ServiceNow (`servicenow.watch_tickets`), chat channels from Slack and
Microsoft Teams (`msgraph.watch_channels`); a service whose file is not in this sandbox simply adds nothing.
"""

import base64
import hashlib
import importlib
import os
import re
import time

from aiohttp import web

from sandbox.core import SANDBOX

PREFIX = ""
HERE = os.path.dirname(os.path.abspath(__file__))

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.3em}h2{font-size:1.05em;margin:1.2em 0 .3em}
section{border-top:1px solid #ddd;padding-top:.3em}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.15em .6em .15em 0;vertical-align:top}th{color:#666;font-weight:normal}
.s-OPEN,.s-ACTIVE,.s-triggered,.s-Open,.s-New,.s-started{color:#b00}.s-acknowledged,.s-In-Progress,.s-On-Hold{color:#a60}
.s-CLOSED,.s-RESOLVED,.s-TERMINATED,.s-resolved,.s-Resolved,.s-Done,.s-Closed,.s-Canceled,.s-finished{color:#070}
.muted{color:#888}ul{margin:.2em 0 .2em 1.2em;padding:0}
"""

SCRIPT = """
function cell(row, value, cls) { var td = row.insertCell(); td.textContent = value == null ? "" : String(value);
  if (cls) td.className = cls; return td; }
function items(parent, values) { var ul = document.createElement("ul");
  (values || []).forEach(function (v) { var li = document.createElement("li");
    if (typeof v === "string") { li.textContent = v; } else { li.textContent = v.text; items(li, v.replies); }
    ul.appendChild(li); });
  if (ul.childNodes.length) parent.appendChild(ul); }
function list(row, values) { items(row.insertCell(), values); }
function fill(id, head, rows, draw) { var t = document.getElementById(id); t.textContent = "";
  var h = t.insertRow(); head.forEach(function (x) { var th = document.createElement("th"); th.textContent = x; h.appendChild(th); });
  if (!rows.length) { cell(t.insertRow(), "none yet", "muted"); }
  rows.forEach(function (r) { draw(t.insertRow(), r); }); }
function state(s) { return "s-" + String(s).replace(/[^A-Za-z0-9]+/g, "-"); }
function render(v) {
  fill("problems", ["problem", "title", "status", "comments"], v.problems, function (row, p) {
    cell(row, p.display_id); cell(row, p.title); cell(row, p.status, state(p.status)); list(row, p.comments); });
  fill("pages", ["system", "page", "summary", "status", "responses"], v.pages, function (row, p) {
    cell(row, p.system); cell(row, p.id); cell(row, p.summary); cell(row, p.status, state(p.status)); list(row, p.responses); });
  fill("tickets", ["system", "ticket", "summary", "status", "comments", "attachments"], v.tickets, function (row, t) {
    cell(row, t.instance); cell(row, t.key); cell(row, t.summary); cell(row, t.status, state(t.status));
    list(row, t.comments); list(row, t.attachments.map(function (a) { return a.filename + " (" + a.size + " bytes)"; })); });
  fill("channels", ["system", "channel", "state", "topic", "members", "messages (and thread replies)"], v.channels,
    function (row, c) { cell(row, c.system); cell(row, (c.system === "Slack" ? "#" : "") + c.name);
      cell(row, c.archived ? "archived" : "open"); cell(row, c.topic); cell(row, c.members); list(row, c.messages); });
  fill("sequences", ["sequence", "context", "service", "state", "result"], v.sequences, function (row, s) {
    cell(row, s.name); cell(row, s.context); cell(row, s.service); cell(row, s.state, state(s.state)); cell(row, s.result); });
  document.getElementById("slack-absent").hidden = v.slack_present;
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}
function poll() { fetch("/_sandbox/view", {cache: "no-store"}).then(function (r) { return r.json(); }).then(render)
  .catch(function () { document.getElementById("updated").textContent = "sandbox not answering"; })
  .finally(function () { setTimeout(poll, 1000); }); }
poll();
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>selfheal.devops sandbox</title>
<style>%s</style></head><body>
<h1>selfheal.devops SaaS sandbox <span class="muted" id="updated"></span></h1>
<section><h2>Dynatrace problems</h2><table id="problems"></table></section>
<section><h2>On-call pages (xMatters events, PagerDuty alerts by dedup key)</h2><table id="pages"></table></section>
<section><h2>Tickets (Jira, ServiceNow)</h2><table id="tickets"></table></section>
<section><h2>Chat channels (Slack, Teams)</h2><p class="muted" id="slack-absent" hidden>no Slack service in this sandbox</p>
<table id="channels"></table></section>
<section><h2>Keptn sequences</h2><table id="sequences"></table></section>
<script>%s</script></body></html>
""" % (STYLE, SCRIPT)


def _sha256(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; connect-src 'self'; script-src %s; style-src %s" % (
        _sha256(SCRIPT), _sha256(STYLE)),
}
VIEW_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
JIRA_INSTANCES = (("cloud", "Jira Cloud"), ("dc", "Jira Data Center"))


def sibling(name):
    """The sandbox's service module tests/sandbox/<name>.py (the one server.py loaded) when this sandbox has that file,
    else None: server.py loads only the service files that exist, and the page shows what there is."""
    if not os.path.exists(os.path.join(HERE, name + ".py")):
        return None
    return importlib.import_module("sandbox." + name)


def text_of(body):
    """Plain text of a Jira comment body (ADF document or wiki string), for the summary."""
    if isinstance(body, str):
        return body
    parts = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "text":
                parts.append(node.get("text", ""))
            for child in node.get("content") or []:
                walk(child)
            if node.get("type") in ("paragraph", "heading", "listItem", "codeBlock"):
                parts.append(" ")
    walk(body)
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def problems_of(state):
    dyn = state.get("dynatrace") or {}
    return [{"display_id": p.get("displayId"), "title": p.get("title"), "status": p.get("status"),
             "comments": [c.get("content", "") for c in dyn.get("comments", {}).get(pid, [])]}
            for pid, p in dyn.get("problems", {}).items()]


def pages_of(state):
    pages = []
    for event in (state.get("xmatters") or {}).get("events", []):
        responses = []
        for delivery in event.get("deliveries", []):
            response = delivery.get("response")
            if response:
                text = response if isinstance(response, str) else response.get("text")
                responses.append("%s: %s" % ((delivery.get("person") or {}).get("targetName"), text))
        pages.append({"system": "xMatters", "id": event.get("eventId"), "summary": event.get("name"),
                      "status": event.get("status"), "responses": responses})
    for alert in (state.get("pagerduty") or {}).get("alerts", []):
        pages.append({"system": "PagerDuty", "id": alert.get("dedup_key"), "summary": alert.get("summary"),
                      "status": alert.get("status"), "responses": []})
    return pages


def tickets_of(state):
    """Jira tickets of both instances, then ServiceNow incidents: {instance, key, summary, status, comments, attachments}."""
    tickets = []
    for instance, label in JIRA_INSTANCES:
        for issue in ((state.get("jira") or {}).get(instance) or {}).get("issues", {}).values():
            fields = issue.get("fields", {})
            tickets.append({"instance": label, "key": issue.get("key"), "summary": fields.get("summary"),
                            "status": fields.get("status"),
                            "comments": [text_of(c.get("body"))[:300] for c in issue.get("comments", [])],
                            "attachments": [{"filename": a.get("filename"), "size": a.get("size")}
                                            for a in issue.get("attachments", [])]})
    servicenow = sibling("servicenow")
    if servicenow is not None:
        tickets.extend(servicenow.watch_tickets(state))
    return tickets


def channels_of(slack):
    users = slack.get("users", {})

    def line(message):
        name = (users.get(message.get("user")) or {}).get("name") or message.get("user") or "?"
        return "%s: %s" % (name, message.get("text", ""))

    channels = []
    for cid, channel in slack.get("channels", {}).items():
        messages = [{"text": line(m), "replies": [line(r) for r in slack.get("threads", {}).get("%s:%s" % (cid, m.get("ts")), [])]}
                    for m in slack.get("messages", {}).get(cid, [])]
        channels.append({"system": "Slack", "id": cid, "name": channel.get("name"), "archived": bool(channel.get("is_archived")),
                         "topic": (channel.get("topic") or {}).get("value", ""),
                         "members": len(channel.get("members", [])), "messages": messages})
    return channels


def teams_channels_of(state):
    """Microsoft Teams channels (`Team / Channel`, the General channels left out) in the rows of channels_of."""
    msgraph = sibling("msgraph")
    if msgraph is None:
        return []
    return [dict(row, system="Teams") for row in msgraph.watch_channels(state)]


def sequences_of(state, now):
    """Keptn sequences as the shipyard-controller would report them now (derived here without side effects)."""
    sequences = []
    for sequence in (state.get("keptn") or {}).get("sequences", {}).values():
        age = now - sequence.get("created", now)
        ended = sequence.get("ended")
        if ended:
            status, result = ended.get("state"), ended.get("result")
        elif age < sequence.get("appear_delay", 0):
            status, result = "triggered", None
        elif not sequence.get("manual") and age >= sequence.get("appear_delay", 0) + sequence.get("finish_delay", 0):
            status, result = "finished", sequence.get("result")
        else:
            status, result = "started", None
        sequences.append({"name": sequence.get("name"), "context": sequence.get("context"),
                          "service": "%s/%s/%s" % (sequence.get("project"), sequence.get("stage"), sequence.get("service")),
                          "state": status, "result": result})
    return sequences


def view(state, now=None):
    """The summary of every service's state that the page shows (`slack_present` is false without slack.py)."""
    slack = state.get("slack")
    return {"problems": problems_of(state), "pages": pages_of(state), "tickets": tickets_of(state),
            "slack_present": slack is not None, "channels": channels_of(slack or {}) + teams_channels_of(state),
            "sequences": sequences_of(state, time.time() if now is None else now)}


async def page(request):
    return web.Response(text=PAGE, content_type="text/html", headers=PAGE_HEADERS)


async def summary(request):
    return web.json_response(view(request.app[SANDBOX].state), headers=VIEW_HEADERS)


def setup(sandbox, app):
    app.router.add_get("/", page)
    app.router.add_get("/_sandbox/view", summary)
