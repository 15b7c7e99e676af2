"""Jira Cloud (REST v3 and v2), Jira Data Center (REST v2) and Jira Service Management, on loopback.

One implementation, mounted twice (credentials.py):
- PREFIX = "/jira" behaves as Jira Cloud: /rest/api/3 (rich text is ADF) and /rest/api/2 (wiki strings),
  Basic auth JIRA_USER:JIRA_TOKEN, enhanced search /search/jql (nextPageToken, no total), legacy /search -> 410.
- DC_PREFIX = "/jira-dc" behaves as Jira Data Center: /rest/api/2 only, Bearer JIRA_PAT, /search with
  startAt/maxResults/total, no /search/jql.
Both serve /rest/servicedeskapi (JSM). State: sandbox.state["jira"]["cloud"] and ["dc"] (two separate
instances, each re-seeded on reset); attachment bytes are kept beside the state (sandbox.jira_blobs) so the
state dump stays small, and are served by GET .../attachment/content/{id} and the admin API.
Every error body is a Jira ErrorCollection ({"errorMessages": [...], "errors": {...}}) except JSM's own
({"errorMessage", "i18nErrorMessage"}) and the XSRF rejection. See README.md ("Jira") for [U] choices.
"""

import base64
import calendar
import copy
import hashlib
import json
import mimetypes
import re
import time

from aiohttp import web

from sandbox import credentials
from sandbox.core import SANDBOX

PREFIX = credentials.JIRA_PREFIX
DC_PREFIX = credentials.JIRA_DC_PREFIX

INSTANCES = {
    "cloud": {"prefix": PREFIX, "versions": "2|3|latest", "deployment": "Cloud", "version": "1001.0.0-SNAPSHOT",
              "numbers": [1001, 0, 0], "build": 100285},
    "dc": {"prefix": DC_PREFIX, "versions": "2|latest", "deployment": "Server", "version": "9.12.15",
           "numbers": [9, 12, 15], "build": 9120015},
}

CATEGORIES = {
    "new": {"id": 2, "key": "new", "name": "To Do", "colorName": "blue-gray"},
    "indeterminate": {"id": 4, "key": "indeterminate", "name": "In Progress", "colorName": "yellow"},
    "done": {"id": 3, "key": "done", "name": "Done", "colorName": "green"},
}

WORKFLOW = {
    "initial": "Open",
    "statuses": [
        {"id": "1", "name": "Open", "category": "new"},
        {"id": "3", "name": "In Progress", "category": "indeterminate"},
        {"id": "5", "name": "Resolved", "category": "done"},
        {"id": "6", "name": "Closed", "category": "done"},
    ],
    "transitions": [
        {"id": "11", "name": "Start Progress", "from": ["Open"], "to": "In Progress", "screen": []},
        {"id": "21", "name": "Resolve Issue", "from": ["Open", "In Progress"], "to": "Resolved", "screen": ["resolution"]},
        {"id": "31", "name": "Close Issue", "from": ["Open", "In Progress", "Resolved"], "to": "Closed", "screen": ["resolution"]},
        {"id": "41", "name": "Reopen Issue", "from": ["Resolved", "Closed"], "to": "Open", "screen": []},
        {"id": "51", "name": "Stop Progress", "from": ["In Progress"], "to": "Open", "screen": []},
    ],
    "default_resolution": "Done",
}

PRIORITIES = [{"id": str(n + 1), "name": name} for n, name in enumerate(("Highest", "High", "Medium", "Low", "Lowest"))]
RESOLUTIONS = [{"id": "10000", "name": "Done"}, {"id": "10001", "name": "Fixed"}, {"id": "10002", "name": "Won't Do"},
               {"id": "10003", "name": "Duplicate"}, {"id": "10004", "name": "Cannot Reproduce"}]

