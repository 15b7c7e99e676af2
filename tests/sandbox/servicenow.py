"""ServiceNow (Table API, Attachment API, OAuth token endpoint) on loopback, as an instance at `<base>/servicenow`.

Mounted at PREFIX (credentials.SERVICENOW_PREFIX): the instance URL is base + PREFIX.
- `GET|POST /api/now[/v1|/v2]/table/{table}`, `GET|PUT|PATCH|DELETE .../table/{table}/{sys_id}` for the tables
  incident, sys_user_group, cmdb_ci (with cmdb_ci_server rows), sys_user: `sysparm_query` (encoded query:
  `=`, `!=`, `LIKE`, `NOT LIKE`, `STARTSWITH`, `ENDSWITH`, `IN`, `NOT IN`, `ISEMPTY`, `ISNOTEMPTY`, `<`, `<=`, `>`,
  `>=`; `^` AND, `^OR` OR (binding tighter than AND, as ServiceNow), `ORDERBY`/`ORDERBYDESC`, `^^` a literal `^`),
  `sysparm_fields`, `sysparm_display_value` (false / true / all), `sysparm_exclude_reference_link`,
  `sysparm_limit` (default 10000) / `sysparm_offset`, `X-Total-Count` and `Link` (first, prev, next, last).
- incident: `number` INC0010001..., `priority` from urgency + impact (the base system's priority lookup), journal
  fields `work_notes` and `comments` (a write adds an entry; read back only in the display value, newest first, as
  `<time> - <user> (Work notes)\\n<text>\\n\\n`), the data policy that resolving (state 6) or closing (7) needs
  `close_code` and `close_notes` (403 "Data Policy Exception"), `resolved_at`/`closed_at`.
- Attachment API: `GET /api/now/attachment` (metadata: file_name, size_bytes, hash = SHA-256, content_type ...),
  `POST /api/now/attachment/file?table_name=&table_sys_id=&file_name=` (raw body, Content-Type required, 201 +
  Location), `GET /api/now/attachment/{sys_id}[/file]`, `DELETE /api/now/attachment/{sys_id}`.
- Auth: Basic (credentials.SERVICENOW_USER / _PASSWORD; SERVICENOW_NOROLE_USER has no itil role: reads are filtered
  to nothing, writes 403 ACL), Bearer tokens from `POST /oauth_token.do` (grant_type client_credentials, password,
  refresh_token; a wrong client answers 401 `{"error_description": "access_denied", "error": "server_error"}`).
- Errors: `{"error": {"message", "detail"}, "status": "failure"}`; rate limit (admin `rate_limit` per `window` s
  per user): 429 + Retry-After + X-RateLimit-* headers. Faults through the core as for every service.
State: sandbox.state["servicenow"]; attachment bytes in sandbox.servicenow_blobs. Admin under /_sandbox/servicenow.
[U] marks choices the public documentation does not pin down (see tests/sandbox/README.md, "ServiceNow").
"""

import base64
import hashlib
import json
import re
import time
import urllib.parse
import uuid

from aiohttp import web

from sandbox import credentials
from sandbox.core import SANDBOX

PREFIX = credentials.SERVICENOW_PREFIX
API = PREFIX + "/api/now{version:(/v[12])?}"
DEFAULT_LIMIT = 10000

CHOICES = {
    "state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"},
    "urgency": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "impact": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "priority": {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low", "5": "5 - Planning"},
}
# The base system's priority data lookup: (urgency, impact) -> priority.
PRIORITY = {("1", "1"): "1", ("1", "2"): "2", ("2", "1"): "2", ("1", "3"): "3", ("2", "2"): "3", ("3", "1"): "3",
            ("2", "3"): "4", ("3", "2"): "4", ("3", "3"): "5"}
REFERENCES = {"assignment_group": "sys_user_group", "cmdb_ci": "cmdb_ci", "caller_id": "sys_user",
              "assigned_to": "sys_user", "opened_by": "sys_user", "resolved_by": "sys_user", "closed_by": "sys_user",
              "manager": "sys_user"}
