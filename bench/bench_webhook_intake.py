"""Webhook intake of the selfheal.devops.dynatrace source: answers AND events that reached the rules, side by side.

Five servers on 127.0.0.1, measured one after the other in the same run with the same load (N distinct problem
notifications from C concurrent keep-alive connections; the load generator runs in its own process):

  ceiling      a bare aiohttp server that reads the body and answers 202 (nothing else; nothing is delivered)
  source       the source's main() given what ansible-rulebook really gives a source, an asyncio.Queue(1), drained by
               a consumer task that records every event it takes (state file off)
  source_state the same with the state file on and 10,000 problems already known (sent through the source, and so
               committed to its SQLite state, before the measured load)
  rulebook     the source inside a real ansible-rulebook activation (the collection installed from its tarball)
  eda_webhook  ansible.eda's `webhook` source inside ansible-rulebook, same rule, same load

Both activations run one rule that matches every event:

    condition: event.meta is defined          # ansible-rulebook adds meta to every event of every source
    action: print_event: {var_root: {problem.id: id, payload.PID: id}}

print_event with var_root prints only the problem id (our event's problem.id, or the notification's PID inside
ansible.eda's `payload`) under a time-stamped banner. It is the cheapest action that still leaves a record per rule
firing: `none` does nothing observable, `debug` with a templated msg builds a Jinja environment per firing, and
audit messages need a websocket server playing the controller. The bench reads the activation's output and counts
the distinct problem ids printed, with the banner's time as the moment the rule fired: "delivered" is what the rules
engine fired on, not what the server answered. lost = answered 2xx - delivered (by id) and must be 0.

A 503 is retried by the same connection after its Retry-After, capped at --retry-cap seconds (Dynatrace waits
longer; the cap keeps the run short), and counted. Rows without a rules engine (ceiling) report no delivery.

ansible.eda's webhook source is NOT part of this repository and must never be committed to it. The bench copies
extensions/eda/plugins/event_source/webhook.py, at run time, into a throwaway collection `ansible.eda` built and
installed in a temporary directory, from --eda-webhook PATH, or else from the local mirror of
github.com/ansible/event-driven-ansible (`git show HEAD:<path>` in --eda-mirror). Without either the row is reported
as not measured, with the reason.

    .venv/bin/python bench/bench_webhook_intake.py [--requests 20000] [--concurrency 16] [--known 10000]

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
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "utils"))
sys.path.insert(0, os.path.join(ROOT, "build", "collections"))

import rulebook_harness  # noqa: E402

TOKEN = "bench-token"
PATH = "/dynatrace/problems"
EDA_MIRROR = "/work/.mirror/ansible+event-driven-ansible/repo"
EDA_WEBHOOK_PATH = "extensions/eda/plugins/event_source/webhook.py"
PID_SUFFIX = "_1669823466223V2"
PID_LINE = re.compile(r"^-\d{19}" + PID_SUFFIX + "$")
BANNER_TIME = re.compile(r"^\*\* (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \[event\]")
RULE = {"name": "every event", "condition": "event.meta is defined",
        "action": {"print_event": {"var_root": {"problem.id": "id", "payload.PID": "id"}}}}


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
        await asyncio.get_running_loop().run_in_executor(None, control.recv)  # "stop"
        await runner.cleanup()

    asyncio.run(main())


def serve_source(port, control, state_file):
    """dynatrace.main() with an asyncio.Queue(1) and a consumer that records (time, problem id) of every event.

    control: ("wait", want, timeout) -> the events taken so far once `want` arrived or timeout passed; ("stop",).
    """
    from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import dynatrace

    async def main():
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue(1)
        taken = []
        enough = asyncio.Event()
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
        consumer = loop.create_task(consume())
        source = loop.create_task(dynatrace.main(queue, args))
        control.send("ready")
        while True:
            command = await loop.run_in_executor(None, control.recv)
            if command[0] != "wait":
                break
            want[0] = command[1]
            enough.clear()
            if len(taken) < want[0]:
                try:
                    await asyncio.wait_for(enough.wait(), command[2])
                except asyncio.TimeoutError:
                    pass
            control.send(list(taken))
        source.cancel()
        consumer.cancel()
        await asyncio.gather(source, consumer, return_exceptions=True)

    asyncio.run(main())


# --- load --------------------------------------------------------------------------------------------

def generate(port, numbers, concurrency, retry_cap, max_seconds, warmup, result_queue):
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
            "given_up": counts["given_up"], "refused": len(refused), "accepted_ids": accepted,
        })

    asyncio.run(main())


def load(port, numbers, args, warmup=()):
    results = multiprocessing.Queue()
    process = multiprocessing.Process(target=generate, args=(port, list(numbers), args.concurrency, args.retry_cap,
                                                             args.row_timeout, list(warmup), results))
    process.start()
    try:
        outcome = results.get(timeout=args.row_timeout + 120)
    finally:
        process.join(30)
        if process.is_alive():
            process.terminate()
    return outcome


# --- delivery accounting -------------------------------------------------------------------------------

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


def run_source(name, args, numbers, warmup, state_dir=None, known=()):
    port = rulebook_harness.free_port()
    parent, child = multiprocessing.Pipe()
    state_file = os.path.join(state_dir, "dynatrace-state.db") if state_dir else None
    process = multiprocessing.Process(target=serve_source, args=(port, child, state_file), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("%s did not start" % name)
        parent.recv()
        rulebook_harness.wait_until(lambda: rulebook_harness.http_ok("http://127.0.0.1:%d%s/health" % (port, PATH)), 30)
        seeded = None
        if known:
            seed = load(port, known, args)
            parent.send(("wait", len(known), 60))
            parent.recv()
            seeded = {"sent": seed["sent"], "answered": seed["answered"], "seconds": seed["seconds"],
                      "known_in_state": _count_rows(state_file)}
        row = load(port, numbers, args, warmup)
        parent.send(("wait", len(known) + len(warmup) + row["answered"], 60))
        delivered = parent.recv()
        parent.send(("stop",))
    finally:
        process.join(30)
        if process.is_alive():
            process.terminate()
    row = account(row, delivered, [pid_of(n) for n in numbers])
    if seeded is not None:
        row["seeded"] = seeded
    return row


def _count_rows(path):
    import sqlite3

    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM selfheal_problems").fetchone()[0]
    finally:
        conn.close()


def run_ceiling(args, numbers, warmup):
    port = rulebook_harness.free_port()
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=serve_ceiling, args=(port, child), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("ceiling did not start")
        parent.recv()
        row = load(port, numbers, args, warmup)
        parent.send("stop")
    finally:
        process.join(30)
        if process.is_alive():
            process.terminate()
    row.pop("accepted_ids")
    row.update({"delivered": None, "delivered_per_s": None, "lost": None})
    return row


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
                self.banner_time = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            elif PID_LINE.match(line):
                self.fired.append((self.banner_time, line))

    def wait_for(self, count, timeout, process):
        """Read until `count` firings were seen, the activation exited or timeout passed (bounded polling)."""
        deadline = time.monotonic() + timeout
        while True:
            self.read()
            if len(self.fired) >= count or time.monotonic() > deadline or process.poll() is not None:
                return self.fired
            time.sleep(0.05)  # the output is a file: nothing to await; 50 ms against runs of seconds


def run_activation(name, source, args, numbers, warmup, collections, workdir):
    port = rulebook_harness.free_port()
    source_args = dict(source[1], port=port)
    rulebook = [{"name": "intake", "hosts": "all", "sources": [{source[0]: source_args}], "rules": [RULE]}]
    activation = rulebook_harness.Activation(rulebook, collections, workdir=os.path.join(workdir, name), verbosity=0,
                                             print_events=False)
    activation.start()
    reader = OutputReader(activation.log_path)
    try:
        _wait_listening(activation, port, 180)
        row = load(port, numbers, args, warmup)
        reader.wait_for(len(warmup) + row["answered"], 120, activation.process)
    finally:
        activation.stop()
    reader.read()
    row = account(row, reader.fired, [pid_of(n) for n in numbers])
    if row["delivered"] < row["answered"]:
        row["output_tail"] = activation.output()[-3000:]
    return row


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
    if not os.path.isdir(args.eda_mirror):
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

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="distinct notifications per row")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--known", type=int, default=10000, help="problems already known in the state-file row")
    parser.add_argument("--warmup", type=int, default=200, help="notifications sent one by one before each row")
    parser.add_argument("--retry-cap", type=float, default=0.1, help="longest wait honoured from a 503's Retry-After (s)")
    parser.add_argument("--row-timeout", type=float, default=600, help="longest a row's load may run (s)")
    parser.add_argument("--eda-webhook", help="path of ansible.eda's webhook.py (else read from --eda-mirror)")
    parser.add_argument("--eda-mirror", default=EDA_MIRROR, help="git directory of a github.com/ansible/event-driven-ansible mirror")
    parser.add_argument("--rows", default="ceiling,source,source_state,rulebook,eda_webhook")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "webhook_intake.json"))
    args = parser.parse_args()
    rows = args.rows.split(",")
    subprocess.run(["make", "-s", "collection"], cwd=ROOT, check=True)

    tmp = tempfile.mkdtemp(prefix="selfheal-bench-intake-")
    load_before = os.getloadavg()
    figures, notes = {}, {}
    base = 10 ** 9

    def numbers(row_index):
        return range(base * (row_index + 1), base * (row_index + 1) + args.requests)

    def warmup(row_index):
        return range(base * (row_index + 1) - args.warmup, base * (row_index + 1))

    def measure(name, run):
        if name not in rows:
            return
        print(">> %s" % name, flush=True)
        try:
            figures[name] = run()
        except Exception as exc:  # noqa: BLE001 - a row that fails is reported as not measured, with why
            figures[name] = {"measured": False, "why": "%s: %s" % (type(exc).__name__, str(exc)[-3000:])}

    measure("ceiling", lambda: run_ceiling(args, numbers(0), warmup(0)))
    measure("source", lambda: run_source("source", args, numbers(1), warmup(1)))
    measure("source_state", lambda: run_source("source_state", args, numbers(2), warmup(2), state_dir=os.path.join(tmp, "state"),
                                               known=range(base * 7, base * 7 + args.known)))
    collections = None
    if "rulebook" in rows or "eda_webhook" in rows:
        collections = rulebook_harness.install_collection(tmp)
    ours = ("selfheal.devops.dynatrace", {"host": "127.0.0.1", "token": TOKEN, "reconcile": False})
    measure("rulebook", lambda: run_activation("rulebook", ours, args, numbers(3), warmup(3), collections, tmp))
    if "eda_webhook" in rows:
        copy, origin = eda_webhook_source(args, tmp)
        if copy is None:
            figures["eda_webhook"] = {"measured": False, "why": origin}
        else:
            install_eda_webhook(copy, tmp, collections)
            notes["eda_webhook_origin"] = origin
            theirs = ("ansible.eda.webhook", {"host": "127.0.0.1", "token": TOKEN})
            measure("eda_webhook", lambda: run_activation("eda_webhook", theirs, args, numbers(4), warmup(4), collections, tmp))
    load_after = os.getloadavg()

    ceiling = figures.get("ceiling", {}).get("answered_per_s")
    for row in figures.values():
        if ceiling and row.get("answered_per_s"):
            row["ceiling_ratio"] = round(ceiling / row["answered_per_s"], 2)
    if figures.get("source", {}).get("delivered_per_s") and figures.get("source_state", {}).get("delivered_per_s"):
        notes["state_on_vs_off"] = round(figures["source_state"]["delivered_per_s"] / figures["source"]["delivered_per_s"], 3)
    if figures.get("eda_webhook", {}).get("delivered_per_s") and figures.get("rulebook", {}).get("delivered_per_s"):
        notes["rulebook_vs_eda_webhook"] = round(figures["rulebook"]["delivered_per_s"] / figures["eda_webhook"]["delivered_per_s"], 3)
    report = {
        "benchmark": "webhook_intake",
        "command": "python bench/bench_webhook_intake.py " + " ".join(sys.argv[1:]),
        "machine": "%d cores" % os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_before": [round(v, 2) for v in load_before], "load_average_after": [round(v, 2) for v in load_after],
        "requests": args.requests, "concurrency": args.concurrency, "known": args.known, "retry_cap_s": args.retry_cap,
        "rule": RULE, "results": figures, "notes": notes,
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(report, handle, indent=2)
    shutil.rmtree(tmp, ignore_errors=True)
    print("%-12s %10s %11s %8s %8s %6s %6s %9s" % ("row", "answered/s", "delivered/s", "p50 ms", "p99 ms", "503s", "lost",
                                                   "ceiling/x"))
    for name, row in figures.items():
        if row.get("measured") is False:
            print("%-12s not measured: %s" % (name, row["why"]))
            continue
        print("%-12s %10s %11s %8s %8s %6s %6s %9s  %s" % (
            name, row["answered_per_s"], row.get("delivered_per_s"), row["p50_ms"], row["p99_ms"], row["retried_503"],
            row.get("lost"), row.get("ceiling_ratio"), row["statuses"]))
    print("notes: %s; load average %s -> %s" % (notes, report["load_average_before"], report["load_average_after"]))


if __name__ == "__main__":
    main()
