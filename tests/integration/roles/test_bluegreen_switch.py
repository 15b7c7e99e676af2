"""bluegreen_switch with real parts on 127.0.0.1: nginx (apt) and HAProxy (apt) in front of two real backends
that report their colour (tests/utils/bluegreen_estate.py), driven through ansible-playbook."""

import json

import pytest

from utils import bluegreen_estate

ROLE = "selfheal.devops.bluegreen_switch"
ROUTERS = ("nginx", "haproxy")
FAST = {"bluegreen_switch_health_interval": 0.05, "bluegreen_switch_verify_requests": 3}


@pytest.fixture(params=ROUTERS)
def estate(request, tmp_path):
    with bluegreen_estate.Estate(routers=(request.param,), active="blue", workdir=str(tmp_path)) as running:
        running.router = request.param
        yield running


def switch(target, name=None):
    """Include the role; a failure is caught and its message kept in `switch_error` (the play goes on)."""
    name = name or "switch to " + target
    return {"name": name + " (block)", "block": [
        {"name": name, "ansible.builtin.include_role": {"name": ROLE}, "vars": {"bluegreen_switch_target": target}}],
        "rescue": [{"name": name + " failed", "ansible.builtin.set_fact": {"switch_error": "{{ ansible_failed_result.msg }}"}}]}


def errors(result):
    return [r["ansible_facts"]["switch_error"] for n, r in result.results.items() if n.endswith(" failed")]


def report(name):
    return {"name": name, "ansible.builtin.debug": {"var": "bluegreen_switch_result"}}


def run(playbook, estate, tasks, check=False, **extra):
    settings = dict(estate.role_vars(estate.router), **FAST)
    settings.update(extra)
    return playbook(tasks, extra_vars=settings, diff=True, check=check)


def test_switch_check_mode_idempotence(playbook, estate):
    checked = run(playbook, estate, [switch("green", "check"), report("after check")], check=True)
    assert checked.rc == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    outcome = checked["after check"]["bluegreen_switch_result"]
    assert outcome["changed"] and outcome["previous"] == "blue" and not outcome["verified"]
    assert estate.active_colour(estate.router, requests=10) == "blue"
    if estate.router == "nginx":  # the diff of the file, nothing written
        assert "+map $host $bluegreen_upstream { default green; }" in checked.stdout
        assert "default blue" in open(estate.nginx.active_file).read()
    else:  # the servers states it would set
        assert "+app/green: ready" in checked.stdout and "+app/blue: maint" in checked.stdout

    tasks = [switch("green", "apply"), report("after apply"), switch("green", "rerun"), report("after rerun")]
    result = run(playbook, estate, tasks)
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-3000:]
    applied = result["after apply"]["bluegreen_switch_result"]
    assert applied["changed"] and applied["verified"] and not applied["reverted"] and applied["switch_seconds"] >= 0
    rerun = result["after rerun"]["bluegreen_switch_result"]
    assert not rerun["changed"] and rerun["previous"] == "green"
    assert estate.active_colour(estate.router, requests=10) == "green"


def test_refuses_an_unhealthy_colour_and_changes_nothing(playbook, estate):
    estate.green.configure(healthy=False)
    result = run(playbook, estate, [switch("green")])
    [error] = errors(result)
    assert error.startswith("Refusing to switch %s to green" % estate.router) and "nothing was changed" in error
    assert estate.active_colour(estate.router, requests=10) == "blue"


def test_reverts_when_the_router_does_not_answer_from_the_target(playbook, estate):
    estate.green.configure(colour="blue")  # healthy on /health, but what answers through the router is not green
    result = run(playbook, estate, [switch("green"), report("after")], bluegreen_switch_verify_timeout=1)
    outcome = result["after"]["bluegreen_switch_result"]
    assert outcome["reverted"] and not outcome["verified"] and outcome["previous"] == "blue"
    [error] = errors(result)
    assert "did not pass its check through the router" in error and "traffic was switched back to blue" in error
    estate.green.reset()
    assert estate.active_colour(estate.router, requests=10) == "blue"


def test_ten_switches_under_load_answer_every_request_with_2xx(playbook, estate):
    url = estate.router_url(estate.router)
    # Bounded: 2 threads per client, a 3 ms pause between requests, at most 100,000 requests or 120 s each;
    # stopped when the switches are done (the test checks the load lasted that long).
    clients = [bluegreen_estate.LoadClient(url, keepalive=True, concurrency=2, max_requests=100000, max_seconds=120, pause=0.003),
               bluegreen_estate.LoadClient(url, keepalive=False, concurrency=2, max_requests=100000, max_seconds=120, pause=0.003)]
    for client in clients:
        client.start()
    try:
        tasks = [switch(colour, "switch %d to %s" % (number, colour))
                 for number, colour in enumerate(["green", "blue"] * 5, start=1)]
        result = run(playbook, estate, tasks)
    finally:
        reports = [client.stop() for client in clients]
    assert result.rc == 0 and errors(result) == [], result.stdout[-3000:] + result.stderr[-3000:]
    figures = [r.as_dict() for r in reports]
    print("\n%s under load while switching 10 times: %s" % (estate.router, json.dumps(figures)))
    for figure in figures:
        assert 1000 < figure["requests"] < 100000 and figure["seconds"] < 120, figure  # ran throughout the switches
        assert set(figure["colours"]) == {"blue", "green"}, figure
        assert figure["non_2xx"] == 0 and figure["failed"] == 0, figure
    assert estate.active_colour(estate.router, requests=10) == "blue"