DISPLAY_FIELD = {"incident": "number", "sys_user_group": "name", "cmdb_ci": "name", "sys_user": "name"}
JOURNAL = {"work_notes": "Work notes", "comments": "Additional comments"}
SCHEMA = {
    "incident": ["sys_id", "number", "state", "incident_state", "short_description", "description", "urgency", "impact",
                 "priority", "assignment_group", "assigned_to", "cmdb_ci", "caller_id", "category", "subcategory",
                 "contact_type", "correlation_id", "correlation_display", "close_code", "close_notes", "work_notes",
                 "comments", "opened_at", "opened_by", "resolved_at", "resolved_by", "closed_at", "closed_by",
                 "active", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count",
                 "sys_class_name", "business_service", "u_selfheal_link"],
    "sys_user_group": ["sys_id", "name", "description", "active", "manager", "email", "sys_created_on", "sys_updated_on"],
    "cmdb_ci": ["sys_id", "name", "fqdn", "ip_address", "sys_class_name", "operational_status", "sys_created_on",
                "sys_updated_on"],
    "sys_user": ["sys_id", "user_name", "name", "email", "active", "roles", "sys_created_on", "sys_updated_on"],
}
READ_ONLY = {"sys_id", "number", "priority", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by",
             "sys_mod_count", "sys_class_name", "opened_at", "opened_by", "resolved_at", "resolved_by", "closed_at",
             "closed_by", "incident_state", "active"}
GROUPS = ("Service Desk", "Network", "Database", "Hardware", "Linux Operations", "Web Operations", "Selfheal Automation")
SERVERS = ("web-01", "web-02", "db-01", "db-02", "lb-01", "cache-01")


def sys_id_of(*parts):
    return hashlib.md5(":".join(parts).encode()).hexdigest()  # 32 hex, stable across resets (like real sys_ids)


def sn_time(seconds=None):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() if seconds is None else seconds))


def seed(sandbox):
    sandbox.servicenow_blobs = {}
    now = sn_time()
    users = {}
    for user_name, name, roles in ((credentials.SERVICENOW_USER, "Selfheal Integration", ["itil", "rest_api_explorer"]),
                                   (credentials.SERVICENOW_NOROLE_USER, "No Role", []),
                                   ("oncall.primary", "Oncall Primary", ["itil"]), ("abel.tuter", "Abel Tuter", ["itil"])):
        sid = sys_id_of("sys_user", user_name)
        users[sid] = {"sys_id": sid, "user_name": user_name, "name": name, "email": "%s@example.com" % user_name,
                      "active": "true", "roles": ",".join(roles), "sys_created_on": now, "sys_updated_on": now}
    groups = {}
    for name in GROUPS:
        sid = sys_id_of("sys_user_group", name)
        groups[sid] = {"sys_id": sid, "name": name, "description": "%s group" % name, "active": "true", "manager": "",
                       "email": "", "sys_created_on": now, "sys_updated_on": now}
    cis = {}
    for number, host in enumerate(SERVERS, start=1):
        sid = sys_id_of("cmdb_ci", host)
        cis[sid] = {"sys_id": sid, "name": host, "fqdn": "%s.example.com" % host, "ip_address": "10.0.0.%d" % number,
                    "sys_class_name": "cmdb_ci_linux_server", "operational_status": "1", "sys_created_on": now,
                    "sys_updated_on": now}
    sandbox.state["servicenow"] = {
        "tables": {"incident": {}, "sys_user_group": groups, "cmdb_ci": cis, "sys_user": users},
        "journal": {},          # incident sys_id -> [{element, value, sys_created_on, sys_created_by, name}]
        "attachments": {},      # sys_id -> metadata
        "tokens": {},           # access token -> {user, expires, refresh}
        "refresh_tokens": {},
        "counter": 10000,
        "config": {"token_lifetime": 1800, "rate_limit": 0, "window": 60, "oauth_client_credentials": True},
        "windows": {},
    }


def state(request):
    return request.app[SANDBOX].state["servicenow"]


def failure(status, message, detail=None, headers=None):
    return web.json_response({"error": {"message": message, "detail": detail}, "status": "failure"}, status=status,
                             headers=headers)


# --- auth ----------------------------------------------------------------------------------------------------

def user_by_name(sn, user_name):
    return next((u for u in sn["tables"]["sys_user"].values() if u["user_name"] == user_name), None)


