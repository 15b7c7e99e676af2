"""Pure logic of the Microsoft Graph / Bot Framework service layer: channel names, OData quoting, message text and
markers, the OAuth 2.0 token strategy (cache, expiry, refresh, errors, redaction) against a loopback token server,
and Graph calls against a transport double."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _http, msgraph
from ansible_collections.selfheal.devops.plugins.module_utils._errors import (
    AuthError,
    InvalidInput,
    NotFound,
    RateLimited,
    UnexpectedResponse,
)

SECRET = "unit~test~client~secret~0001"


@pytest.mark.parametrize("key, prefix, expected", [
    ("dt-P-1234", "inc-", "inc-dt-P-1234"),
    ("P:42 / web #1?", "inc-", "inc-P-42 - web -1-"),
    ("..hidden", "", "-hidden"),
    ("dt-P-1.", "", "dt-P-1"),
    ("a..b", "", "a-b"),
])
def test_channel_names_follow_teams_rules(key, prefix, expected):
    name = msgraph.channel_name(key, prefix)
    assert name == expected and msgraph.name_problem(name) is None


def test_long_names_are_cut_to_50_with_a_stable_digest():
    name = msgraph.channel_name("x" * 120)
    assert len(name) == 50 and name == msgraph.channel_name("x" * 120) and name != msgraph.channel_name("x" * 119)


def test_a_key_without_usable_characters_is_refused():
    with pytest.raises(InvalidInput):
        msgraph.channel_name("#?/", prefix="")


@pytest.mark.parametrize("name, problem", [
    ("inc-1", None), ("", "empty"), ("x" * 51, "longer than 50"), ("a/b", "contains"), ("a,b", "contains"),
    ("_x", "starts with"), ("x.", "ends with"), ("a..b", "contains"),
])
def test_name_problems(name, problem):
    found = msgraph.name_problem(name)
    assert (found is None) if problem is None else (problem in found)


def test_odata_literals_double_single_quotes():
    assert msgraph.odata_quote("O'Brien") == "'O''Brien'"


def test_message_text_html_and_markers():
    html = msgraph.text_to_html("Line <1> & more\nsecond line\n\n[selfheal:abc-1]")
    assert html == "<p>Line &lt;1&gt; &amp; more<br>second line</p><p>[selfheal:abc-1]</p>"
    assert msgraph.html_to_text(html) == "Line <1> & more\nsecond line\n[selfheal:abc-1]"
    assert msgraph.markers_in(html) == {"abc-1"} and msgraph.markers_in(None) == set()
    assert msgraph.html_to_text("<div>a</div><div><b>b</b>&nbsp;c</div>") == "a\nb\xa0c"


class TokenServer(object):
    """A loopback OAuth 2.0 token endpoint answering from a script and recording the forms it got."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.forms = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                outer.forms.append(dict((k, v[0]) for k, v in parse_qs(self.rfile.read(length).decode()).items()))
                status, body = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_server():
    servers = []

    def start(*answers):
        server = TokenServer(answers)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def strategy(server, clock):
    client = _http.Client(server.url, service="Microsoft identity platform", retry=_http.RetryPolicy(max_attempts=1))
    form = {"grant_type": "client_credentials", "client_id": "app", "client_secret": SECRET, "scope": msgraph.GRAPH_SCOPE}
    return OAuth2(client, form, clock)


def OAuth2(client, form, clock):
    return msgraph.OAuth2TokenAuth(client, "/tenant/oauth2/v2.0/token", form, "Microsoft identity platform", clock=clock)


def test_the_token_is_cached_for_its_lifetime_and_fetched_again_after_it(token_server):
    server = token_server((200, {"access_token": "token-one-0001", "expires_in": 3599}),
                          (200, {"access_token": "token-two-0002", "expires_in": 3599}))
    clock = Clock()
    auth = strategy(server, clock)
    assert auth.apply({}) == {"Authorization": "Bearer token-one-0001"}
    clock.now += 3599 - msgraph.EXPIRY_MARGIN - 1
    assert auth.token() == "token-one-0001" and len(server.forms) == 1
    clock.now += 2
    assert auth.token() == "token-two-0002" and len(server.forms) == 2
    auth.invalidate()
    assert auth.token() == "token-two-0002" and len(server.forms) == 3  # the script repeats its last answer
    assert server.forms[0] == {"grant_type": "client_credentials", "client_id": "app", "client_secret": SECRET,
                               "scope": "https://graph.microsoft.com/.default"}


def test_tokens_and_the_secret_are_registered_for_redaction(token_server):
    server = token_server((200, {"access_token": "token-redact-0003", "expires_in": 60}))
    auth = strategy(server, Clock())
    graph_client = _http.Client("http://127.0.0.1:9", service="Microsoft Graph", auth=auth)
    auth.register(graph_client)
    auth.token()
    assert SECRET in graph_client.secrets and "token-redact-0003" in graph_client.secrets
    assert graph_client.redact("sent token-redact-0003 and %s" % SECRET) == "sent ******** and ********"


