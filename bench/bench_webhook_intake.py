"""Webhook intake of the selfheal.devops.dynatrace source: answers AND events that reached the rules, side by side.

Five servers on 127.0.0.1 measured with the same load (N distinct problem notifications from C concurrent keep-alive
connections, a 200-notification warm-up first; the load generator runs in its own process):

  ceiling      a bare aiohttp server that reads the body and answers 202 (nothing else; nothing is delivered)
  source       the source's main() given what ansible-rulebook really gives a source, an asyncio.Queue(1), drained by
               a consumer task that records every event it takes (state file off)
  source_state the same with the state file on and --known (10,000) problems already known: they are sent through the
               source once (so committed to its SQLite state by the source itself), and every measurement starts the
               source on a fresh copy of that database
  rulebook     the source inside a real ansible-rulebook activation (the collection installed from its tarball)
  eda_webhook  ansible.eda's `webhook` source inside ansible-rulebook, same rule, same load

and, only when asked for with --rows (an experiment, not a way the source runs):

  source_one_loop  the source row with the queue and its consumer moved onto the webhook's own loop, so that no event
               crosses between threads: what the hand-off from the webhook's thread to the rulebook's loop costs

Every server is up before the first measurement; each round measures every row once, forward then backward in turns
(ABBA), so that the rows compared with each other run next to each other, each first as often as second (the machine
is shared and its load changes by the minute): the report gives medians over the rounds and medians of the ratios of
rows paired within a round. The ceiling and source rows get a fresh process per measurement;
the two activations stay up for the whole run.

Both activations run one rule that matches every event:

    condition: event.meta is defined          # ansible-rulebook adds meta to every event of every source
    action: print_event: {}

print_event writes the event the rule fired on (one line, Python repr) under a time-stamped banner; the bench reads
the activation's output as it grows and counts the distinct problem ids in those lines (our event's problem.id, or the
notification's PID inside ansible.eda's `payload`), the banner's time being the moment the rule fired. So "delivered"
is what the rules engine fired on, not what the server answered, and lost = answered 2xx - delivered (by id), which
must be 0. print_event is the cheapest action that leaves a record per firing: `none` leaves nothing to count,
`debug` with a templated msg builds a Jinja environment per firing, print_event with `var_root` walks the event with
dpath (0.25-0.6 ms per event, more for the bigger event of ansible.eda's webhook: it would measure dpath), and audit
messages need a websocket server playing the controller.

Also reported: p50/p99 of every answer's latency (503s included), 503 answers (each retried by the same connection
after its Retry-After capped at --retry-cap seconds: Dynatrace waits longer, the cap keeps the run short), and the
server's CPU per notification (user + system time of its process, all threads, the rules engine's JVM included).

ansible.eda's webhook source is NOT part of this repository and must never be committed to it. At run time only, the
bench copies extensions/eda/plugins/event_source/webhook.py into a throwaway collection `ansible.eda` built and
installed in a temporary directory (removed at the end), from --eda-webhook PATH, or else from a local clone or
mirror of github.com/ansible/event-driven-ansible (`git show HEAD:<path>` in --eda-mirror, its git directory).
Without either, the row is reported as not measured, with the reason.

    .venv/bin/python bench/bench_webhook_intake.py [--requests 20000] [--concurrency 16] [--rounds 5] [--known 10000]

Writes bench/results/webhook_intake.json and prints a table.
"""

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from utils import estate, rulebook_harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOKEN = "bench-token"
PATH = "/dynatrace/problems"
EDA_MIRROR = os.environ.get("SELFHEAL_EDA_MIRROR")  # a git directory of github.com/ansible/event-driven-ansible
EDA_WEBHOOK_PATH = "extensions/eda/plugins/event_source/webhook.py"
PID_SUFFIX = "_1669823466223V2"
PID_IN_LINE = re.compile(r"'(-\d{19}" + PID_SUFFIX + ")'")
BANNER_TIME = re.compile(r"^\*\* (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \[event\]")
ROWS = ("ceiling", "source", "source_one_loop", "source_state", "rulebook", "eda_webhook")
DEFAULT_ROWS = tuple(name for name in ROWS if name != "source_one_loop")  # the experiment row only when asked for
RULE = {"name": "every event", "condition": "event.meta is defined", "action": {"print_event": {}}}


