# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Microsoft Graph v1.0 (Teams) and Bot Framework connector service layer. Private to the selfheal.devops collection.

What a real tenant allows an app (application permissions, client-credentials token):
- teams, channels, members, channel messages and replies (read), channel archive / rename: Graph v1.0;
- posting a channel message: NOT through Graph (application permissions may only import messages into a channel
  in migration mode, `Teamwork.Migrate.All`), but as the app's bot through the Bot Framework connector
  (`POST {serviceUrl}/v3/conversations`, a proactive message that starts a thread in the channel), with a token
  for `https://api.botframework.com/.default` from the same app registration. With a delegated Graph token (a
  service account, `ChannelMessage.Send`) messages may be posted through Graph instead.

OAuth2TokenAuth is a general token strategy (client credentials, password or refresh-token grant) for the one
transport; servicenow.py reuses it for ServiceNow's /oauth_token.do. Graph and Bot Framework errors share the shape
{"error": {"code", "message"}}; they are mapped here to the collection's typed errors with the code in the text.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re
import time

from html import unescape as html_unescape

from ansible_collections.selfheal.devops.plugins.module_utils import _http, _options
from ansible_collections.selfheal.devops.plugins.module_utils._errors import (
    AuthError,
    InvalidInput,
    NotFound,
    RateLimited,
    UnexpectedResponse,
    excerpt,
)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BOT_SCOPE = "https://api.botframework.com/.default"
ANY_STATUS = tuple(range(100, 600))
MAX_PAGES = 200
PAGE_SIZE = 50                 # $top of channel messages: Graph allows at most 50
EXPIRY_MARGIN = 300.0          # a cached token counts as expired this many seconds before expires_in
NAME_MAX = 50                  # Teams channel display names
NAME_FORBIDDEN = re.compile(r"[~#%&*{}+/\\:<>?|'\",]|\.\.")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MARKER_PATTERN = re.compile(r"\[?selfheal:([A-Za-z0-9._-]+)\]?")
MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"
AUTH_HINTS = {
    401: " (check tenant_id, client_id and client_secret, or the token)",
    403: " (the app lacks an application permission this call needs, or admin consent was not granted)",
}


# --- OAuth 2.0 token strategy ---------------------------------------------------------------------------

class OAuth2TokenAuth(object):
    """`Authorization: Bearer <access token>` from an OAuth 2.0 token endpoint, for the one transport.

    The token is requested on first use with `form` (the grant: client_credentials + scope, password, ...),
    cached for its lifetime (`expires_in` minus a margin) and requested again when it has expired or after
    invalidate() (the service layer calls it when the API answers 401). Every token is registered as a secret with
    the clients in `clients`, so that none can show up in an error or a warning.
    """

    def __init__(self, token_client, path, form, service, clock=time.time, hint="check the client id and client secret"):
        self.token_client = token_client
        self.path = path
        self.form = dict((k, v) for k, v in form.items() if v is not None)
        self.service = service
        self.hint = hint
        self.clock = clock
        self.access_token = None
        self.expires_at = 0.0
        self.requests = 0
        self.secrets = tuple(v for k, v in self.form.items() if k in ("client_secret", "password", "refresh_token") and v)
        self.clients = [token_client]
        token_client.secrets = tuple(token_client.secrets) + self.secrets

    def apply(self, headers):
        headers["Authorization"] = "Bearer %s" % self.token()
        return headers

    def token(self):
        if self.access_token is None or self.clock() >= self.expires_at:
            self.fetch()
        return self.access_token

    def invalidate(self):
        self.access_token = None

    def register(self, client):
        """Make client redact this strategy's secrets and every token it hands out."""
        self.clients.append(client)
        client.secrets = tuple(client.secrets) + self.secrets + ((self.access_token,) if self.access_token else ())

    def fetch(self):
        self.requests += 1
        response = self.token_client.request("POST", self.path, data=self.form, expected=ANY_STATUS, idempotent=True)
        body = _json_object(response)
        token = body.get("access_token")
        if response.status != 200 or not token:
            raise token_error(self.service, response, body, self.hint)
        self.access_token = str(token)
        for client in self.clients:
            client.secrets = tuple(client.secrets) + (self.access_token,)
        try:
            lifetime = float(body.get("expires_in", 3599))
        except (TypeError, ValueError):
            lifetime = 3599.0
        self.expires_at = self.clock() + max(lifetime / 2.0, lifetime - EXPIRY_MARGIN)
        return self.access_token


