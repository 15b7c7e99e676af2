"""The transport against a real HTTP server on 127.0.0.1: retries, Retry-After, errors, TLS, redaction."""

import datetime
import email.utils
import json
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _http
from ansible_collections.selfheal.devops.plugins.module_utils._errors import (
    AmbiguousWrite,
    AuthError,
    CommunicationError,
    InvalidInput,
    NotFound,
    RateLimited,
    UnexpectedResponse,
)

TOKEN = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX." + "s" * 64


class ScriptedServer(object):
    """Loopback HTTP server answering each path from a script of responses (the last one repeats)."""

    def __init__(self, tls_context=None):
        self.scripts = {}
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(dict(method=self.command, path=self.path, headers=dict(self.headers), body=body))
                script = server.scripts.get(self.path.split("?")[0]) or [dict(status=200, body={"ok": True})]
                step = script.pop(0) if len(script) > 1 else script[0]
                if step.get("delay"):
                    time.sleep(step["delay"])
                if step.get("reset"):
                    # RST instead of a response: SO_LINGER with a zero timeout.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                payload = step.get("body", b"")
                if callable(payload):
                    payload = payload(self)
                if not isinstance(payload, (bytes, str)):
                    payload = json.dumps(payload)
                if isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(step.get("status", 200))
                for key, value in step.get("headers", {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d" % (scheme, self.httpd.server_port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        self.thread.start()

    def script(self, path, *steps):
        self.scripts[path] = list(steps)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = ScriptedServer()
    yield srv
    srv.close()


class Sleeps(list):
    """Records the delays the client asked for (used where the exact wait matters, not the clock)."""

    def __call__(self, seconds):
        self.append(seconds)


def make_client(server, sleep=None, **kwargs):
    logs = []
    retry = kwargs.pop("retry", None) or _http.RetryPolicy(max_attempts=4, max_wait=30, backoff=0.2, jitter=False)
    client = _http.Client(server.url, service="Dynatrace", auth=_http.api_token_auth(TOKEN), retry=retry,
                          log=logs.append, sleep=time.sleep if sleep is None else sleep, **kwargs)
    return client, logs


def test_429_with_retry_after_one_second_then_success(server):
    server.script("/api", dict(status=429, headers={"Retry-After": "1"}, body={"error": {"code": 429, "message": "Too many"}}),
                  dict(status=200, body={"ok": True}))
    client, logs = make_client(server)
    started = time.monotonic()
    response = client.get("/api")
    elapsed = time.monotonic() - started
    assert response.json == {"ok": True}
    assert 0.9 <= elapsed < 3.0
    assert client.request_count == 2 and client.retry_count == 1
    assert "HTTP 429; retrying in 1.0 s (attempt 2 of 4)" in logs[0]


def test_retry_after_as_http_date(server):
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
    server.script("/api", dict(status=503, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)}),
                  dict(status=200, body={"ok": True}))
    sleeps = Sleeps()
    client, dummy = make_client(server, sleep=sleeps)
    assert client.get("/api").status == 200
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 3.0


def test_503_twice_then_success_backs_off_exponentially(server):
    server.script("/api", dict(status=503), dict(status=503), dict(status=200, body={"ok": True}))
    sleeps = Sleeps()
    client, logs = make_client(server, sleep=sleeps)
    assert client.post("/api", json_body={"a": 1}).json == {"ok": True}
    assert client.request_count == 3
    assert sleeps == [0.2, 0.4]
    assert len(logs) == 2


def test_connection_reset_then_success(server):
    server.script("/api", dict(reset=True), dict(status=200, body={"ok": True}))
    sleeps = Sleeps()
    client, logs = make_client(server, sleep=sleeps)
    assert client.get("/api").json == {"ok": True}
    assert client.request_count == 2
    assert "connection error" in logs[0]