def cpu_seconds(pid):
    """User + system CPU seconds a process used so far (all its threads: the JVM of the rules engine too)."""
    return estate.cpu_seconds(pid) if pid else None


def pid_of(number):
    return "-%019d%s" % (number, PID_SUFFIX)


def notification(number):
    """A custom-integration problem notification as Dynatrace sends it (distinct problem per number)."""
    pid = pid_of(number)
    host = "web-%d" % (number % 50)
    entity = "HOST-%016X" % (number % 50)
    return {
        "PID": pid, "ProblemID": "P-%d" % number, "State": "OPEN", "ProblemTitle": "Process unavailable",
        "ProblemSeverity": "AVAILABILITY", "ProblemImpact": "INFRASTRUCTURE",
        "ProblemURL": "https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=" + pid,
        "ImpactedEntity": host, "ImpactedEntities": [{"type": "HOST", "name": host, "entity": entity}],
        "Tags": "app:checkout, env:prod",
        "ProblemDetailsJSONv2": {
            "problemId": pid, "displayId": "P-%d" % number, "title": "Process unavailable", "status": "OPEN",
            "severityLevel": "AVAILABILITY", "impactLevel": "INFRASTRUCTURE", "startTime": 1669823466223, "endTime": -1,
            "rootCauseEntity": {"entityId": {"id": entity, "type": "HOST"}, "name": host},
            "impactedEntities": [{"entityId": {"id": entity, "type": "HOST"}, "name": host}],
            "managementZones": [{"id": "1", "name": "Production"}],
            "entityTags": [{"context": "CONTEXTLESS", "key": "app", "value": "checkout", "stringRepresentation": "app:checkout"}],
            "evidenceDetails": {"totalCount": 1, "details": [{"evidenceType": "AVAILABILITY_EVIDENCE", "displayName": "Process unavailable",
                                                              "entity": {"entityId": {"id": entity, "type": "HOST"}, "name": host},
                                                              "rootCauseRelevant": True, "startTime": 1669823466223}]},
        },
    }


# --- servers (each in its own process) -------------------------------------------------------------