TYPE_SCHEMA = {
    "text": ("string", "com.atlassian.jira.plugin.system.customfieldtypes:textfield"),
    "textarea": ("string", "com.atlassian.jira.plugin.system.customfieldtypes:textarea"),
    "select": ("option", "com.atlassian.jira.plugin.system.customfieldtypes:select"),
    "labels": ("array", "com.atlassian.jira.plugin.system.customfieldtypes:labels"),
    "number": ("number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    "request_type": ("sd-customerrequesttype", "com.atlassian.servicedesk:vp-origin"),
}
CUSTOM_FIELDS = [
    {"id": "customfield_10010", "name": "Request Type", "type": "request_type", "readonly": True},
    {"id": "customfield_10050", "name": "Incident key", "type": "text"},
    {"id": "customfield_10060", "name": "Severity", "type": "select",
     "options": [{"id": "10200", "value": "Critical"}, {"id": "10201", "value": "Major"}, {"id": "10202", "value": "Minor"}]},
    {"id": "customfield_10070", "name": "Root cause", "type": "textarea"},
    {"id": "customfield_10080", "name": "Affected hosts", "type": "labels"},
    {"id": "customfield_10090", "name": "Impacted users", "type": "number"},
]
SYSTEM_FIELDS = ["summary", "description", "issuetype", "project", "status", "priority", "labels", "components",
                 "resolution", "resolutiondate", "created", "updated", "reporter", "creator", "assignee",
                 "attachment", "comment", "issuelinks"]
SETTABLE = {"summary", "description", "priority", "labels", "components"}

UNBOUNDED = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
NOT_ON_SCREEN = "Field '%s' cannot be set. It is not on the appropriate screen, or unknown."
ADF_REQUIRED = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"


# Issue link types: Jira's defaults plus JSM's Problem/Incident (a problem "causes" its incidents).
LINK_TYPES = [
    {"id": "10000", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
    {"id": "10001", "name": "Cloners", "inward": "is cloned by", "outward": "clones"},
    {"id": "10002", "name": "Duplicate", "inward": "is duplicated by", "outward": "duplicates"},
    {"id": "10003", "name": "Relates", "inward": "relates to", "outward": "relates to"},
    {"id": "10004", "name": "Problem/Incident", "inward": "is caused by", "outward": "causes"},
]


def seed(sandbox):
    sandbox.jira_blobs = {}
    # (instance, attachment id) -> issue key: GET attachment/content/{id} without scanning every issue.
    sandbox.jira_attachment_index = {}
    sandbox.jira_search_cache = {}
    sandbox.state["jira"] = {name: seed_instance(name) for name in INSTANCES}


def seed_instance(name):
    projects = {
        "OPS": {"id": "10000", "key": "OPS", "name": "Operations", "projectTypeKey": "service_desk",
                "issuetypes": [{"id": "10004", "name": "Incident"}, {"id": "10002", "name": "Task"},
                               {"id": "10005", "name": "Service request"}, {"id": "10006", "name": "Problem"}],
                "components": [{"id": "10100", "name": "checkout"}, {"id": "10101", "name": "payments"},
                               {"id": "10102", "name": "database"}, {"id": "10103", "name": "infrastructure"}]},
        "WEB": {"id": "10001", "key": "WEB", "name": "Web Team", "projectTypeKey": "software",
                "issuetypes": [{"id": "10002", "name": "Task"}, {"id": "10003", "name": "Bug"}],
                "components": [{"id": "10110", "name": "frontend"}]},
    }
    return {
        "deployment": INSTANCES[name]["deployment"],
        "projects": projects,
        "counters": {key: 0 for key in projects},
        "issues": {},
        "links": {},
        "link_types": copy.deepcopy(LINK_TYPES),
        "workflow": copy.deepcopy(WORKFLOW),
        "service_desks": {"10": {"id": "10", "projectId": "10000", "projectKey": "OPS", "projectName": "Operations",
                                 "request_types": {"25": {"id": "25", "name": "Report a system problem",
                                                          "issueTypeId": "10004",
                                                          "fields": {"summary": True, "description": False, "priority": False}},
                                                   "26": {"id": "26", "name": "Get IT help", "issueTypeId": "10005",
                                                          "fields": {"summary": True, "description": False}}}}},
        "config": {"max_files_per_request": 60, "max_attachment_bytes": 10 * 1024 * 1024, "comment_limit": 5000,
                   "max_results": 100},
    }


# --- helpers -------------------------------------------------------------------------------------

def error(status, messages=(), errors=None, headers=None):
    body = {"errorMessages": list(messages), "errors": errors or {}}
    return web.json_response(body, status=status, headers=headers)


def jsm_error(status, message):
    return web.json_response({"errorMessage": message, "i18nErrorMessage": {"i18nKey": "sd.sandbox.error",
                                                                            "parameters": []}}, status=status)


def jira_time(seconds=None):
    seconds = time.time() if seconds is None else seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03d+0000" % int((seconds % 1) * 1000)


def jsm_date(seconds):
    return {"epochMillis": int(seconds * 1000), "friendly": time.strftime("%d/%b/%y %I:%M %p", time.gmtime(seconds)),
            "iso8601": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(seconds)), "jira": jira_time(seconds)}


class Ctx(object):
    """What a handler needs: the instance state, the API version of the path and URL builders."""

    def __init__(self, request, name):
        self.request = request
        self.name = name
        self.cfg = INSTANCES[name]
        self.sandbox = request.app[SANDBOX]
        self.jira = self.sandbox.state["jira"][name]
        raw = request.match_info.get("version", "2")
        self.version = "2" if raw == "latest" else raw
        self.site = "%s://%s%s" % (request.scheme, request.host, self.cfg["prefix"])
        self.api = "%s/rest/api/%s" % (self.site, raw)

    @property
    def adf(self):
        return self.version == "3"

    @property
    def cloud(self):
        return self.name == "cloud"

    def user(self):
        if self.cloud:
            return {"self": self.api + "/user?accountId=5b10ac8d82e05b22cc7d4ef5", "accountId": "5b10ac8d82e05b22cc7d4ef5",
                    "emailAddress": credentials.JIRA_USER, "displayName": "Selfheal Automation", "active": True,
                    "timeZone": "UTC", "accountType": "atlassian"}
        return {"self": self.api + "/user?username=selfheal-automation", "name": "selfheal-automation",
                "key": "JIRAUSER10100", "emailAddress": credentials.JIRA_USER, "displayName": "Selfheal Automation",
                "active": True, "timeZone": "UTC"}

    def find_issue(self, ident):
        ident = str(ident)
        issue = self.jira["issues"].get(ident.upper())
        if issue is None:
            issue = next((i for i in self.jira["issues"].values() if i["id"] == ident), None)
        return issue

    def project(self, ident):
        ident = str(ident or "")
        return self.jira["projects"].get(ident.upper()) or next(
            (p for p in self.jira["projects"].values() if p["id"] == ident), None)

    def status(self, name):
        return next((s for s in self.jira["workflow"]["statuses"] if s["name"].lower() == str(name).lower()), None)


def bind(handler, name):
    async def bound(request):
        return await handler(Ctx(request, name), request)
    return bound


async def read_json(request):
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8") or "null"), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, error(400, ["Unexpected character in the request body: %s" % str(exc)[:120]])


NO_ISSUE = "Issue does not exist or you do not have permission to see it."


# --- authentication ---------------------------------------------------------------------------------

def instance_of(path):
    for name in ("dc", "cloud"):  # "/jira-dc" before "/jira"
        prefix = INSTANCES[name]["prefix"]
        if path.startswith(prefix + "/"):
            return name
    return None


def authenticated(name, header):
    if name == "cloud":
        expected = "Basic " + base64.b64encode(("%s:%s" % (credentials.JIRA_USER, credentials.JIRA_TOKEN)).encode()).decode()
    else:
        expected = "Bearer " + credentials.JIRA_PAT
    return header == expected


@web.middleware
async def guard(request, handler):
    name = instance_of(request.path)
    if name is None or not request.path.startswith(INSTANCES[name]["prefix"] + "/rest/"):
        return await handler(request)
    if request.path.endswith("/serverInfo"):  # Jira answers serverInfo anonymously too
        return await handler(request)
    if not authenticated(name, request.headers.get("Authorization", "")):
        scheme = "Basic" if name == "cloud" else "Bearer"
        return error(401, ["You are not authenticated. Authentication required to perform this operation."],
                     headers={"WWW-Authenticate": '%s realm="protected-area"' % scheme})
    return await handler(request)


# --- rich text: ADF validation and the simulator's own renderings -------------------------------------

ADF_NODES = {"doc", "paragraph", "text", "heading", "bulletList", "orderedList", "listItem", "codeBlock", "hardBreak",
             "rule", "blockquote", "panel", "mention", "emoji", "inlineCard", "blockCard", "mediaSingle", "media",
             "mediaGroup", "table", "tableRow", "tableHeader", "tableCell", "expand", "nestedExpand", "status", "date"}
ADF_MARKS = {"strong", "em", "code", "link", "strike", "underline", "textColor", "subsup", "backgroundColor"}


def adf_problem(node, top=True):
    """None when node is a valid ADF document (the subset the simulator checks), else what is wrong."""
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return "node is not an object with a type"
    if top and (node["type"] != "doc" or node.get("version") != 1 or not isinstance(node.get("content"), list)):
        return "top level must be {type: doc, version: 1, content: [...]}"
    if not top and node["type"] == "doc":
        return "doc nested inside a document"
    if node["type"] not in ADF_NODES:
        return "unknown node type %s" % node["type"]
    if node["type"] == "text":
        if not isinstance(node.get("text"), str) or not node["text"]:
            return "text node without text"
        for mark in node.get("marks") or []:
            if not isinstance(mark, dict) or mark.get("type") not in ADF_MARKS:
                return "unknown mark %r" % (mark,)
            if mark["type"] == "link" and not (mark.get("attrs") or {}).get("href"):
                return "link mark without href"
    if node["type"] == "heading" and (node.get("attrs") or {}).get("level") not in (1, 2, 3, 4, 5, 6):
        return "heading without a level 1-6"
    content = node.get("content", [])
    if not isinstance(content, list):
        return "content is not a list"
    for child in content:
        problem = adf_problem(child, top=False)
        if problem:
            return problem
    return None


def adf_text(node):
    """Plain text of an ADF node (used for search and the v2 rendering)."""
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "text":
        return node.get("text", "")
    if node.get("type") == "hardBreak":
        return "\n"
    return "".join(adf_text(child) for child in node.get("content") or [])


def adf_to_wiki(doc):
    """How the simulator renders a stored ADF value for REST v2 (wiki markup; [U] simplified)."""
    def inline(nodes):
        out = []
        for node in nodes or []:
            if node.get("type") == "hardBreak":
                out.append("\n")
                continue
            text = adf_text(node)
            for mark in node.get("marks") or []:
                kind = mark.get("type")
                if kind == "strong":
                    text = "*%s*" % text
                elif kind == "code":
                    text = "{{%s}}" % text
                elif kind == "link":
                    text = "[%s|%s]" % (text, mark["attrs"]["href"])
            out.append(text)
        return "".join(out)

    blocks = []
    for block in doc.get("content") or []:
        kind = block.get("type")
        if kind == "heading":
            blocks.append("h%d. %s" % (block["attrs"]["level"], inline(block.get("content"))))
        elif kind in ("bulletList", "orderedList"):
            bullet = "*" if kind == "bulletList" else "#"
            blocks.append("\n".join("%s %s" % (bullet, " ".join(inline(p.get("content")) for p in item.get("content") or []))
                                    for item in block.get("content") or []))
        elif kind == "codeBlock":
            language = (block.get("attrs") or {}).get("language")
            blocks.append("{code%s}\n%s\n{code}" % (":" + language if language else "", adf_text(block)))
        else:
            blocks.append(inline(block.get("content")))
    return "\n\n".join(blocks)


def wiki_to_adf(text):
    """How the simulator renders a stored wiki string for REST v3: one paragraph per block ([U] simplified)."""
    content = []
    for block in re.split(r"\n\s*\n", text or ""):
        lines = block.split("\n")
        nodes = []
        for index, line in enumerate(lines):
            if index:
                nodes.append({"type": "hardBreak"})
            if line:
                nodes.append({"type": "text", "text": line})
        if any(n["type"] == "text" for n in nodes):
            content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


def rich_out(ctx, value):
    if value is None:
        return None
    if ctx.adf:
        return value if isinstance(value, dict) else wiki_to_adf(value)
    return adf_to_wiki(value) if isinstance(value, dict) else value


def rich_text(value):
    return adf_text(value) if isinstance(value, dict) else (value or "")


def rich_in(ctx, value):
    """(stored value, problem) for a rich-text value sent to this API version."""
    if ctx.adf:
        problem = adf_problem(value)
        return (value, None) if problem is None else (None, problem)
    if isinstance(value, str):
        return value, None
    return None, "Operation value must be a string"


# --- rendering ---------------------------------------------------------------------------------------

def status_out(ctx, name):
    status = ctx.status(name) or {"id": "0", "name": name, "category": "new"}
    return {"self": "%s/status/%s" % (ctx.api, status["id"]), "description": "", "name": status["name"], "id": status["id"],
            "statusCategory": dict(CATEGORIES[status["category"]], self="%s/statuscategory/%d" % (
                ctx.api, CATEGORIES[status["category"]]["id"]))}


def priority_out(ctx, name):
    priority = next((p for p in PRIORITIES if p["name"] == name), None)
    return None if priority is None else {"self": "%s/priority/%s" % (ctx.api, priority["id"]), "name": name,
                                          "id": priority["id"]}


def resolution_out(ctx, name):
    if not name:
        return None
    resolution = next(r for r in RESOLUTIONS if r["name"] == name)
    return dict(resolution, self="%s/resolution/%s" % (ctx.api, resolution["id"]))


def component_out(ctx, project, name):
    component = next(c for c in project["components"] if c["name"] == name)
    return {"self": "%s/component/%s" % (ctx.api, component["id"]), "id": component["id"], "name": name}


def attachment_out(ctx, item):
    return {"self": "%s/attachment/%s" % (ctx.api, item["id"]), "id": item["id"], "filename": item["filename"],
            "author": ctx.user(), "created": item["created"], "size": item["size"], "mimeType": item["mimeType"],
            "content": "%s/attachment/content/%s" % (ctx.api, item["id"])}


def comment_out(ctx, issue, comment, expand=()):
    out = {"self": "%s/issue/%s/comment/%s" % (ctx.api, issue["id"], comment["id"]), "id": comment["id"],
           "author": ctx.user(), "body": rich_out(ctx, comment["body"]), "updateAuthor": ctx.user(),
           "created": comment["created"], "updated": comment["updated"]}
    if issue["project"] in service_desk_projects(ctx):
        out["jsdPublic"] = not comment["internal"]
    if comment.get("visibility"):
        out["visibility"] = comment["visibility"]
    if "properties" in expand:
        out["properties"] = comment.get("properties") or []
    if "renderedBody" in expand:
        out["renderedBody"] = "<p>%s</p>" % rich_text(comment["body"])
    return out


def service_desk_projects(ctx):
    return {desk["projectKey"] for desk in ctx.jira["service_desks"].values()}


def custom_out(ctx, definition, value, issue):
    if definition["type"] == "request_type":
        request = issue.get("request")
        if not request:
            return None
        desk = ctx.jira["service_desks"][request["serviceDeskId"]]
        kind = desk["request_types"][request["requestTypeId"]]
        return {"_links": {"self": "%s/rest/servicedeskapi/servicedesk/%s/requesttype/%s" % (ctx.site, desk["id"], kind["id"])},
                "requestType": {"id": kind["id"], "name": kind["name"], "serviceDeskId": desk["id"]},
                "currentStatus": {"status": issue["fields"]["status"],
                                  "statusCategory": ctx.status(issue["fields"]["status"])["category"].upper()}}
    if value is None:
        return None
    if definition["type"] == "select":
        option = next(o for o in definition["options"] if o["id"] == value)
        return {"self": "%s/customFieldOption/%s" % (ctx.api, option["id"]), "value": option["value"], "id": option["id"]}
    if definition["type"] == "textarea":
        return rich_out(ctx, value)
    return copy.deepcopy(value)


def wanted_fields(values, default):
    """The field ids a request asked for (`fields` repeated and/or comma separated), or the default."""
    names = [n.strip() for value in values for n in str(value).split(",") if n.strip()]
    if not names:
        names = list(default)
    include = [n for n in names if not n.startswith("-")]
    exclude = {n[1:] for n in names if n.startswith("-")}
    everything = not include or "*all" in include or "*navigable" in include
    return everything, set(include), exclude


def issue_out(ctx, issue, fields=("*all",), expand=()):
    everything, include, exclude = wanted_fields(fields, ("*all",))
    project = ctx.jira["projects"][issue["project"]]
    stored = issue["fields"]
    comments = issue["comments"]

    def issuetype():
        kind = next(t for t in project["issuetypes"] if t["name"] == stored["issuetype"])
        return {"self": "%s/issuetype/%s" % (ctx.api, kind["id"]), "id": kind["id"], "name": kind["name"], "subtask": False}

    # Each field is rendered only when asked for: a search over thousands of issues asks for a few.
    producers = {
        "summary": lambda: stored["summary"],
        "description": lambda: rich_out(ctx, stored["description"]),
        "issuetype": issuetype,
        "project": lambda: {"self": "%s/project/%s" % (ctx.api, project["id"]), "id": project["id"], "key": project["key"],
                            "name": project["name"], "projectTypeKey": project["projectTypeKey"]},
        "status": lambda: status_out(ctx, stored["status"]),
        "priority": lambda: priority_out(ctx, stored["priority"]) if stored["priority"] else None,
        "labels": lambda: list(stored["labels"]),
        "components": lambda: [component_out(ctx, project, name) for name in stored["components"]],
        "resolution": lambda: resolution_out(ctx, stored["resolution"]),
        "resolutiondate": lambda: stored["resolutiondate"],
        "created": lambda: issue["created"], "updated": lambda: issue["updated"],
        "reporter": ctx.user, "creator": ctx.user, "assignee": lambda: None,
        "attachment": lambda: [attachment_out(ctx, item) for item in issue["attachments"]],
        "comment": lambda: {"comments": [comment_out(ctx, issue, c) for c in comments], "self": "%s/issue/%s/comment" % (
            ctx.api, issue["id"]), "maxResults": len(comments), "total": len(comments), "startAt": 0},
        "issuelinks": lambda: issue_links_out(ctx, issue),
    }
    for definition in CUSTOM_FIELDS:
        producers[definition["id"]] = (lambda d=definition: custom_out(ctx, d, stored["custom"].get(d["id"]), issue))
    chosen = dict((k, produce()) for k, produce in producers.items() if (everything or k in include) and k not in exclude)
    out = {"expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
           "id": issue["id"], "self": "%s/issue/%s" % (ctx.api, issue["id"]), "key": issue["key"]}
    if chosen or include - {"id", "key"}:
        out["fields"] = chosen
    if "names" in expand:
        out["names"] = {f["id"]: f["name"] for f in field_list(ctx) if f["id"] in chosen}
    return out


def linked_issue_out(ctx, issue):
    """An issue as it appears inside a link: id, key, self and a few fields."""
    kind = next(t for t in ctx.jira["projects"][issue["project"]]["issuetypes"] if t["name"] == issue["fields"]["issuetype"])
    return {"id": issue["id"], "key": issue["key"], "self": "%s/issue/%s" % (ctx.api, issue["id"]),
            "fields": {"summary": issue["fields"]["summary"], "status": status_out(ctx, issue["fields"]["status"]),
                       "priority": priority_out(ctx, issue["fields"]["priority"]) if issue["fields"]["priority"] else None,
                       "issuetype": {"self": "%s/issuetype/%s" % (ctx.api, kind["id"]), "id": kind["id"], "name": kind["name"],
                                     "subtask": False}}}


def link_type_out(ctx, kind):
    return dict(kind, self="%s/issueLinkType/%s" % (ctx.api, kind["id"]))


def issue_links_out(ctx, issue):
    """The issue's links as Jira shows them: on the inward issue the other one is `outwardIssue`, and the reverse
    (a link "A blocks B" is created with inwardIssue A and outwardIssue B) [U: Jira's naming is famously inverted;
    this follows the create example of the REST reference]."""
    out = []
    for link in ctx.jira["links"].values():
        if issue["key"] not in (link["inward"], link["outward"]):
            continue
        kind = next(t for t in ctx.jira["link_types"] if t["id"] == link["type"])
        item = {"id": link["id"], "self": "%s/issueLink/%s" % (ctx.api, link["id"]), "type": link_type_out(ctx, kind)}
        other_key = link["outward"] if issue["key"] == link["inward"] else link["inward"]
        other = ctx.jira["issues"].get(other_key)
        if other is None:
            continue
        item["outwardIssue" if issue["key"] == link["inward"] else "inwardIssue"] = linked_issue_out(ctx, other)
        out.append(item)
    return out


def field_list(ctx):
    system = []
    for name in SYSTEM_FIELDS:
        system.append({"id": name, "key": name, "name": name.capitalize(), "custom": False, "orderable": name in SETTABLE,
                       "navigable": True, "searchable": True, "clauseNames": [name],
                       "schema": {"type": "string", "system": name}})
    custom = []
    for definition in CUSTOM_FIELDS:
        kind, plugin = TYPE_SCHEMA[definition["type"]]
        number = int(definition["id"].split("_")[1])
        schema = {"type": kind, "custom": plugin, "customId": number}
        if definition["type"] == "labels":
            schema["items"] = "string"
        custom.append({"id": definition["id"], "key": definition["id"], "name": definition["name"], "custom": True,
                       "orderable": True, "navigable": True, "searchable": True,
                       "clauseNames": ["cf[%d]" % number, definition["name"]], "schema": schema})
    return system + custom


# --- field validation (create and edit) ----------------------------------------------------------------

def custom_definition(field_id):
    return next((d for d in CUSTOM_FIELDS if d["id"] == field_id), None)


def validate_fields(ctx, project, fields, creating):
    """(normalised values to store, errors by field) for a create or edit `fields` object."""
    values, errors = {}, {}
    for field_id, value in fields.items():
        if field_id in ("project", "issuetype") and creating:
            continue
        if field_id == "summary":
            if not isinstance(value, str) or not value.strip():
                errors["summary"] = "You must specify a summary of the issue."
            elif len(value) > 255:
                errors["summary"] = "Summary must be less than 255 characters."
            else:
                values["summary"] = value
        elif field_id == "description":
            if value is None:
                values["description"] = None
                continue
            stored, problem = rich_in(ctx, value)
            if problem:
                errors["description"] = ADF_REQUIRED if ctx.adf else problem
            else:
                values["description"] = stored
        elif field_id == "priority":
            name = priority_name(value)
            if name is None:
                errors["priority"] = "The priority selected is invalid."
            else:
                values["priority"] = name
        elif field_id == "labels":
            bad = label_problem(value)
            if bad:
                errors["labels"] = bad
            else:
                values["labels"] = list(dict.fromkeys(value))
        elif field_id == "components":
            names, bad = component_names(project, value)
            if bad:
                errors["components"] = bad
            else:
                values["components"] = names
        elif custom_definition(field_id) and not custom_definition(field_id).get("readonly"):
            stored, bad = custom_value(ctx, custom_definition(field_id), value)
            if bad:
                errors[field_id] = bad
            else:
                values.setdefault("custom", {})[field_id] = stored
        else:
            errors[field_id] = NOT_ON_SCREEN % field_id
    return values, errors


def priority_name(value):
    if not isinstance(value, dict):
        return None
    found = next((p for p in PRIORITIES if p["name"] == value.get("name") or p["id"] == str(value.get("id"))), None)
    return found["name"] if found else None


def label_problem(value):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "Labels must be an array of strings."
    for label in value:
        if not label or re.search(r"\s", label):
            return "The label '%s' contains spaces which is invalid." % label
        if len(label) > 255:
            return "The label '%s' exceeds the 255 character limit." % label[:20]
    return None


def component_names(project, value):
    if not isinstance(value, list):
        return None, "Components must be an array."
    names = []
    for item in value:
        item = item if isinstance(item, dict) else {}
        found = next((c for c in project["components"]
                      if c["name"] == item.get("name") or c["id"] == str(item.get("id"))), None)
        if found is None:
            if "name" in item:
                return None, "Component name '%s' is not valid" % item["name"]
            return None, "Component with id '%s' does not exist." % item.get("id")
        names.append(found["name"])
    return list(dict.fromkeys(names)), None


def custom_value(ctx, definition, value):
    kind = definition["type"]
    if value is None:
        return None, None
    if kind == "text":
        if not isinstance(value, str):
            return None, "Operation value must be a string"
        return (value, None) if len(value) <= 255 else (None, "The entered text is too long. It exceeds the allowed limit of 255 characters.")
    if kind == "textarea":
        stored, problem = rich_in(ctx, value)
        return (stored, None) if problem is None else (None, ADF_REQUIRED if ctx.adf else problem)
    if kind == "select":
        value = value if isinstance(value, dict) else {}
        option = next((o for o in definition["options"]
                       if o["value"] == value.get("value") or o["id"] == str(value.get("id"))), None)
        if option is None:
            return None, "Option value '%s' is not valid" % value.get("value", value.get("id"))
        return option["id"], None
    if kind == "labels":
        bad = label_problem(value)
        return (list(value), None) if not bad else (None, bad)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, "Operation value must be a number"
        return value, None
    return None, NOT_ON_SCREEN % definition["id"]


# --- metadata endpoints ---------------------------------------------------------------------------------

async def server_info(ctx, request):
    return web.json_response({"baseUrl": ctx.site, "version": ctx.cfg["version"], "versionNumbers": ctx.cfg["numbers"],
                              "deploymentType": ctx.cfg["deployment"], "buildNumber": ctx.cfg["build"],
                              "buildDate": "2026-01-01T00:00:00.000+0000", "serverTime": jira_time(),
                              "scmInfo": "sandbox", "serverTitle": "Jira (selfheal sandbox)"})


async def myself(ctx, request):
    return web.json_response(ctx.user())


async def fields_endpoint(ctx, request):
    return web.json_response(field_list(ctx))


def project_out(ctx, project):
    return {"self": "%s/project/%s" % (ctx.api, project["id"]), "id": project["id"], "key": project["key"],
            "name": project["name"], "projectTypeKey": project["projectTypeKey"],
            "issueTypes": [{"self": "%s/issuetype/%s" % (ctx.api, t["id"]), "id": t["id"], "name": t["name"],
                            "subtask": False} for t in project["issuetypes"]],
            "components": [component_out(ctx, project, c["name"]) for c in project["components"]]}


async def projects(ctx, request):
    return web.json_response([project_out(ctx, p) for p in ctx.jira["projects"].values()])


async def project(ctx, request):
    found = ctx.project(request.match_info["project"])
    if found is None:
        return error(404, ["No project could be found with key '%s'." % request.match_info["project"]])
    return web.json_response(project_out(ctx, found))


async def project_components(ctx, request):
    found = ctx.project(request.match_info["project"])
    if found is None:
        return error(404, ["No project could be found with key '%s'." % request.match_info["project"]])
    return web.json_response(project_out(ctx, found)["components"])


async def priorities(ctx, request):
    return web.json_response([priority_out(ctx, p["name"]) for p in PRIORITIES])


async def resolutions(ctx, request):
    return web.json_response([dict(r, self="%s/resolution/%s" % (ctx.api, r["id"])) for r in RESOLUTIONS])


async def statuses(ctx, request):
    return web.json_response([status_out(ctx, s["name"]) for s in ctx.jira["workflow"]["statuses"]])


async def issuetypes(ctx, request):
    seen = {}
    for item in ctx.jira["projects"].values():
        for kind in item["issuetypes"]:
            seen[kind["id"]] = {"self": "%s/issuetype/%s" % (ctx.api, kind["id"]), "id": kind["id"], "name": kind["name"],
                                "subtask": False}
    return web.json_response(list(seen.values()))


def create_meta_fields(ctx):
    metas = [{"fieldId": "summary", "key": "summary", "name": "Summary", "required": True, "schema": {"type": "string"}},
             {"fieldId": "description", "key": "description", "name": "Description", "required": False,
              "schema": {"type": "string"}},
             {"fieldId": "priority", "key": "priority", "name": "Priority", "required": False, "schema": {"type": "priority"},
              "allowedValues": [priority_out(ctx, p["name"]) for p in PRIORITIES]},
             {"fieldId": "labels", "key": "labels", "name": "Labels", "required": False,
              "schema": {"type": "array", "items": "string"}},
             {"fieldId": "components", "key": "components", "name": "Components", "required": False,
              "schema": {"type": "array", "items": "component"}}]
    for definition in CUSTOM_FIELDS:
        if definition.get("readonly"):
            continue
        meta = {"fieldId": definition["id"], "key": definition["id"], "name": definition["name"], "required": False,
                "schema": {"type": TYPE_SCHEMA[definition["type"]][0], "custom": TYPE_SCHEMA[definition["type"]][1]}}
        if definition.get("options"):
            meta["allowedValues"] = [dict(o, self="%s/customFieldOption/%s" % (ctx.api, o["id"])) for o in definition["options"]]
        metas.append(meta)
    return metas


async def create_meta(ctx, request):
    found = ctx.project(request.match_info["project"])
    if found is None:
        return error(404, ["No project could be found with key '%s'." % request.match_info["project"]])
    kind = request.match_info.get("issuetype")
    if kind is None:
        values = [{"self": "%s/issuetype/%s" % (ctx.api, t["id"]), "id": t["id"], "name": t["name"], "subtask": False}
                  for t in found["issuetypes"]]
        key = "issueTypes" if ctx.cloud else "values"
    else:
        if not any(t["id"] == kind for t in found["issuetypes"]):
            return error(404, ["Issue type with id '%s' does not exist in project %s." % (kind, found["key"])])
        values = create_meta_fields(ctx)
        key = "fields" if ctx.cloud else "values"
    return web.json_response({"maxResults": 50, "startAt": 0, "total": len(values), "isLast": True, key: values})


# --- issues --------------------------------------------------------------------------------------------------

def new_issue(ctx, project, issuetype, values, request=None):
    ctx.jira["counters"][project["key"]] += 1
    key = "%s-%d" % (project["key"], ctx.jira["counters"][project["key"]])
    stamp = time.time()
    now = jira_time(stamp)
    issue = {"id": str(ctx.sandbox.next_id()), "key": key, "project": project["key"], "created": now, "updated": now,
             "created_ts": stamp,
             "fields": {"summary": values["summary"], "description": values.get("description"),
                        "issuetype": issuetype["name"], "priority": values.get("priority", "Medium"),
                        "labels": values.get("labels", []), "components": values.get("components", []),
                        "status": ctx.jira["workflow"]["initial"], "resolution": None, "resolutiondate": None,
                        "custom": values.get("custom", {})},
             "comments": [], "attachments": [], "transitions": [], "api_version": ctx.version}
    if request:
        issue["request"] = request
    ctx.jira["issues"][key] = issue
    return issue


async def create_issue(ctx, request):
    body, bad = await read_json(request)
    if bad:
        return bad
    fields = (body or {}).get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        return error(400, ["The request body must contain a 'fields' object."])
    errors = {}
    project = None
    if not isinstance(fields.get("project"), dict):
        errors["project"] = "project is required"
    else:
        ref = fields["project"]
        project = ctx.project(ref.get("key") or ref.get("id"))
        if project is None:
            errors["project"] = "Specify a valid project ID or key"
    issuetype = None
    if not isinstance(fields.get("issuetype"), dict):
        errors["issuetype"] = "issue type is required"
    elif project is not None:
        ref = fields["issuetype"]
        issuetype = next((t for t in project["issuetypes"]
                          if t["name"] == ref.get("name") or t["id"] == str(ref.get("id"))), None)
        if issuetype is None:
            errors["issuetype"] = "Specify a valid issue type"
    if "summary" not in fields:
        errors["summary"] = "You must specify a summary of the issue."
    values, field_errors = validate_fields(ctx, project or {"components": []}, fields, creating=True)
    errors.update(field_errors)
    if errors:
        return error(400, errors=errors)
    issue = new_issue(ctx, project, issuetype, values)
    update_errors = apply_update_ops(ctx, issue, body.get("update") or {})
    if update_errors:
        del ctx.jira["issues"][issue["key"]]
        ctx.jira["counters"][project["key"]] -= 1
        return error(400, errors=update_errors)
    return web.json_response({"id": issue["id"], "key": issue["key"], "self": "%s/issue/%s" % (ctx.api, issue["id"])},
                             status=201)


async def get_issue(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None:
        return error(404, [NO_ISSUE])
    expand = request.query.get("expand", "").split(",")
    return web.json_response(issue_out(ctx, issue, request.query.getall("fields", []), expand))


def apply_update_ops(ctx, issue, update):
    """Apply the `update` verbs the simulator supports (labels and components add/remove/set, comment add);
    returns errors (the caller restores the issue when there are any)."""
    errors = {}
    project = ctx.jira["projects"][issue["project"]]
    for field_id, operations in update.items():
        if not isinstance(operations, list):
            errors[field_id] = "Operations must be a list."
            continue
        for operation in operations:
            for verb, value in (operation if isinstance(operation, dict) else {}).items():
                if field_id == "labels" and verb in ("add", "remove", "set"):
                    values = value if verb == "set" else [value]
                    bad = label_problem(values)
                    if bad:
                        errors["labels"] = bad
                        continue
                    labels = issue["fields"]["labels"]
                    if verb == "set":
                        issue["fields"]["labels"] = list(dict.fromkeys(values))
                    elif verb == "add" and value not in labels:
                        labels.append(value)
                    elif verb == "remove" and value in labels:
                        labels.remove(value)
                elif field_id == "components" and verb in ("add", "remove", "set"):
                    names, bad = component_names(project, value if verb == "set" else [value])
                    if bad:
                        errors["components"] = bad
                        continue
                    current = issue["fields"]["components"]
                    if verb == "set":
                        issue["fields"]["components"] = names
                    elif verb == "add":
                        current.extend(n for n in names if n not in current)
                    else:
                        issue["fields"]["components"] = [n for n in current if n not in names]
                elif field_id == "comment" and verb == "add":
                    stored, problem = rich_in(ctx, (value or {}).get("body") if isinstance(value, dict) else None)
                    if problem:
                        errors["comment"] = "Comment body is not valid!"
                    else:
                        add_comment_record(ctx, issue, stored, internal=False)
                elif field_id in SETTABLE or field_id == "comment":
                    errors[field_id] = "Field '%s' does not support operation '%s'" % (field_id, verb)
                else:
                    errors[field_id] = NOT_ON_SCREEN % field_id
    return errors


async def edit_issue(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None:
        return error(404, [NO_ISSUE])
    body, bad = await read_json(request)
    if bad:
        return bad
    if not isinstance(body, dict):
        return error(400, ["The request body must be an object."])
    fields = body.get("fields") or {}
    project = ctx.jira["projects"][issue["project"]]
    values, errors = validate_fields(ctx, project, fields, creating=False)
    update = body.get("update") or {}
    overlap = set(fields) & set(update)
    for field_id in overlap:
        errors[field_id] = "Field '%s' cannot be set in both fields and update." % field_id
    if errors:
        return error(400, errors=errors)
    snapshot = copy.deepcopy(issue)
    update_errors = apply_update_ops(ctx, issue, update)
    if update_errors:
        ctx.jira["issues"][issue["key"]] = snapshot
        return error(400, errors=update_errors)
    custom = values.pop("custom", {})
    issue["fields"].update(values)
    issue["fields"]["custom"].update(custom)
    issue["updated"] = jira_time()
    return web.Response(status=204)


# --- comments ----------------------------------------------------------------------------------------------

def add_comment_record(ctx, issue, body, internal, visibility=None, properties=None):
    now = time.time()
    comment = {"id": str(ctx.sandbox.next_id()), "body": body, "internal": bool(internal), "created": jira_time(now),
               "updated": jira_time(now), "created_ts": now}
    if visibility:
        comment["visibility"] = visibility
    if properties:
        comment["properties"] = properties
    issue["comments"].append(comment)
    issue["updated"] = jira_time(now)
    return comment


def internal_from_properties(properties):
    for item in properties or []:
        if isinstance(item, dict) and item.get("key") == "sd.public.comment":
            return bool((item.get("value") or {}).get("internal"))
    return False


async def add_comment(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None:
        return error(404, [NO_ISSUE])
    body, bad = await read_json(request)
    if bad:
        return bad
    body = body if isinstance(body, dict) else {}
    if body.get("body") in (None, "") or (isinstance(body.get("body"), str) and not body["body"].strip()):
        return error(400, errors={"comment": "Comment body can not be empty!"})
    stored, problem = rich_in(ctx, body["body"])
    if problem:
        return error(400, errors={"comment": "Comment body is not valid!"})
    if len(issue["comments"]) >= ctx.jira["config"]["comment_limit"]:
        return error(413, ["This issue has reached the limit of %d comments." % ctx.jira["config"]["comment_limit"]])
    properties = body.get("properties") if isinstance(body.get("properties"), list) else None
    comment = add_comment_record(ctx, issue, stored, internal_from_properties(properties), body.get("visibility"), properties)
    return web.json_response(comment_out(ctx, issue, comment), status=201)


async def list_comments(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None:
        return error(404, [NO_ISSUE])
    try:
        start = max(0, int(request.query.get("startAt", 0)))
        size = max(0, min(int(request.query.get("maxResults", 100)), 5000))
    except ValueError:
        return error(400, ["startAt and maxResults must be numbers."])
    comments = list(issue["comments"])
    if request.query.get("orderBy", "created").startswith("-"):
        comments.reverse()
    expand = request.query.get("expand", "").split(",")
    window = comments[start:start + size]
    return web.json_response({"startAt": start, "maxResults": size, "total": len(comments),
                              "comments": [comment_out(ctx, issue, c, expand) for c in window]})


async def get_comment(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None:
        return error(404, [NO_ISSUE])
    comment = next((c for c in issue["comments"] if c["id"] == request.match_info["comment"]), None)
    if comment is None:
        return error(404, ["Can not find a comment for the id: %s." % request.match_info["comment"]])
    return web.json_response(comment_out(ctx, issue, comment, request.query.get("expand", "").split(",")))


# --- transitions ---------------------------------------------------------------------------------------------

def transition_out(ctx, transition, available, with_fields):
    out = {"id": transition["id"], "name": transition["name"], "to": status_out(ctx, transition["to"]),
           "hasScreen": bool(transition["screen"]), "isGlobal": False, "isInitial": False, "isAvailable": available,
           "isConditional": False, "isLooped": False}
    if with_fields:
        out["fields"] = {}
        if "resolution" in transition["screen"]:
            out["fields"]["resolution"] = {
                "required": False, "schema": {"type": "resolution", "system": "resolution"}, "name": "Resolution",
                "key": "resolution", "operations": ["set"],
                "allowedValues": [dict(r, self="%s/resolution/%s" % (ctx.api, r["id"])) for r in RESOLUTIONS]}
    return out


async def list_transitions(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None:
        return error(404, [NO_ISSUE])
    current = issue["fields"]["status"]
    with_fields = "transitions.fields" in request.query.get("expand", "")
    unavailable = ctx.cloud and request.query.get("includeUnavailableTransitions", "").lower() == "true"
    wanted = request.query.get("transitionId")
    out = []
    for transition in ctx.jira["workflow"]["transitions"]:
        available = current in transition["from"]
        if (available or unavailable) and (not wanted or transition["id"] == wanted):
            out.append(transition_out(ctx, transition, available, with_fields))
    return web.json_response({"expand": "transitions", "transitions": out})


async def do_transition(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None:
        return error(404, [NO_ISSUE])
    body, bad = await read_json(request)
    if bad:
        return bad
    body = body if isinstance(body, dict) else {}
    ident = str((body.get("transition") or {}).get("id", "")) if isinstance(body.get("transition"), dict) else ""
    if not ident:
        return error(400, ["Missing 'transition' identifier"])
    current = issue["fields"]["status"]
    transition = next((t for t in ctx.jira["workflow"]["transitions"] if t["id"] == ident and current in t["from"]), None)
    if transition is None:
        return error(400, ["Transition id '%s' is not valid for this issue." % ident])
    fields = body.get("fields") or {}
    update = body.get("update") or {}
    errors = {}
    resolution = None
    for field_id, value in fields.items():
        if field_id not in transition["screen"]:
            errors[field_id] = NOT_ON_SCREEN % field_id
        elif field_id == "resolution":
            resolution = next((r["name"] for r in RESOLUTIONS if isinstance(value, dict) and (
                r["name"] == value.get("name") or r["id"] == str(value.get("id")))), None)
            if resolution is None:
                errors["resolution"] = "Could not find valid 'id' or 'name' in resolution object."
    for field_id in set(fields) & set(update):
        errors[field_id] = "Field '%s' cannot be set in both fields and update." % field_id
    comment_body = None
    for field_id, operations in update.items():
        if field_id != "comment" or not isinstance(operations, list):
            errors[field_id] = NOT_ON_SCREEN % field_id
            continue
        for operation in operations:
            body_value = ((operation or {}).get("add") or {}).get("body")
            stored, problem = rich_in(ctx, body_value)
            if problem or body_value in (None, ""):
                errors["comment"] = "Comment body is not valid!"
            else:
                comment_body = stored
    if errors:
        return error(400, errors=errors)
    target = ctx.status(transition["to"])
    issue["fields"]["status"] = target["name"]
    if target["category"] == "done":
        issue["fields"]["resolution"] = resolution or ctx.jira["workflow"]["default_resolution"]
        issue["fields"]["resolutiondate"] = jira_time()
    else:
        issue["fields"]["resolution"] = None
        issue["fields"]["resolutiondate"] = None
    if comment_body is not None:
        add_comment_record(ctx, issue, comment_body, internal=False)
    issue["transitions"].append({"id": transition["id"], "name": transition["name"], "from": current,
                                 "to": target["name"], "at": jira_time()})
    issue["updated"] = jira_time()
    return web.Response(status=204)


# --- attachments ----------------------------------------------------------------------------------------------

async def add_attachments(ctx, request):
    token = request.headers.get("X-Atlassian-Token", "")
    if token.lower() not in ("no-check", "nocheck"):
        return web.Response(status=403, text="XSRF check failed", content_type="text/plain")
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None:
        return error(404, [NO_ISSUE])
    if not request.content_type.startswith("multipart/"):
        return error(415, ["The request must be multipart/form-data with one or more 'file' parts."])
    config = ctx.jira["config"]
    received = []
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if part.name != "file":
            await part.release()
            continue
        if len(received) >= config["max_files_per_request"]:
            return error(413, ["You can attach at most %d files in one request." % config["max_files_per_request"]])
        content = bytearray()
        while True:
            chunk = await part.read_chunk(65536)
            if not chunk:
                break
            content.extend(chunk)
            if len(content) > config["max_attachment_bytes"]:
                return error(413, ["The file '%s' is too large to attach. Files must be less than %d bytes." % (
                    part.filename, config["max_attachment_bytes"])])
        mime = part.headers.get("Content-Type") or ""
        if not mime or mime == "application/octet-stream":
            mime = mimetypes.guess_type(part.filename or "")[0] or "application/octet-stream"
        received.append((part.filename or "attachment", bytes(content), mime))
    if not received:
        return error(400, ["No attachments were found in the request (expected multipart field 'file')."])
    out = []
    for filename, content, mime in received:
        item = store_attachment(ctx.sandbox, ctx.name, issue, filename, content, mime)
        out.append(attachment_out(ctx, item))
    issue["updated"] = jira_time()
    return web.json_response(out)


def store_attachment(sandbox, name, issue, filename, content, mime, created=None):
    """Keep an attachment: metadata on the issue, bytes beside the state, indexed by id (also used by history.py)."""
    item = {"id": str(sandbox.next_id()), "filename": filename, "size": len(content), "mimeType": mime,
            "sha256": hashlib.sha256(content).hexdigest(), "created": jira_time(created)}
    sandbox.jira_blobs[(name, item["id"])] = content
    sandbox.jira_attachment_index[(name, item["id"])] = issue["key"]
    issue["attachments"].append(item)
    return item


def find_attachment(ctx, ident):
    key = ctx.sandbox.jira_attachment_index.get((ctx.name, ident))
    issue = ctx.jira["issues"].get(key) if key else None
    for item in (issue or {}).get("attachments", []):
        if item["id"] == ident:
            return issue, item
    return None, None


async def get_attachment(ctx, request):
    issue, item = find_attachment(ctx, request.match_info["id"])
    if item is None:
        return error(404, ["The attachment with id '%s' does not exist" % request.match_info["id"]])
    return web.json_response(attachment_out(ctx, item))


async def attachment_content(ctx, request):
    issue, item = find_attachment(ctx, request.match_info["id"])
    if item is None:
        return error(404, ["The attachment with id '%s' does not exist" % request.match_info["id"]])
    return web.Response(body=ctx.sandbox.jira_blobs[(ctx.name, item["id"])], content_type=item["mimeType"],
                        headers={"Content-Disposition": 'attachment; filename="%s"' % item["filename"]})


# --- issue links --------------------------------------------------------------------------------------------------

def link_type(ctx, ref):
    ref = ref if isinstance(ref, dict) else {}
    return next((t for t in ctx.jira["link_types"] if (ref.get("name") and t["name"].lower() == str(ref["name"]).lower())
                 or (ref.get("id") and t["id"] == str(ref["id"]))), None)


def link_out(ctx, link):
    kind = next(t for t in ctx.jira["link_types"] if t["id"] == link["type"])
    return {"id": link["id"], "self": "%s/issueLink/%s" % (ctx.api, link["id"]), "type": link_type_out(ctx, kind),
            "inwardIssue": linked_issue_out(ctx, ctx.jira["issues"][link["inward"]]),
            "outwardIssue": linked_issue_out(ctx, ctx.jira["issues"][link["outward"]])}


async def create_link(ctx, request):
    """POST issueLink {type: {name|id}, inwardIssue: {key|id}, outwardIssue: {key|id}, comment?}: 201, no body.
    A link that already exists (same type, same two issues) is not added twice [U]; an optional comment is added to the
    outward issue [U]."""
    body, bad = await read_json(request)
    if bad:
        return bad
    body = body if isinstance(body, dict) else {}
    kind = link_type(ctx, body.get("type"))
    if kind is None:
        return error(404, ["No issue link type with name '%s' found." % ((body.get("type") or {}).get("name") if isinstance(
            body.get("type"), dict) else body.get("type"))])
    ends = []
    for side in ("inwardIssue", "outwardIssue"):
        ref = body.get(side) if isinstance(body.get(side), dict) else {}
        issue = ctx.find_issue(ref.get("key") or ref.get("id") or "")
        if issue is None:
            return error(404, [NO_ISSUE])
        ends.append(issue)
    inward, outward = ends
    if inward["key"] == outward["key"]:
        return error(400, ["You cannot link an issue to itself."])
    comment = body.get("comment")
    if comment is not None:
        stored, problem = rich_in(ctx, comment.get("body") if isinstance(comment, dict) else None)
        if problem:
            return error(400, errors={"comment": "Comment body is not valid!"})
    existing = next((link for link in ctx.jira["links"].values() if link["type"] == kind["id"]
                     and link["inward"] == inward["key"] and link["outward"] == outward["key"]), None)
    if existing is None:
        existing = {"id": str(ctx.sandbox.next_id()), "type": kind["id"], "inward": inward["key"], "outward": outward["key"]}
        ctx.jira["links"][existing["id"]] = existing
        for issue in ends:
            issue["updated"] = jira_time()
    if comment is not None:
        add_comment_record(ctx, outward, stored, internal=False)
    return web.Response(status=201, headers={"Location": "%s/issueLink/%s" % (ctx.api, existing["id"])})


async def get_link(ctx, request):
    link = ctx.jira["links"].get(request.match_info["id"])
    if link is None:
        return error(404, ["No issue link with id '%s' exists." % request.match_info["id"]])
    return web.json_response(link_out(ctx, link))


async def delete_link(ctx, request):
    link = ctx.jira["links"].pop(request.match_info["id"], None)
    if link is None:
        return error(404, ["No issue link with id '%s' exists." % request.match_info["id"]])
    return web.Response(status=204)


async def link_types(ctx, request):
    return web.json_response({"issueLinkTypes": [link_type_out(ctx, t) for t in ctx.jira["link_types"]]})


# --- JQL (the subset the collection and the SDK tests use) ----------------------------------------------------

class JqlError(Exception):
    pass


TOKEN = re.compile(r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|!~|>=|<=|=|~|>|<)|"""
                   r"""(?P<punct>[(),])|(?P<word>[^\s(),=!~<>"']+))""")
FIELD_ALIASES = {"issuekey": "key", "type": "issuetype", "component": "components", "label": "labels",
                 "resolutiondate": "resolved", "createddate": "created", "updateddate": "updated"}
DATE_FIELDS = {"created", "updated", "resolved"}
DATE_INVALID = ("Date value '%s' for field '%s' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', "
                "'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.")
PERIOD = re.compile(r"^([+-]?)\s*((?:\d+\s*[wdhm]\s*)+)$")
PERIOD_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60}
JQL_FIELDS = {"project", "key", "id", "labels", "status", "statuscategory", "resolution", "priority", "issuetype", "resolved",
              "components", "summary", "text", "created", "updated"}


def tokenize(text):
    tokens, position = [], 0
    text = text or ""
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            if text[position:].strip():
                raise JqlError("Error in the JQL Query: unexpected character '%s' at position %d." % (text[position], position))
            break
        position = match.end()
        if match.group("string") is not None:
            raw = match.group("string")[1:-1]
            tokens.append(("string", re.sub(r"\\(.)", r"\1", raw)))
        elif match.group("op"):
            tokens.append(("op", match.group("op")))
        elif match.group("punct"):
            tokens.append(("punct", match.group("punct")))
        elif match.group("word"):
            tokens.append(("word", match.group("word")))
    return tokens


class JqlParser(object):
    """JQL subset: clauses joined by AND / OR / NOT with parentheses, ORDER BY; see README.md."""

    def __init__(self, text):
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self, offset=0):
        position = self.index + offset
        return self.tokens[position] if position < len(self.tokens) else (None, None)

    def keyword(self, *words):
        kind, value = self.peek()
        return kind == "word" and value.lower() in words

    def take(self):
        token = self.peek()
        self.index += 1
        return token

    def parse(self):
        where = None
        if self.tokens and not (self.keyword("order") and self.peek(1)[1] and self.peek(1)[1].lower() == "by"):
            where = self.parse_or()
        order = []
        if self.keyword("order"):
            self.take()
            if not self.keyword("by"):
                raise JqlError("Error in the JQL Query: expecting 'by' after 'order'.")
            self.take()
            while True:
                kind, field = self.take()
                if kind not in ("word", "string"):
                    raise JqlError("Error in the JQL Query: expecting a field name after 'order by'.")
                direction = "asc"
                if self.keyword("asc", "desc"):
                    direction = self.take()[1].lower()
                order.append((FIELD_ALIASES.get(field.lower(), field.lower()), direction))
                if self.peek() == ("punct", ","):
                    self.take()
                    continue
                break
        if self.index < len(self.tokens):
            raise JqlError("Error in the JQL Query: unexpected '%s'." % self.peek()[1])
        return where, order

    def parse_or(self):
        node = self.parse_and()
        while self.keyword("or"):
            self.take()
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self):
        node = self.parse_not()
        while self.keyword("and"):
            self.take()
            node = ("and", node, self.parse_not())
        return node

    def parse_not(self):
        if self.keyword("not"):
            self.take()
            return ("not", self.parse_not())
        if self.peek() == ("punct", "("):
            self.take()
            node = self.parse_or()
            if self.take() != ("punct", ")"):
                raise JqlError("Error in the JQL Query: expecting ')'.")
            return node
        return self.parse_clause()

    def parse_clause(self):
        kind, field = self.take()
        if kind not in ("word", "string"):
            raise JqlError("Error in the JQL Query: expecting a field name but got '%s'." % field)
        field = FIELD_ALIASES.get(field.lower(), field.lower())
        if field not in JQL_FIELDS:
            raise JqlError("Field '%s' does not exist or you do not have permission to view it." % field)
        kind, op = self.peek()
        if kind == "op":
            self.take()
        elif self.keyword("in"):
            self.take()
            op = "in"
        elif self.keyword("not") and self.peek(1)[1] and self.peek(1)[1].lower() == "in":
            self.take()
            self.take()
            op = "not in"
        elif self.keyword("is"):
            self.take()
            op = "is"
            if self.keyword("not"):
                self.take()
                op = "is not"
        else:
            raise JqlError("Error in the JQL Query: expecting an operator after '%s'." % field)
        if op in ("in", "not in"):
            if self.take() != ("punct", "("):
                raise JqlError("Error in the JQL Query: expecting '(' after '%s'." % op)
            values = []
            while True:
                kind, value = self.take()
                if kind not in ("word", "string"):
                    raise JqlError("Error in the JQL Query: expecting a value in the list.")
                values.append(value)
                token = self.take()
                if token == ("punct", ")"):
                    break
                if token != ("punct", ","):
                    raise JqlError("Error in the JQL Query: expecting ',' or ')'.")
            return ("clause", field, op, values)
        kind, value = self.take()
        if kind not in ("word", "string"):
            raise JqlError("Error in the JQL Query: expecting a value after '%s %s'." % (field, op))
        if kind == "word" and self.peek() == ("punct", "("):
            raise JqlError("Error in the JQL Query: the function '%s' is not supported by the sandbox." % value)
        if op in ("is", "is not") and value.lower() not in ("empty", "null"):
            raise JqlError("Error in the JQL Query: expecting EMPTY or NULL after '%s'." % op)
        return ("clause", field, op, [value])


def jql_date(value, field, now=None):
    """Epoch seconds of a JQL date value: an absolute date (UTC, the sandbox user's time zone) or a period relative
    to now ('-30d', '4w 2d', '-2h'); JqlError with Jira's message otherwise. Functions (startOfDay()) are refused
    earlier, as the sandbox does not implement them."""
    text = str(value).strip()
    period = PERIOD.match(text)
    if period:
        seconds = sum(int(number) * PERIOD_UNITS[unit] for number, unit in re.findall(r"(\d+)\s*([wdhm])", period.group(2)))
        return (time.time() if now is None else now) + (-seconds if period.group(1) == "-" else seconds)
    for pattern in ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text, pattern)))
        except ValueError:
            continue
    raise JqlError(DATE_INVALID % (value, field))


def date_of(issue, field):
    """An issue's created / updated / resolved time in epoch seconds (None when not resolved)."""
    if field == "created":
        return issue["created_ts"]
    text = issue["updated"] if field == "updated" else issue["fields"]["resolutiondate"]
    if not text:
        return None
    return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))) + int(text[20:23]) / 1000.0


