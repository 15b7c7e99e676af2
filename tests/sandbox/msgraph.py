"""Microsoft identity platform (token endpoint), Microsoft Graph v1.0 (Teams) and the Bot Framework connector.

Three mounts (credentials.py):
- MSGRAPH_LOGIN_PREFIX (`/msidentity`): `POST /{tenant}/oauth2/v2.0/token`, client credentials only (form
  client_id, client_secret, scope `<resource>/.default`, grant_type). Errors as the identity platform sends them:
  `{"error", "error_description": "AADSTSnnnn: ...", "error_codes", "timestamp", "trace_id", "correlation_id"}`
  (unknown tenant 400 invalid_request AADSTS90002, unknown app 400 unauthorized_client AADSTS700016, wrong secret
  401 invalid_client AADSTS7000215, scope without /.default 400 invalid_scope AADSTS1002012, unknown resource 400
  invalid_resource AADSTS500011). Tokens are opaque here (real ones are JWTs), one audience each (Graph or Bot
  Framework), `expires_in` from the admin config (default 3599).
- MSGRAPH_PREFIX (`/msgraph/v1.0`): teams (list with `$filter=displayName eq '...'`, get), channels (list with
  `$filter`, get, create, PATCH, `archive`/`unarchive`), team and channel members (list, add), users (get by id or
  UPN, list with `$filter` on userPrincipalName / mail), channel messages and replies (list with `$top` <= 50,
  `$expand=replies`, `@odata.nextLink`; POST only with a delegated token: an application token gets the real 401
  "Message POST is allowed in application-only context only for import purposes"). Application permissions are
  checked per call against the app's granted roles (admin config), 403 naming what the call needs.
  Errors: `{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}`.
  Throttling: admin `rate_limit` requests per `window` s per app -> 429 TooManyRequests + Retry-After.
- MSGRAPH_BOT_PREFIX (`/botframework`): `POST /v3/conversations` (a proactive message that starts a thread in a
  channel: `isGroup`, `channelData.channel.id`, `activity`) and `POST /v3/conversations/{channel};messageid={id}/
  activities` (a reply); the bot must be installed in the team (else 403 BotNotInConversationRoster). Messages
  land in the Graph state, from the application, and read back through Graph.
State: sandbox.state["msgraph"]. Admin under /_sandbox/msgraph: config, messages (people posting), state.
[U] marks choices the public documentation does not pin down (tests/sandbox/README.md, "Microsoft Graph").
"""

import base64
import html
import json
import re
import time
import urllib.parse
import uuid

from aiohttp import web

from sandbox import credentials
from sandbox.core import SANDBOX

PREFIX = credentials.MSGRAPH_PREFIX
GRAPH = PREFIX + "/v1.0"
LOGIN = credentials.MSGRAPH_LOGIN_PREFIX
BOT = credentials.MSGRAPH_BOT_PREFIX
GRAPH_AUDIENCE = "https://graph.microsoft.com"
BOT_AUDIENCE = "https://api.botframework.com"
APP_NAME = "Selfheal"
GRANTED = ["Team.ReadBasic.All", "Channel.Create", "Channel.ReadBasic.All", "ChannelSettings.ReadWrite.All",
           "ChannelMember.ReadWrite.All", "TeamMember.ReadWrite.All", "User.Read.All", "ChannelMessage.Read.All"]
OPS_TEAM = "0a6f3e2b-1c4d-4e5f-8a9b-0c1d2e3f4a5b"
NOBOT_TEAM = "1b7e4f3c-2d5e-4f60-9b0c-1d2e3f4a5b6c"
NAME_FORBIDDEN = re.compile(r"[~#%&*{}+/\\:<>?|'\",]|\.\.")
PEOPLE = ("oncall.primary", "oncall.secondary", "dba.one", "dba.two", "ops.lead")
SEEDED_USERS = 120
DELEGATED_USER = "selfheal.bot"


def guid(*parts):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sandbox-msgraph:" + ":".join(parts)))


def iso(seconds=None):
    seconds = time.time() if seconds is None else seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % int((seconds % 1) * 1000)