def serve_ceiling(port, control):
    from aiohttp import web

    async def receive(request):
        await request.read()
        return web.json_response({"status": "accepted"}, status=202)

    async def main():
        app = web.Application()
        app.router.add_post(PATH, receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        control.send("ready")
        while (await asyncio.get_running_loop().run_in_executor(None, control.recv))[0] == "wait":
            control.send([])  # nothing is delivered anywhere
        await runner.cleanup()

    asyncio.run(main())


def serve_source(port, control, state_file, one_loop=False):
    """dynatrace.main() with an asyncio.Queue(1) and a consumer that records (time, problem id) of every event.

    control: ("wait", want, timeout) -> the events taken so far once `want` arrived or timeout passed; ("stop",).
    one_loop: the queue and its consumer live on the webhook's own loop instead of the source's (experiment row).
    """
    from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import _webhook, dynatrace

    webhooks = []
    if one_loop:
        start = _webhook.Webhook.start

        async def noting_start(self, *args, **kwargs):
            webhooks.append(self)
            return await start(self, *args, **kwargs)

        _webhook.Webhook.start = noting_start

    async def main():
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue(1)
        taken = []
        enough = threading.Event()
        want = [None]

        async def consume():
            while True:
                event = await queue.get()
                taken.append((time.time(), event["problem"]["id"]))
                if want[0] is not None and len(taken) >= want[0]:
                    enough.set()

        args = {"host": "127.0.0.1", "port": port, "token": TOKEN, "reconcile": False}
        if state_file:
            args["state_file"] = state_file
        source = loop.create_task(dynatrace.main(queue, args))
        if one_loop:
            while not (webhooks and webhooks[0].port):
                await asyncio.sleep(0.01)
            webhook = webhooks[0]
            webhook.handoff.loop = webhook.loop  # the pump runs there too: events never change threads
            consumer = asyncio.run_coroutine_threadsafe(consume(), webhook.loop)
        else:
            consumer = loop.create_task(consume())
        control.send("ready")
        while True:
            command = await loop.run_in_executor(None, control.recv)
            if command[0] != "wait":
                break
            want[0] = command[1]
            enough.clear()
            if len(taken) < want[0]:
                await loop.run_in_executor(None, enough.wait, command[2])
            control.send(list(taken))
        source.cancel()
        consumer.cancel()  # on the webhook's loop (one_loop) a concurrent future: it goes with the source's thread
        await asyncio.gather(source, *([consumer] if isinstance(consumer, asyncio.Future) else []), return_exceptions=True)

    asyncio.run(main())


# --- load --------------------------------------------------------------------------------------------

def generate(port, numbers, concurrency, retry_cap, max_seconds, warmup, result_queue, server_pid=None):
    """Send one notification per number, `concurrency` at a time over keep-alive connections; retry 503s."""
    import aiohttp

    async def main():
        url = "http://127.0.0.1:%d%s" % (port, PATH)
        headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
        work = [(pid_of(n), json.dumps(notification(n)).encode()) for n in numbers]
        latencies, statuses, accepted, refused = [], {}, [], []
        counts = {"retried_503": 0, "given_up": 0, "errors": 0}
        position = [0]
        deadline = time.monotonic() + max_seconds

        async def send(session, body):
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status, retry_after = response.status, response.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status, retry_after = "error: %s" % type(exc).__name__, None
            latencies.append(time.perf_counter() - started)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            return status, retry_after

        async def worker(session):
            while position[0] < len(work) and time.monotonic() < deadline:
                pid, body = work[position[0]]
                position[0] += 1
                while True:
                    status, retry_after = await send(session, body)
                    if isinstance(status, int) and 200 <= status < 300:
                        accepted.append(pid)
                        break
                    if status != 503 and isinstance(status, int):
                        refused.append((pid, status))
                        break
                    if time.monotonic() >= deadline:
                        counts["given_up"] += 1
                        break
                    if status == 503:
                        counts["retried_503"] += 1
                    else:
                        counts["errors"] += 1
                    try:
                        wait = float(retry_after)
                    except (TypeError, ValueError):
                        wait = retry_cap
                    await asyncio.sleep(min(wait, retry_cap))

        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            # Warm-up (connections open, first-request costs paid), not measured: distinct problems of their own.
            for number in warmup:
                await send(session, json.dumps(notification(number)).encode())
            latencies.clear()
            statuses.clear()
            started_cpu = cpu_seconds(server_pid)
            started_wall, started = time.time(), time.perf_counter()
            await asyncio.gather(*[worker(session) for dummy in range(concurrency)])
            elapsed = time.perf_counter() - started
        latencies.sort()
        result_queue.put({
            "sent": len(work), "concurrency": concurrency, "started_at": started_wall, "seconds": round(elapsed, 3),
            "answered": len(accepted), "answered_per_s": round(len(accepted) / elapsed, 1),
            "requests": len(latencies),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
            "p99_ms": round(1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)], 2) if latencies else None,
            "max_ms": round(1000 * latencies[-1], 2) if latencies else None,
            "mean_ms": round(1000 * statistics.mean(latencies), 2) if latencies else None,
            "statuses": statuses, "retried_503": counts["retried_503"], "errors_retried": counts["errors"],
            "given_up": counts["given_up"], "refused": len(refused), "accepted_ids": accepted, "server_cpu_start": started_cpu,
        })

    asyncio.run(main())