def check_values(ctx, node):
    """Jira rejects values that do not exist for fields such as project, status or key."""
    if node is None:
        return
    if node[0] in ("and", "or"):
        check_values(ctx, node[1])
        check_values(ctx, node[2])
        return
    if node[0] == "not":
        check_values(ctx, node[1])
        return
    dummy, field, op, values = node
    if op in ("is", "is not"):
        return
    for value in values:
        if field in DATE_FIELDS:
            if op in ("~", "!~"):
                raise JqlError("The operator '%s' is not supported by the '%s' field." % (op, field))
            jql_date(value, field)
        if field == "project" and ctx.project(value) is None:
            raise JqlError("The value '%s' does not exist for the field 'project'." % value)
        if field == "status" and ctx.status(value) is None:
            raise JqlError("The value '%s' does not exist for the field 'status'." % value)
        if field == "key" and op in ("=", "in") and ctx.find_issue(value) is None:
            if ctx.project(value.rsplit("-", 1)[0]) is None:
                raise JqlError("The issue key '%s' for field 'key' is invalid." % value)
            raise JqlError("An issue with key '%s' does not exist for field 'key'." % value)
        if field == "priority" and not any(p["name"].lower() == value.lower() for p in PRIORITIES):
            raise JqlError("The value '%s' does not exist for the field 'priority'." % value)


