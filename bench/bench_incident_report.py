"""incident_report over a large history in the sandbox's Jira: wall time and peak memory, side by side in one run.

Seeds INCIDENTS incidents (tests/sandbox/history.py: tickets with their timeline and transcript attachments) into a
sandbox started for the run, then measures, ROUNDS times each in alternation:
  module    the incident_report module through ansible-playbook (sources: jira; JSON, Markdown and HTML with charts),
            4 parallel attachment downloads (the default)
  serial    the same with workers: 1
  sdk       the `jira` PyPI client as one would script it: search_issues over every page, then each timeline
            attachment downloaded with attachment.get(), parsed and kept (no report, no charts) - the baseline
and, for each, the peak memory (max RSS) of the process tree that ran it (ansible-playbook and its module, or the
script). Targets (issue 17): the module under 30 s and under 300 MB for 10,000 incidents.

    .venv/bin/python bench/bench_incident_report.py [--incidents 10000] [--rounds 2] [--no-sdk]

Writes bench/results/incident_report.json and prints a table.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".venv", "bin")

from sandbox import credentials  # noqa: E402
from utils.sandbox_control import start_sandbox, stop_sandbox  # noqa: E402

END_EPOCH = 1796083200.0  # a fixed period end, so every round reads the same incidents

MEASURE = r"""
import json, resource, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
elapsed = time.perf_counter() - started
print(json.dumps({"rc": proc.returncode, "seconds": elapsed,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
                  "tail": (proc.stdout + proc.stderr)[-2000:]}))
"""

SDK = r"""
import json, os, sys
from jira import JIRA
client = JIRA(server=os.environ["JIRA_URL"], basic_auth=(os.environ["JIRA_USER"], os.environ["JIRA_TOKEN"]))
records = []
issues = client.search_issues("project = OPS AND labels = selfheal ORDER BY created ASC", maxResults=False,
                              fields="summary,attachment,created")
for issue in issues:
    for attachment in issue.fields.attachment:
        if attachment.filename.endswith(".json"):
            records.append(json.loads(attachment.get()))
print(len(records))
"""


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def playbook(directory, workers):
    path = os.path.join(directory, "report-%d.yml" % workers)
    with open(path, "w") as handle:
        handle.write("""- hosts: localhost
  gather_facts: false
  tasks:
    - name: Report
      selfheal.devops.incident_report:
        sources: [jira]
        start: "2026-10-01"
        end: "2026-12-01"
        dest: %s
        name: report-%d
        workers: %d
""" % (directory, workers, workers))
    return [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", path]


def measure(command, env):
    output = subprocess.run([os.path.join(BIN, "python"), "-c", MEASURE] + command, capture_output=True, text=True, env=env,
                            check=True).stdout
    result = json.loads(output)
    if result["rc"] != 0:
        raise SystemExit("a measured run failed:\n%s" % result["tail"])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-sdk", action="store_true")
    args = parser.parse_args()
    sandbox = start_sandbox()
    url = sandbox.url
    try:
        started = time.perf_counter()
        seeded = post(url + "/_sandbox/history/seed", {"count": args.incidents, "days": 60, "seed": 17, "end": END_EPOCH})
        seed_seconds = time.perf_counter() - started
        env = dict(os.environ, **credentials.environment(url))
        env.update({"ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, "build", "collections"), "ANSIBLE_PYTHON_INTERPRETER": os.path.join(BIN, "python"),
                    "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_NOCOLOR": "1", "PATH": BIN + os.pathsep + os.environ["PATH"]})
        variants = {"module": lambda d: playbook(d, 4), "serial": lambda d: playbook(d, 1)}
        if not args.no_sdk:
            variants["sdk"] = lambda d: [os.path.join(BIN, "python"), "-c", SDK]
        runs = dict((name, []) for name in variants)
        with tempfile.TemporaryDirectory(prefix="bench-report-") as directory:
            for dummy in range(args.rounds):
                for name, command in variants.items():
                    runs[name].append(measure(command(directory), env))
            with open(os.path.join(directory, "report-4.json")) as handle:
                report = json.load(handle)
    finally:
        stop_sandbox(sandbox)
    summary = {}
    for name, results in runs.items():
        summary[name] = {"seconds": [round(r["seconds"], 2) for r in results],
                         "median_seconds": round(statistics.median(r["seconds"] for r in results), 2),
                         "max_rss_mb": round(max(r["max_rss_mb"] for r in results), 1)}
    base = summary["module"]["median_seconds"]
    for name in summary:
        summary[name]["ratio_to_module"] = round(summary[name]["median_seconds"] / base, 2)
    out = {"incidents": args.incidents, "seeded": seeded["created"], "seed_seconds": round(seed_seconds, 2),
           "report_incidents": report["totals"]["incidents"], "rounds": args.rounds, "cpus": os.cpu_count(),
           "targets": {"seconds": 30, "max_rss_mb": 300}, "runs": summary,
           "met": summary["module"]["median_seconds"] < 30 and summary["module"]["max_rss_mb"] < 300}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "incident_report.json"), "w") as handle:
        json.dump(out, handle, indent=2)
    print("%d incidents seeded in %.1f s; the report counted %d" % (args.incidents, seed_seconds, out["report_incidents"]))
    print("%-8s %-22s %8s %10s %8s" % ("variant", "runs (s)", "median", "peak MB", "ratio"))
    for name, row in summary.items():
        print("%-8s %-22s %8.2f %10.1f %8.2f" % (name, row["seconds"], row["median_seconds"], row["max_rss_mb"], row["ratio_to_module"]))
    print("targets met: %s" % out["met"])


if __name__ == "__main__":
    main()