def load(port, numbers, args, warmup=(), server_pid=None):
    results = multiprocessing.Queue()
    process = multiprocessing.Process(target=generate, args=(port, list(numbers), args.concurrency, args.retry_cap,
                                                             args.row_timeout, list(warmup), results, server_pid))
    process.start()
    try:
        outcome = results.get(timeout=args.row_timeout + 120)
    finally:
        process.join(30)
        if process.is_alive():
            process.terminate()
    return outcome


# --- delivery accounting -------------------------------------------------------------------------------

def server_cpu(row, pid):
    """CPU ms the server process used per notification answered, from after the warm-up to now (all delivered)."""
    start, end = row.pop("server_cpu_start", None), cpu_seconds(pid)
    row["server_cpu_ms_per_notification"] = (round(1000.0 * (end - start) / row["answered"], 3)
                                             if start is not None and end is not None and row["answered"] else None)
    return row


def account(row, delivered, measured_ids):
    """Add delivered figures to a load row: delivered = distinct measured problems the rules (or consumer) got."""
    accepted = row.pop("accepted_ids")
    measured = set(measured_ids)
    times = {}
    total = 0
    for when, pid in delivered:
        if pid in measured:
            total += 1
            times.setdefault(pid, when)
    got = set(times)
    row["delivered"] = len(got)
    row["delivered_duplicates"] = total - len(got)
    row["lost"] = len(set(accepted) - got)
    row["delivered_not_answered"] = len(got - set(accepted))
    if got:
        last = max(times.values())
        span = last - row["started_at"]
        row["delivered_seconds"] = round(span, 3)
        row["delivered_per_s"] = round(len(got) / span, 1) if span > 0 else None
    else:
        row["delivered_seconds"] = row["delivered_per_s"] = None
    return row


class ProcessServer(object):
    """The ceiling or the source alone, in a process of its own, started fresh for each measurement."""

    def __init__(self, target, *extra):
        self.target = target
        self.extra = extra
        self.port = None
        self.process = None
        self.control = None

    def start(self):
        self.port = rulebook_harness.free_port()
        self.control, child = multiprocessing.Pipe()
        self.process = multiprocessing.Process(target=self.target, args=(self.port, child) + self.extra, daemon=True)
        self.process.start()
        if not self.control.poll(60):
            raise RuntimeError("%s did not start" % self.target.__name__)
        self.control.recv()
        rulebook_harness.wait_until(lambda: _answers(self.port), 30, what="%s on port %d" % (self.target.__name__, self.port))
        return self

    def taken(self, want, timeout):
        """(time, problem id) of every event the source handed over, once `want` of them arrived or timeout passed."""
        self.control.send(("wait", want, timeout))
        return self.control.recv()

    def stop(self):
        if self.process is None:
            return
        if self.process.is_alive():
            try:
                self.control.send(("stop",))
            except OSError:
                pass
            self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
        self.process = None


def _count_rows(path):
    import sqlite3

    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM selfheal_problems").fetchone()[0]
    finally:
        conn.close()


def seed_state(args, folder, numbers):
    """A state database that knows `numbers` problems: they are sent through the source itself (state on), which
    records each one once it is handed over; each measurement starts from a copy of this template."""
    os.makedirs(folder)
    path = os.path.join(folder, "template.db")
    server = ProcessServer(serve_source, path).start()
    try:
        seeded = load(server.port, numbers, args)
        taken = server.taken(len(numbers), 120)
    finally:
        server.stop()  # the source closes its store: every change committed, the WAL checkpointed
    known = _count_rows(path)
    if known != len(numbers) or len(taken) != len(numbers):
        raise RuntimeError("seeding the state: %d sent, %d answered, %d handed over, %d in %s"
                           % (len(numbers), seeded["answered"], len(taken), known, path))
    return path, {"sent": seeded["sent"], "answered": seeded["answered"], "seconds": seeded["seconds"], "known": known}


