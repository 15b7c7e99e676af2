"""Contract of the sandbox's Microsoft identity platform, Microsoft Graph v1.0 (Teams) and Bot Framework connector
(tests/sandbox/msgraph.py, README "Microsoft Graph"): what teams_channel relies on, as Microsoft documents it
(client-credentials tokens and AADSTS errors, the Graph error shape, $filter, @odata.nextLink, the refusal of
channel messages from application tokens, channel archive, 429 with Retry-After, proactive bot messages)."""

import requests

from sandbox import credentials
from sandbox import msgraph as sandbox_graph

OPS = sandbox_graph.OPS_TEAM
NOBOT = sandbox_graph.NOBOT_TEAM
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BOT_SCOPE = "https://api.botframework.com/.default"


def token_response(sandbox, scope=GRAPH_SCOPE, tenant=credentials.MSGRAPH_TENANT_ID, **overrides):
    form = {"grant_type": "client_credentials", "client_id": credentials.MSGRAPH_CLIENT_ID,
            "client_secret": credentials.MSGRAPH_CLIENT_SECRET, "scope": scope}
    form.update(overrides)
    return requests.post("%s%s/%s/oauth2/v2.0/token" % (sandbox.url, credentials.MSGRAPH_LOGIN_PREFIX, tenant),
                         data=form, timeout=10)


def token(sandbox, scope=GRAPH_SCOPE):
    response = token_response(sandbox, scope)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


class Graph(object):
    def __init__(self, sandbox, bearer=None):
        self.base = sandbox.url + credentials.MSGRAPH_PREFIX + "/v1.0"
        self.headers = {"Authorization": "Bearer " + (bearer or token(sandbox))}

    def __call__(self, method, path, **kwargs):
        target = path if path.startswith("http") else self.base + path
        return requests.request(method, target, headers=self.headers, timeout=10, **kwargs)


def error_of(response):
    error = response.json()["error"]
    assert set(error) == {"code", "message", "innerError"} and "request-id" in error["innerError"]
    return error["code"], error["message"]


def test_client_credentials_token_and_identity_platform_errors(sandbox):
    good = token_response(sandbox)
    body = good.json()
    assert good.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    cases = [
        (dict(tenant="00000000-0000-0000-0000-000000000000"), 400, "invalid_request", 90002),
        (dict(client_id="11111111-1111-1111-1111-111111111111"), 400, "unauthorized_client", 700016),
        (dict(client_secret="wrong"), 401, "invalid_client", 7000215),
        (dict(scope="https://graph.microsoft.com/Channel.Create"), 400, "invalid_scope", 1002012),
        (dict(scope="https://example.com/.default"), 400, "invalid_resource", 500011),
        (dict(grant_type="password"), 400, "unsupported_grant_type", 70003),
    ]
    for overrides, status, code, aadsts in cases:
        response = token_response(sandbox, **overrides)
        error = response.json()
        assert response.status_code == status and error["error"] == code, overrides
        assert error["error_description"].startswith("AADSTS%d: " % aadsts) and error["error_codes"] == [aadsts]
        assert {"timestamp", "trace_id", "correlation_id"} <= set(error)


def test_graph_token_checks_audience_expiry_and_revocation(sandbox):
    graph = Graph(sandbox)
    assert graph("GET", "/teams/%s" % OPS).status_code == 200
    empty = requests.get(graph.base + "/teams/" + OPS, timeout=10)
    assert empty.status_code == 401 and error_of(empty) == ("InvalidAuthenticationToken", "Access token is empty.")
    bot_token = Graph(sandbox, token(sandbox, BOT_SCOPE))
    assert bot_token("GET", "/teams/%s" % OPS).status_code == 401  # a Bot Framework token is no Graph token
    sandbox.call("POST", "/_sandbox/msgraph/config", {"token_lifetime": 0})
    expired = Graph(sandbox)
    response = expired("GET", "/teams/%s" % OPS)
    assert response.status_code == 401 and "expired" in error_of(response)[1]
    sandbox.call("POST", "/_sandbox/msgraph/config", {"token_lifetime": 3599, "revoke_tokens": True})
    assert graph("GET", "/teams/%s" % OPS).status_code == 401


