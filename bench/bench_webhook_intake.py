"""Webhook intake of the selfheal.devops.dynatrace source, side by side with its ceiling.

Three servers on 127.0.0.1, measured one after the other in the same run with the same load:
  ceiling     a minimal aiohttp server that reads the body and answers 202 (nothing else)
  source      the event source's main() (token auth on, normalise, dedup, state file off), events drained
  rulebook    the same source inside a real ansible-rulebook activation (collection installed from its
              tarball), with a rule that matches every event and does nothing (`none` action)
The load generator runs in its own process (one core each on a 2-core machine): N distinct problem
notifications (so none is a duplicate) at a fixed concurrency over keep-alive connections; it records the
accept latency of every request (send -> 202) and the throughput.

    .venv/bin/python bench/bench_webhook_intake.py [--requests 20000] [--concurrency 16]

Writes bench/results/webhook_intake.json and prints a table.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
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
RULE_CONDITION = os.environ.get("BENCH_RULE_CONDITION", 'event.transition == "opened"')


def notification(number):
    pid = "-%019d_1669823466223V2" % number
    return {"ProblemID": "P-%d" % number, "PID": pid, "ProblemTitle": "Process unavailable", "State": "OPEN",
            "ProblemSeverity": "AVAILABILITY", "ProblemImpact": "INFRASTRUCTURE",
            "ProblemURL": "https://env.example/#problems/problemdetails;pid=" + pid,
            "ImpactedEntity": "web-%d" % (number % 50),
            "ImpactedEntities": [{"type": "HOST", "name": "web-%d" % (number % 50), "entity": "HOST-%016X" % number}],
            "ProblemDetailsJSON": {"ID": pid}, "Tags": "app:checkout, env:prod"}


# --- servers ---------------------------------------------------------------------------------------

def serve_ceiling(port, ready):
    from aiohttp import web

    async def receive(request):
        await request.read()
        return web.json_response({"status": "accepted"}, status=202)

    async def health(request):
        return web.json_response({"status": "ok"})

    async def main():
        app = web.Application()
        app.router.add_post("/dynatrace/problems", receive)
        app.router.add_get("/dynatrace/problems/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_source(port, ready):
    from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import dynatrace

    async def main():
        queue = asyncio.Queue()

        async def drain():
            while True:
                await queue.get()

        asyncio.get_running_loop().create_task(drain())
        asyncio.get_running_loop().call_later(0.5, ready.set)
        await dynatrace.main(queue, {"port": port, "token": TOKEN, "max_pending": 100000})

    asyncio.run(main())


# --- load ------------------------------------------------------------------------------------------

def generate(port, total, concurrency, offset, result_queue):
    import aiohttp

    async def main():
        url = "http://127.0.0.1:%d/dynatrace/problems" % port
        headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
        bodies = [json.dumps(notification(offset + number)).encode() for number in range(total)]
        latencies = []
        statuses = {}
        next_index = [0]
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def worker():
                while next_index[0] < total:
                    body = bodies[next_index[0]]
                    next_index[0] += 1
                    started = time.perf_counter()
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        latencies.append(time.perf_counter() - started)
                        statuses[response.status] = statuses.get(response.status, 0) + 1

            # Warm-up (connections, first-request costs), not measured.
            warm = [json.dumps(notification(offset + total + n)).encode() for n in range(200)]
            for body in warm:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
            started = time.perf_counter()
            await asyncio.gather(*[worker() for dummy in range(concurrency)])
            elapsed = time.perf_counter() - started
        latencies.sort()
        result_queue.put({
            "requests": total, "concurrency": concurrency, "seconds": round(elapsed, 3),
            "per_second": round(total / elapsed, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 2),
            "max_ms": round(1000 * latencies[-1], 2), "mean_ms": round(1000 * statistics.mean(latencies), 2),
            "statuses": {str(k): v for k, v in statuses.items()},
        })

    asyncio.run(main())


def measure(port, total, concurrency, offset):
    results = multiprocessing.Queue()
    load = multiprocessing.Process(target=generate, args=(port, total, concurrency, offset, results))
    load.start()
    outcome = results.get(timeout=600)
    load.join(30)
    return outcome


def run_in_process(target, port):
    ready = multiprocessing.Event()
    process = multiprocessing.Process(target=target, args=(port, ready), daemon=True)
    process.start()
    if not ready.wait(30):
        raise RuntimeError("%s did not start" % target.__name__)
    rulebook_harness.wait_until(lambda: rulebook_harness.http_ok("http://127.0.0.1:%d/dynatrace/problems/health" % port), 10)
    return process


def run_rulebook(total, concurrency, offset):
    workdir = tempfile.mkdtemp(prefix="selfheal-bench-")
    collections = rulebook_harness.install_collection(workdir)
    port = rulebook_harness.free_port()
    rulebook = [{"name": "intake", "hosts": "all",
                 "sources": [{"selfheal.devops.dynatrace": {"port": port, "token": TOKEN, "max_pending": 100000}}],
                 "rules": [{"name": "every problem", "condition": RULE_CONDITION, "action": {"none": {}}}]}]
    activation = rulebook_harness.Activation(rulebook, collections, workdir=os.path.join(workdir, "eda"), verbosity=0,
                                             print_events=False)
    activation.start()
    try:
        activation.wait_for_url("http://127.0.0.1:%d/dynatrace/problems/health" % port, timeout=120)
        return measure(port, total, concurrency, offset)
    finally:
        activation.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    subprocess.run(["make", "-s", "collection"], cwd=ROOT, check=True)

    figures = {}
    for name, target in (("ceiling", serve_ceiling), ("source", serve_source)):
        port = rulebook_harness.free_port()
        process = run_in_process(target, port)
        try:
            figures[name] = measure(port, args.requests, args.concurrency, offset=len(figures) * 10 ** 7)
        finally:
            process.terminate()
            process.join(10)
    figures["rulebook"] = run_rulebook(args.requests, args.concurrency, offset=3 * 10 ** 7)

    ceiling = figures["ceiling"]["per_second"]
    for name in figures:
        figures[name]["ceiling_ratio"] = round(ceiling / figures[name]["per_second"], 2)
    report = {"benchmark": "webhook_intake", "command": "python bench/bench_webhook_intake.py --requests %d --concurrency %d"
              % (args.requests, args.concurrency), "machine": "%d cores" % os.cpu_count(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": figures}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "webhook_intake.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print("%-9s %10s %9s %9s %9s %14s" % ("server", "req/s", "p50 ms", "p99 ms", "max ms", "ceiling/x"))
    for name, row in figures.items():
        values = (name, row["per_second"], row["p50_ms"], row["p99_ms"], row["max_ms"], row["ceiling_ratio"], row["statuses"])
        print("%-9s %10.0f %9.2f %9.2f %9.2f %14.2f  %s" % values)


if __name__ == "__main__":
    main()