class SourceRow(object):
    """ceiling, source, source_state: a fresh server process per measurement."""

    def __init__(self, name, tmp, state_template=None):
        self.name = name
        self.tmp = tmp
        self.state_template = state_template
        self.runs = 0

    def setup(self):
        pass

    def measure(self, args, numbers, warmup):
        self.runs += 1
        if self.name == "ceiling":
            server = ProcessServer(serve_ceiling)
        elif self.state_template:
            folder = os.path.join(self.tmp, "%s-%d" % (self.name, self.runs))
            os.makedirs(folder)
            state_file = os.path.join(folder, "dynatrace-state.db")
            shutil.copyfile(self.state_template, state_file)
            server = ProcessServer(serve_source, state_file)
        else:
            server = ProcessServer(serve_source, None, self.name == "source_one_loop")
        server.start()
        try:
            row = load(server.port, numbers, args, warmup, server.process.pid)
            taken = server.taken(len(warmup) + row["answered"], 60) if self.name != "ceiling" else None
            server_cpu(row, server.process.pid)
        finally:
            server.stop()
        if taken is None:
            row.pop("accepted_ids")
            row.update({"delivered": None, "delivered_per_s": None, "lost": None})
            return row
        return account(row, taken, [pid_of(n) for n in numbers])

    def teardown(self):
        pass


