"""Slack clicks through the selfheal.devops.slack_actions source: answer time (Slack gives up after 3 s) and the time
until the event reached the rules, side by side with the same plumbing without Slack's parts.

Rows, measured one after the other in the same run, each with --clicks sequential clicks then --burst concurrent ones
(a channel full of responders clicking at once):

  ceiling         a bare aiohttp server that reads the form body and answers an empty 200 (nothing is delivered)
  oncall_callback the oncall_callback source (same webhook plumbing: JSON body, token check, awaited hand-off)
  slack_actions   the slack_actions source: form body, Slack signature (HMAC-SHA256, timestamp, replay record),
                  payload parsing, allow-list by user id, awaited hand-off
  slack_group     the same with the allow-list naming a user group, read from the sandbox's Slack API (cached after
                  the first click, as in production)
  rulebook        slack_actions inside a real ansible-rulebook activation (collection installed from its tarball),
                  one rule `event.slack.action == "approve"` with print_event: "event" = the rule fired (banner time)

In-process rows run the source's main() with what ansible-rulebook gives a source, an asyncio.Queue(1), drained by a
consumer that notes when it took each event; the clicks are sent from the same process (aiohttp). Latencies are
per click; the figures to compare are the ratios to the ceiling in the same run. Targets (issue 18): every answer
under Slack's 3 s, and click -> rule fired p95 <= 1.5 s in the activation.

    .venv/bin/python bench/bench_slack_actions.py [--clicks 300] [--burst 50] [--rulebook-clicks 40]

Writes bench/results/slack_actions.json (with the 1-minute load average: the machine may be shared), prints a table
and exits 1 when a target is missed.
"""

import argparse
import asyncio
import datetime
import hashlib
import hmac
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import aiohttp
from aiohttp import web

from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import oncall_callback, slack_actions
from sandbox import credentials
from utils import rulebook_harness
from utils.sandbox_control import start_sandbox, stop_sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET = "bench-signing-secret"
TOKEN = "bench-token"
BANNER_TIME = re.compile(r"^\*\* (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \[event\]")
TRIGGER_LINE = re.compile(r"^bench-\d+-\d+$")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def click_body(trigger, user="U0ONCALL01"):
    payload = {"type": "block_actions", "team": {"id": "T0SANDBOX1"},
               "user": {"id": user, "username": "oncall-primary", "team_id": "T0SANDBOX1"},
               "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0BENCH"},
               "trigger_id": trigger, "channel": {"id": "C0BENCH", "name": "inc-dt-p-1234"},
               "response_url": "https://hooks.slack.com/actions/T0SANDBOX1/1/bench",
               "actions": [{"type": "button", "action_id": "selfheal_approve", "value": "dt-P-1234",
                            "action_ts": "%.6f" % time.time()}]}
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def signed(body):
    stamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + digest,
            "Content-Type": "application/x-www-form-urlencoded"}


def xmatters_body(trigger):
    return json.dumps({"eventIdentifier": trigger, "recipient": "oncall.primary", "response": "Restart",
                       "eventProperties": {"selfheal_incident_key": "dt-P-1234"}}).encode()


def percentile(values, share):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def figures(values):
    if not values:
        return None
    return {"p50_ms": round(statistics.median(values) * 1000, 2), "p95_ms": round(percentile(values, 0.95) * 1000, 2),
            "p99_ms": round(percentile(values, 0.99) * 1000, 2), "max_ms": round(max(values) * 1000, 2)}


# --- in-process rows --------------------------------------------------------------------------------