def seed(sandbox):
    users = {}
    names = list(PEOPLE) + [DELEGATED_USER] + ["user%03d" % n for n in range(1, SEEDED_USERS + 1)]
    for name in names:
        uid = guid("user", name)
        upn = "%s@example.com" % name
        users[uid] = {"id": uid, "displayName": name.replace(".", " ").title(), "userPrincipalName": upn, "mail": upn,
                      "givenName": name.split(".")[0].title(), "surname": None, "jobTitle": None}
    by_name = dict((u["userPrincipalName"].split("@")[0], uid) for uid, u in users.items())
    now = time.time()
    teams = {}
    for tid, name, owner, members, bot in ((OPS_TEAM, "Operations", "ops.lead", ("oncall.secondary", DELEGATED_USER), True),
                                           (NOBOT_TEAM, "Database", "dba.one", ("dba.two",), False)):
        general = "19:%s@thread.tacv2" % uuid.uuid5(uuid.NAMESPACE_URL, tid).hex
        team_members = [member_record(by_name[owner], ["owner"]), ] + [member_record(by_name[m], []) for m in members]
        teams[tid] = {"id": tid, "displayName": name, "description": "%s team" % name, "isArchived": False,
                      "createdDateTime": iso(now - 86400), "installed_bots": [credentials.MSGRAPH_CLIENT_ID] if bot else [],
                      "members": team_members,
                      "channels": {general: channel_record(tid, general, "General", "", "standard", now - 86400)}}
    sandbox.state["msgraph"] = {
        "tenant": credentials.MSGRAPH_TENANT_ID, "users": users, "teams": teams, "messages": {}, "tokens": {},
        "config": {"token_lifetime": 3599, "permissions": list(GRANTED), "rate_limit": 0, "window": 10},
        "windows": {}, "last_ms": 0,
    }


def member_record(uid, roles):
    return {"id": base64.b64encode(("member:" + uid).encode()).decode().rstrip("="), "userId": uid, "roles": list(roles)}


def channel_record(team_id, cid, name, description, membership, created):
    return {"id": cid, "createdDateTime": iso(created), "displayName": name, "description": description or None,
            "isFavoriteByDefault": None, "email": "", "tenantId": credentials.MSGRAPH_TENANT_ID,
            "webUrl": "https://teams.microsoft.com/l/channel/%s/%s?groupId=%s&tenantId=%s" % (
                urllib.parse.quote(cid), urllib.parse.quote(name), team_id, credentials.MSGRAPH_TENANT_ID),
            "membershipType": membership, "isArchived": False, "members": []}


def state(request):
    return request.app[SANDBOX].state["msgraph"]


# --- errors ----------------------------------------------------------------------------------------------------

def graph_error(status, code, message, headers=None):
    inner = {"date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "request-id": str(uuid.uuid4()),
             "client-request-id": str(uuid.uuid4())}
    return web.json_response({"error": {"code": code, "message": message, "innerError": inner}}, status=status,
                             headers=headers)


def identity_error(status, code, aadsts, text):
    return web.json_response({
        "error": code, "error_description": "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s" % (
            aadsts, text, uuid.uuid4(), uuid.uuid4(), time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())),
        "error_codes": [aadsts], "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4()),
        "error_uri": "https://login.microsoftonline.com/error?code=%d" % aadsts}, status=status)


# --- token endpoint ------------------------------------------------------------------------------------------------