def test_teams_by_id_and_display_name_filter(sandbox):
    graph = Graph(sandbox)
    team = graph("GET", "/teams/%s" % OPS, params={"$select": "id,displayName"}).json()
    assert team == {"id": OPS, "displayName": "Operations"}
    missing = graph("GET", "/teams/%s" % "2c8f5a4d-3e6f-4071-8a1b-2c3d4e5f6a7b")
    assert missing.status_code == 404 and error_of(missing)[0] == "NotFound"
    found = graph("GET", "/teams", params={"$filter": "displayName eq 'Operations'"}).json()["value"]
    assert [t["id"] for t in found] == [OPS]
    quoted = graph("GET", "/teams", params={"$filter": "displayName eq 'O''Brien''s team'"}).json()
    assert quoted["value"] == []
    assert graph("GET", "/teams", params={"$filter": "startswith(displayName,'O')"}).status_code == 400


def test_channels_create_find_conflict_rename_archive(sandbox):
    graph = Graph(sandbox)
    created = graph("POST", "/teams/%s/channels" % OPS, json={"displayName": "inc-dt-P-1", "description": "P-1",
                                                              "membershipType": "standard"})
    assert created.status_code == 201
    channel = created.json()
    assert channel["id"].startswith("19:") and channel["id"].endswith("@thread.tacv2")
    assert channel["isArchived"] is False and channel["membershipType"] == "standard" and "members" not in channel
    conflict = graph("POST", "/teams/%s/channels" % OPS, json={"displayName": "INC-DT-P-1"})
    assert conflict.status_code == 409 and error_of(conflict) == (
        "NameAlreadyExists", "Channel name already existed, please use other name.")
    for bad in ("x" * 51, "a/b", "inc#1", "_hidden", "ends."):
        assert graph("POST", "/teams/%s/channels" % OPS, json={"displayName": bad}).status_code == 400, bad
    listed = graph("GET", "/teams/%s/channels" % OPS, params={"$filter": "displayName eq 'inc-dt-P-1'"}).json()["value"]
    assert [c["id"] for c in listed] == [channel["id"]]
    path = "/teams/%s/channels/%s" % (OPS, channel["id"])
    assert graph("PATCH", path, json={"displayName": "closed-inc-dt-P-1"}).status_code == 204
    archived = graph("POST", path + "/archive", json={})
    assert archived.status_code == 202 and archived.content == b""
    assert graph("GET", path).json()["isArchived"] is True
    refused = graph("PATCH", path, json={"displayName": "again"})
    assert refused.status_code == 400
    assert graph("POST", path + "/unarchive", json={}).status_code == 202
    assert graph("GET", path).json()["isArchived"] is False


def test_private_channels_need_an_owner_and_have_own_members(sandbox):
    graph = Graph(sandbox)
    owner = graph("GET", "/users/ops.lead@example.com").json()
    member = graph("GET", "/users/oncall.primary@example.com").json()
    bind = "https://graph.microsoft.com/v1.0/users('%s')"
    refused = graph("POST", "/teams/%s/channels" % OPS, json={"displayName": "priv", "membershipType": "private"})
    assert refused.status_code == 400
    body = {"displayName": "priv", "membershipType": "private", "members": [{
        "@odata.type": "#microsoft.graph.aadUserConversationMember", "user@odata.bind": bind % owner["id"], "roles": ["owner"]}]}
    channel = graph("POST", "/teams/%s/channels" % OPS, json=body).json()
    members_path = "/teams/%s/channels/%s/members" % (OPS, channel["id"])
    added = graph("POST", members_path, json={"@odata.type": "#microsoft.graph.aadUserConversationMember",
                                              "user@odata.bind": bind % member["id"], "roles": []})
    assert added.status_code == 201 and added.json()["userId"] == member["id"]
    assert graph("POST", members_path, json={"@odata.type": "#microsoft.graph.aadUserConversationMember",
                                             "user@odata.bind": bind % member["id"], "roles": []}).status_code == 409
    listed = graph("GET", members_path).json()["value"]
    assert [(m["userId"], m["roles"]) for m in listed] == [(owner["id"], ["owner"]), (member["id"], [])]
    general = next(c for c in graph("GET", "/teams/%s/channels" % OPS).json()["value"] if c["displayName"] == "General")
    standard = graph("POST", "/teams/%s/channels/%s/members" % (OPS, general["id"]), json={
        "@odata.type": "#microsoft.graph.aadUserConversationMember", "user@odata.bind": bind % member["id"], "roles": []})
    assert standard.status_code == 400  # a standard channel's members are the team's