def authenticate(request):
    """(user record, None) or (None, error response)."""
    sn = state(request)
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            name, dummy, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            name, password = "", ""
        if credentials.SERVICENOW_ACCOUNTS.get(name) == password:
            return user_by_name(sn, name), None
        return None, failure(401, "User Not Authenticated", "Required to provide Auth information")
    if header.startswith("Bearer "):
        token = sn["tokens"].get(header[7:])
        if token and token["expires"] > time.time():
            return user_by_name(sn, token["user"]), None
        return None, failure(401, "User Not Authenticated", "Required to provide Auth information")
    return None, failure(401, "User Not Authenticated", "Required to provide Auth information")


def has_itil(user):
    return "itil" in (user.get("roles") or "").split(",")


def rate_limited(request, user):
    sn = state(request)
    limit = int(sn["config"].get("rate_limit") or 0)
    if not limit:
        return None
    window = float(sn["config"].get("window") or 60)
    now = time.time()
    stamps = [t for t in sn["windows"].get(user["user_name"], []) if t > now - window]
    if len(stamps) >= limit:
        sn["windows"][user["user_name"]] = stamps
        wait = max(1, int(stamps[0] + window - now + 0.999))
        return failure(429, "Rate limit exceeded", "Too many requests for user %s: %d in %d seconds" % (
            user["user_name"], limit, int(window)), headers={"Retry-After": str(wait), "X-RateLimit-Limit": str(limit),
                                                             "X-RateLimit-Reset": str(int(now + wait))})
    stamps.append(now)
    sn["windows"][user["user_name"]] = stamps
    return None


def api(handler):
    """Authenticate, rate-limit, then call handler(request, sn, user)."""
    async def wrapped(request):
        user, problem = authenticate(request)
        if problem is not None:
            return problem
        limited = rate_limited(request, user)
        if limited is not None:
            return limited
        return await handler(request, state(request), user)
    return wrapped


async def oauth_token(request):
    """POST /oauth_token.do (form): client_credentials, password or refresh_token grant."""
    sn = state(request)
    form = await request.post()
    denied = web.json_response({"error_description": "access_denied", "error": "server_error"}, status=401)
    if form.get("client_id") != credentials.SERVICENOW_CLIENT_ID or form.get("client_secret") != credentials.SERVICENOW_CLIENT_SECRET:
        return denied
    grant = form.get("grant_type")
    if grant == "password":
        if credentials.SERVICENOW_ACCOUNTS.get(form.get("username")) != form.get("password"):
            return denied
        user = form.get("username")
    elif grant == "client_credentials":
        if not sn["config"].get("oauth_client_credentials"):
            return web.json_response({"error_description": "access_denied", "error": "server_error"}, status=401)
        user = credentials.SERVICENOW_USER  # the OAuth application's "OAuth Application User" [U]
    elif grant == "refresh_token":
        user = sn["refresh_tokens"].get(form.get("refresh_token"))
        if user is None:
            return denied
    else:
        return web.json_response({"error_description": "access_denied", "error": "server_error"}, status=401)
    token, refresh = uuid.uuid4().hex + uuid.uuid4().hex[:10], uuid.uuid4().hex + uuid.uuid4().hex[:10]
    lifetime = int(sn["config"].get("token_lifetime") or 1800)
    sn["tokens"][token] = {"user": user, "expires": time.time() + lifetime}
    sn["refresh_tokens"][refresh] = user
    return web.json_response({"access_token": token, "refresh_token": refresh, "scope": "useraccount",
                              "token_type": "Bearer", "expires_in": lifetime - 1})


# --- encoded queries -----------------------------------------------------------------------------------------

OPERATORS = ("NOT LIKE", "NOT IN", "ISNOTEMPTY", "ISEMPTY", "STARTSWITH", "ENDSWITH", "LIKE", "IN", "!=", ">=", "<=",
             "=", ">", "<")


class QueryError(ValueError):
    pass


def split_terms(query):
    """Split an encoded query on '^' ('^^' is a literal '^')."""
    terms, current, index = [], [], 0
    while index < len(query):
        char = query[index]
        if char == "^":
            if query[index + 1:index + 2] == "^":
                current.append("^")
                index += 2
                continue
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    terms.append("".join(current))
    return terms