class InProcess(object):
    """A source's main() (or the bare ceiling) on this loop, its Queue(1) drained by a consumer noting the time."""

    def __init__(self, name, kind, args=None):
        self.name = name
        self.kind = kind
        self.args = args or {}
        self.taken = {}
        self.task = None
        self.consumer = None
        self.runner = None
        self.port = free_port()
        self.path = "/slack/actions" if kind == "slack" else "/oncall/callback"

    async def start(self):
        if self.kind == "ceiling":
            async def receive(request):
                await request.read()
                return web.Response(status=200)

            app = web.Application()
            app.router.add_post(self.path, receive)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            return
        queue = asyncio.Queue(1)
        main = slack_actions.main if self.kind == "slack" else oncall_callback.main

        async def consume():
            while True:
                event = await queue.get()
                key = event["slack"]["trigger_id"] if "slack" in event else event["oncall"]["event_id"]
                self.taken[key] = time.perf_counter()

        self.consumer = asyncio.get_running_loop().create_task(consume())
        self.task = asyncio.get_running_loop().create_task(main(queue, dict(self.args, port=self.port)))
        async with aiohttp.ClientSession() as session:
            for dummy in range(500):
                if self.task.done():
                    self.task.result()
                try:
                    async with session.get("http://127.0.0.1:%d%s/health" % (self.port, self.path)) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    await asyncio.sleep(0.01)
        raise RuntimeError("%s did not start" % self.name)

    def request(self, trigger):
        if self.kind == "oncall":
            return xmatters_body(trigger), {"Content-Type": "application/json", "Authorization": "Bearer " + TOKEN}
        body = click_body(trigger)
        return body, signed(body)

    async def stop(self):
        for task in (self.task, self.consumer):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                    pass
        if self.runner is not None:
            await self.runner.cleanup()


async def click_once(session, url, body, headers):
    started = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status, started, time.perf_counter() - started


async def measure_in_process(row, clicks, burst, run_id):
    await row.start()
    url = "http://127.0.0.1:%d%s" % (row.port, row.path)
    answers, events, statuses, sent = [], [], {}, {}
    try:
        async with aiohttp.ClientSession() as session:
            await click_once(session, url, *row.request("bench-%s-warm" % run_id))  # connection, directory cache
            for number in range(clicks):
                trigger = "bench-%s-%d" % (run_id, number)
                status, started, elapsed = await click_once(session, url, *row.request(trigger))
                statuses[status] = statuses.get(status, 0) + 1
                answers.append(elapsed)
                sent[trigger] = started
            burst_answers = []
            triggers = ["bench-%s-b%d" % (run_id, n) for n in range(burst)]
            results = await asyncio.gather(*(click_once(session, url, *row.request(t)) for t in triggers))
            for trigger, (status, started, elapsed) in zip(triggers, results):
                statuses[status] = statuses.get(status, 0) + 1
                burst_answers.append(elapsed)
                sent[trigger] = started
        for dummy in range(200):  # the consumer may still hold the last events; bounded
            if row.kind == "ceiling" or len(row.taken) >= len(sent):
                break
            await asyncio.sleep(0.01)
        events = [row.taken[t] - sent[t] for t in sent if t in row.taken and not t.endswith("-warm") and "-b" not in t]
    finally:
        await row.stop()
    return {"statuses": statuses, "answer": figures(answers), "burst_answer": figures(burst_answers),
            "click_to_event": figures(events), "delivered": len([t for t in row.taken if not t.endswith("-warm")]),
            "sent": len(sent)}


# --- the activation row ----------------------------------------------------------------------------

def read_fired(path):
    """(banner time, trigger id) of every print_event firing in the activation's output."""
    fired, banner = [], None
    with open(path, errors="replace") as handle:
        for line in handle:
            line = line.rstrip("\n")
            stamp = BANNER_TIME.match(line)
            if stamp:
                banner = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            elif TRIGGER_LINE.match(line.strip().strip("'")):
                fired.append((banner, line.strip().strip("'")))
    return fired