def token_error(service, response, body, hint="check the client id and client secret"):
    """The typed error for a refused token request (OAuth 2.0 error response: error, error_description)."""
    code = str(body.get("error") or "no error code")
    # The first line of error_description (the identity platform adds trace and correlation lines), else an excerpt
    # of whatever was sent (an HTML proxy page included).
    lines = str(body.get("error_description") or "").strip().splitlines()
    first = excerpt(lines[0]) if lines else excerpt(response.text)
    text = "%s token request answered HTTP %s: %s" % (service, response.status, code)
    if first:
        text += " - %s" % first
    kwargs = dict(status=response.status, url=response.url)
    if response.status in (400, 401, 403):
        return AuthError("%s (%s)" % (text, hint), **kwargs)
    if response.status == 429:
        return RateLimited(text, **kwargs)
    return UnexpectedResponse(text, **kwargs)


def _json_object(response):
    try:
        body = response.json
    except UnexpectedResponse:
        return {}
    return body if isinstance(body, dict) else {}


def error_text(body, fallback=""):
    """Text of a Graph / Bot Framework error body: `code: message`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        return ": ".join(str(part) for part in (code, message) if part) or fallback
    if isinstance(error, str):
        return error
    return fallback


def raise_for(service, method, response, allowed=()):
    """Return response when it succeeded (or its status is in allowed), else raise the matching typed error."""
    if 200 <= response.status < 300 or response.status in allowed:
        return response
    body = _json_object(response)
    detail = excerpt(error_text(body, response.text or "no error text"))
    code = ((body.get("error") or {}).get("code") if isinstance(body.get("error"), dict) else None)
    message = "%s %s %s answered HTTP %s: %s" % (service, method, response.url, response.status, detail)
    kwargs = dict(status=response.status, url=response.url)
    if response.status in (401, 403):
        error = AuthError(message + AUTH_HINTS[response.status], **kwargs)
    elif response.status == 404:
        error = NotFound(message, **kwargs)
    elif response.status == 429:
        error = RateLimited(message + " (still throttled after the retries)", **kwargs)
    else:
        error = UnexpectedResponse(message, **kwargs)
    error.code = code
    raise error


# --- clients ------------------------------------------------------------------------------------------------

def token_client(params, log=None):
    return _http.Client(params["login_url"].rstrip("/"), service="Microsoft identity platform",
                        retry=_options.retry_policy(params), **_options.client_kwargs(params, log))


def client_credentials(params, scope, log=None):
    """An OAuth2TokenAuth for the app registration's client credentials and the given scope."""
    missing = [name for name in ("tenant_id", "client_id", "client_secret") if not params.get(name)]
    if missing:
        raise InvalidInput("Microsoft Graph: %s required (or token for Graph calls)" % ", ".join(missing))
    form = {"grant_type": "client_credentials", "client_id": params["client_id"],
            "client_secret": params["client_secret"], "scope": scope}
    path = "/%s/oauth2/v2.0/token" % params["tenant_id"]
    return OAuth2TokenAuth(token_client(params, log), path, form, "Microsoft identity platform",
                           hint="check tenant_id, client_id and client_secret")


def graph_from_params(params, log=None):
    """The Graph service: a ready token when given, else client credentials."""
    if params.get("token"):
        auth = _http.bearer_auth(params["token"])
    else:
        auth = client_credentials(params, GRAPH_SCOPE, log)
    client = _http.Client(params["graph_url"].rstrip("/"), service="Microsoft Graph", auth=auth,
                          retry=_options.retry_policy(params), **_options.client_kwargs(params, log))
    if isinstance(auth, OAuth2TokenAuth):
        auth.register(client)
    return GraphService(client, auth)


def bot_from_params(params, log=None):
    """The Bot Framework connector for the app's bot (the same app registration, single-tenant bot).

    The connector cannot read a channel back; when params name the team, a post whose answer was lost is looked
    for through Graph (built only then) in the team's channel, by the message's marker."""
    auth = client_credentials(params, BOT_SCOPE, log)
    client = _http.Client(params["bot_url"].rstrip("/"), service="Bot Framework", auth=auth,
                          retry=_options.retry_policy(params), **_options.client_kwargs(params, log))
    auth.register(client)
    reader = None
    if params.get("team"):
        def reader(channel_id):
            graph = graph_from_params(params, log)
            return graph.messages(graph.team(params["team"])["id"], channel_id)
    return BotService(client, auth, params["tenant_id"], reader=reader)