def parse_condition(term, fields):
    match = re.match(r"^([a-z_][a-z0-9_]*)", term)
    if not match:
        raise QueryError(term)
    field, rest = match.group(1), term[match.end():]
    for operator in OPERATORS:
        if rest.startswith(operator):
            return field, operator, rest[len(operator):]
    raise QueryError(term)


def parse_query(query, fields):
    """(groups: AND of OR-lists of (field, op, value), order: [(field, descending)]); unknown fields -> QueryError."""
    groups, order = [], []
    for term in split_terms(query or ""):
        if not term:
            continue
        if term.startswith("ORDERBYDESC"):
            order.append((term[11:], True))
            continue
        if term.startswith("ORDERBY"):
            order.append((term[7:], False))
            continue
        is_or = term.startswith("OR") and groups and term[2:3].islower()
        condition = parse_condition(term[2:] if is_or else term, fields)
        if condition[0] not in fields:
            raise QueryError(condition[0])
        if is_or:
            groups[-1].append(condition)
        else:
            groups.append([condition])
    return groups, order


def matches(record, condition):
    field, operator, wanted = condition
    have = str(record.get(field) if record.get(field) is not None else "")
    low, want = have.lower(), wanted.lower()
    if operator == "=":
        return low == want
    if operator == "!=":
        return low != want
    if operator == "LIKE":
        return want in low
    if operator == "NOT LIKE":
        return want not in low
    if operator == "STARTSWITH":
        return low.startswith(want)
    if operator == "ENDSWITH":
        return low.endswith(want)
    if operator == "IN":
        return low in [w.strip() for w in want.split(",")]
    if operator == "NOT IN":
        return low not in [w.strip() for w in want.split(",")]
    if operator == "ISEMPTY":
        return have == ""
    if operator == "ISNOTEMPTY":
        return have != ""
    try:
        left, right = float(have), float(wanted)
    except ValueError:
        left, right = have, wanted
    return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[operator]


def select(records, query, fields):
    groups, order = parse_query(query, fields)
    chosen = [r for r in records if all(any(matches(r, c) for c in group) for group in groups)]
    for field, descending in reversed(order):
        if field not in fields:
            raise QueryError(field)
        chosen.sort(key=lambda r, f=field: str(r.get(f) or "").lower(), reverse=descending)
    return chosen


# --- rendering -------------------------------------------------------------------------------------------------

def journal_display(sn, record, element):
    entries = [e for e in sn["journal"].get(record["sys_id"], []) if e["element"] == element]
    return "".join("%s - %s (%s)\n%s\n\n" % (e["sys_created_on"], e["name"], JOURNAL[element], e["value"])
                   for e in reversed(entries))


def display_of(sn, table, field, raw):
    if field in REFERENCES and raw:
        target = sn["tables"].get(REFERENCES[field], {}).get(raw)
        return target.get(DISPLAY_FIELD[REFERENCES[field]]) if target else ""
    if field in CHOICES and table == "incident":
        return CHOICES[field].get(str(raw), raw)
    return raw


def render(request, sn, table, record, params):
    mode = str(params.get("sysparm_display_value") or "false").lower()
    exclude = str(params.get("sysparm_exclude_reference_link") or "false").lower() == "true"
    wanted = [f.strip() for f in (params.get("sysparm_fields") or "").split(",") if f.strip()] or SCHEMA[table]
    out = {}
    base = "%s://%s%s/api/now/table" % (request.scheme, request.host, PREFIX)
    for field in wanted:
        if field not in SCHEMA[table]:
            continue
        raw = record.get(field, "")
        raw = "" if raw is None else raw
        if field in JOURNAL:
            shown = journal_display(sn, record, field)
            raw_value = ""
        else:
            shown = display_of(sn, table, field, raw)
            raw_value = raw
        link = {"link": "%s/%s/%s" % (base, REFERENCES[field], raw_value)} if (
            field in REFERENCES and raw_value and not exclude) else {}
        if mode == "all":
            item = {"display_value": shown, "value": raw_value}
            item.update(link)
            out[field] = item
        elif mode == "true":
            out[field] = dict(link, display_value=shown) if link else shown
        else:
            out[field] = dict(link, value=raw_value) if link else raw_value
    return out


