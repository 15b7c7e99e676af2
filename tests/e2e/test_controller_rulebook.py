"""The controller rulebook (self_healing_controller) in real ansible-rulebook, launching job templates on a local
stand-in of the AWX API: every launch carries a limit, never empty and never the whole inventory."""

from utils import awx_standin
from sandbox import credentials
from utils import estate
from utils import rulebook_harness

TOKEN = "controller-hook"
TEMPLATES = ["selfheal - process crash", "selfheal - full disk", "selfheal - blue-green rollback",
             "selfheal - resolve incident"]


def test_no_launch_ever_carries_an_empty_or_unbounded_limit(installed_collection, sandbox, tmp_path):
    port = rulebook_harness.free_port()
    with awx_standin.AwxStandIn(TEMPLATES) as awx:
        env = credentials.environment(sandbox.url)
        env.update({"EDA_CONTROLLER_URL": awx.url, "EDA_CONTROLLER_TOKEN": awx.token})
        inventory = {"all": {"hosts": {"web-01": {}, "web-02": {}, "db-01": {}}}}
        activation = rulebook_harness.Activation(
            "selfheal.devops.self_healing_controller", installed_collection, inventory=inventory, env=env,
            variables={"selfheal_webhook_port": port, "selfheal_webhook_token": TOKEN,
                       "selfheal_state_file": str(tmp_path / "state.db")}, workdir=str(tmp_path / "eda"))
        activation.start()
        try:
            activation.wait_for_url("http://127.0.0.1:%d/dynatrace/problems/health" % port, timeout=90)
            sandbox.call("POST", "/_sandbox/dynatrace/webhook", {"url": "http://127.0.0.1:%d/dynatrace/problems" % port,
                                                                 "headers": {"Authorization": "Bearer " + TOKEN}})
            on_hosts = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
                "title": "Process unavailable: web", "severity": "AVAILABILITY", "tags": {"process": "web"},
                "entities": [{"type": "HOST", "name": "web-01"}, {"type": "HOST", "name": "web-02"},
                             {"type": "PROCESS_GROUP_INSTANCE", "name": "web"}]})
            no_host = sandbox.call("POST", "/_sandbox/dynatrace/problems", {
                "title": "Process unavailable: api", "severity": "AVAILABILITY", "tags": {"process": "api"},
                "entities": [{"type": "PROCESS_GROUP_INSTANCE", "name": "api"}]})
            sandbox.call("POST", "/_sandbox/dynatrace/problems", {
                "title": "Response time degradation: checkout", "severity": "PERFORMANCE",
                "entities": [{"type": "SERVICE", "name": "checkout"}], "tags": {"bluegreen": "green"}})
            sandbox.call("POST", "/_sandbox/dynatrace/problems/%s/resolve" % no_host["displayId"], {})
            estate.wait_until(lambda: len(awx.launches) >= 4, timeout=90, what="four job launches")
        finally:
            activation.stop()
    limits = sorted((launch["template"], launch["limit"]) for launch in awx.launches)
    assert limits == [("selfheal - blue-green rollback", "localhost,bluegreen_routers"),
                      ("selfheal - process crash", "localhost"),  # no host named: only the controller, which asks a human
                      ("selfheal - process crash", "localhost,web-01,web-02"),
                      ("selfheal - resolve incident", "localhost")], limits
    crash = [launch for launch in awx.launches if launch["template"] == "selfheal - process crash"]
    assert {launch["extra_vars"]["ansible_eda"]["event"]["incident_key"] for launch in crash} == {
        "dt-" + on_hosts["displayId"], "dt-" + no_host["displayId"]}