def issue_values(ctx, issue, field):
    stored = issue["fields"]
    if field == "project":
        project = ctx.jira["projects"][issue["project"]]
        return [project["key"].lower(), project["id"], project["name"].lower()]
    if field == "key":
        return [issue["key"].lower()]
    if field == "id":
        return [issue["id"]]
    if field == "labels":
        return [label.lower() for label in stored["labels"]]
    if field == "status":
        status = ctx.status(stored["status"])
        return [status["name"].lower(), status["id"]]
    if field == "statuscategory":
        category = CATEGORIES[ctx.status(stored["status"])["category"]]
        return [category["name"].lower(), category["key"], str(category["id"])]
    if field == "resolution":
        return [stored["resolution"].lower()] if stored["resolution"] else []
    if field == "priority":
        return [stored["priority"].lower()] if stored["priority"] else []
    if field == "issuetype":
        return [stored["issuetype"].lower()]
    if field == "components":
        return [name.lower() for name in stored["components"]]
    if field in ("summary", "text"):
        text = stored["summary"]
        if field == "text":
            text += " " + rich_text(stored["description"])
        return [text.lower()]
    return [issue[field]]


def matches(ctx, issue, node):
    if node is None:
        return True
    if node[0] == "and":
        return matches(ctx, issue, node[1]) and matches(ctx, issue, node[2])
    if node[0] == "or":
        return matches(ctx, issue, node[1]) or matches(ctx, issue, node[2])
    if node[0] == "not":
        return not matches(ctx, issue, node[1])
    dummy, field, op, values = node
    if field in DATE_FIELDS:
        return date_matches(issue, field, op, values)
    have = issue_values(ctx, issue, field)
    wanted = [v.lower() for v in values]
    if op in ("is", "is not"):
        return (not have) == (op == "is")
    if field == "resolution" and not have:
        have = ["unresolved"]
    if op in ("~", "!~"):
        found = any(w.strip("*") in h for h in have for w in wanted)
        return found == (op == "~")
    if op in (">", ">=", "<", "<="):
        raise JqlError("The operator '%s' is not supported by the sandbox for the '%s' field." % (op, field))
    found = any(w in have for w in wanted)
    return found if op in ("=", "in") else not found