def health(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/slack/actions/health" % port, timeout=5) as response:
        return json.loads(response.read())


def measure_rulebook(clicks, tmp):
    collections = rulebook_harness.install_collection(os.path.join(tmp, "installed"))
    port = free_port()
    rule = {"name": "approved", "condition": 'event.slack.action == "approve"',
            "action": {"print_event": {"var_root": {"slack.trigger_id": "id"}}}}
    rulebook = [{"name": "slack bench", "hosts": "all", "rules": [rule], "sources": [
        {"selfheal.devops.slack_actions": {"port": port, "signing_secret": SECRET,
                                           "allowed_users": {"approve": ["U0ONCALL01"]}}}]}]
    activation = rulebook_harness.Activation(rulebook, collections, workdir=os.path.join(tmp, "eda"), verbosity=0,
                                             print_events=False).start()
    answers, sent, statuses = [], {}, {}
    try:
        activation.wait_for_url("http://127.0.0.1:%d/slack/actions/health" % port, timeout=180)
        rulebook_harness.wait_until(lambda: health(port)["engine_waiting"], timeout=120, interval=0.2,
                                    what="the rules engine to wait for events")
        url = "http://127.0.0.1:%d/slack/actions" % port
        for number in range(clicks):
            trigger = "bench-%d-%d" % (os.getpid(), number)
            body = click_body(trigger)
            request = urllib.request.Request(url, data=body, headers=signed(body), method="POST")
            started = time.time()
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            answers.append(time.time() - started)
            statuses[status] = statuses.get(status, 0) + 1
            sent[trigger] = started
            time.sleep(0.2)  # clicks are human: one every 200 ms, so each measures an idle rules engine
        deadline = time.monotonic() + 60
        fired = read_fired(activation.log_path)
        while len(fired) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)  # the output is a file: nothing to await; bounded by the deadline
            fired = read_fired(activation.log_path)
    finally:
        activation.stop()
    to_rule = [when - sent[trigger] for when, trigger in fired if trigger in sent and when is not None]
    return {"statuses": statuses, "answer": figures(answers), "click_to_event": figures(to_rule),
            "delivered": len(to_rule), "sent": len(sent)}


async def in_process_rows(args, sandbox_url):
    rows = [
        ("ceiling", InProcess("ceiling", "ceiling")),
        ("oncall_callback", InProcess("oncall_callback", "oncall", {"token": TOKEN})),
        ("slack_actions", InProcess("slack_actions", "slack", {"signing_secret": SECRET,
                                                               "allowed_users": {"approve": ["U0ONCALL01"]}})),
        ("slack_group", InProcess("slack_group", "slack", {
            "signing_secret": SECRET, "allowed_users": {"approve": ["@sre-oncall"]},
            "url": sandbox_url + credentials.SLACK_PREFIX, "api_token": credentials.SLACK_TOKEN})),
    ]
    results = {}
    for name, row in rows:
        results[name] = await measure_in_process(row, args.clicks, args.burst, name)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=300)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--rulebook-clicks", type=int, default=40)
    parser.add_argument("--skip-rulebook", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    sandbox = start_sandbox()
    try:
        results = asyncio.run(in_process_rows(args, sandbox.url))
    finally:
        stop_sandbox(sandbox)
    if not args.skip_rulebook:
        with tempfile.TemporaryDirectory(prefix="selfheal-bench-slack-") as tmp:
            results["rulebook"] = measure_rulebook(args.rulebook_clicks, tmp)
    ceiling = results["ceiling"]["answer"]["p50_ms"]
    for row in results.values():
        row["answer_ratio_to_ceiling_p50"] = round(row["answer"]["p50_ms"] / ceiling, 2) if ceiling else None
    worst = max(max(r["answer"]["max_ms"], (r.get("burst_answer") or {}).get("max_ms", 0)) for r in results.values())
    lost = {name: r["sent"] - r["delivered"] for name, r in results.items() if name != "ceiling" and r["sent"] != r["delivered"]}
    rulebook = results.get("rulebook")
    checks = {"every_answer_under_3s": worst < 3000, "nothing_lost": not lost,
              "click_to_rule_p95_under_1500ms": None if rulebook is None else rulebook["click_to_event"]["p95_ms"] <= 1500}
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]), "load_average_1m_before": load_before,
              "cpus": os.cpu_count(), "clicks": args.clicks, "burst": args.burst, "rulebook_clicks": args.rulebook_clicks,
              "rows": results, "lost": lost, "checks": checks}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "slack_actions.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print("%-16s %10s %10s %10s %12s %14s %14s %8s" % ("row", "answer p50", "p99", "max", "burst max", "->event p50",
                                                       "->event p95", "x ceil"))
    for name, row in results.items():
        event = row.get("click_to_event") or {}
        print("%-16s %10s %10s %10s %12s %14s %14s %8s" % (
            name, row["answer"]["p50_ms"], row["answer"]["p99_ms"], row["answer"]["max_ms"],
            (row.get("burst_answer") or {}).get("max_ms", "-"), event.get("p50_ms", "-"), event.get("p95_ms", "-"),
            row["answer_ratio_to_ceiling_p50"]))
    print("checks: %s (load average before: %.2f)" % (checks, load_before))
    return 0 if all(value is not False for value in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
