"""Real ansible-rulebook, the collection installed from its tarball, the Dynatrace source by FQCN: the
sandbox's problem notifications (webhook) and the Problems API (poll) fire rules that run modules."""

import pytest

from sandbox import credentials
from utils import rulebook_harness


@pytest.fixture
def activation(installed_collection, sandbox, tmp_path):
    port = rulebook_harness.free_port()
    out = tmp_path / "fired"
    out.mkdir()

    def record(intake):
        return {"run_module": {"name": "ansible.builtin.copy", "module_args": {
            "content": "{{ event.incident_key }} {{ event.problem.status }} {{ event.meta.hosts }}",
            "dest": str(out) + "/" + intake + "-{{ event.transition }}-{{ event.incident_key }}"}}}

    rulebook = [{
        "name": "dynatrace problems", "hosts": "all",
        "sources": [
            {"name": "webhook", "selfheal.devops.dynatrace": {"port": port, "token": "hook-token"}},
            {"name": "poll", "selfheal.devops.dynatrace": {
                "mode": "poll", "url": sandbox.url + credentials.DYNATRACE_PREFIX,
                "api_token": credentials.DYNATRACE_TOKEN, "interval": 1, "problem_selector": 'text("polled")'}},
        ],
        "rules": [
            {"name": "webhook transition", "condition": 'event.intake == "webhook"', "action": record("webhook")},
            {"name": "poll transition", "condition": 'event.intake == "poll"', "action": record("poll")},
        ],
    }]
    inventory = {"all": {"hosts": {"web-01": {"ansible_connection": "local"}, "localhost": {"ansible_connection": "local"}}}}
    running = rulebook_harness.Activation(rulebook, installed_collection, inventory=inventory, workdir=str(tmp_path / "eda")).start()
    running.port, running.out = port, out
    try:
        running.wait_for_url("http://127.0.0.1:%d/dynatrace/problems/health" % port, timeout=90)
        sandbox.call("POST", "/_sandbox/dynatrace/webhook", {
            "url": "http://127.0.0.1:%d/dynatrace/problems" % port, "headers": {"Authorization": "Bearer hook-token"}})
        yield running
    finally:
        running.stop()


def fired(activation, name, timeout=60):
    path = activation.out / name
    rulebook_harness.wait_until(path.exists, timeout, what="rule output " + name)
    return path.read_text()


def test_webhook_notification_fires_the_rule_on_the_impacted_host(sandbox, activation):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
        "title": "Process crashed", "entities": [{"type": "HOST", "name": "web-01"}, {"type": "SERVICE", "name": "checkout"}]})
    key = "dt-" + problem["displayId"]
    text = fired(activation, "webhook-opened-" + key)
    assert text.startswith(key + " OPEN") and "web-01" in text
    # Dynatrace re-sends the same notification: no second rule firing.
    sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/notify" % problem["displayId"], {"count": 5})
    sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/resolve" % problem["displayId"], {})
    assert fired(activation, "webhook-closed-" + key).startswith(key + " CLOSED")
    assert activation.output().count("'transition': 'opened'") == 1
    assert all(o["status"] == 202 for o in sandbox.outbound())


def test_poll_sees_open_and_close(sandbox, activation):
    problem = sandbox.call("POST", "/_sandbox/dynatrace/problems", {"title": "polled disk full", "entities": [{"type": "HOST", "name": "web-01"}]})
    key = "dt-" + problem["displayId"]
    assert fired(activation, "poll-opened-" + key).startswith(key + " OPEN")
    sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/resolve" % problem["displayId"], {})
    assert fired(activation, "poll-closed-" + key).startswith(key + " CLOSED")