# --- names, markers, text ------------------------------------------------------------------------------------

def channel_name(incident_key, prefix="inc-"):
    """A valid Teams channel display name from an incident key: forbidden characters become '-', <= 50."""
    raw = "%s%s" % (prefix or "", incident_key or "")
    name = NAME_FORBIDDEN.sub("-", raw).strip()
    name = re.sub(r"\s+", " ", name).lstrip("_.").rstrip(".")
    if len(name) > NAME_MAX:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
        name = name[:NAME_MAX - 9].rstrip("-. ") + "-" + digest
    if not re.search(r"[A-Za-z0-9]", name):
        raise InvalidInput("cannot derive a Teams channel name from %r" % raw)
    return name


def name_problem(name):
    """Why a display name is not a valid Teams channel name, or None."""
    if not name or not name.strip():
        return "it is empty"
    if len(name) > NAME_MAX:
        return "it is longer than %d characters" % NAME_MAX
    if NAME_FORBIDDEN.search(name):
        return "it contains one of ~ # % & * { } + / \\ : < > ? | ' \" , or '..'"
    if name[0] in "_." or name.endswith("."):
        return "it starts with '_' or '.', or ends with '.'"
    return None


def odata_quote(value):
    """A string literal for an OData $filter (single quotes doubled)."""
    return "'%s'" % str(value).replace("'", "''")


def message_marker(message_id):
    return "[selfheal:%s]" % message_id


def markers_in(content):
    return set(MARKER_PATTERN.findall(content or ""))