@pytest.mark.parametrize("status, body, kind, text", [
    (401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"},
     AuthError, "HTTP 401: invalid_client - AADSTS7000215: Invalid client secret provided."),
    (400, {"error": "invalid_request", "error_description": "AADSTS90002: Tenant 'x' not found."}, AuthError, "AADSTS90002"),
    (429, {"error": "temporarily_unavailable"}, RateLimited, "temporarily_unavailable"),
    (500, {"nothing": "useful"}, UnexpectedResponse, "no error code"),
    (200, {"token_type": "Bearer"}, UnexpectedResponse, "HTTP 200"),
])
def test_a_refused_token_request_is_one_clear_error(token_server, status, body, kind, text):
    auth = strategy(token_server((status, body)), Clock())
    with pytest.raises(kind) as raised:
        auth.token()
    assert text in raised.value.message and SECRET not in raised.value.message


def test_client_credentials_need_all_three_values():
    params = {"tenant_id": "t", "client_id": None, "client_secret": "s", "login_url": "https://login.example",
              "timeout": 5.0, "validate_certs": True, "ca_path": None, "max_retries": 0, "max_retry_wait": 1.0}
    with pytest.raises(InvalidInput) as raised:
        msgraph.client_credentials(params, msgraph.GRAPH_SCOPE)
    assert "client_id required" in str(raised.value)


class Fake(object):
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []
        self.base_url = "https://graph.example/v1.0"
        self.secrets = ()

    def request(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        status, body = self.answers.pop(0)
        return _http.Response(status, {}, json.dumps(body).encode() if body is not None else b"", self.base_url + path)


@pytest.mark.parametrize("status, code, kind, text", [
    (403, "Forbidden", AuthError, "Forbidden: no (the app lacks an application permission"),
    (404, "NotFound", NotFound, "NotFound: no"),
    (429, "TooManyRequests", RateLimited, "still throttled"),
    (409, "NameAlreadyExists", UnexpectedResponse, "HTTP 409: NameAlreadyExists: no"),
])
def test_graph_errors_become_typed_errors_with_their_code(status, code, kind, text):
    graph = msgraph.GraphService(Fake((status, {"error": {"code": code, "message": "no", "innerError": {}}})))
    with pytest.raises(kind) as raised:
        graph.call("GET", "/teams/x")
    assert text in raised.value.message and raised.value.code == code


def test_paging_follows_next_links():
    fake = Fake((200, {"value": [1, 2], "@odata.nextLink": "https://graph.example/v1.0/users?$skiptoken=a"}),
                (200, {"value": [3]}))
    assert msgraph.GraphService(fake).paged("/users", params={"$top": "2"}) == [1, 2, 3]
    assert fake.calls[1][1] == "https://graph.example/v1.0/users?$skiptoken=a" and fake.calls[1][2]["params"] is None


def test_teams_by_name_must_be_unique_and_users_may_be_unknown():
    two = {"value": [{"id": "1", "displayName": "Ops"}, {"id": "2", "displayName": "ops"}]}
    with pytest.raises(InvalidInput):
        msgraph.GraphService(Fake((200, two))).team("Ops")
    with pytest.raises(NotFound) as raised:
        msgraph.GraphService(Fake((200, {"value": []}))).team("Ops")
    assert "no team is named 'Ops'" in raised.value.message
    fake = Fake((200, {"value": []}))
    assert msgraph.GraphService(fake).user("O'Neil@example.com") is None
    assert fake.calls[0][2]["params"]["$filter"] == "userPrincipalName eq 'O''Neil@example.com' or mail eq 'O''Neil@example.com'"


def test_a_name_conflict_on_create_finds_the_other_runs_channel():
    fake = Fake((409, {"error": {"code": "NameAlreadyExists", "message": "Channel name already existed"}}),
                (200, {"value": [{"id": "19:a@thread.tacv2", "displayName": "INC-1"}]}))
    channel, created = msgraph.GraphService(fake).create_channel("team", "inc-1")
    assert channel["id"] == "19:a@thread.tacv2" and created is False


def test_private_channels_are_created_with_their_owners():
    fake = Fake((201, {"id": "19:p@thread.tacv2"}))
    msgraph.GraphService(fake).create_channel("team", "inc-p", "desc", "private", ["u1"])
    body = fake.calls[0][2]["json_body"]
    assert body["membershipType"] == "private" and body["members"] == [{
        "@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": ["owner"],
        "user@odata.bind": "https://graph.microsoft.com/v1.0/users('u1')"}]


class NoAuth(object):
    def invalidate(self):
        pass


def test_bot_posts_start_a_thread_or_reply_in_one():
    fake = Fake((201, {"id": "19:c@thread.tacv2;messageid=1700", "activityId": "1700"}), (201, {"id": "1701"}))
    bot = msgraph.BotService(fake, NoAuth(), "tenant-1")
    assert bot.post("19:c@thread.tacv2", "hello") == "1700"
    assert fake.calls[0][2]["json_body"] == {"isGroup": True, "activity": {"type": "message", "text": "hello",
                                                                           "textFormat": "markdown"},
                                             "channelData": {"channel": {"id": "19:c@thread.tacv2"}, "tenant": {"id": "tenant-1"}}}
    assert bot.post("19:c@thread.tacv2", "reply", reply_to="1700") == "1701"
    assert fake.calls[1][1] == "/v3/conversations/19:c@thread.tacv2;messageid=1700/activities"


def test_a_bot_outside_the_team_is_a_clear_error():
    fake = Fake((403, {"error": {"code": "BotNotInConversationRoster", "message": "The bot is not part of the conversation roster."}}))
    with pytest.raises(AuthError) as raised:
        msgraph.BotService(fake, NoAuth(), "t").post("19:c@thread.tacv2", "x")
    assert "not installed in the team" in raised.value.message
