"""The sandbox's watch page: `GET /` shows problems, pages, tickets and channels as the incident unfolds.

`GET /_sandbox/view` is the summary the page polls every second (one JSON document, also handy in tests); the
page renders it with a few lines of vanilla JavaScript that only ever set textContent (no HTML from the data).
"""

from aiohttp import web

from core import SANDBOX

PREFIX = ""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>selfheal.devops sandbox</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.3em}h2{font-size:1.05em;margin:1.2em 0 .3em}
section{border-top:1px solid #ddd;padding-top:.3em}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.15em .6em .15em 0;vertical-align:top}th{color:#666;font-weight:normal}
.s-OPEN,.s-ACTIVE,.s-Open{color:#b00}.s-CLOSED,.s-TERMINATED,.s-Resolved,.s-Done,.s-Closed,.s-finished{color:#070}
.muted{color:#888}ul{margin:.2em 0 .2em 1.2em;padding:0}
</style></head><body>
<h1>selfheal.devops SaaS sandbox <span class="muted" id="updated"></span></h1>
<section><h2>Dynatrace problems</h2><table id="problems"></table></section>
<section><h2>On-call pages (xMatters events, PagerDuty alerts)</h2><table id="pages"></table></section>
<section><h2>Jira tickets</h2><table id="tickets"></table></section>
<section><h2>Slack channels</h2><table id="channels"></table></section>
<section><h2>Keptn sequences</h2><table id="sequences"></table></section>
<script>
function cell(row, value, cls) { var td = row.insertCell(); td.textContent = value == null ? "" : String(value);
  if (cls) td.className = cls; return td; }
function list(row, items) { var td = row.insertCell(), ul = document.createElement("ul");
  (items || []).forEach(function (i) { var li = document.createElement("li"); li.textContent = i; ul.appendChild(li); });
  td.appendChild(ul); }
function fill(id, head, rows, draw) { var t = document.getElementById(id); t.textContent = "";
  var h = t.insertRow(); head.forEach(function (x) { var th = document.createElement("th"); th.textContent = x; h.appendChild(th); });
  if (!rows.length) { cell(t.insertRow(), "none yet", "muted"); }
  rows.forEach(function (r) { draw(t.insertRow(), r); }); }
function render(v) {
  fill("problems", ["problem", "title", "status", "comments"], v.problems, function (row, p) {
    cell(row, p.display_id); cell(row, p.title); cell(row, p.status, "s-" + p.status); list(row, p.comments); });
  fill("pages", ["system", "page", "status", "responses"], v.pages, function (row, p) {
    cell(row, p.system); cell(row, p.name); cell(row, p.status, "s-" + p.status); list(row, p.responses); });
  fill("tickets", ["ticket", "summary", "status", "comments", "attachments"], v.tickets, function (row, t) {
    cell(row, t.key); cell(row, t.summary); cell(row, t.status, "s-" + t.status); list(row, t.comments); list(row, t.attachments); });
  fill("channels", ["channel", "state", "members", "messages"], v.channels, function (row, c) {
    cell(row, "#" + c.name); cell(row, c.archived ? "archived" : "open"); cell(row, c.members); list(row, c.messages); });
  fill("sequences", ["sequence", "service", "state", "result"], v.sequences, function (row, s) {
    cell(row, s.name); cell(row, s.service); cell(row, s.state, "s-" + s.state); cell(row, s.result); });
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}
function poll() { fetch("/_sandbox/view").then(function (r) { return r.json(); }).then(render)
  .catch(function () {}).finally(function () { setTimeout(poll, 1000); }); }
poll();
</script></body></html>
"""


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
    return "".join(parts).strip()


def response_text(response):
    return response if isinstance(response, str) else (response or {}).get("text")


def view(state):
    """The summary of every service's state that the page shows."""
    dyn = state.get("dynatrace", {})
    problems = [{"display_id": p.get("displayId"), "title": p.get("title"), "status": p.get("status"),
                 "comments": [c.get("content", "") for c in dyn.get("comments", {}).get(pid, [])]}
                for pid, p in dyn.get("problems", {}).items()]
    pages = [{"system": "xMatters", "name": e.get("name"), "status": e.get("status"),
              "responses": ["%s: %s" % (d.get("person", {}).get("targetName"), response_text(d["response"]))
                            for d in e.get("deliveries", []) if d.get("response")]}
             for e in state.get("xmatters", {}).get("events", [])]
    for alert in state.get("pagerduty", {}).get("alerts") or []:
        pages.append({"system": "PagerDuty", "name": alert.get("dedup_key"), "status": alert.get("status"), "responses": []})
    tickets = []
    for instance in ("cloud", "dc"):
        for issue in state.get("jira", {}).get(instance, {}).get("issues", {}).values():
            tickets.append({"key": issue["key"], "summary": issue["fields"].get("summary"),
                            "status": issue["fields"].get("status"),
                            "comments": [text_of(c.get("body"))[:300] for c in issue.get("comments", [])],
                            "attachments": ["%s (%d bytes)" % (a["filename"], a["size"]) for a in issue.get("attachments", [])]})
    slack = state.get("slack", {})
    channels = []
    for cid, channel in slack.get("channels", {}).items():
        messages = []
        for message in slack.get("messages", {}).get(cid, []):
            messages.append(message.get("text", ""))
            messages.extend("    > " + r.get("text", "") for r in slack.get("threads", {}).get("%s:%s" % (cid, message["ts"]), []))
        channels.append({"name": channel["name"], "archived": channel.get("is_archived", False),
                         "members": len(channel.get("members", [])), "messages": messages})
    sequences = [{"name": s.get("name"), "service": "%s/%s/%s" % (s.get("project"), s.get("stage"), s.get("service")),
                  "state": (s.get("ended") or {}).get("state", "triggered"), "result": (s.get("ended") or {}).get("result")}
                 for s in state.get("keptn", {}).get("sequences", {}).values()]
    return {"problems": problems, "pages": pages, "tickets": tickets, "channels": channels, "sequences": sequences}


async def page(request):
    return web.Response(text=PAGE, content_type="text/html", headers={"Cache-Control": "no-store"})


async def summary(request):
    return web.json_response(view(request.app[SANDBOX].state), headers={"Cache-Control": "no-store"})


def setup(sandbox, app):
    app.router.add_get("/", page)
    app.router.add_get("/_sandbox/view", summary)
