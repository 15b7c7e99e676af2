"""Delivery inside real ansible-rulebook (collection from its tarball): count the events that reached the rules.

ansible-rulebook gives the source an asyncio.Queue(1) and evaluates rules on the source's loop; an event answered
202 must have been handed over, and one that could not be is answered 503: the sender may deliver it again, and the
source keeps it and hands it over itself as soon as the rules engine has room (Dynatrace does not document retries).
"""

import asyncio
import collections
import json
import re
import time

import aiohttp
import pytest

from utils import rulebook_harness

TOKEN = "delivery-token"
PATTERN = re.compile(r"DELIVERED (dt-P-\d+) (opened|updated|closed)")


def notification(number, state="OPEN"):
    pid = "-%019d_1V2" % number
    return {"ProblemID": "P-%d" % number, "PID": pid, "ProblemTitle": "Process unavailable", "State": state,
            "ProblemSeverity": "AVAILABILITY", "ImpactedEntities": [{"type": "HOST", "name": "web-%d" % (number % 7),
                                                                     "entity": "HOST-%016X" % number}]}


def start_activation(collections_path, workdir, port, state_file=None, slow_action=None, env=None, **options):
    """An activation whose rule prints each event it receives; slow_action (a playbook path) runs after the print."""
    source = dict({"port": port, "token": TOKEN, "reconcile": False}, **options)
    if state_file:
        source["state_file"] = state_file
    actions = [{"debug": {"msg": "DELIVERED {{ event.incident_key }} {{ event.transition }}"}}]
    if slow_action:
        actions.append({"run_playbook": {"name": slow_action}})
    rulebook = [{"name": "delivery", "hosts": "all",
                 "sources": [{"name": "dynatrace", "selfheal.devops.dynatrace": source}],
                 "rules": [{"name": "count", "condition": "event.transition is defined", "actions": actions}]}]
    activation = rulebook_harness.Activation(rulebook, collections_path, workdir=str(workdir), print_events=False,
                                             env=env)
    activation.start()
    activation.wait_for_url("http://127.0.0.1:%d/dynatrace/problems/health" % port, timeout=90)
    return activation


def delivered(activation):
    return collections.Counter(PATTERN.findall(activation.output()))


async def send_all(url, bodies, concurrency, retry_503=True):
    """Send every body from `concurrency` senders; a 503 is sent again after its Retry-After (capped at 1 s)."""
    statuses = collections.Counter()
    first_answers = collections.Counter()
    pending = list(enumerate(bodies))
    headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def sender():
            while pending:
                index, body = pending.pop(0)
                for attempt in range(60):
                    async with session.post(url, data=json.dumps(body), headers=headers) as response:
                        await response.read()
                        statuses[response.status] += 1
                        if attempt == 0:
                            first_answers[response.status] += 1
                        if response.status != 503 or not retry_503:
                            break
                        await asyncio.sleep(min(1.0, float(response.headers.get("Retry-After", "1"))))

        await asyncio.gather(*[sender() for dummy in range(concurrency)])
    return statuses, first_answers


def wait_for_count(activation, expected, timeout=60):
    rulebook_harness.wait_until(lambda: sum(delivered(activation).values()) >= expected, timeout,
                                what="%d events in the rules" % expected)
    time.sleep(0.5)  # nothing more may arrive: a surplus would be a duplicate
    return delivered(activation)


@pytest.mark.slow
def test_300_distinct_problems_from_16_concurrent_senders_all_reach_the_rules(installed_collection, tmp_path):
    port = rulebook_harness.free_port()
    activation = start_activation(installed_collection, tmp_path / "eda", port, str(tmp_path / "state.db"))
    try:
        statuses, dummy = asyncio.run(send_all("http://127.0.0.1:%d/dynatrace/problems" % port,
                                               [notification(n) for n in range(300)], 16))
        counts = wait_for_count(activation, 300)
    finally:
        activation.stop()
    assert statuses[202] == 300 and set(statuses) <= {202, 503}, statuses
    assert sorted(counts) == sorted(("dt-P-%d" % n, "opened") for n in range(300))
    assert set(counts.values()) == {1}
    assert "QueueFull" not in activation.output()