def test_connection_reset_on_post_is_not_repeated(server):
    """A POST that may have reached the server is not sent twice unless the caller says it is idempotent."""
    server.script("/api", dict(reset=True), dict(status=200, body={"ok": True}))
    client, dummy = make_client(server, sleep=Sleeps())
    with pytest.raises(AmbiguousWrite) as info:
        client.post("/api", json_body={"create": "ticket"})
    assert isinstance(info.value, CommunicationError)  # existing handlers of communication failures still catch it
    assert client.request_count == 1 and len(server.requests) == 1
    assert "may have been applied, so it was not sent again (attempt 1)" in str(info.value)
    assert info.value.method == "POST" and info.value.path.endswith("/api") and info.value.attempts == 1
    server.script("/api", dict(reset=True), dict(status=200, body={"ok": True}))
    assert client.post("/api", json_body={"dedup_key": "k"}, idempotent=True).status == 200


def test_read_timeout_is_a_clear_error(server):
    server.script("/slow", dict(delay=1.0, status=200, body={"ok": True}))
    client, dummy = make_client(server, sleep=Sleeps(), timeout=0.3)
    with pytest.raises(AmbiguousWrite) as info:
        client.post("/slow", json_body={})
    assert "no response within 0 s (read timeout)" in str(info.value)
    assert client.request_count == 1
    fail = info.value.to_fail_kwargs()
    assert fail["error_kind"] == "ambiguous_write" and fail["may_have_been_applied"] is True


@pytest.mark.parametrize("status", [502, 504])
def test_502_and_504_on_a_post_are_not_sent_again(server, status):
    """The gateway lost the upstream after the request was sent: the write may have been applied."""
    server.script("/rest/api/3/issue", dict(status=status, body=b"<html><body><h1>Bad Gateway</h1></body></html>"),
                  dict(status=201, body={"key": "OPS-1"}))
    sleeps = Sleeps()
    client, logs = make_client(server, sleep=sleeps)
    with pytest.raises(AmbiguousWrite) as info:
        client.post("/rest/api/3/issue", json_body={"fields": {}})
    assert len(server.requests) == 1 and client.request_count == 1 and sleeps == [] and logs == []
    assert info.value.status == status and info.value.reason.startswith("HTTP %d" % status)
    assert "Bad Gateway</h1></body></html> after the request was sent; the write may have been applied" in str(info.value)


@pytest.mark.parametrize("status", [502, 504])
def test_502_and_504_are_retried_for_idempotent_requests(server, status):
    server.script("/v2/enqueue", dict(status=status), dict(status=202, body={"status": "success"}))
    client, logs = make_client(server, sleep=Sleeps())
    assert client.post("/v2/enqueue", json_body={"dedup_key": "k"}, idempotent=True).status == 202
    server.script("/issue/OPS-1", dict(status=status), dict(status=204, body=b""))
    assert client.put("/issue/OPS-1", json_body={}).status == 204
    assert client.get("/rest/api/3/issue/OPS-1").status == 200
    assert len(server.requests) == 5 and len(logs) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_mean_not_processed_so_a_post_is_sent_again(server, status):
    server.script("/chat.postMessage", dict(status=status, headers={"Retry-After": "0"}), dict(status=200, body={"ok": True}))
    client, logs = make_client(server, sleep=Sleeps())
    assert client.post("/chat.postMessage", json_body={"text": "x"}).json == {"ok": True}
    assert len(server.requests) == 2 and "HTTP %d" % status in logs[0]


def test_502_with_expected_any_status_is_still_ambiguous(server):
    """Service layers that read every status themselves (ServiceNow, Graph) get the error, not the 502."""
    server.script("/api/now/table/incident", dict(status=502))
    client, dummy = make_client(server, sleep=Sleeps())
    with pytest.raises(AmbiguousWrite):
        client.post("/api/now/table/incident", json_body={}, expected=tuple(range(100, 600)))
    assert len(server.requests) == 1


