"""Problem notification to healthy (and to resolved), per stage, for each scenario in auto mode.

Real ansible-rulebook (collection installed from its tarball) with the self_healing rulebook, the sandbox
playing Dynatrace, xMatters, Jira and Slack, and the demo estate: a web service under supervisord killed --runs
times, then --scenario-runs full disks and slow green releases. Process-crash stages come from the incident
timeline plus the bench's own clock:
  intake+start   notification sent -> the playbook's first write began (source, rules engine, ansible-playbook
                 start, problem re-read, timeline read)
  comment        "remediation started" comment on the problem
  page           xMatters page (trigger, event lookup, on-call, deliveries)
  ticket         Jira ticket (search by the incident's label, create)
  channel        Slack channel (create, invite the on-call people, post)
  restart        channel open -> service healthy (timeline saved, observation, crash-loop guard, supervisorctl)
  resolve        healthy -> incident resolved (fix recorded, comment + close, page resolved, Slack outcome and
                 transcript, ticket comment + attachments + transition, channel archived, timeline)

    .venv/bin/python bench/bench_self_healing.py [--runs 5] [--scenario-runs 3]

Writes bench/results/self_healing.json and prints a table.
"""

import argparse
import contextlib
import io
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "demo"))

import run_demo  # noqa: E402


def stamp(record):
    end = datetime.datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return end.timestamp() - record["duration"], end.timestamp()


def stages(run):
    records = {r["step"]: r for r in run["records"]}
    comment_start, comment_end = stamp(records["remediation started"])
    dummy, channel_end = stamp(records["open channel"])
    return {
        "intake+start": comment_start - run["detected"],
        "comment": comment_end - comment_start,
        "page": records["page on-call"]["duration"],
        "ticket": records["open ticket"]["duration"],
        "channel": records["open channel"]["duration"],
        "restart": run["healed"] - channel_end,
        "resolve": run["resolved"] - run["healed"],
        "detection->healthy": run["healed"] - run["detected"],
        "detection->resolved": run["resolved"] - run["detected"],
    }


FIX_STEPS = {"restart process", "clean temporary files", "switch traffic back"}


def scenario_stages(run):
    """Any scenario: intake, the four opening writes together, the fix (from its timeline record), the ends."""
    records = run["records"]
    comment_start, dummy = stamp(next(r for r in records if r["step"] == "remediation started"))
    dummy, channel_end = stamp(next(r for r in records if r["step"] == "open channel"))
    fix = next(r for r in records if r["step"] in FIX_STEPS)
    return {
        "intake+start": comment_start - run["detected"],
        "open (comment, page, ticket, channel)": channel_end - comment_start,
        "fix (as recorded)": fix["duration"],
        "detection->healthy": run["healed"] - run["detected"],
        "detection->resolved": run["resolved"] - run["detected"],
    }


def summarise(runs):
    return {name: {"median_s": round(statistics.median(r[name] for r in runs), 2),
                   "max_s": round(max(r[name] for r in runs), 2)} for name in runs[0]}


def quietly(function, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scenario-runs", type=int, default=3, help="runs of the full-disk and blue-green scenarios")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="selfheal-bench-loop-")
    parts = run_demo.start_loop(workdir, max_restarts=args.runs + 1)
    scenarios = {}
    try:
        sandbox, supervisor, activation = parts
        runs = [stages(run_demo.process_crash(sandbox, activation, supervisor, quiet=True)) for dummy in range(args.runs)]
        disk, blue = [], []
        for dummy in range(args.scenario_runs):
            if activation.disk is not None:
                disk.append(scenario_stages(quietly(run_demo.full_disk, sandbox, activation)))
            activation.bluegreen.nginx.write_active("green")  # the next slow release went live
            activation.bluegreen.nginx.reload()
            blue.append(scenario_stages(quietly(run_demo.bluegreen, sandbox, activation)))
        if disk:
            scenarios["full_disk"] = summarise(disk)
        scenarios["bluegreen_nginx"] = summarise(blue)
    finally:
        run_demo.stop_loop(*parts)
    summary = summarise(runs)
    command = "python bench/bench_self_healing.py --runs %d --scenario-runs %d" % (args.runs, args.scenario_runs)
    report = {"benchmark": "self_healing_process_crash", "command": command,
              "machine": "%d cores" % os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs], "summary": summary,
              "scenarios": scenarios}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "self_healing.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print("%-22s %10s %10s" % ("stage", "median s", "max s"))
    for name, row in summary.items():
        print("%-22s %10.2f %10.2f" % (name, row["median_s"], row["max_s"]))
    for scenario, rows in scenarios.items():
        print("\n%s (%d runs)" % (scenario, args.scenario_runs))
        for name, row in rows.items():
            print("%-38s %10.2f %10.2f" % (name, row["median_s"], row["max_s"]))


if __name__ == "__main__":
    main()