async def token(request):
    graph = state(request)
    form = await request.post()
    tenant = request.match_info["tenant"]
    if tenant not in (graph["tenant"], "example.onmicrosoft.com"):
        return identity_error(400, "invalid_request", 90002, "Tenant '%s' not found. Check to make sure you have the "
                              "correct tenant ID and are signing into the correct cloud." % tenant)
    if form.get("grant_type") != "client_credentials":
        return identity_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '%s'."
                              % form.get("grant_type"))
    if form.get("client_id") != credentials.MSGRAPH_CLIENT_ID:
        return identity_error(400, "unauthorized_client", 700016, "Application with identifier '%s' was not found in "
                              "the directory '%s'." % (form.get("client_id"), tenant))
    if form.get("client_secret") != credentials.MSGRAPH_CLIENT_SECRET:
        return identity_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being "
                              "sent in the request is the client secret value, not the client secret ID, for a secret "
                              "added to app '%s'." % form.get("client_id"))
    scope = str(form.get("scope") or "")
    if not scope.endswith("/.default"):
        return identity_error(400, "invalid_scope", 1002012, "The provided value for scope %s is not valid. Client "
                              "credential flows must have a scope value with /.default suffixed to the resource "
                              "identifier (application ID URI)." % scope)
    audience = scope[:-len("/.default")]
    if audience not in (GRAPH_AUDIENCE, BOT_AUDIENCE):
        return identity_error(400, "invalid_resource", 500011, "The resource principal named %s was not found in the "
                              "tenant named %s." % (audience, tenant))
    lifetime = int(graph["config"]["token_lifetime"])
    value = "eyJ0eXAiOiJKV1Qi.%s.%s" % (base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                                        base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    graph["tokens"][value] = {"audience": audience, "expires": time.time() + lifetime, "app": form["client_id"]}
    return web.json_response({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                              "access_token": value})


def caller(request, audience):
    """(identity, error response): identity is {"app": id} or {"user": id} for the delegated token."""
    graph = state(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        return None, graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
    value = header[7:].strip()
    if value == credentials.MSGRAPH_DELEGATED_TOKEN and audience == GRAPH_AUDIENCE:
        return {"user": guid("user", DELEGATED_USER)}, None
    found = graph["tokens"].get(value)
    if found is None or found["audience"] != audience:
        return None, graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
    if found["expires"] <= time.time():
        return None, graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
    return {"app": found["app"]}, None


def throttled(request, key):
    graph = state(request)
    limit = int(graph["config"].get("rate_limit") or 0)
    if not limit:
        return None
    window, now = float(graph["config"].get("window") or 10), time.time()
    stamps = [t for t in graph["windows"].get(key, []) if t > now - window]
    if len(stamps) >= limit:
        graph["windows"][key] = stamps
        wait = max(1, int(stamps[0] + window - now + 0.999))
        return graph_error(429, "TooManyRequests", "Too many requests. Please retry after %d seconds." % wait,
                           headers={"Retry-After": str(wait)})
    graph["windows"][key] = stamps + [now]
    return None


def graph_api(*needs):
    """Authenticate a Graph call; an application token must hold one of `needs` (application permissions)."""
    def decorate(handler):
        async def wrapped(request):
            who, problem = caller(request, GRAPH_AUDIENCE)
            if problem is not None:
                return problem
            limited = throttled(request, who.get("app") or who.get("user"))
            if limited is not None:
                return limited
            granted = state(request)["config"]["permissions"]
            if "app" in who and needs and not any(n in granted for n in needs):
                return graph_error(403, "Forbidden", "Missing role permissions on the request. API requires one of "
                                   "'%s'. Roles on the request '%s'." % (", ".join(needs), ", ".join(granted)))
            return await handler(request, state(request), who)
        return wrapped
    return decorate


# --- OData helpers ---------------------------------------------------------------------------------------------------

def odata_filter(text, fields):
    """A predicate for `a eq 'x' [and|or b eq 'y'...]` (left to right, and/or of eq comparisons) [U: subset]."""
    if not text:
        return lambda item: True
    tokens = re.findall(r"'(?:[^']|'')*'|\S+", text)
    clauses, joins = [], []
    index = 0
    while index < len(tokens):
        if len(tokens) - index < 3:
            raise ValueError(text)
        name, operator, literal = tokens[index:index + 3]
        if operator.lower() != "eq" or name not in fields or not (literal.startswith("'") and literal.endswith("'")):
            raise ValueError(text)
        clauses.append((name, literal[1:-1].replace("''", "'")))
        index += 3
        if index < len(tokens):
            if tokens[index].lower() not in ("and", "or"):
                raise ValueError(text)
            joins.append(tokens[index].lower())
            index += 1
            if index >= len(tokens):
                raise ValueError(text)

    def predicate(item):
        result = str(item.get(clauses[0][0])).lower() == clauses[0][1].lower()
        for join, (name, wanted) in zip(joins, clauses[1:]):
            value = str(item.get(name)).lower() == wanted.lower()
            result = (result and value) if join == "and" else (result or value)
        return result
    return predicate


def collection(request, items, default_top=100, max_top=999, render=None):
    """A Graph collection page: `$top`, `$skiptoken` (opaque), `@odata.nextLink` with the other parameters kept."""
    render = render or (lambda item: item)
    try:
        top = int(request.query.get("$top") or default_top)
    except ValueError:
        return graph_error(400, "BadRequest", "Invalid value for $top.")
    if top < 1 or top > max_top:
        return graph_error(400, "BadRequest", "Invalid page size specified: '%d'. Must be between 1 and %d inclusive."
                           % (top, max_top))
    skip = 0
    if request.query.get("$skiptoken"):
        try:
            skip = int(base64.urlsafe_b64decode(request.query["$skiptoken"] + "==").decode().split(":")[1])
        except (ValueError, IndexError, UnicodeDecodeError):
            return graph_error(400, "BadRequest", "The skip token is invalid.")
    page = items[skip:skip + top]
    body = {"@odata.context": "%s://%s%s/$metadata#collection" % (request.scheme, request.host, GRAPH)}
    if request.query.get("$count") == "true":
        body["@odata.count"] = len(items)
    body["value"] = [render(item) for item in page]
    if skip + top < len(items):
        query = dict(request.query)
        query["$top"] = str(top)
        query["$skiptoken"] = base64.urlsafe_b64encode(("skip:%d" % (skip + top)).encode()).decode().rstrip("=")
        body["@odata.nextLink"] = "%s://%s%s?%s" % (request.scheme, request.host, request.path,
                                                    urllib.parse.urlencode(query, safe="$,'() "))
    return web.json_response(body)


def selected(item, request):
    fields = [f.strip() for f in (request.query.get("$select") or "").split(",") if f.strip()]
    return dict((k, v) for k, v in item.items() if k in fields or k.startswith("@")) if fields else item


# --- teams, channels, users ----------------------------------------------------------------------------------------

def team_view(team):
    return {"id": team["id"], "displayName": team["displayName"], "description": team["description"],
            "isArchived": team["isArchived"], "createdDateTime": team["createdDateTime"],
            "webUrl": "https://teams.microsoft.com/l/team/%s" % team["id"], "tenantId": credentials.MSGRAPH_TENANT_ID}


def channel_view(channel):
    return dict((k, v) for k, v in channel.items() if k != "members")


def the_team(graph, request):
    team = graph["teams"].get(request.match_info["team"])
    if team is None:
        return None, graph_error(404, "NotFound", "No team found with Group Id %s" % request.match_info["team"])
    return team, None


def the_channel(team, request):
    channel = team["channels"].get(request.match_info["channel"])
    if channel is None:
        return None, graph_error(404, "NotFound", "Channel not found")
    return channel, None


@graph_api("Team.ReadBasic.All")
async def list_teams(request, graph, who):
    try:
        keep = odata_filter(request.query.get("$filter"), ("displayName", "id"))
    except ValueError:
        return graph_error(400, "BadRequest", "Invalid filter clause")
    teams = [team_view(t) for t in graph["teams"].values()]
    return collection(request, [t for t in teams if keep(t)], render=lambda t: selected(t, request))


@graph_api("Team.ReadBasic.All")
async def get_team(request, graph, who):
    team, problem = the_team(graph, request)
    return problem or web.json_response(selected(team_view(team), request))


@graph_api("Channel.ReadBasic.All")
async def list_channels(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    try:
        keep = odata_filter(request.query.get("$filter"), ("displayName", "membershipType", "id"))
    except ValueError:
        return graph_error(400, "BadRequest", "Invalid filter clause")
    channels = [channel_view(c) for c in team["channels"].values() if keep(c)]
    return web.json_response({"@odata.context": "...", "@odata.count": len(channels), "value": channels})


@graph_api("Channel.ReadBasic.All")
async def get_channel(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    channel, problem = the_channel(team, request)
    return problem or web.json_response(selected(channel_view(channel), request))


def name_error(name):
    if not isinstance(name, str) or not name.strip():
        return graph_error(400, "BadRequest", "Channel name cannot be empty.")
    if len(name) > 50:
        return graph_error(400, "BadRequest", "Channel name cannot be longer than 50 characters.")
    if NAME_FORBIDDEN.search(name) or name[0] in "_." or name.endswith("."):
        return graph_error(400, "BadRequest", "Channel name contains invalid characters.")  # [U wording]
    return None


def name_taken(team, name, except_id=None):
    return any(c["displayName"].lower() == name.lower() and c["id"] != except_id for c in team["channels"].values())


async def json_body(request):
    try:
        body = json.loads((await request.read()) or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def bound_user(graph, member):
    """The user id of an aadUserConversationMember's user@odata.bind, or None."""
    match = re.search(r"users\('([^']+)'\)", str((member or {}).get("user@odata.bind") or ""))
    if not match:
        return None
    return find_user(graph, match.group(1))


def find_user(graph, ident):
    ident = str(ident or "")
    if ident in graph["users"]:
        return ident
    return next((uid for uid, u in graph["users"].items() if u["userPrincipalName"].lower() == ident.lower()), None)


@graph_api("Channel.Create")
async def create_channel(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    body = await json_body(request)
    if body is None:
        return graph_error(400, "BadRequest", "Invalid request body.")
    name = body.get("displayName")
    membership = body.get("membershipType") or "standard"
    problem = name_error(name)
    if problem:
        return problem
    if membership not in ("standard", "private", "shared"):
        return graph_error(400, "BadRequest", "Invalid membershipType '%s'." % membership)
    if team["isArchived"]:
        return graph_error(403, "Forbidden", "Team is archived.")  # [U]
    members = []
    for member in body.get("members") or []:
        uid = bound_user(graph, member)
        if uid is None:
            return graph_error(404, "NotFound", "User not found in the tenant.")  # [U]
        members.append(member_record(uid, member.get("roles") or []))
    if membership != "standard" and "app" in who and not any("owner" in m["roles"] for m in members):
        return graph_error(400, "BadRequest", "A private or shared channel created with application permissions needs "
                           "at least one member with the owner role.")  # [U wording]
    if name_taken(team, name):
        return graph_error(409, "NameAlreadyExists", "Channel name already existed, please use other name.")
    cid = "19:%s@thread.tacv2" % uuid.uuid4().hex
    channel = channel_record(team["id"], cid, name, body.get("description"), membership, time.time())
    channel["members"] = members
    team["channels"][cid] = channel
    return web.json_response(channel_view(channel), status=201)


@graph_api("ChannelSettings.ReadWrite.All")
async def patch_channel(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    channel, problem = the_channel(team, request)
    if problem:
        return problem
    body = await json_body(request)
    if body is None or not set(body) <= {"displayName", "description"}:
        return graph_error(400, "BadRequest", "Only displayName and description can be updated.")  # [U]
    if channel["isArchived"]:
        return graph_error(400, "BadRequest", "Channel is archived and cannot be updated.")  # [U]
    if "displayName" in body:
        problem = name_error(body["displayName"])
        if problem:
            return problem
        if channel["displayName"] == "General":
            return graph_error(400, "BadRequest", "The General channel cannot be renamed.")
        if name_taken(team, body["displayName"], channel["id"]):
            return graph_error(409, "NameAlreadyExists", "Channel name already existed, please use other name.")
    channel.update(body)
    return web.Response(status=204)


def archive_action(archived):
    @graph_api("ChannelSettings.ReadWrite.All")
    async def handler(request, graph, who):
        team, problem = the_team(graph, request)
        if problem:
            return problem
        channel, problem = the_channel(team, request)
        if problem:
            return problem
        if channel["displayName"] == "General":
            return graph_error(400, "BadRequest", "The General channel cannot be archived.")  # [U]
        if team["isArchived"]:
            return graph_error(400, "BadRequest", "A channel cannot be archived or unarchived when its team is archived.")
        channel["isArchived"] = archived  # asynchronous in Teams; done before the 202 here [U]
        return web.Response(status=202)
    return handler


# --- members -------------------------------------------------------------------------------------------------------

def member_view(graph, member):
    user = graph["users"].get(member["userId"], {})
    return {"@odata.type": "#microsoft.graph.aadUserConversationMember", "id": member["id"], "roles": member["roles"],
            "displayName": user.get("displayName"), "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
            "userId": member["userId"], "email": user.get("mail"), "tenantId": credentials.MSGRAPH_TENANT_ID}


def channel_members(team, channel):
    return team["members"] if channel["membershipType"] == "standard" else channel["members"]


@graph_api("TeamMember.Read.All", "TeamMember.ReadWrite.All")
async def list_team_members(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    return collection(request, team["members"], render=lambda m: member_view(graph, m))


@graph_api("ChannelMember.Read.All", "ChannelMember.ReadWrite.All")
async def list_channel_members(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    channel, problem = the_channel(team, request)
    if problem:
        return problem
    return collection(request, channel_members(team, channel), render=lambda m: member_view(graph, m))


async def add_member(request, graph, members):
    body = await json_body(request)
    if body is None or body.get("@odata.type") != "#microsoft.graph.aadUserConversationMember":
        return graph_error(400, "BadRequest", "Expected an aadUserConversationMember.")
    uid = bound_user(graph, body)
    if uid is None:
        return graph_error(404, "NotFound", "User not found in the tenant.")  # [U]
    if any(m["userId"] == uid for m in members):
        return graph_error(409, "Conflict", "The user is already a member.")  # [U]
    roles = body.get("roles") or []
    if not set(roles) <= {"owner", "guest"}:
        return graph_error(400, "BadRequest", "Invalid role.")
    member = member_record(uid, roles)
    members.append(member)
    return web.json_response(member_view(graph, member), status=201)


@graph_api("TeamMember.ReadWrite.All")
async def add_team_member(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    return await add_member(request, graph, team["members"])


@graph_api("ChannelMember.ReadWrite.All")
async def add_channel_member(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    channel, problem = the_channel(team, request)
    if problem:
        return problem
    if channel["membershipType"] == "standard":
        return graph_error(400, "BadRequest", "Members of a standard channel are the team's members; add them to the "
                           "team.")  # [U wording]
    return await add_member(request, graph, channel["members"])


def user_view(user):
    return dict(user)


@graph_api("User.Read.All", "User.ReadBasic.All")
async def list_users(request, graph, who):
    try:
        keep = odata_filter(request.query.get("$filter"), ("userPrincipalName", "mail", "displayName", "id"))
    except ValueError:
        return graph_error(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified.")
    users = [u for u in graph["users"].values() if keep(u)]
    return collection(request, users, render=lambda u: selected(user_view(u), request))


@graph_api("User.Read.All", "User.ReadBasic.All")
async def get_user(request, graph, who):
    uid = find_user(graph, request.match_info["user"])
    if uid is None:
        return graph_error(404, "Request_ResourceNotFound", "Resource '%s' does not exist or one of its queried "
                           "reference-property objects are not present." % request.match_info["user"])
    return web.json_response(selected(user_view(graph["users"][uid]), request))


# --- messages ------------------------------------------------------------------------------------------------------

def next_message_id(graph):
    stamp = max(int(time.time() * 1000), graph["last_ms"] + 1)
    graph["last_ms"] = stamp
    return str(stamp)


def text_html(text):
    paragraphs = [p for p in re.split(r"\n\s*\n", (text or "").strip()) if p.strip()]
    return "".join("<p>%s</p>" % html.escape(p, quote=False).replace("\n", "<br>") for p in paragraphs)


def store_message(graph, team, channel, sender, content, content_type, reply_to=None):
    mid = next_message_id(graph)
    created = iso(int(mid) / 1000.0)
    if "user" in sender:
        user = graph["users"][sender["user"]]
        origin = {"application": None, "device": None,
                  "user": {"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": user["id"],
                           "displayName": user["displayName"], "userIdentityType": "aadUser",
                           "tenantId": credentials.MSGRAPH_TENANT_ID}}
    else:
        origin = {"user": None, "device": None,
                  "application": {"@odata.type": "#microsoft.graph.teamworkApplicationIdentity", "id": sender["app"],
                                  "displayName": APP_NAME, "applicationIdentityType": "bot"}}
    message = {"id": mid, "replyToId": reply_to, "etag": mid, "messageType": "message", "createdDateTime": created,
               "lastModifiedDateTime": created, "lastEditedDateTime": None, "deletedDateTime": None, "subject": None,
               "summary": None, "chatId": None, "importance": "normal", "locale": "en-us",
               "webUrl": "https://teams.microsoft.com/l/message/%s/%s" % (urllib.parse.quote(channel["id"]), mid),
               "policyViolation": None, "eventDetail": None, "from": origin,
               "body": {"contentType": content_type, "content": content},
               "channelIdentity": {"teamId": team["id"], "channelId": channel["id"]},
               "attachments": [], "mentions": [], "reactions": []}
    thread = graph["messages"].setdefault(channel["id"], [])
    if reply_to:
        parent = next((m for m in thread if m["id"] == reply_to), None)
        parent.setdefault("replies", []).append(message)
        parent["lastModifiedDateTime"] = created
    else:
        thread.append(message)
    return message


def message_view(message, expand):
    view = dict((k, v) for k, v in message.items() if k != "replies")
    if expand:
        view["replies@odata.context"] = "..."
        view["replies"] = [dict(r) for r in message.get("replies", [])]
    return view


@graph_api("ChannelMessage.Read.All")
async def list_messages(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    channel, problem = the_channel(team, request)
    if problem:
        return problem
    expand = request.query.get("$expand")
    if expand not in (None, "replies"):
        return graph_error(400, "BadRequest", "Only $expand=replies is supported.")
    newest_first = sorted(graph["messages"].get(channel["id"], []), key=lambda m: m["lastModifiedDateTime"], reverse=True)
    return collection(request, newest_first, default_top=20, max_top=50,
                      render=lambda m: message_view(m, expand == "replies"))


@graph_api("ChannelMessage.Read.All")
async def list_replies(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    channel, problem = the_channel(team, request)
    if problem:
        return problem
    parent = next((m for m in graph["messages"].get(channel["id"], []) if m["id"] == request.match_info["message"]), None)
    if parent is None:
        return graph_error(404, "NotFound", "Message not found.")
    newest_first = sorted(parent.get("replies", []), key=lambda m: m["createdDateTime"], reverse=True)
    return collection(request, newest_first, default_top=20, max_top=50)


@graph_api()
async def post_message(request, graph, who):
    team, problem = the_team(graph, request)
    if problem:
        return problem
    channel, problem = the_channel(team, request)
    if problem:
        return problem
    if "app" in who:
        return graph_error(401, "Unauthorized", "Message POST is allowed in application-only context only for import "
                           "purposes. Refer to https://docs.microsoft.com/microsoftteams/platform/graph-api/"
                           "import-messages/import-external-messages-to-teams for more details.")
    if channel["isArchived"] or team["isArchived"]:
        return graph_error(403, "Forbidden", "Channel is archived.")  # [U]
    if not any(m["userId"] == who["user"] for m in channel_members(team, channel)):
        return graph_error(403, "Forbidden", "User is not a member of the channel.")  # [U]
    body = await json_body(request)
    content = ((body or {}).get("body") or {})
    if not content.get("content"):
        return graph_error(400, "BadRequest", "Message body cannot be empty.")
    reply_to = request.match_info.get("message")
    if reply_to and not any(m["id"] == reply_to for m in graph["messages"].get(channel["id"], [])):
        return graph_error(404, "NotFound", "Message not found.")
    message = store_message(graph, team, channel, who, content["content"], content.get("contentType") or "text", reply_to)
    return web.json_response(message_view(message, False), status=201)


# --- Bot Framework connector ---------------------------------------------------------------------------------------

def bot_error(status, code, message):
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def locate_channel(graph, cid):
    for team in graph["teams"].values():
        if cid in team["channels"]:
            return team, team["channels"][cid]
    return None, None


async def bot_call(request, conversation=None):
    graph = state(request)
    header = request.headers.get("Authorization", "")
    found = graph["tokens"].get(header[7:].strip()) if header.startswith("Bearer ") else None
    if found is None or found["audience"] != BOT_AUDIENCE or found["expires"] <= time.time():
        return web.json_response({"message": "Authorization has been denied for this request."}, status=401)
    limited = throttled(request, found["app"])
    if limited is not None:
        return limited
    body = await json_body(request)
    if body is None:
        return bot_error(400, "BadSyntax", "Invalid request body.")
    if conversation is None:
        cid = ((body.get("channelData") or {}).get("channel") or {}).get("id")
        activity = body.get("activity") or {}
        reply_to = None
        if not body.get("isGroup") or not cid:
            return bot_error(400, "BadArgument", "Conversation parameters are invalid for a channel thread.")  # [U]
    else:
        cid, dummy, reply_to = conversation.partition(";messageid=")
        activity = body
    team, channel = locate_channel(graph, cid)
    if channel is None:
        return bot_error(404, "ConversationNotFound", "Conversation not found.")
    if found["app"] not in team["installed_bots"]:
        return bot_error(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")
    if channel["isArchived"] or team["isArchived"]:
        return bot_error(403, "Forbidden", "The conversation is archived.")  # [U]
    if activity.get("type") != "message" or not (activity.get("text") or activity.get("attachments")):
        return bot_error(400, "BadArgument", "Activity must be a message with text or attachments.")
    if reply_to and not any(m["id"] == reply_to for m in graph["messages"].get(cid, [])):
        return bot_error(404, "ConversationNotFound", "Conversation not found.")
    message = store_message(graph, team, channel, {"app": found["app"]}, text_html(activity.get("text") or ""), "html",
                            reply_to or None)
    if conversation is None:
        return web.json_response({"id": "%s;messageid=%s" % (cid, message["id"]), "activityId": message["id"]}, status=201)
    return web.json_response({"id": message["id"]}, status=201)


async def bot_conversations(request):
    return await bot_call(request)


async def bot_activities(request):
    return await bot_call(request, urllib.parse.unquote(request.match_info["conversation"]))


# --- admin ---------------------------------------------------------------------------------------------------------

async def admin_config(request):
    graph = state(request)
    if request.method == "POST":
        body = await json_body(request) or {}
        unknown = set(body) - set(graph["config"]) - {"revoke_tokens"}
        if unknown:
            return web.json_response({"error": "unknown settings: %s" % sorted(unknown)}, status=400)
        if body.pop("revoke_tokens", False):
            graph["tokens"].clear()
        graph["config"].update(body)
        graph["windows"].clear()
    return web.json_response(graph["config"])


async def admin_messages(request):
    """People post: {"team": id or name, "channel": id or name, "user": UPN, "text", "reply_to"} or a list."""
    graph = state(request)
    body = await request.json()
    posted = []
    for item in body if isinstance(body, list) else [body]:
        team = graph["teams"].get(item.get("team")) or next(
            (t for t in graph["teams"].values() if t["displayName"] == item.get("team")), None)
        if team is None:
            return web.json_response({"error": "no such team %r" % item.get("team")}, status=404)
        channel = team["channels"].get(item.get("channel")) or next(
            (c for c in team["channels"].values() if c["displayName"] == item.get("channel")), None)
        if channel is None:
            return web.json_response({"error": "no such channel %r" % item.get("channel")}, status=404)
        uid = find_user(graph, item.get("user") or "oncall.primary@example.com")
        if uid is None:
            return web.json_response({"error": "no such user %r" % item.get("user")}, status=404)
        if item.get("reply_to") and not any(m["id"] == item["reply_to"] for m in graph["messages"].get(channel["id"], [])):
            return web.json_response({"error": "no such message %r" % item["reply_to"]}, status=404)
        message = store_message(graph, team, channel, {"user": uid}, text_html(item.get("text") or ""), "html",
                                item.get("reply_to"))
        posted.append(message["id"])
    return web.json_response({"ok": True, "ids": posted}, status=201)


async def admin_team(request):
    """Change a team: {"installed_bots": [...], "isArchived": bool} (a team without the bot, an archived team)."""
    graph = state(request)
    team = graph["teams"].get(request.match_info["team"])
    if team is None:
        return web.json_response({"error": "no such team"}, status=404)
    body = await json_body(request) or {}
    for key in ("installed_bots", "isArchived"):
        if key in body:
            team[key] = body[key]
    return web.json_response({"ok": True})


def setup(sandbox, app):
    sandbox.add_seeder(seed)
    router = app.router
    router.add_post(LOGIN + "/{tenant}/oauth2/v2.0/token", token)
    router.add_get(GRAPH + "/teams", list_teams)
    router.add_get(GRAPH + "/teams/{team}", get_team)
    router.add_get(GRAPH + "/teams/{team}/channels", list_channels)
    router.add_post(GRAPH + "/teams/{team}/channels", create_channel)
    router.add_get(GRAPH + "/teams/{team}/members", list_team_members)
    router.add_post(GRAPH + "/teams/{team}/members", add_team_member)
    channel = GRAPH + "/teams/{team}/channels/{channel}"
    router.add_get(channel, get_channel)
    router.add_route("PATCH", channel, patch_channel)
    router.add_post(channel + "/archive", archive_action(True))
    router.add_post(channel + "/unarchive", archive_action(False))
    router.add_get(channel + "/members", list_channel_members)
    router.add_post(channel + "/members", add_channel_member)
    router.add_get(channel + "/messages", list_messages)
    router.add_post(channel + "/messages", post_message)
    router.add_get(channel + "/messages/{message}/replies", list_replies)
    router.add_post(channel + "/messages/{message}/replies", post_message)
    router.add_get(GRAPH + "/users", list_users)
    router.add_get(GRAPH + "/users/{user}", get_user)
    router.add_post(BOT + "/v3/conversations", bot_conversations)
    router.add_post(BOT + "/v3/conversations/{conversation}/activities", bot_activities)
    router.add_route("*", "/_sandbox/msgraph/config", admin_config)
    router.add_post("/_sandbox/msgraph/messages", admin_messages)
    router.add_post("/_sandbox/msgraph/teams/{team}", admin_team)


def watch_channels(state):
    """Teams channels (General left out) as rows of the watch page's channel table (ui.py `channels_of` shape)."""
    graph = state.get("msgraph") or {}

    def line(message):
        origin = message.get("from") or {}
        who = (origin.get("user") or origin.get("application") or {}).get("displayName") or "?"
        text = re.sub(r"<[^>]+>", " ", (message.get("body") or {}).get("content") or "")
        return "%s: %s" % (who, html.unescape(re.sub(r"\s+", " ", text)).strip())

    rows = []
    for team in graph.get("teams", {}).values():
        for cid, channel in team.get("channels", {}).items():
            if channel.get("displayName") == "General":
                continue
            members = channel.get("members") if channel.get("membershipType") != "standard" else team.get("members")
            messages = [{"text": line(m), "replies": [line(r) for r in m.get("replies", [])]}
                        for m in graph.get("messages", {}).get(cid, [])]
            rows.append({"id": cid, "name": "%s / %s" % (team.get("displayName"), channel.get("displayName")),
                         "archived": bool(channel.get("isArchived")), "topic": channel.get("description") or "",
                         "members": len(members or []), "messages": messages})
    return rows