@pytest.mark.slow
def test_a_burst_right_after_start_is_delivered_or_refused_then_delivered(installed_collection, tmp_path):
    port = rulebook_harness.free_port()
    activation = start_activation(installed_collection, tmp_path / "eda", port)
    try:
        url = "http://127.0.0.1:%d/dynatrace/problems" % port
        # First: the burst alone, no retries: every 202 is an event in the rules, and so is every 503 (kept by the
        # source and handed over once the rules engine has room).
        statuses, dummy = asyncio.run(send_all(url, [notification(n) for n in range(100)], 32, retry_503=False))
        assert set(statuses) <= {202, 503}, statuses
        counts = wait_for_count(activation, 100)
        assert sum(counts.values()) == 100, (statuses, len(counts))
        # Then the sender's retries of everything: all 100 delivered, none twice.
        asyncio.run(send_all(url, [notification(n) for n in range(100)], 32))
        counts = wait_for_count(activation, 100)
    finally:
        activation.stop()
    assert sorted(counts) == sorted(("dt-P-%d" % n, "opened") for n in range(100)) and set(counts.values()) == {1}


@pytest.mark.slow
def test_resolved_half_a_second_after_the_first_notification_following_a_restart(installed_collection, tmp_path):
    port = rulebook_harness.free_port()
    state_file = str(tmp_path / "state" / "dynatrace.db")
    url = "http://127.0.0.1:%d/dynatrace/problems" % port
    first = start_activation(installed_collection, tmp_path / "eda-1", port, state_file)
    try:
        asyncio.run(send_all(url, [notification(1)], 1))
        wait_for_count(first, 1)
    finally:
        first.stop()
    second = start_activation(installed_collection, tmp_path / "eda-2", port, state_file)
    try:
        asyncio.run(send_all(url, [notification(2)], 1))  # right after the restart
        time.sleep(0.5)
        asyncio.run(send_all(url, [notification(2, "RESOLVED"), notification(1, "RESOLVED"), notification(1)], 1))
        counts = wait_for_count(second, 3)
    finally:
        second.stop()
    assert counts == collections.Counter({("dt-P-2", "opened"): 1, ("dt-P-2", "closed"): 1, ("dt-P-1", "closed"): 1})


@pytest.mark.slow
def test_refused_while_the_rules_engine_is_busy_reach_the_rules_without_a_retry(installed_collection, tmp_path):
    """With its limit of concurrent actions reached, ansible-rulebook takes no event until an action ends (back
    pressure); for longer than handoff_timeout, notifications are answered 503. The sender never retries: all reach
    the rules, once."""
    (tmp_path / "project").mkdir()  # ansible-rulebook copies the playbook's folder: not the one holding the activation
    playbook = tmp_path / "project" / "slow.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.pause:\n        seconds: 1\n")
    port = rulebook_harness.free_port()
    activation = start_activation(installed_collection, tmp_path / "eda", port, slow_action=str(playbook),
                                  env={"EDA_MAX_CONCURRENT_ACTIONS": "1"}, handoff_timeout=0.3, meta_hosts=False)
    try:
        statuses, dummy = asyncio.run(send_all("http://127.0.0.1:%d/dynatrace/problems" % port,
                                               [notification(n) for n in range(8)], 8, retry_503=False))
        counts = wait_for_count(activation, 8, timeout=120)
    finally:
        activation.stop()
    assert statuses[503] >= 1, statuses  # the engine really was busy: some were refused at first
    assert sorted(counts) == sorted(("dt-P-%d" % n, "opened") for n in range(8)) and set(counts.values()) == {1}
    assert "kept, and handed over as soon as there is room" in activation.output()
