"""kill -9 of the whole activation (ansible-rulebook and every playbook it started, as when its container dies) at
three moments of a crash incident, then a restart: the service ends healthy, the problem is closed, and the page,
ticket and channel each exist exactly once.

The restarted activation learns what was left unfinished from Dynatrace itself (reconciliation at start), so this
holds with or without the state file; the playbooks are idempotent on the incident key.
"""

import os

import pytest

from utils import estate
from utils.loops import channels_for, crash_and_report, pages_for, problem_state, self_healing_loop, tickets_for, timeline

# The activation's scope for reconciliation: the alerting profile the sandbox's problems carry.
VARIABLES = {"selfheal_problem_selector": 'problemFilterNames("Self-healing")'}


@pytest.fixture(scope="module")
def loop(installed_collection, sandbox_session, tmp_path_factory):
    with self_healing_loop(installed_collection, sandbox_session, tmp_path_factory.mktemp("e2e-restart"),
                           variables=VARIABLES) as activation:
        yield activation


def restart(loop):
    loop.kill()
    loop.start()
    loop.wait_for_url(loop.health_url, timeout=90)


def assert_healed_once(loop, sandbox, problem, old_pid):
    key = "dt-" + problem["displayId"]
    estate.wait_until(lambda: problem_state(sandbox, problem)["status"] == "CLOSED" and
                      any(r["step"] == "archive channel" for r in timeline(loop, key)["records"]),
                      timeout=180, what="the incident resolved after the restart")
    new = loop.supervisor.pid()
    assert new and new != old_pid and estate.alive(new) and estate.healthy(loop.supervisor.port)
    assert len(pages_for(sandbox, key)) == 1
    [ticket] = tickets_for(sandbox, key)
    assert ticket["fields"]["status"] == "Resolved"
    [channel] = channels_for(sandbox, key)
    assert channel["is_archived"]
    comments = [c["content"] for c in sandbox.state()["dynatrace"]["comments"][problem["problemId"]]]
    assert sum(c.startswith("[selfheal.devops] Remediation started") for c in comments) == 1, comments


def test_killed_before_the_hand_off(loop, sandbox_session):
    """The notification arrives while the activation is dead (no hand-off possible); the restart finds the problem."""
    sandbox = sandbox_session
    loop.kill()
    sent = len(sandbox.outbound())
    old, problem = crash_and_report(loop, sandbox)
    estate.wait_until(lambda: len(sandbox.outbound()) > sent, timeout=30, what="the delivery attempt")
    assert sandbox.outbound()[-1]["error"]  # refused: nobody was listening
    loop.start()
    loop.wait_for_url(loop.health_url, timeout=90)
    assert_healed_once(loop, sandbox, problem, old)


def test_killed_after_the_page(loop, sandbox_session):
    sandbox = sandbox_session
    old, problem = crash_and_report(loop, sandbox)
    key = "dt-" + problem["displayId"]
    estate.wait_until(lambda: pages_for(sandbox, key), timeout=90, what="the page")
    restart(loop)
    assert_healed_once(loop, sandbox, problem, old)


def test_killed_during_the_fix(loop, sandbox_session):
    sandbox = sandbox_session
    guard = os.path.join(str(loop.workdir), "restarts", "web.json")
    if os.path.exists(guard):
        os.unlink(guard)  # the crash-loop guard's record of earlier tests' restarts
    old, problem = crash_and_report(loop, sandbox)
    estate.wait_until(lambda: os.path.exists(guard), timeout=90, interval=0.01, what="the restart attempt recorded")
    restart(loop)
    assert_healed_once(loop, sandbox, problem, old)