def date_matches(issue, field, op, values):
    have = date_of(issue, field)
    if op in ("is", "is not"):
        return (have is None) == (op == "is")
    if have is None:
        return op in ("!=", "not in")
    # "=" on a date matches to the minute, as Jira compares at its resolution.
    minute = int(have // 60)
    wanted = [jql_date(value, field) for value in values]
    if op in ("=", "in"):
        return any(minute == int(w // 60) for w in wanted)
    if op in ("!=", "not in"):
        return all(minute != int(w // 60) for w in wanted)
    limit = wanted[0]
    return {">": have > limit, ">=": have >= limit, "<": have < limit, "<=": have <= limit}[op]


def run_jql(ctx, jql):
    """The issues a JQL query selects, in its order; raises JqlError. Unbounded queries are refused."""
    where, order = JqlParser(jql).parse()
    if where is None:
        raise JqlError(UNBOUNDED)
    check_values(ctx, where)
    found = [i for i in ctx.jira["issues"].values() if matches(ctx, i, where)]
    if not order:
        order = [("created", "desc")]
    for field, direction in reversed(order):
        found.sort(key=lambda issue, f=field: sort_key(ctx, issue, f), reverse=direction == "desc")
    return found


def sort_key(ctx, issue, field):
    if field in DATE_FIELDS:
        moment = date_of(issue, field)
        return (moment is None, moment or 0, int(issue["id"]))
    if field == "id":
        return int(issue["id"])
    if field == "key":
        project, number = issue["key"].rsplit("-", 1)
        return (project, int(number))
    if field == "priority":
        return next(int(p["id"]) for p in PRIORITIES if p["name"] == issue["fields"]["priority"])
    if field == "status":
        return issue["fields"]["status"]
    if field == "summary":
        return issue["fields"]["summary"].lower()
    raise JqlError("Not able to sort using field '%s'." % field)


def encode_token(jql, offset, cursor=None):
    data = {"o": offset, "q": hashlib.sha1(jql.encode()).hexdigest()[:10]}
    if cursor is not None:
        data["c"] = cursor
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode_token(token, jql, with_cursor=False):
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
        if data["q"] != hashlib.sha1(jql.encode()).hexdigest()[:10]:
            raise ValueError("token for another query")
        offset = int(data["o"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return (None, None) if with_cursor else None
    return (offset, data.get("c")) if with_cursor else offset


SEARCH_CURSORS = 32


def cursor_issues(ctx, jql, cursor):
    """The issues a paginated query found on its first page, still existing, in that order (the enhanced search's
    token is a cursor over one result set); None when the cursor is gone (then the query runs again)."""
    keys = ctx.sandbox.jira_search_cache.get((ctx.name, cursor))
    if keys is None:
        return None
    issues = ctx.jira["issues"]
    return [issues[key] for key in keys if key in issues]


def remember_cursor(ctx, found):
    cache = ctx.sandbox.jira_search_cache
    cursor = str(ctx.sandbox.next_id())
    cache[(ctx.name, cursor)] = [issue["key"] for issue in found]
    while len(cache) > SEARCH_CURSORS:
        del cache[next(iter(cache))]
    return cursor


async def search_params(request):
    """The search parameters from the query string (GET) or the JSON body (POST), as one dict of lists."""
    if request.method == "POST":
        body, bad = await read_json(request)
        if bad:
            return None, bad
        if not isinstance(body, dict):
            return None, error(400, ["The request body must be an object."])
        params = {}
        for key, value in body.items():
            params[key] = [str(v) for v in value] if isinstance(value, list) else ([] if value is None else [
                json.dumps(value) if isinstance(value, bool) else str(value)])
        return params, None
    params = {}
    for key in request.query.keys():
        params[key] = request.query.getall(key)
    return params, None


def first(params, key, default=None):
    values = params.get(key) or []
    return values[0] if values else default


async def search_jql(ctx, request):
    """Enhanced search (Cloud): nextPageToken / isLast, no total; bounded JQL only."""
    params, bad = await search_params(request)
    if bad:
        return bad
    jql = first(params, "jql", "")
    offset, cursor, found = 0, None, None
    token = first(params, "nextPageToken")
    if token:
        offset, cursor = decode_token(token, jql, with_cursor=True)
        if offset is None:
            return error(400, ["Invalid format of nextPageToken"])
        found = cursor_issues(ctx, jql, cursor) if cursor else None
    if found is None:
        try:
            found = run_jql(ctx, jql)
        except JqlError as exc:
            return error(400, [str(exc)])
    fields = params.get("fields") or ["id"]
    everything, include, dummy = wanted_fields(fields, ("id",))
    light = not everything and include <= {"id", "key"}
    try:
        size = int(first(params, "maxResults", 50))
    except ValueError:
        return error(400, ["maxResults must be a number."])
    size = max(1, min(size, 5000 if light else ctx.jira["config"]["max_results"]))
    window = found[offset:offset + size]
    expand = (first(params, "expand", "") or "").split(",")
    body = {"issues": [issue_out(ctx, i, fields, expand) for i in window]}
    if offset + size < len(found):
        if cursor is None:
            cursor = remember_cursor(ctx, found)
        body["nextPageToken"] = encode_token(jql, offset + size, cursor)
        body["isLast"] = False
    else:
        body["isLast"] = True
    return web.json_response(body)


async def search_legacy(ctx, request):
    """GET/POST /search: removed on Cloud (410), the paginated search of Data Center (startAt/total)."""
    if ctx.cloud:
        return error(410, ["The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
                           "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"])
    params, bad = await search_params(request)
    if bad:
        return bad
    jql = first(params, "jql", "")
    try:
        found = run_jql(ctx, jql) if jql.strip() else run_jql_unbounded(ctx)
    except JqlError as exc:
        return error(400, [str(exc)])
    try:
        start = max(0, int(first(params, "startAt", 0)))
        size = max(0, min(int(first(params, "maxResults", 50)), 1000))
    except ValueError:
        return error(400, ["startAt and maxResults must be numbers."])
    if first(params, "validateQuery", "strict") not in ("strict", "warn", "none", "true", "false", "True", "False"):
        return error(400, ["validateQuery must be strict, warn or none."])
    fields = params.get("fields") or ["*navigable"]
    expand = (first(params, "expand", "") or "").split(",")
    window = found[start:start + size]
    return web.json_response({"expand": "schema,names", "startAt": start, "maxResults": size, "total": len(found),
                              "issues": [issue_out(ctx, i, fields, expand) for i in window]})


def run_jql_unbounded(ctx):
    """Data Center accepts an empty JQL (every issue); Cloud's enhanced search does not."""
    return sorted(ctx.jira["issues"].values(), key=lambda i: int(i["id"]), reverse=True)


# --- Jira Service Management ------------------------------------------------------------------------------------

def customer_request_out(ctx, issue):
    request = issue["request"]
    desk = ctx.jira["service_desks"][request["serviceDeskId"]]
    created = issue["created_ts"]
    status = ctx.status(issue["fields"]["status"])
    values = [{"fieldId": "summary", "label": "What happened?", "value": issue["fields"]["summary"]}]
    if issue["fields"]["description"] is not None:
        values.append({"fieldId": "description", "label": "Details", "value": rich_text(issue["fields"]["description"])})
    return {"_expands": ["participant", "status", "sla", "requestType", "serviceDesk", "attachment", "action", "comment"],
            "issueId": issue["id"], "issueKey": issue["key"], "requestTypeId": request["requestTypeId"],
            "serviceDeskId": desk["id"], "createdDate": jsm_date(created),
            "reporter": ctx.user(), "requestFieldValues": values,
            "currentStatus": {"status": status["name"], "statusCategory": status["category"].upper(),
                              "statusDate": jsm_date(time.time())},
            "_links": {"jiraRest": "%s/rest/api/2/issue/%s" % (ctx.site, issue["id"]),
                       "web": "%s/servicedesk/customer/portal/%s/%s" % (ctx.site, desk["id"], issue["key"]),
                       "self": "%s/rest/servicedeskapi/request/%s" % (ctx.site, issue["id"]),
                       "agent": "%s/browse/%s" % (ctx.site, issue["key"])}}


async def jsm_create(ctx, request):
    body, bad = await read_json(request)
    if bad:
        return bad
    body = body if isinstance(body, dict) else {}
    desk = ctx.jira["service_desks"].get(str(body.get("serviceDeskId", "")))
    if desk is None:
        return jsm_error(404, "The service desk with ID '%s' does not exist." % body.get("serviceDeskId"))
    kind = desk["request_types"].get(str(body.get("requestTypeId", "")))
    if kind is None:
        return jsm_error(400, "The request type with ID '%s' does not exist in service desk '%s'." % (
            body.get("requestTypeId"), desk["id"]))
    values = body.get("requestFieldValues") or {}
    if not isinstance(values, dict):
        return jsm_error(400, "requestFieldValues must be an object.")
    for field_id in values:
        if field_id not in kind["fields"]:
            return jsm_error(400, "The field '%s' is not on the request type '%s' or is hidden." % (field_id, kind["name"]))
    missing = [f for f, required in kind["fields"].items() if required and not values.get(f)]
    if missing:
        return jsm_error(400, "Your request could not be created. Please check the fields have been correctly filled in. "
                              "%s is required." % ", ".join(missing))
    if values.get("description") is not None and not isinstance(values["description"], str):
        return jsm_error(400, "The description must be a string.")
    stored = {"summary": values["summary"], "description": values.get("description")}
    if values.get("priority") is not None:
        name = priority_name(values["priority"])
        if name is None:
            return jsm_error(400, "The priority selected is invalid.")
        stored["priority"] = name
    project = ctx.jira["projects"][desk["projectKey"]]
    issuetype = next(t for t in project["issuetypes"] if t["id"] == kind["issueTypeId"])
    issue = new_issue(ctx, project, issuetype, stored, request={"serviceDeskId": desk["id"], "requestTypeId": kind["id"],
                                                                "channel": body.get("channel", "api")})
    return web.json_response(customer_request_out(ctx, issue), status=201)


async def jsm_get(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None or not issue.get("request"):
        return jsm_error(404, "Request with the key or id '%s' does not exist." % request.match_info["key"])
    return web.json_response(customer_request_out(ctx, issue))


def query_boolean(query, name, default=True):
    """A boolean query parameter as Jira's REST layer (JAX-RS on Jersey) reads it: the String -> Boolean conversion is
    java.lang.Boolean.valueOf, so 'true' in any case is true and every other value ('False', 'FALSE', 'no', '0', an
    empty value) is false; an absent parameter takes the documented default (true for JSM's public / internal).
    [U] the JAX-RS conversion rule is the specification's; Atlassian does not document invalid values."""
    if name not in query:
        return default
    return query.get(name, "").lower() == "true"


def jsm_comment_out(ctx, issue, comment):
    created = comment["created_ts"]
    return {"id": comment["id"], "body": rich_text(comment["body"]), "public": not comment["internal"],
            "author": ctx.user(), "created": jsm_date(created),
            "_links": {"self": "%s/rest/servicedeskapi/request/%s/comment/%s" % (ctx.site, issue["id"], comment["id"])}}


async def jsm_comment(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None or issue["project"] not in service_desk_projects(ctx):
        return jsm_error(404, "Request with the key or id '%s' does not exist." % request.match_info["key"])
    if request.method == "GET":
        try:
            start = max(0, int(request.query.get("start", 0)))
            limit = max(1, min(int(request.query.get("limit", 50)), 100))
        except ValueError:
            return jsm_error(400, "start and limit must be numbers.")
        comments = issue["comments"]
        if not query_boolean(request.query, "public"):
            comments = [c for c in comments if c["internal"]]
        if not query_boolean(request.query, "internal"):
            comments = [c for c in comments if not c["internal"]]
        window = comments[start:start + limit]
        return web.json_response({"size": len(window), "start": start, "limit": limit,
                                  "isLastPage": start + limit >= len(comments),
                                  "values": [jsm_comment_out(ctx, issue, c) for c in window],
                                  "_links": {"base": ctx.site, "context": ""}})
    body, bad = await read_json(request)
    if bad:
        return bad
    body = body if isinstance(body, dict) else {}
    if not isinstance(body.get("body"), str) or not body["body"].strip():
        return jsm_error(400, "The comment body must not be empty.")
    public = body.get("public", True)
    comment = add_comment_record(ctx, issue, body["body"], internal=not public,
                                 properties=[{"key": "sd.public.comment", "value": {"internal": not public}}])
    return web.json_response(jsm_comment_out(ctx, issue, comment), status=201)


async def jsm_desks(ctx, request):
    values = [{"id": d["id"], "projectId": d["projectId"], "projectKey": d["projectKey"], "projectName": d["projectName"],
               "_links": {"self": "%s/rest/servicedeskapi/servicedesk/%s" % (ctx.site, d["id"])}}
              for d in ctx.jira["service_desks"].values()]
    return web.json_response({"size": len(values), "start": 0, "limit": 50, "isLastPage": True, "values": values})


async def jsm_request_types(ctx, request):
    desk = ctx.jira["service_desks"].get(request.match_info["desk"])
    if desk is None:
        return jsm_error(404, "The service desk with ID '%s' does not exist." % request.match_info["desk"])
    values = [{"id": t["id"], "name": t["name"], "serviceDeskId": desk["id"], "issueTypeId": t["issueTypeId"]}
              for t in desk["request_types"].values()]
    return web.json_response({"size": len(values), "start": 0, "limit": 50, "isLastPage": True, "values": values})


async def jsm_request_type_fields(ctx, request):
    desk = ctx.jira["service_desks"].get(request.match_info["desk"])
    kind = (desk or {}).get("request_types", {}).get(request.match_info["type"])
    if kind is None:
        return jsm_error(404, "The request type does not exist.")
    fields = []
    for field_id, required in kind["fields"].items():
        entry = {"fieldId": field_id, "name": field_id.capitalize(), "required": required, "validValues": [],
                 "jiraSchema": {"type": "priority" if field_id == "priority" else "string", "system": field_id}}
        if field_id == "priority":
            entry["validValues"] = [{"value": p["id"], "label": p["name"], "children": []} for p in PRIORITIES]
        fields.append(entry)
    return web.json_response({"requestTypeFields": fields, "canRaiseOnBehalfOf": True, "canAddRequestParticipants": True})


# --- browse page and admin ----------------------------------------------------------------------------------------

async def browse(ctx, request):
    issue = ctx.find_issue(request.match_info["key"])
    if issue is None:
        return web.Response(status=404, text="<html><body>Issue does not exist</body></html>", content_type="text/html")
    return web.Response(text="<html><head><title>[%s] %s</title></head><body><h1>%s</h1><p>%s</p></body></html>" % (
        issue["key"], issue["fields"]["summary"], issue["key"], issue["fields"]["status"]), content_type="text/html")


def admin_instance(request):
    name = request.match_info["instance"]
    if name not in INSTANCES:
        raise web.HTTPNotFound(text=json.dumps({"error": "instance must be cloud or dc"}), content_type="application/json")
    return request.app[SANDBOX], name, request.app[SANDBOX].state["jira"][name]


async def admin_config(request):
    dummy, name, jira = admin_instance(request)
    if request.method == "POST":
        for key, value in (await request.json()).items():
            if key in jira["config"]:
                jira["config"][key] = value
    return web.json_response(jira["config"])


async def admin_workflow(request):
    dummy, name, jira = admin_instance(request)
    if request.method == "POST":
        spec = await request.json()
        names = {s["name"] for s in spec.get("statuses", [])}
        if not names or spec.get("initial") not in names or any(
                t["to"] not in names or not set(t["from"]) <= names for t in spec.get("transitions", [])):
            return web.json_response({"error": "statuses, initial and transitions must refer to defined statuses"},
                                     status=400)
        for status in spec["statuses"]:
            if status.get("category") not in CATEGORIES:
                return web.json_response({"error": "status category must be new, indeterminate or done"}, status=400)
        for transition in spec["transitions"]:
            transition.setdefault("screen", [])
        spec.setdefault("default_resolution", "Done")
        jira["workflow"] = spec
    return web.json_response(jira["workflow"])


async def admin_attachment(request):
    sandbox, name, jira = admin_instance(request)
    content = sandbox.jira_blobs.get((name, request.match_info["id"]))
    if content is None:
        return web.json_response({"error": "no such attachment"}, status=404)
    return web.Response(body=content, content_type="application/octet-stream")


def setup(sandbox, app):
    sandbox.add_seeder(seed)
    app.middlewares.append(guard)
    router = app.router
    for name, cfg in INSTANCES.items():
        api = "%s/rest/api/{version:%s}" % (cfg["prefix"], cfg["versions"])
        routes = [
            ("GET", "/serverInfo", server_info), ("GET", "/myself", myself), ("GET", "/field", fields_endpoint),
            ("GET", "/project", projects), ("GET", "/project/{project}", project),
            ("GET", "/project/{project}/components", project_components), ("GET", "/priority", priorities),
            ("GET", "/resolution", resolutions), ("GET", "/status", statuses), ("GET", "/issuetype", issuetypes),
            ("GET", "/issue/createmeta/{project}/issuetypes", create_meta),
            ("GET", "/issue/createmeta/{project}/issuetypes/{issuetype}", create_meta),
            ("POST", "/issue", create_issue), ("GET", "/issue/{key}", get_issue), ("PUT", "/issue/{key}", edit_issue),
            ("GET", "/issue/{key}/comment", list_comments), ("POST", "/issue/{key}/comment", add_comment),
            ("GET", "/issue/{key}/comment/{comment}", get_comment),
            ("GET", "/issue/{key}/transitions", list_transitions), ("POST", "/issue/{key}/transitions", do_transition),
            ("POST", "/issue/{key}/attachments", add_attachments), ("GET", "/attachment/{id}", get_attachment),
            ("GET", "/attachment/content/{id}", attachment_content),
            ("GET", "/search", search_legacy), ("POST", "/search", search_legacy),
            ("POST", "/issueLink", create_link), ("GET", "/issueLink/{id}", get_link),
            ("DELETE", "/issueLink/{id}", delete_link), ("GET", "/issueLinkType", link_types),
        ]
        if name == "cloud":
            routes += [("GET", "/search/jql", search_jql), ("POST", "/search/jql", search_jql)]
        for method, path, handler in routes:
            router.add_route(method, api + path, bind(handler, name))
        desk = cfg["prefix"] + "/rest/servicedeskapi"
        router.add_post(desk + "/request", bind(jsm_create, name))
        router.add_get(desk + "/request/{key}", bind(jsm_get, name))
        router.add_route("*", desk + "/request/{key}/comment", bind(jsm_comment, name))
        router.add_get(desk + "/servicedesk", bind(jsm_desks, name))
        router.add_get(desk + "/servicedesk/{desk}/requesttype", bind(jsm_request_types, name))
        router.add_get(desk + "/servicedesk/{desk}/requesttype/{type}/field", bind(jsm_request_type_fields, name))
        router.add_get(cfg["prefix"] + "/browse/{key}", bind(browse, name))
    router.add_route("*", "/_sandbox/jira/{instance}/config", admin_config)
    router.add_route("*", "/_sandbox/jira/{instance}/workflow", admin_workflow)
    router.add_get("/_sandbox/jira/{instance}/attachments/{id}", admin_attachment)
    # The seeded incident history (history.py) writes Jira tickets first of all: serve it with Jira.
    from sandbox import history
    history.setup(sandbox, app)