def test_connection_refused_on_a_post_is_not_ambiguous():
    """Nothing left the client: a plain CommunicationError after the retries, never AmbiguousWrite."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = _http.Client("http://127.0.0.1:%d" % port, service="Slack",
                          retry=_http.RetryPolicy(max_attempts=2, max_wait=10, backoff=0.01, jitter=False), sleep=Sleeps())
    with pytest.raises(CommunicationError) as info:
        client.post("/chat.postMessage", json_body={})
    assert not isinstance(info.value, AmbiguousWrite) and client.request_count == 2


def test_read_timeout_on_get_is_retried_within_budget(server):
    server.script("/slow", dict(delay=1.0, status=200), dict(status=200, body={"ok": True}))
    client, dummy = make_client(server, sleep=Sleeps(), timeout=0.3)
    assert client.get("/slow").json == {"ok": True}
    assert client.request_count == 2


def test_connection_refused_is_retried_then_reported():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    sleeps = Sleeps()
    client = _http.Client("http://127.0.0.1:%d" % port, service="Jira", auth=_http.basic_auth("me@example.com", "jira-secret-token"),
                          retry=_http.RetryPolicy(max_attempts=3, max_wait=10, backoff=0.1, jitter=False), sleep=sleeps)
    with pytest.raises(CommunicationError) as info:
        client.post("/rest/api/3/issue", json_body={})
    assert client.request_count == 3 and len(sleeps) == 2  # never reached the server: safe to retry a POST
    assert "Jira request POST" in str(info.value) and "failed after 3 attempt(s)" in str(info.value)
    assert "jira-secret-token" not in str(info.value)


def test_400_is_not_retried_and_the_api_error_text_reaches_the_user(server):
    server.script("/rest/api/3/issue", dict(status=400, body={"errorMessages": [], "errors": {"summary": "You must specify a summary of the issue."}}))
    client, logs = make_client(server, sleep=Sleeps())
    with pytest.raises(UnexpectedResponse) as info:
        client.post("/rest/api/3/issue", json_body={})
    assert client.request_count == 1 and not logs
    assert "HTTP 400" in str(info.value)
    assert "summary: You must specify a summary of the issue." in str(info.value)
    assert info.value.to_fail_kwargs()["status"] == 400


def test_401_maps_to_auth_error(server):
    server.script("/api/v2/problems", dict(status=401, body={"error": {"code": 401, "message": "Token Authentication failed"}}))
    client, dummy = make_client(server, sleep=Sleeps())
    with pytest.raises(AuthError) as info:
        client.get("/api/v2/problems")
    assert "Token Authentication failed" in str(info.value)
    assert "check the token" in str(info.value)
    assert info.value.to_fail_kwargs()["error_kind"] == "auth"


def test_404_maps_to_not_found(server):
    server.script("/api/v2/problems/x", dict(status=404, body={"error": {"code": 404, "message": "Problem not found"}}))
    client, dummy = make_client(server, sleep=Sleeps())
    with pytest.raises(NotFound):
        client.get("/api/v2/problems/x")


def test_total_wait_bound_ends_retries_early(server):
    server.script("/api", dict(status=429, headers={"Retry-After": "120"}, body={"error": {"code": 429, "message": "slow down"}}))
    sleeps = Sleeps()
    client, dummy = make_client(server, sleep=sleeps, retry=_http.RetryPolicy(max_attempts=5, max_wait=10))
    with pytest.raises(RateLimited) as info:
        client.get("/api")
    assert sleeps == [] and client.request_count == 1
    assert "still rate limited" in str(info.value)


def test_total_wait_bound_counts_every_sleep(server):
    server.script("/api", dict(status=503))
    sleeps = Sleeps()
    retry = _http.RetryPolicy(max_attempts=10, max_wait=1.0, backoff=0.3, jitter=False)
    client, dummy = make_client(server, sleep=sleeps, retry=retry)
    with pytest.raises(UnexpectedResponse):
        client.get("/api")
    assert sum(sleeps) <= 1.0 and sleeps == [0.3, 0.6]
    assert client.request_count == 3


def test_429_without_retry_after_uses_the_service_default(server):
    server.script("/api", dict(status=429), dict(status=200, body={}))
    sleeps = Sleeps()
    retry = _http.RetryPolicy(max_attempts=3, max_wait=30, default_retry_after=5)
    client, dummy = make_client(server, sleep=sleeps, retry=retry)
    client.get("/api")
    assert sleeps == [5.0]


def test_no_secret_in_any_error_message(server):
    def echo_auth(handler):
        return {"error": {"code": 400, "message": "bad request from %s" % handler.headers.get("Authorization")}}

    server.script("/echo", dict(status=400, body=echo_auth))
    client, logs = make_client(server, sleep=Sleeps())
    with pytest.raises(UnexpectedResponse) as info:
        client.get("/echo", params={"api-token": TOKEN})
    text = json.dumps(info.value.to_fail_kwargs()) + str(info.value)
    assert TOKEN not in text and "ABCDEFGHIJKLMNOPQRSTUVWX" not in text
    assert "********" in text
    server.script("/retry", dict(status=503), dict(status=200, body={}))
    client.get("/retry", params={"api-token": TOKEN})
    assert logs and all(TOKEN not in line for line in logs)


def test_request_shape_json_multipart_user_agent_and_auth(server, tmp_path):
    client, dummy = make_client(server)
    client.post("/json", json_body={"message": "hi"}, params={"fields": "x"})
    sent = server.requests[-1]
    assert sent["headers"]["Authorization"] == "Api-Token " + TOKEN
    assert sent["headers"]["User-Agent"].startswith("selfheal.devops/")
    assert json.loads(sent["body"]) == {"message": "hi"} and sent["path"] == "/json?fields=x"
    attachment = tmp_path / "transcript.md"
    attachment.write_text("# transcript\n")
    with open(str(attachment), "rb") as handle:
        client.post("/upload", files={"file": ("transcript.md", handle, "text/markdown")}, headers={"X-Atlassian-Token": "no-check"})
    sent = server.requests[-1]
    assert sent["headers"]["Content-Type"].startswith("multipart/form-data")
    assert b'name="file"; filename="transcript.md"' in sent["body"] and b"# transcript" in sent["body"]
    assert sent["headers"]["X-Atlassian-Token"] == "no-check"


def test_empty_and_invalid_json_bodies(server):
    server.script("/empty", dict(status=204, body=b""))
    server.script("/html", dict(status=200, body=b"<html>proxy login</html>"))
    client, dummy = make_client(server)
    assert client.post("/empty").json is None
    with pytest.raises(UnexpectedResponse) as info:
        dummy_value = client.get("/html").json
        del dummy_value
    assert "Expected a JSON body" in str(info.value)


def test_version_matches_galaxy_yml():
    import os

    import yaml

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
    with open(os.path.join(root, "galaxy.yml")) as handle:
        assert yaml.safe_load(handle)["version"] == _http.COLLECTION_VERSION


@pytest.mark.parametrize("value, expected", [("1", 1.0), ("0.5", 0.5), (" 7 ", 7.0), ("-3", 0.0), ("soon", None), (None, None)])
def test_parse_retry_after(value, expected):
    assert _http.parse_retry_after(value) == expected


def test_parse_retry_after_http_date_in_the_past_is_zero():
    assert _http.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# --- TLS ------------------------------------------------------------------------------------------

def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u"selfheal test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(u"127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_verification_ca_path_and_opt_out(tmp_path):
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    srv = ScriptedServer(tls_context=context)
    try:
        strict = _http.Client(srv.url, service="Slack", retry=_http.RetryPolicy(max_attempts=1))
        with pytest.raises(CommunicationError) as info:
            strict.get("/api")
        assert "TLS error" in str(info.value)
        assert _http.Client(srv.url, ca_path=cert).get("/api").json == {"ok": True}
        assert _http.Client(srv.url, validate_certs=False).get("/api").json == {"ok": True}
    finally:
        srv.close()


def test_tls_to_a_plain_http_port_says_so_and_not_certificates(server):
    plain = server.url.replace("http://", "https://")
    client = _http.Client(plain, service="Jira", retry=_http.RetryPolicy(max_attempts=3, backoff=0.01), sleep=Sleeps())
    with pytest.raises(CommunicationError) as info:
        client.get("/rest/api/3/myself")
    text = str(info.value)
    assert "does not speak TLS on this port" in text and "scheme and port" in text
    assert "validate_certs" not in text and client.request_count == 1


# --- strict inputs: refused with the service named, before any request ----------------------------------

@pytest.mark.parametrize("timeout", [0, -1, "nan", "inf", "soon"])
def test_timeout_must_be_positive(server, timeout):
    with pytest.raises(InvalidInput) as info:
        _http.Client(server.url, service="Jira", timeout=timeout)
    assert str(info.value).startswith("Jira: timeout must be a number of seconds greater than 0")
    assert server.requests == []


def test_missing_or_bad_ca_path_names_the_service(server, tmp_path):
    with pytest.raises(InvalidInput) as info:
        _http.Client(server.url, service="Slack", ca_path=str(tmp_path / "nope.pem"))
    assert str(info.value) == "Slack: ca_path %s does not exist; nothing was sent" % (tmp_path / "nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(InvalidInput) as info:
        _http.Client(server.url, service="Slack", ca_path=str(junk))
    assert "Slack: ca_path %s holds no usable PEM certificate" % junk in str(info.value)
    # Not checked when verification is off: the bundle is not used.
    assert _http.Client(server.url, service="Slack", ca_path=str(junk), validate_certs=False).get("/x").status == 200


@pytest.mark.parametrize("kwargs, text", [
    (dict(max_attempts=0), "max_retries must be 0 or more (got -1)"),
    (dict(max_attempts=-4), "max_retries must be 0 or more (got -5)"),
    (dict(max_wait=-1), "max_retry_wait must be 0 or more seconds (got -1.0)"),
    (dict(max_wait=float("nan")), "max_retry_wait must be 0 or more seconds (got nan)"),
])
def test_negative_retry_options_are_refused(server, kwargs, text):
    with pytest.raises(InvalidInput) as info:
        _http.Client(server.url, service="Keptn", retry=_http.RetryPolicy(**kwargs))
    assert str(info.value) == "Keptn: %s; nothing was sent" % text
    assert server.requests == []


@pytest.mark.parametrize("url, hint", [
    ("jira.example.com", "(write it with https://, for example https://jira.example.com)"),
    ("ftp://jira.example.com", ""),
    ("https://", ""),
    ("", ""),
])
def test_url_without_a_scheme_is_refused_not_retried(url, hint):
    with pytest.raises(InvalidInput) as info:
        _http.Client(url, service="Jira")
    assert str(info.value).startswith("Jira: the URL must start with http:// or https:// and name a host")
    assert hint in str(info.value)


def test_url_in_the_error_is_redacted():
    with pytest.raises(InvalidInput) as info:
        _http.Client("xm.example.com/triggers?apiKey=abcdef123456", service="xMatters")
    assert "abcdef123456" not in str(info.value)


# --- error bodies are cut to a readable excerpt -----------------------------------------------------------

def test_a_100_kb_html_error_page_is_cut(server):
    page = "<html><head><style>body{color:red}</style><title>Oops</title></head><body><h1>Proxy error</h1>%s</body></html>" % (
        "<p>lorem ipsum dolor sit amet</p>" * 3100)
    server.script("/api", dict(status=500, body=page))
    client, dummy = make_client(server, sleep=Sleeps())
    with pytest.raises(UnexpectedResponse) as info:
        client.get("/api")
    text = str(info.value)
    assert len(page) > 100000 and len(text) < 600
    assert "Oops Proxy error lorem ipsum" in text and "<p>" not in text and "color:red" not in text
    assert "(cut; the body had %d characters)" % len(page) in text


def test_a_huge_json_error_message_is_cut(server):
    server.script("/api", dict(status=400, body={"errorMessages": ["x" * 50000]}))
    client, dummy = make_client(server, sleep=Sleeps())
    with pytest.raises(UnexpectedResponse) as info:
        client.post("/api", json_body={})
    assert len(str(info.value)) < 600 and "(cut; the body had 50000 characters)" in str(info.value)


def test_a_non_json_success_body_is_cut_in_the_error(server):
    server.script("/html", dict(status=200, body="<html>" + "y" * 10000 + "</html>"))
    client, dummy = make_client(server)
    with pytest.raises(UnexpectedResponse) as info:
        dummy_value = client.get("/html").json
        del dummy_value
    assert len(str(info.value)) < 400


# --- write_once: a lost answer is looked up by key, never re-sent blindly ----------------------------------------

def test_write_once_returns_the_record_found_and_sends_nothing_more(server):
    server.script("/issue", dict(status=502), dict(status=201, body={"key": "OPS-2"}))
    client, logs = make_client(server, sleep=Sleeps())
    lookups = []

    def lookup():
        lookups.append(1)
        return {"key": "OPS-1"}
    found = _http.write_once(client, lambda: client.post("/issue", json_body={}).json, lookup, "Jira issue", "labelled dt-P-1")
    assert found == {"key": "OPS-1"} and len(lookups) == 1 and len(server.requests) == 1
    assert "the answer to POST" in logs[-1] and "was lost (HTTP 502" in logs[-1] and "Jira issue labelled dt-P-1 exists" in logs[-1]


def test_write_once_resends_once_when_the_authoritative_lookup_finds_nothing(server):
    server.script("/chat.postMessage", dict(reset=True), dict(status=200, body={"ok": True, "ts": "1.2"}))
    client, logs = make_client(server, sleep=Sleeps())
    answer = _http.write_once(client, lambda: client.post("/chat.postMessage", json_body={}).json, lambda: None,
                              "Slack message", "dt-P-1/opened", resend=True)
    assert answer == {"ok": True, "ts": "1.2"} and len(server.requests) == 2
    assert "so it was not applied: sending it once more" in logs[-1]


def test_write_once_gives_up_after_two_lost_answers(server):
    server.script("/chat.postMessage", dict(status=504))
    client, dummy = make_client(server, sleep=Sleeps())
    with pytest.raises(AmbiguousWrite) as info:
        _http.write_once(client, lambda: client.post("/chat.postMessage", json_body={}).json, lambda: None,
                         "Slack message", "dt-P-1/opened", resend=True)
    assert len(server.requests) == 2
    assert "Slack message may have been applied, but no Slack message was found by its key dt-P-1/opened" in str(info.value)


def test_write_once_without_resend_looks_for_settle_seconds_then_says_so(server):
    server.script("/events/ingest", dict(delay=0.5, status=201, body={}))
    client, dummy = make_client(server, sleep=Sleeps(), timeout=0.2)
    now = [0.0]

    def clock():
        return now[0]

    def lookup():
        now[0] += 1.0
        return None
    with pytest.raises(AmbiguousWrite) as info:
        _http.write_once(client, lambda: client.post("/events/ingest", json_body={}).json, lookup, "event", "'restart' marked k",
                         settle=3.0, interval=1.0, clock=clock)
    assert len(server.requests) == 1 and now[0] >= 3.0 and client.sleep and len(client.sleep) >= 2
    assert "read timeout" in str(info.value) and "(a re-run looks it up again before writing)" in str(info.value)
    assert info.value.to_fail_kwargs()["may_have_been_applied"] is True


def test_write_once_passes_other_errors_through(server):
    server.script("/issue", dict(status=400, body={"errorMessages": ["bad"]}))
    client, dummy = make_client(server, sleep=Sleeps())
    with pytest.raises(UnexpectedResponse):
        _http.write_once(client, lambda: client.post("/issue", json_body={}).json, lambda: {"key": "X"}, "Jira issue", "k")
    assert len(server.requests) == 1