def test_users_lookup_and_member_paging_with_next_link(sandbox):
    graph = Graph(sandbox)
    missing = graph("GET", "/users/nobody@example.com")
    assert missing.status_code == 404 and error_of(missing)[0] == "Request_ResourceNotFound"
    found = graph("GET", "/users", params={"$filter": "userPrincipalName eq 'dba.one@example.com' or mail eq 'dba.one@example.com'",
                                           "$select": "id,userPrincipalName"}).json()["value"]
    assert [u["userPrincipalName"] for u in found] == ["dba.one@example.com"] and set(found[0]) == {"id", "userPrincipalName"}
    bind = "https://graph.microsoft.com/v1.0/users('%s')"
    for number in range(1, 121):
        user = graph("GET", "/users/user%03d@example.com" % number).json()
        assert graph("POST", "/teams/%s/members" % OPS, json={"@odata.type": "#microsoft.graph.aadUserConversationMember",
                     "user@odata.bind": bind % user["id"], "roles": []}).status_code == 201
    seen, pages, link = [], 0, "/teams/%s/members?$top=50" % OPS
    while link:
        body = graph("GET", link).json()
        seen += body["value"]
        pages += 1
        link = body.get("@odata.nextLink")
    assert pages == 3 and len(seen) == 123 and len(set(m["userId"] for m in seen)) == 123
    assert graph("GET", "/teams/%s/members" % OPS, params={"$skiptoken": "bogus"}).status_code == 400


def test_channel_messages_application_tokens_cannot_post_delegated_can(sandbox):
    app = Graph(sandbox)
    channel = app("POST", "/teams/%s/channels" % OPS, json={"displayName": "inc-msg"}).json()
    path = "/teams/%s/channels/%s/messages" % (OPS, channel["id"])
    refused = app("POST", path, json={"body": {"content": "hello"}})
    assert refused.status_code == 401
    code, message = error_of(refused)
    assert code == "Unauthorized" and message.startswith("Message POST is allowed in application-only context only for import purposes")
    delegated = Graph(sandbox, credentials.MSGRAPH_DELEGATED_TOKEN)
    posted = delegated("POST", path, json={"body": {"contentType": "html", "content": "<p>hello</p>"}})
    assert posted.status_code == 201
    message = posted.json()
    assert message["from"]["user"]["displayName"] == "Selfheal Bot" and message["body"]["contentType"] == "html"
    reply = delegated("POST", path + "/%s/replies" % message["id"], json={"body": {"content": "reply"}})
    assert reply.status_code == 201 and reply.json()["replyToId"] == message["id"]
    sandbox.call("POST", "/_sandbox/msgraph/messages", [{"team": OPS, "channel": "inc-msg", "user": "oncall.primary@example.com",
                                                         "text": "person %02d" % n} for n in range(60)])
    listed, link = [], path + "?$top=50&$expand=replies"
    while link:
        body = app("GET", link).json()
        listed += body["value"]
        link = body.get("@odata.nextLink")
    assert len(listed) == 61
    first = next(m for m in listed if m["id"] == message["id"])
    assert [r["body"]["content"] for r in first["replies"]] == ["reply"]
    assert app("GET", path, params={"$top": "51"}).status_code == 400
    replies = app("GET", path + "/%s/replies" % message["id"]).json()["value"]
    assert [r["id"] for r in replies] == [reply.json()["id"]]


def test_missing_application_permission_is_403_naming_it(sandbox):
    granted = [p for p in sandbox_graph.GRANTED if p != "ChannelMessage.Read.All"]
    sandbox.call("POST", "/_sandbox/msgraph/config", {"permissions": granted})
    graph = Graph(sandbox)
    general = graph("GET", "/teams/%s/channels" % OPS).json()["value"][0]
    refused = graph("GET", "/teams/%s/channels/%s/messages" % (OPS, general["id"]))
    assert refused.status_code == 403
    code, message = error_of(refused)
    assert code == "Forbidden" and "ChannelMessage.Read.All" in message