def html_to_text(content):
    """Plain text of a Teams message body (HTML): block tags become line breaks, other tags go, entities decode."""
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>", "\n", content or "")
    text = re.sub(r"(?s)<[^>]+>", "", text)
    text = html_unescape(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def escape_html(text):
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def text_to_html(text):
    """Plain text as Teams message HTML: escaped, paragraphs and line breaks kept."""
    paragraphs = [p for p in re.split(r"\n\s*\n", (text or "").strip()) if p.strip()]
    return "".join("<p>%s</p>" % escape_html(p).replace("\n", "<br>") for p in paragraphs)


# --- Graph ------------------------------------------------------------------------------------------------------

class GraphService(object):
    """Teams, channels, members, users and channel messages through Microsoft Graph v1.0."""

    service = "Microsoft Graph"

    def __init__(self, client, auth=None):
        self.client = client
        self.auth = auth

    def call(self, method, path, params=None, json_body=None, allowed=(), idempotent=None):
        """One Graph request; a 401 with a cached OAuth token fetches a new token and tries once more."""
        for attempt in (1, 2):
            response = self.client.request(method, path, params=params, json_body=json_body, expected=ANY_STATUS,
                                           idempotent=idempotent)
            if response.status == 401 and attempt == 1 and isinstance(self.auth, OAuth2TokenAuth):
                self.auth.invalidate()
                continue
            return raise_for(self.service, method, response, allowed)
        return None  # pragma: no cover - the loop always returns or raises

    def paged(self, path, params=None, limit=None):
        """Every item of a collection, following @odata.nextLink (bounded)."""
        items = []
        for dummy in range(MAX_PAGES):
            body = self.call("GET", path, params=params).json or {}
            items.extend(body.get("value") or [])
            path, params = body.get("@odata.nextLink"), None
            if not path or (limit and len(items) >= limit):
                return items
        raise UnexpectedResponse("Microsoft Graph GET %s returned more than %d pages" % (path, MAX_PAGES))

    # teams and users ---------------------------------------------------------------------------------------
    def team(self, ident):
        """The team with that id, or the one team with that display name; NotFound naming it otherwise."""
        if GUID.match(ident or ""):
            try:
                return self.call("GET", "/teams/%s" % ident, params={"$select": "id,displayName,isArchived,webUrl"}).json
            except NotFound:
                raise NotFound("Microsoft Teams: no team has the id %s (or the app cannot see it: Team.ReadBasic.All)" % ident,
                               status=404)
        found = self.paged("/teams", params={"$filter": "displayName eq %s" % odata_quote(ident),
                                             "$select": "id,displayName,isArchived"})
        found = [team for team in found if (team.get("displayName") or "").lower() == ident.lower()]
        if not found:
            raise NotFound("Microsoft Teams: no team is named %r (or the app cannot see it: Team.ReadBasic.All)" % ident,
                           status=404)
        if len(found) > 1:
            raise InvalidInput("Microsoft Teams: %d teams are named %r; give the team id instead (%s)" % (
                len(found), ident, ", ".join(team["id"] for team in found)))
        return found[0]

    def user(self, ident):
        """The user with that object id, user principal name or e-mail address, or None."""
        select = "id,displayName,userPrincipalName,mail"
        if GUID.match(ident or ""):
            try:
                return self.call("GET", "/users/%s" % ident, params={"$select": select}).json
            except NotFound:
                return None
        quoted = odata_quote(ident)
        found = self.paged("/users", params={"$filter": "userPrincipalName eq %s or mail eq %s" % (quoted, quoted),
                                             "$select": select})
        return found[0] if found else None

    # channels ------------------------------------------------------------------------------------------------
    def find_channel(self, team_id, name):
        """The channel of that display name (case-insensitive, archived ones included), or None."""
        found = self.paged("/teams/%s/channels" % team_id, params={"$filter": "displayName eq %s" % odata_quote(name)})
        return next((c for c in found if (c.get("displayName") or "").lower() == name.lower()), None)

    def channel(self, team_id, channel_id):
        return self.call("GET", "/teams/%s/channels/%s" % (team_id, channel_id)).json

    def create_channel(self, team_id, name, description=None, membership="standard", owner_ids=()):
        """(channel, created): create it, or find it when another run created it meanwhile (409 NameAlreadyExists)."""
        body = {"displayName": name, "membershipType": membership}
        if description:
            body["description"] = description
        if membership == "private":
            body["members"] = [member_body(uid, ["owner"]) for uid in owner_ids]

        def send():
            response = self.call("POST", "/teams/%s/channels" % team_id, json_body=body, allowed=(409,))
            if response.status != 409:
                return response.json, True
            channel = self.find_channel(team_id, name)
            if channel is None:
                raise InvalidInput("Microsoft Teams: the channel name %r is taken (%s) by a channel the app cannot see"
                                   % (name, error_text(_json_object(response))))
            return channel, False

        def lookup():
            # A create whose answer was lost: the channel of that name (names are unique in a team, so a create
            # not found was not applied, and sending it again is safe: a duplicate would get 409).
            channel = self.find_channel(team_id, name)
            return (channel, True) if channel is not None else None
        return _http.write_once(self.client, send, lookup, "Teams channel", repr(name), resend=True)

    def update_channel(self, team_id, channel_id, **fields):
        self.call("PATCH", "/teams/%s/channels/%s" % (team_id, channel_id), json_body=fields, idempotent=True)

    def archive_channel(self, team_id, channel_id):
        """channel: archive (v1.0). Asynchronous: 202 Accepted; the channel shows isArchived once it is done."""
        self._set_archived(team_id, channel_id, True)

    def unarchive_channel(self, team_id, channel_id):
        self._set_archived(team_id, channel_id, False)

    def _set_archived(self, team_id, channel_id, archived):
        path = "/teams/%s/channels/%s/%s" % (team_id, channel_id, "archive" if archived else "unarchive")

        def lookup():
            return True if bool(self.channel(team_id, channel_id).get("isArchived")) == archived else None
        _http.write_once(self.client, lambda: self.call("POST", path, json_body={}), lookup,
                         "archived state" if archived else "unarchived state", "of channel %s" % channel_id, resend=True)

    # members -------------------------------------------------------------------------------------------------
    def members(self, team_id, channel_id=None):
        """Members (conversationMember objects) of the team, or of a private channel."""
        path = "/teams/%s/members" % team_id if channel_id is None else "/teams/%s/channels/%s/members" % (team_id, channel_id)
        return self.paged(path)

    def add_member(self, team_id, user_id, channel_id=None, roles=()):
        """Add a member; one whose answer was lost is looked for among the members before it is sent once more."""
        path = "/teams/%s/members" % team_id if channel_id is None else "/teams/%s/channels/%s/members" % (team_id, channel_id)

        def lookup():
            return next((m for m in self.members(team_id, channel_id) if m.get("userId") == user_id), None)
        return _http.write_once(self.client, lambda: self.call("POST", path, json_body=member_body(user_id, list(roles))).json,
                                lookup, "membership", "of %s" % user_id, resend=True)

    def user_ref(self, user_id):
        return "%s/users('%s')" % (self.client.base_url, user_id)

    # messages ------------------------------------------------------------------------------------------------
    def messages(self, team_id, channel_id):
        """Every top-level message with its replies (`$expand=replies`, further replies through their nextLink)."""
        messages = self.paged("/teams/%s/channels/%s/messages" % (team_id, channel_id),
                              params={"$top": str(PAGE_SIZE), "$expand": "replies"})
        for message in messages:
            more = message.get("replies@odata.nextLink")
            if more:
                message["replies"] = list(message.get("replies") or []) + self.paged(more)
        return messages

    def post_message(self, team_id, channel_id, content_html, reply_to=None):
        """Post through Graph (delegated tokens only: application tokens may only import in migration mode)."""
        path = "/teams/%s/channels/%s/messages" % (team_id, channel_id)
        if reply_to:
            path += "/%s/replies" % reply_to
        marks = markers_in(content_html)
        return _http.write_once(
            self.client, lambda: self.call("POST", path, json_body={"body": {"contentType": "html", "content": content_html}}).json,
            lambda: find_marked(self.messages(team_id, channel_id), marks, reply_to) if marks else None,
            "Teams message", "[selfheal:%s]" % ",".join(sorted(marks)) if marks else "(the message carries no marker)",
            resend=bool(marks))


def find_marked(messages, marks, reply_to=None):
    """The message (a reply of reply_to when given) that carries every marker in marks, or None."""
    if reply_to:
        parent = next((m for m in messages if m.get("id") == reply_to), None)
        messages = (parent or {}).get("replies") or []
    return next((m for m in messages if marks <= markers_in((m.get("body") or {}).get("content"))), None)


def member_body(user_id, roles):
    return {"@odata.type": MEMBER_TYPE, "roles": list(roles),
            "user@odata.bind": "https://graph.microsoft.com/v1.0/users('%s')" % user_id}


# --- Bot Framework connector ----------------------------------------------------------------------------------

class BotService(object):
    """Posts as the app's bot: a proactive message that starts a thread in a channel, or a reply in one."""

    service = "Bot Framework"

    def __init__(self, client, auth, tenant_id, reader=None):
        self.client = client
        self.auth = auth
        self.tenant_id = tenant_id
        # reader(channel_id) -> the channel's messages with their replies (through Graph), to find a post whose
        # answer was lost; without one such a post is reported as AmbiguousWrite, never sent again.
        self.reader = reader

    def call(self, method, path, json_body):
        for attempt in (1, 2):
            response = self.client.request(method, path, json_body=json_body, expected=ANY_STATUS)
            if response.status == 401 and attempt == 1:
                self.auth.invalidate()
                continue
            if response.status == 403 and "NotInConversationRoster" in response.text:
                raise AuthError("Bot Framework %s %s answered HTTP 403: the app's bot is not installed in the team "
                                "(install the Teams app in the team once; see docs/teams.md)" % (method, response.url),
                                status=403, url=response.url)
            return raise_for(self.service, method, response)
        return None  # pragma: no cover

    def post(self, channel_id, text, reply_to=None):
        """Send a message activity; returns the new message's id (the Graph chatMessage id).

        A post whose answer was lost is looked for by its markers ([selfheal:<id>] in the text) through the reader
        and sent once more only when it is not there."""
        marks = markers_in(text)

        def lookup():
            if not (marks and self.reader):
                return None
            found = find_marked(self.reader(channel_id), marks, reply_to)
            return str(found["id"]) if found else None
        return _http.write_once(self.client, lambda: self._send(channel_id, text, reply_to), lookup, "Teams message",
                                "[selfheal:%s]" % ",".join(sorted(marks)) if marks else "(the message carries no marker)",
                                resend=bool(marks and self.reader))

    def _send(self, channel_id, text, reply_to):
        activity = {"type": "message", "text": text, "textFormat": "markdown"}
        if reply_to:
            conversation = "%s;messageid=%s" % (channel_id, reply_to)
            body = self.call("POST", "/v3/conversations/%s/activities" % conversation, activity).json or {}
            return str(body.get("id") or "")
        payload = {"isGroup": True, "activity": activity,
                   "channelData": {"channel": {"id": channel_id}, "tenant": {"id": self.tenant_id}}}
        body = self.call("POST", "/v3/conversations", payload).json or {}
        if body.get("activityId"):
            return str(body["activityId"])
        return str(body.get("id") or "").rpartition(";messageid=")[2]