class OutputReader(object):
    """Reads an activation's output as it grows: (banner time, problem id) of every print_event firing."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = ""
        self.banner_time = None
        self.fired = []

    def read(self):
        if not os.path.exists(self.path):
            return
        with open(self.path, errors="replace") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
            self.offset = handle.tell()
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            stamp = BANNER_TIME.match(line)
            if stamp:
                # datetime.isoformat(" ") as ansible-rulebook prints it: no fraction when the microsecond is 0
                self.banner_time = datetime.datetime.fromisoformat(stamp.group(1)).timestamp()
            else:
                found = PID_IN_LINE.search(line)  # the printed event (one line): every PID in it is its problem's
                if found:
                    self.fired.append((self.banner_time, found.group(1)))

    def wait_for(self, count, timeout, process):
        """Read until `count` firings were seen, the activation exited or timeout passed (bounded polling)."""
        deadline = time.monotonic() + timeout
        while True:
            self.read()
            if len(self.fired) >= count or time.monotonic() > deadline or process.poll() is not None:
                return self.fired
            time.sleep(0.05)  # the output is a file: nothing to await; 50 ms against runs of seconds


class ActivationRow(object):
    """rulebook, eda_webhook: one ansible-rulebook activation kept running across measurements."""

    def __init__(self, name, source, collections, tmp):
        self.name = name
        self.source = source
        self.collections = collections
        self.tmp = tmp
        self.port = None
        self.activation = None
        self.reader = None

    def setup(self):
        self.port = rulebook_harness.free_port()
        source_args = dict(self.source[1], port=self.port)
        rulebook = [{"name": "intake", "hosts": "all", "sources": [{self.source[0]: source_args}], "rules": [RULE]}]
        self.activation = rulebook_harness.Activation(rulebook, self.collections, workdir=os.path.join(self.tmp, self.name),
                                                      verbosity=0, print_events=False)
        self.activation.start()
        self.reader = OutputReader(self.activation.log_path)
        _wait_listening(self.activation, self.port, 180)

    def measure(self, args, numbers, warmup):
        self.reader.fired = []
        row = load(self.port, numbers, args, warmup, self.activation.process.pid)
        self.reader.wait_for(len(warmup) + row["answered"], 120, self.activation.process)
        server_cpu(row, self.activation.process.pid)
        row = account(row, self.reader.fired, [pid_of(n) for n in numbers])
        if row["delivered"] < row["answered"]:
            row["output_tail"] = self.activation.output()[-3000:]
        return row

    def teardown(self):
        if self.activation is not None:
            self.activation.stop()


def _answers(port):
    """True once something answers HTTP on port (ansible.eda's webhook has no GET route: its 405 counts)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s/health" % (port, PATH), timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _wait_listening(activation, port, timeout):
    def ready():
        if activation.process.poll() is not None:
            raise RuntimeError("ansible-rulebook exited (%s):\n%s" % (activation.process.returncode, activation.output()[-3000:]))
        return _answers(port)

    rulebook_harness.wait_until(ready, timeout, interval=0.1, what="the activation's webhook on port %d" % port)


# --- ansible.eda's webhook, at run time only -----------------------------------------------------------

def eda_webhook_source(args, tmp):
    """(path of a copy of ansible.eda's webhook.py, where it came from) or (None, why it is not available)."""
    if args.eda_webhook:
        if not os.path.isfile(args.eda_webhook):
            return None, "--eda-webhook %s is not a file" % args.eda_webhook
        copy = os.path.join(tmp, "webhook.py")
        shutil.copyfile(args.eda_webhook, copy)
        return copy, "file %s" % args.eda_webhook
    if not args.eda_mirror or not os.path.isdir(args.eda_mirror):
        return None, ("no --eda-webhook given and no mirror of github.com/ansible/event-driven-ansible at %s"
                      % args.eda_mirror)
    git = ["git", "--git-dir", args.eda_mirror]
    try:
        commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
        text = subprocess.run(git + ["show", "HEAD:" + EDA_WEBHOOK_PATH], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, "could not read %s from the mirror %s: %s" % (EDA_WEBHOOK_PATH, args.eda_mirror, exc)
    copy = os.path.join(tmp, "webhook.py")
    with open(copy, "w") as handle:
        handle.write(text)
    return copy, "github.com/ansible/event-driven-ansible@%s:%s (mirror %s)" % (commit, EDA_WEBHOOK_PATH, args.eda_mirror)


def install_eda_webhook(webhook_py, workdir, collections):
    """Build and install a throwaway collection ansible.eda holding only webhook.py, into collections (temporary)."""
    tree = os.path.join(workdir, "eda-collection")
    sources = os.path.join(tree, "extensions", "eda", "plugins", "event_source")
    os.makedirs(sources)
    os.makedirs(os.path.join(tree, "meta"))
    shutil.copyfile(webhook_py, os.path.join(sources, "webhook.py"))
    with open(os.path.join(tree, "galaxy.yml"), "w") as handle:
        handle.write("namespace: ansible\nname: eda\nversion: 0.0.0-bench\nreadme: README.md\nauthors: [bench]\n"
                     "description: throwaway copy of ansible.eda's webhook source, for bench/bench_webhook_intake.py only\n")
    with open(os.path.join(tree, "README.md"), "w") as handle:
        handle.write("Temporary, built by bench/bench_webhook_intake.py; never committed.\n")
    with open(os.path.join(tree, "meta", "runtime.yml"), "w") as handle:
        handle.write("requires_ansible: '>=2.15.0'\n")
    galaxy = os.path.join(rulebook_harness.BIN, "ansible-galaxy")
    dist = os.path.join(workdir, "eda-dist")
    subprocess.run([galaxy, "collection", "build", "--force", "--output-path", dist, tree], check=True, capture_output=True)
    tarball = os.path.join(dist, os.listdir(dist)[0])
    subprocess.run([galaxy, "collection", "install", "--offline", "--force", "-p", collections, tarball], check=True,
                   capture_output=True)


# --- main ----------------------------------------------------------------------------------------------

def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def summarise(rounds):
    """Medians over the rounds of one row (503s and losses summed)."""
    keys = ("answered_per_s", "delivered_per_s", "p50_ms", "p99_ms", "max_ms", "server_cpu_ms_per_notification")
    summary = {key: median([r.get(key) for r in rounds]) for key in keys}
    summary["retried_503"] = sum(r["retried_503"] for r in rounds)
    summary["lost"] = None if any(r.get("lost") is None for r in rounds) else sum(r["lost"] for r in rounds)
    summary["answered"] = sum(r["answered"] for r in rounds)
    summary["sent"] = sum(r["sent"] for r in rounds)
    summary["delivered"] = None if summary["lost"] is None else sum(r["delivered"] for r in rounds)
    return summary


def paired(figures, numerator, denominator, key):
    """numerator/denominator of `key` in each round where both were measured (rows run close in time)."""
    values = []
    for a, b in zip(figures.get(numerator, {}).get("rounds", []), figures.get(denominator, {}).get("rounds", [])):
        if a.get(key) and b.get(key):
            values.append(round(a[key] / b[key], 3))
    return {"per_round": values, "median": median(values)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="distinct notifications per row and round")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--rounds", type=int, default=5, help="every row is measured once per round, in ABBA order")
    parser.add_argument("--known", type=int, default=10000, help="problems already known in the state-file row")
    parser.add_argument("--warmup", type=int, default=200, help="notifications sent one by one before each measurement")
    parser.add_argument("--retry-cap", type=float, default=0.1, help="longest wait honoured from a 503's Retry-After (s)")
    parser.add_argument("--row-timeout", type=float, default=600, help="longest one measurement's load may run (s)")
    parser.add_argument("--eda-webhook", help="path of ansible.eda's webhook.py (else read from --eda-mirror)")
    parser.add_argument("--eda-mirror", default=EDA_MIRROR, help="git directory of a github.com/ansible/event-driven-ansible mirror")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                        help="rows to measure (comma-separated): %s" % ", ".join(ROWS))
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "webhook_intake.json"))
    args = parser.parse_args()
    wanted = [name for name in ROWS if name in args.rows.split(",")]
    subprocess.run(["make", "-s", "collection"], cwd=ROOT, check=True)

    tmp = tempfile.mkdtemp(prefix="selfheal-bench-intake-")
    load_before = os.getloadavg()
    figures, notes, rows = {}, {}, {}

    def prepare(name, make):
        print(">> setting up %s" % name, flush=True)
        try:
            row = make()
            row.setup()
            rows[name] = row
        except Exception as exc:  # noqa: BLE001 - a row that cannot start is reported as not measured, with why
            figures[name] = {"measured": False, "why": "%s: %s" % (type(exc).__name__, str(exc)[-3000:])}

    try:
        for name in ("ceiling", "source", "source_one_loop"):
            if name in wanted:
                prepare(name, lambda name=name: SourceRow(name, tmp))
        if "source_state" in wanted:
            def state_row():
                template, seeded = seed_state(args, os.path.join(tmp, "seed"), range(9 * 10 ** 9, 9 * 10 ** 9 + args.known))
                notes["state_seeded"] = seeded
                return SourceRow("source_state", tmp, state_template=template)

            prepare("source_state", state_row)
        if "rulebook" in wanted or "eda_webhook" in wanted:
            collections = rulebook_harness.install_collection(tmp)
            if "rulebook" in wanted:
                ours = ("selfheal.devops.dynatrace", {"host": "127.0.0.1", "token": TOKEN, "reconcile": False})
                prepare("rulebook", lambda: ActivationRow("rulebook", ours, collections, tmp))
            if "eda_webhook" in wanted:
                copy, origin = eda_webhook_source(args, tmp)
                notes["eda_webhook_origin"] = origin
                if copy is None:
                    figures["eda_webhook"] = {"measured": False, "why": origin}
                else:
                    def eda_row():
                        install_eda_webhook(copy, tmp, collections)
                        return ActivationRow("eda_webhook", ("ansible.eda.webhook", {"host": "127.0.0.1", "token": TOKEN}),
                                             collections, tmp)

                    prepare("eda_webhook", eda_row)

        order = [name for name in ROWS if name in rows]
        for number in range(args.rounds):
            # ABBA: forward, then backward, ... so that the rows compared with each other (ceiling and source, source
            # and source_state, rulebook and eda_webhook) always run next to each other, each first as often as second.
            for name in (order if number % 2 == 0 else order[::-1]):
                index = ROWS.index(name)
                first = (number * 10 + index + 1) * 10 ** 8
                print(">> round %d: %s" % (number + 1, name), flush=True)
                try:
                    row = rows[name].measure(args, range(first, first + args.requests), range(first - args.warmup, first))
                except Exception as exc:  # noqa: BLE001 - recorded, the other rows go on
                    row = {"failed": "%s: %s" % (type(exc).__name__, str(exc)[-3000:])}
                row["round"] = number + 1
                row["load_average"] = [round(v, 2) for v in os.getloadavg()]
                figures.setdefault(name, {"rounds": []})["rounds"].append(row)
                print("   %s" % {k: row.get(k) for k in ("answered_per_s", "delivered_per_s", "p50_ms", "p99_ms", "retried_503",
                                                         "lost", "server_cpu_ms_per_notification", "failed")}, flush=True)
    finally:
        for row in rows.values():
            row.teardown()
        load_after = os.getloadavg()
        shutil.rmtree(tmp, ignore_errors=True)

    for name, row in figures.items():
        if "rounds" in row:
            complete = [r for r in row["rounds"] if "failed" not in r]
            row["median"] = summarise(complete) if complete else None
    notes["ceiling_over_source"] = paired(figures, "ceiling", "source", "answered_per_s")
    notes["state_on_over_off"] = paired(figures, "source_state", "source", "delivered_per_s")
    notes["rulebook_over_eda_webhook"] = paired(figures, "rulebook", "eda_webhook", "delivered_per_s")
    notes["cpu_rulebook_over_eda_webhook"] = paired(figures, "rulebook", "eda_webhook", "server_cpu_ms_per_notification")
    notes["cpu_source_over_ceiling"] = paired(figures, "source", "ceiling", "server_cpu_ms_per_notification")
    notes["one_loop_over_source"] = paired(figures, "source_one_loop", "source", "answered_per_s")
    notes["cpu_one_loop_over_source"] = paired(figures, "source_one_loop", "source", "server_cpu_ms_per_notification")
    report = {
        "benchmark": "webhook_intake",
        "command": "python bench/bench_webhook_intake.py " + " ".join(sys.argv[1:]),
        "machine": "%d cores" % os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_before": [round(v, 2) for v in load_before], "load_average_after": [round(v, 2) for v in load_after],
        "requests": args.requests, "concurrency": args.concurrency, "rounds": args.rounds, "known": args.known,
        "retry_cap_s": args.retry_cap, "rule": RULE, "results": figures, "notes": notes,
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(report, handle, indent=2)
    print("\nmedians of %d rounds (%d notifications each, %d connections)" % (args.rounds, args.requests, args.concurrency))
    columns = "%-15s %10s %11s %8s %8s %6s %6s %8s"
    print(columns % ("row", "answered/s", "delivered/s", "p50 ms", "p99 ms", "503s", "lost", "cpu ms/n"))
    for name in ROWS:
        row = figures.get(name)
        if row is None:
            continue
        if row.get("measured") is False or not row.get("median"):
            print("%-15s not measured: %s" % (name, row.get("why", "every round failed")))
            continue
        m = row["median"]
        print(columns % (name, m["answered_per_s"], m["delivered_per_s"], m["p50_ms"], m["p99_ms"], m["retried_503"], m["lost"],
                         m["server_cpu_ms_per_notification"]))
    for key in ("ceiling_over_source", "state_on_over_off", "rulebook_over_eda_webhook", "cpu_rulebook_over_eda_webhook",
                "cpu_source_over_ceiling", "one_loop_over_source", "cpu_one_loop_over_source"):
        if notes[key]["per_round"]:
            print("%s: median %s, per round %s" % (key, notes[key]["median"], notes[key]["per_round"]))
    print("load average %s -> %s" % (report["load_average_before"], report["load_average_after"]))


if __name__ == "__main__":
    main()
