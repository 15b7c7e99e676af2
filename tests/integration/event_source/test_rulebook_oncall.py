"""Real ansible-rulebook, collection installed from its tarball, source by FQCN: an xMatters responder's
choice, sent by the sandbox as a response callback, fires the matching rule."""

import json
import os
import urllib.request

import pytest

from sandbox import credentials
from utils import rulebook_harness


def sandbox_post(sandbox, path, body, headers=None):
    send = {"Content-Type": "application/json"}
    send.update(headers or {})
    request = urllib.request.Request(sandbox.url + path, data=json.dumps(body).encode(), method="POST", headers=send)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture
def activation(installed_collection, tmp_path):
    port = rulebook_harness.free_port()
    out = tmp_path / "fired"
    out.mkdir()
    rulebook = [{
        "name": "on-call responses",
        "hosts": "all",
        "sources": [{"selfheal.devops.oncall_callback": {"port": port, "token": "cb-token"}}],
        "rules": [
            {"name": "restart chosen", "condition": 'event.oncall.response == "Restart"',
             "action": {"run_module": {"name": "ansible.builtin.copy", "module_args": {
                 "content": "{{ event.oncall.provider }} {{ event.oncall.incident_key }} {{ event.oncall.responder }}",
                 "dest": str(out / "restart")}}}},
            {"name": "ignore chosen", "condition": 'event.oncall.response == "Ignore"',
             "action": {"run_module": {"name": "ansible.builtin.copy", "module_args": {
                 "content": "{{ event.oncall.incident_key }}", "dest": str(out / "ignore")}}}},
        ],
    }]
    running = rulebook_harness.Activation(rulebook, installed_collection, workdir=str(tmp_path / "eda")).start()
    running.port = port
    running.out = out
    try:
        running.wait_for_url("http://127.0.0.1:%d/oncall/callback/health" % port, timeout=90)
        yield running
    finally:
        running.stop()


def test_xmatters_response_callback_fires_its_rule(sandbox, activation):
    sandbox_post(sandbox, "/_sandbox/xmatters/config", {
        "delay": 0, "callback_url": "http://127.0.0.1:%d/oncall/callback" % activation.port,
        "callback_headers": {"Authorization": "Bearer cb-token"}})
    env = credentials.environment(sandbox.url)
    trigger = sandbox_post(sandbox, env["XMATTERS_TRIGGER_URL"][len(sandbox.url):], {
        "priority": "HIGH", "recipients": [{"id": "Ops Primary", "recipientType": "GROUP"}],
        "properties": {"selfheal_incident_key": "dt-P-4242", "Summary": "checkout crashed"},
        "responseOptions": [{"text": "Restart"}, {"text": "Ignore"}]},
        headers={"Authorization": "Basic " + __import__("base64").b64encode(
            ("%s:%s" % (credentials.XMATTERS_USER, credentials.XMATTERS_PASSWORD)).encode()).decode()})
    request_id = trigger["requestId"]

    answer = rulebook_harness.wait_until(
        lambda: _respond(sandbox, request_id, "Restart"), timeout=15, what="the xMatters event to exist")
    assert answer.get("callback") or answer.get("delivered_to")

    fired = rulebook_harness.wait_until((activation.out / "restart").exists, timeout=60, what="the rule to fire")
    assert fired
    assert (activation.out / "restart").read_text().split()[:2] == ["xmatters", "dt-P-4242"]
    assert not (activation.out / "ignore").exists()
    deliveries = [o for o in sandbox.outbound() if o["url"].endswith("/oncall/callback")]
    assert len(deliveries) == 1 and deliveries[0]["status"] == 202


def _respond(sandbox, request_id, option):
    try:
        return sandbox_post(sandbox, "/_sandbox/xmatters/respond", {"requestId": request_id, "response": option})
    except urllib.error.HTTPError as error:
        if error.code in (404, 409):
            return None  # the event is created asynchronously; not there yet
        raise


def test_wrongly_authenticated_callback_fires_nothing(sandbox, activation):
    request = urllib.request.Request("http://127.0.0.1:%d/oncall/callback" % activation.port,
                                     data=json.dumps({"eventIdentifier": 1, "response": "Restart"}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer wrong"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 401
    assert "received event" not in activation.output()
    assert not os.listdir(str(activation.out))