def page_links(request, offset, limit, total):
    """Link header (first, prev, next, last) and the records' slice bounds."""
    def url(at):
        query = dict(request.query)
        query.update(sysparm_offset=str(at), sysparm_limit=str(limit))
        return "<%s://%s%s?%s>" % (request.scheme, request.host, request.path, urllib.parse.urlencode(query))
    links = ['%s;rel="first"' % url(0)]
    if offset > 0:
        links.append('%s;rel="prev"' % url(max(0, offset - limit)))
    if offset + limit < total:
        links.append('%s;rel="next"' % url(offset + limit))
    last = max(0, ((total - 1) // limit) * limit) if total else 0
    links.append('%s;rel="last"' % url(last))
    return ",".join(links)


def paging(request):
    try:
        limit = int(request.query.get("sysparm_limit") or DEFAULT_LIMIT)
        offset = int(request.query.get("sysparm_offset") or 0)
    except ValueError:
        return None, None, failure(400, "Invalid sysparm_limit or sysparm_offset", "must be integers")
    if offset < 0:
        return None, None, failure(400, "offset is %d" % offset, "Negative offset is not supported")
    if limit <= 0:
        return None, None, failure(400, "limit is %d" % limit, "Limit must be a positive number")
    return limit, offset, None


def listing(request, items, total_items, limit, offset, render_one):
    page = items[offset:offset + limit]
    headers = {"X-Total-Count": str(total_items)}
    if total_items:
        headers["Link"] = page_links(request, offset, limit, total_items)
    return web.json_response({"result": [render_one(r) for r in page]}, headers=headers)


# --- Table API -------------------------------------------------------------------------------------------------

def table_of(request):
    table = request.match_info["table"]
    return table if table in SCHEMA else None


def readable(user, table):
    return table != "incident" or has_itil(user)


async def table_list(request, sn, user):
    table = table_of(request)
    if table is None:
        return failure(400, "Invalid table %s" % request.match_info["table"])
    limit, offset, problem = paging(request)
    if problem:
        return problem
    records = list(sn["tables"][table].values()) if readable(user, table) else []
    try:
        chosen = select(records, request.query.get("sysparm_query", ""), SCHEMA[table])
    except QueryError:
        chosen = []  # glide.invalid_query.returns_no_rows = true: an invalid condition selects nothing [U]
    return listing(request, chosen, len(chosen), limit, offset, lambda r: render(request, sn, table, r, request.query))


async def table_get(request, sn, user):
    table = table_of(request)
    if table is None:
        return failure(400, "Invalid table %s" % request.match_info["table"])
    record = sn["tables"][table].get(request.match_info["sys_id"])
    if record is None or not readable(user, table):
        return failure(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
    return web.json_response({"result": render(request, sn, table, record, request.query)})


async def read_json(request):
    try:
        body = json.loads((await request.read()) or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def resolve_reference(sn, field, raw):
    """A sys_id, or the sys_id of the record whose display value is raw (ServiceNow accepts both) [U]."""
    table = sn["tables"].get(REFERENCES[field], {})
    if not raw or raw in table:
        return raw
    display = DISPLAY_FIELD[REFERENCES[field]]
    found = next((sid for sid, r in table.items() if str(r.get(display, "")).lower() == str(raw).lower()), None)
    return found or raw


def apply_fields(sn, table, record, body, user):
    """Set writable fields (unknown ones ignored, as ServiceNow does); journal fields add entries."""
    journal = []
    for field, raw in body.items():
        if field not in SCHEMA[table] or field in READ_ONLY:
            continue
        if field in JOURNAL:
            if raw not in (None, ""):
                journal.append((field, str(raw)))
            continue
        text = "" if raw is None else (str(raw).lower() if isinstance(raw, bool) else str(raw))
        if field in REFERENCES:
            text = resolve_reference(sn, field, text)
        record[field] = text
    return journal


def incident_rules(record, previous_state, user):
    """Business rules and the close-info data policy; returns an error response or None."""
    record["priority"] = PRIORITY.get((record.get("urgency") or "3", record.get("impact") or "3"), "5")
    record["incident_state"] = record.get("state")
    if record.get("state") in ("6", "7"):
        missing = [label for field, label in (("close_code", "Resolution code"), ("close_notes", "Resolution notes"))
                   if not record.get(field)]
        if missing:
            return failure(403, "Operation Failed", "Data Policy Exception: \n\tThe following fields are mandatory: %s\n"
                           % ", ".join(missing))
    now = sn_time()
    if record.get("state") in ("6", "7") and previous_state not in ("6", "7"):
        record["resolved_at"], record["resolved_by"] = now, user["sys_id"]
    if record.get("state") == "7" and previous_state != "7":
        record["closed_at"], record["closed_by"] = now, user["sys_id"]
    if record.get("state") not in ("6", "7", "8"):
        record["resolved_at"] = record["resolved_by"] = record["closed_at"] = record["closed_by"] = ""
    record["active"] = "false" if record.get("state") in ("6", "7", "8") else "true"
    return None


def add_journal(sn, record, entries, user):
    for element, text in entries:
        sn["journal"].setdefault(record["sys_id"], []).append({
            "element": element, "value": text, "sys_created_on": sn_time(), "sys_created_by": user["user_name"],
            "name": user["name"]})


async def table_create(request, sn, user):
    table = table_of(request)
    if table is None:
        return failure(400, "Invalid table %s" % request.match_info["table"])
    body = await read_json(request)
    if body is None:
        return failure(400, "Exception while reading request", "The payload is not valid JSON.")
    if table != "incident" or not has_itil(user):
        return failure(403, "Operation Failed", "ACL Exception Insert Failed due to security constraints")
    sn["counter"] += 1
    now = sn_time()
    sid = uuid.uuid4().hex
    record = {field: "" for field in SCHEMA[table]}
    record.update(sys_id=sid, number="INC%07d" % sn["counter"], state="1", urgency="3", impact="3",
                  opened_at=now, opened_by=user["sys_id"], sys_created_on=now, sys_created_by=user["user_name"],
                  sys_updated_on=now, sys_updated_by=user["user_name"], sys_mod_count="0", sys_class_name="incident",
                  contact_type="")
    journal = apply_fields(sn, table, record, body, user)
    problem = incident_rules(record, None, user)
    if problem is not None:
        return problem
    sn["tables"][table][sid] = record
    add_journal(sn, record, journal, user)
    location = "%s://%s%s/api/now/table/incident/%s" % (request.scheme, request.host, PREFIX, sid)
    return web.json_response({"result": render(request, sn, table, record, request.query)}, status=201,
                             headers={"Location": location})


async def table_update(request, sn, user):
    table = table_of(request)
    if table is None:
        return failure(400, "Invalid table %s" % request.match_info["table"])
    record = sn["tables"][table].get(request.match_info["sys_id"])
    if record is None or not readable(user, table):
        return failure(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
    body = await read_json(request)
    if body is None:
        return failure(400, "Exception while reading request", "The payload is not valid JSON.")
    if table != "incident" or not has_itil(user):
        return failure(403, "Operation Failed", "ACL Exception Update Failed due to security constraints")
    candidate = dict(record)
    journal = apply_fields(sn, table, candidate, body, user)
    problem = incident_rules(candidate, record.get("state"), user)
    if problem is not None:
        return problem
    if candidate != record or journal:
        candidate.update(sys_updated_on=sn_time(), sys_updated_by=user["user_name"],
                         sys_mod_count=str(int(record.get("sys_mod_count") or 0) + 1))
        record.clear()
        record.update(candidate)
        add_journal(sn, record, journal, user)
    return web.json_response({"result": render(request, sn, table, record, request.query)})


async def table_delete(request, sn, user):
    table = table_of(request)
    if table is None:
        return failure(400, "Invalid table %s" % request.match_info["table"])
    if request.match_info["sys_id"] not in sn["tables"][table]:
        return failure(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
    if table != "incident" or "admin" not in (user.get("roles") or ""):
        return failure(403, "Operation Failed", "ACL Exception Delete Failed due to security constraints")
    del sn["tables"][table][request.match_info["sys_id"]]
    return web.Response(status=204)


# --- Attachment API --------------------------------------------------------------------------------------------

ATTACHMENT_FIELDS = ["sys_id", "file_name", "table_name", "table_sys_id", "content_type", "size_bytes", "size_compressed",
                     "compressed", "hash", "download_link", "sys_created_on", "sys_created_by", "sys_updated_on",
                     "sys_updated_by", "sys_mod_count", "state"]


def attachment_view(request, meta):
    view = dict(meta)
    view["download_link"] = "%s://%s%s/api/now/attachment/%s/file" % (request.scheme, request.host, PREFIX, meta["sys_id"])
    return view


async def attachment_list(request, sn, user):
    limit, offset, problem = paging(request)
    if problem:
        return problem
    visible = [m for m in sn["attachments"].values()
               if readable(user, m["table_name"])]
    try:
        chosen = select(visible, request.query.get("sysparm_query", ""), ATTACHMENT_FIELDS)
    except QueryError:
        chosen = []
    return listing(request, chosen, len(chosen), limit, offset, lambda m: attachment_view(request, m))


async def attachment_upload(request, sn, user):
    query = request.query
    for name in ("table_name", "table_sys_id", "file_name"):
        if not query.get(name):
            return failure(400, "Missing parameter: %s" % name, "table_name, table_sys_id and file_name are required")
    ctype = request.headers.get("Content-Type")
    if not ctype:
        return failure(400, "Content-Type header is mandatory", None)
    table = query["table_name"]
    record = sn["tables"].get(table, {}).get(query["table_sys_id"])
    if record is None or not readable(user, table):
        return failure(404, "Record doesn't exist or ACL restricts the record retrieval", None)
    if not has_itil(user):
        return failure(403, "Operation Failed", "ACL Exception Insert Failed due to security constraints")
    content = await request.read()
    sid = uuid.uuid4().hex
    now = sn_time()
    meta = {"sys_id": sid, "file_name": query["file_name"], "table_name": table, "table_sys_id": query["table_sys_id"],
            "content_type": ctype, "size_bytes": str(len(content)), "size_compressed": str(len(content)),
            "compressed": "true", "hash": hashlib.sha256(content).hexdigest(), "sys_created_on": now,
            "sys_created_by": user["user_name"], "sys_updated_on": now, "sys_updated_by": user["user_name"],
            "sys_mod_count": "0", "state": "available"}
    sn["attachments"][sid] = meta
    request.app[SANDBOX].servicenow_blobs[sid] = content
    location = "%s://%s%s/api/now/attachment/%s" % (request.scheme, request.host, PREFIX, sid)
    return web.json_response({"result": attachment_view(request, meta)}, status=201, headers={"Location": location})


async def attachment_get(request, sn, user):
    meta = sn["attachments"].get(request.match_info["sys_id"])
    if meta is None or not readable(user, meta["table_name"]):
        return failure(404, "Record doesn't exist or ACL restricts the record retrieval", None)
    if request.match_info.get("file"):
        return web.Response(body=request.app[SANDBOX].servicenow_blobs.get(meta["sys_id"], b""),
                            content_type=meta["content_type"].split(";")[0])
    return web.json_response({"result": attachment_view(request, meta)})


async def attachment_delete(request, sn, user):
    meta = sn["attachments"].pop(request.match_info["sys_id"], None)
    if meta is None:
        return failure(404, "Record doesn't exist or ACL restricts the record retrieval", None)
    request.app[SANDBOX].servicenow_blobs.pop(meta["sys_id"], None)
    return web.Response(status=204)


# --- admin -----------------------------------------------------------------------------------------------------

async def admin_config(request):
    sn = state(request)
    if request.method == "POST":
        body = await read_json(request) or {}
        unknown = set(body) - set(sn["config"]) - {"revoke_tokens"}
        if unknown:
            return web.json_response({"error": "unknown settings: %s" % sorted(unknown)}, status=400)
        if body.pop("revoke_tokens", False):
            sn["tokens"].clear()
        sn["config"].update(body)
        sn["windows"].clear()
    return web.json_response(sn["config"])


async def admin_journal(request):
    """A person writes in an incident: {"number" or "sys_id", "user": user_name, "element": comments|work_notes, "text"}."""
    sn = state(request)
    body = await read_json(request) or {}
    record = next((r for r in sn["tables"]["incident"].values()
                   if r["number"] == body.get("number") or r["sys_id"] == body.get("sys_id")), None)
    if record is None:
        return web.json_response({"error": "no such incident"}, status=404)
    user = user_by_name(sn, body.get("user") or "abel.tuter")
    element = body.get("element") or "comments"
    if user is None or element not in JOURNAL or not body.get("text"):
        return web.json_response({"error": "expected user, element (comments|work_notes) and text"}, status=400)
    add_journal(sn, record, [(element, str(body["text"]))], user)
    return web.json_response({"ok": True}, status=201)


async def admin_records(request):
    """Add rows to sys_user_group / cmdb_ci / sys_user: {"name": ..., ...} or a list."""
    sn = state(request)
    table = request.match_info["table"]
    if table not in ("sys_user_group", "cmdb_ci", "sys_user"):
        return web.json_response({"error": "records can be added to sys_user_group, cmdb_ci, sys_user"}, status=400)
    body = await request.json()
    added = []
    for item in body if isinstance(body, list) else [body]:
        sid = item.get("sys_id") or uuid.uuid4().hex
        record = {field: "" for field in SCHEMA[table]}
        record.update({k: str(v) for k, v in item.items() if k in SCHEMA[table]}, sys_id=sid,
                      sys_created_on=sn_time(), sys_updated_on=sn_time())
        sn["tables"][table][sid] = record
        added.append(sid)
    return web.json_response({"ok": True, "sys_ids": added}, status=201)


async def admin_attachment(request):
    sandbox = request.app[SANDBOX]
    content = sandbox.servicenow_blobs.get(request.match_info["sys_id"])
    if content is None:
        return web.json_response({"error": "no such attachment"}, status=404)
    return web.Response(body=content, content_type="application/octet-stream")


def setup(sandbox, app):
    sandbox.add_seeder(seed)
    router = app.router
    router.add_post(PREFIX + "/oauth_token.do", oauth_token)
    router.add_get(API + "/table/{table}", api(table_list))
    router.add_post(API + "/table/{table}", api(table_create))
    router.add_get(API + "/table/{table}/{sys_id}", api(table_get))
    router.add_route("PUT", API + "/table/{table}/{sys_id}", api(table_update))
    router.add_route("PATCH", API + "/table/{table}/{sys_id}", api(table_update))
    router.add_delete(API + "/table/{table}/{sys_id}", api(table_delete))
    router.add_get(API + "/attachment", api(attachment_list))
    router.add_post(API + "/attachment/file", api(attachment_upload))
    router.add_get(API + "/attachment/{sys_id:[0-9a-f]{32}}{file:(/file)?}", api(attachment_get))
    router.add_delete(API + "/attachment/{sys_id:[0-9a-f]{32}}", api(attachment_delete))
    router.add_route("*", "/_sandbox/servicenow/config", admin_config)
    router.add_post("/_sandbox/servicenow/journal", admin_journal)
    router.add_post("/_sandbox/servicenow/records/{table}", admin_records)
    router.add_get("/_sandbox/servicenow/attachments/{sys_id}", admin_attachment)


def watch_tickets(state):
    """ServiceNow incidents as rows of the watch page's ticket table (ui.py `tickets_of` shape), oldest first."""
    sn = state.get("servicenow") or {}
    rows = []
    for record in sorted((sn.get("tables") or {}).get("incident", {}).values(), key=lambda r: r.get("number", "")):
        journal = sn.get("journal", {}).get(record["sys_id"], [])
        attachments = [a for a in sn.get("attachments", {}).values() if a.get("table_sys_id") == record["sys_id"]]
        rows.append({"instance": "ServiceNow", "key": record.get("number"), "summary": record.get("short_description"),
                     "status": CHOICES["state"].get(record.get("state"), record.get("state")),
                     "comments": ["%s (%s): %s" % (e["name"], JOURNAL[e["element"]], e["value"][:300]) for e in journal],
                     "attachments": [{"filename": a["file_name"], "size": int(a["size_bytes"])} for a in attachments]})
    return rows
