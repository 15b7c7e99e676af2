"""The sandbox's TLS mode (server.py --tls): a CA generated at start, its bundle beside the URL file, and the
collection's validate_certs / ca_path options exercised through real ansible-playbook."""

import os
import ssl
import subprocess
import sys

import pytest
import requests

from sandbox import credentials

SERVER = os.path.join(os.path.dirname(credentials.__file__), "server.py")
DYN = {"Authorization": "Api-Token " + credentials.DYNATRACE_TOKEN}


class TlsSandbox(object):
    def __init__(self, directory):
        self.url_file = os.path.join(str(directory), "sandbox.url")
        self.process = subprocess.Popen([sys.executable, SERVER, "--port", "0", "--tls", "--url-file", self.url_file],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first, second = self.process.stdout.readline(), self.process.stdout.readline()
        if not (first.startswith("SANDBOX_URL=") and second.startswith("SANDBOX_CA=")):
            self.process.kill()
            raise RuntimeError("TLS sandbox did not start: %r %r %s" % (first, second, self.process.stderr.read()))
        self.url = first.strip().split("=", 1)[1]
        self.ca = second.strip().split("=", 1)[1]

    def call(self, method, path, body=None):
        response = requests.request(method, self.url + path, json=body, verify=self.ca, timeout=10)
        assert response.status_code < 300, response.text
        return response.json()

    def stop(self):
        self.process.terminate()
        self.process.communicate(timeout=10)


@pytest.fixture(scope="module")
def tls_sandbox(tmp_path_factory):
    handle = TlsSandbox(tmp_path_factory.mktemp("tls"))
    yield handle
    handle.stop()


@pytest.fixture
def tls(tls_sandbox):
    tls_sandbox.call("POST", "/_sandbox/reset")
    return tls_sandbox


def test_tls_mode_serves_https_with_the_ca_written_beside_the_url_file(tls):
    assert tls.url.startswith("https://127.0.0.1:")
    assert tls.ca == tls.url_file + ".ca" and os.path.exists(tls.ca)
    with open(tls.url_file) as handle:
        assert handle.read().strip() == tls.url
    with open(tls.ca) as handle:
        bundle = handle.read()
    assert bundle.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" not in bundle
    leftovers = [name for name in os.listdir(os.path.dirname(tls.ca)) if "key" in name.lower()]
    assert leftovers == []  # no private key is left on disk
    port = tls.url.rsplit(":", 1)[1]
    for host in ("127.0.0.1", "localhost"):  # the certificate names both
        assert requests.get("https://%s:%s/dynatrace/api/v2/problems" % (host, port), headers=DYN,
                            verify=tls.ca, timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls.url + "/dynatrace/api/v2/problems", headers=DYN, timeout=10)  # the system CAs do not know it
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(tls.url.replace("https://", "http://") + "/", timeout=10)  # no plain HTTP on that port


def test_a_vendor_sdk_reaches_the_tls_sandbox_with_the_ca(tls):
    from slack_sdk import WebClient

    client = WebClient(token=credentials.SLACK_TOKEN, base_url=tls.url + credentials.SLACK_PREFIX + "/",
                       ssl=ssl.create_default_context(cafile=tls.ca))
    assert client.auth_test()["ok"] is True


def run_info(playbook, tls, **options):
    task = {"name": "problems", "selfheal.devops.dynatrace_problem_info": dict(problem_selector='status("open")', **options),
            "ignore_errors": True}
    env = credentials.environment(tls.url)
    run = playbook([task], env=env)
    run.assert_no_secret()
    assert "Traceback" not in run.stdout + run.stderr
    return run["problems"]


def test_a_module_works_with_ca_path(playbook, tls):
    tls.call("POST", "/_sandbox/dynatrace/problems", {"title": "Disk full over TLS"})
    result = run_info(playbook, tls, ca_path=tls.ca)
    assert not result.get("failed"), result
    assert [p["title"] for p in result["problems"]] == ["Disk full over TLS"]


def test_a_module_fails_clearly_when_the_certificate_cannot_be_verified(playbook, tls):
    result = run_info(playbook, tls, validate_certs=True)
    assert result["failed"] is True
    message = result["msg"]
    assert "certificate" in message.lower() or "tls" in message.lower(), message
    assert "ca_path" in message or "validate_certs" in message, message
    assert [e["path"] for e in tls.call("GET", "/_sandbox/log")] == ["/_sandbox/log"]  # no API request got through


def test_a_module_works_without_verification_when_told_so(playbook, tls):
    tls.call("POST", "/_sandbox/dynatrace/problems", {"title": "unverified"})
    result = run_info(playbook, tls, validate_certs=False)
    assert not result.get("failed"), result
    assert [p["title"] for p in result["problems"]] == ["unverified"]
