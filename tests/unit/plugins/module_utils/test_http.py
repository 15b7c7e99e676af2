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
    AuthError,
    CommunicationError,
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
    with pytest.raises(CommunicationError) as info:
        client.post("/api", json_body={"create": "ticket"})
    assert client.request_count == 1
    assert "failed after 1 attempt(s)" in str(info.value)
    server.script("/api", dict(reset=True), dict(status=200, body={"ok": True}))
    assert client.post("/api", json_body={"dedup_key": "k"}, idempotent=True).status == 200


def test_read_timeout_is_a_clear_error(server):
    server.script("/slow", dict(delay=1.0, status=200, body={"ok": True}))
    client, dummy = make_client(server, sleep=Sleeps(), timeout=0.3)
    with pytest.raises(CommunicationError) as info:
        client.post("/slow", json_body={})
    assert "no response within 0 s (read timeout)" in str(info.value) or "read timeout" in str(info.value)
    assert client.request_count == 1


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