def test_throttling_429_with_retry_after(sandbox):
    graph = Graph(sandbox)
    sandbox.call("POST", "/_sandbox/msgraph/config", {"rate_limit": 2, "window": 20})
    statuses = [graph("GET", "/teams/%s" % OPS).status_code for dummy in range(3)]
    assert statuses == [200, 200, 429]
    limited = graph("GET", "/teams/%s" % OPS)
    assert 1 <= int(limited.headers["Retry-After"]) <= 20 and error_of(limited)[0] == "TooManyRequests"


def test_bot_framework_proactive_message_and_reply_land_in_the_channel(sandbox):
    graph = Graph(sandbox)
    channel = graph("POST", "/teams/%s/channels" % OPS, json={"displayName": "inc-bot"}).json()
    bot_base = sandbox.url + credentials.MSGRAPH_BOT_PREFIX
    bearer = {"Authorization": "Bearer " + token(sandbox, BOT_SCOPE)}
    payload = {"isGroup": True, "channelData": {"channel": {"id": channel["id"]}, "tenant": {"id": credentials.MSGRAPH_TENANT_ID}},
               "activity": {"type": "message", "text": "**P-1** opened\n\n[selfheal:abc]"}}
    started = requests.post(bot_base + "/v3/conversations", json=payload, headers=bearer, timeout=10)
    assert started.status_code == 201
    ids = started.json()
    assert ids["id"] == "%s;messageid=%s" % (channel["id"], ids["activityId"])
    reply = requests.post("%s/v3/conversations/%s/activities" % (bot_base, ids["id"]), headers=bearer, timeout=10,
                          json={"type": "message", "text": "restarted"})
    assert reply.status_code == 201
    messages = graph("GET", "/teams/%s/channels/%s/messages" % (OPS, channel["id"]), params={"$expand": "replies"}).json()["value"]
    assert [m["id"] for m in messages] == [ids["activityId"]]
    assert messages[0]["from"]["application"]["id"] == credentials.MSGRAPH_CLIENT_ID
    assert "[selfheal:abc]" in messages[0]["body"]["content"] and messages[0]["replies"][0]["body"]["content"] == "<p>restarted</p>"
    denied = requests.post(bot_base + "/v3/conversations", json=payload, timeout=10,
                           headers={"Authorization": "Bearer " + token(sandbox)})
    assert denied.status_code == 401 and denied.json() == {"message": "Authorization has been denied for this request."}
    other = graph("POST", "/teams/%s/channels" % NOBOT, json={"displayName": "inc-nobot"}).json()
    payload["channelData"]["channel"]["id"] = other["id"]
    roster = requests.post(bot_base + "/v3/conversations", json=payload, headers=bearer, timeout=10)
    assert roster.status_code == 403 and roster.json()["error"]["code"] == "BotNotInConversationRoster"
    payload["channelData"]["channel"]["id"] = "19:nothere@thread.tacv2"
    assert requests.post(bot_base + "/v3/conversations", json=payload, headers=bearer, timeout=10).status_code == 404


def test_watch_page_rows_for_channels(sandbox):
    graph = Graph(sandbox)
    graph("POST", "/teams/%s/channels" % OPS, json={"displayName": "inc-watch", "description": "P-9 | INC0010001"})
    ids = sandbox.call("POST", "/_sandbox/msgraph/messages", {"team": OPS, "channel": "inc-watch", "text": "on it <b>now</b>"})["ids"]
    sandbox.call("POST", "/_sandbox/msgraph/messages", {"team": OPS, "channel": "inc-watch", "user": "dba.one@example.com",
                                                        "text": "ok", "reply_to": ids[0]})
    [row] = sandbox_graph.watch_channels(sandbox.state())
    assert row["name"] == "Operations / inc-watch" and row["topic"] == "P-9 | INC0010001" and row["members"] == 3
    assert row["messages"] == [{"text": "Oncall Primary: on it <b>now</b>", "replies": ["Dba One: ok"]}]
