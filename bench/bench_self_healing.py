"""Problem notification to healthy and to resolved, per stage, for each scenario in auto mode, beside the floor.

Every variant runs at the same time on its own sandbox, estate and real ansible-rulebook activation (collection
installed from its tarball), and the runs alternate between them round by round (ABBA order), so that the figures
of one run compare side by side on this noisy machine:

  new       this checkout: the self_healing rulebook, the remediation playbooks, the incident role
  old       (--baseline REF) the same rulebook and playbooks from the commit REF, same estate and inventory
  floor     what any Ansible-driven restart costs here: the Dynatrace source in ansible-rulebook running a
            playbook with one `supervisorctl start` task (no decision, no communication, no health proof)
  bare      the same restart without Ansible: `supervisorctl start` from this process

Scenarios: crash (a web service under supervisord killed), disk (an 8 MiB tmpfs filled with old temp files; needs
root for the mount), bluegreen (green slow behind nginx, switch back to blue), approve (a crash in approve mode: the
on-call engineer's answer in xMatters reaches the chatops activation by xMatters' response callback; measured from
the answer to the fix's start), click (the same, answered by a click on "Approve fix" in the incident's Slack channel,
through the slack_actions source; new only). Stages, from the bench's clock, the incident timeline (each step's real start and
end) and a callback plugin that records every task's start and end:

  notification -> playbook      the problem notified -> the remediation playbook's first play starts
  playbook -> fix started       decision, lease, incident opening launched, fix play, module start
  fix                           the fix as recorded in the timeline (restart and health proof; cleanup; switch)
  detection -> healthy          the bench sees the service healthy (PID changed and HTTP 200; disk under the
                                threshold; nginx serving blue)
  comms open                    Dynatrace comment, page, ticket, channel: first start -> last end
  comms beside the fix          whether opening the incident overlapped the fix (it should not hold it)
  detection -> resolved         every record written: problem closed, page resolved, outcome and transcript,
                                ticket resolved with attachments, channel archived

    .venv/bin/python bench/bench_self_healing.py [--runs 5] [--baseline REF] [--scenarios crash,disk,bluegreen,approve,click]

Targets (issue 16), checked on the medians of `new`: crash <= 4 s to healthy and p90 <= 5 s, disk <= 4 s,
blue-green <= 4.5 s, detection -> resolved <= 8 s, approve answer (xMatters, Slack click) -> fix started <= 1.5 s.
Exits 1 when one is missed. Writes bench/results/self_healing.json (self_healing-<scenarios>.json for a subset).
"""

import argparse
import contextlib
import datetime
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import run_demo  # demo/run_demo.py (make venv puts demo/ and tests/ on the import path)
from sandbox import credentials
from utils import estate, rulebook_harness
from utils.sandbox_control import start_sandbox, stop_sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIX_STEPS = ("restart process", "clean temporary files", "switch traffic back")
OPEN_STEPS = ("remediation started", "page on-call", "open ticket", "open channel")
SCENARIOS = ("crash", "disk", "bluegreen", "approve", "click")
TARGETS = {  # (scenario, stage, statistic) -> seconds
    ("crash", "detection -> healthy", "median"): 4.0,
    ("crash", "detection -> healthy", "p90"): 5.0,
    ("disk", "detection -> healthy", "median"): 4.0,
    ("bluegreen", "detection -> healthy", "median"): 4.5,
    ("crash", "detection -> resolved", "median"): 8.0,
    ("disk", "detection -> resolved", "median"): 8.0,
    ("bluegreen", "detection -> resolved", "median"): 8.0,
    ("approve", "answer -> fix started", "median"): 1.5,
    ("click", "answer -> fix started", "median"): 1.5,
}
FLOOR_PLAYBOOK = """---
- name: Floor - one restart task, nothing else
  hosts: web-01
  gather_facts: false
  tasks:
    - name: Start the program
      ansible.builtin.command: {supervisorctl} -c {conf} start web
      changed_when: true
"""
FLOOR_RULEBOOK = """---
- name: Floor
  hosts: all
  execution_strategy: parallel
  sources:
    - selfheal.devops.dynatrace:
        host: 127.0.0.1
        port: {port}
        token: {token}
        meta_hosts: false
  rules:
    - name: Restart
      condition: event.transition == "opened"
      action:
        run_playbook:
          name: {playbook}
"""


def epoch(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def span(record):
    end = epoch(record["time"])
    return end - record["duration"], end


def quietly(function, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args, **kwargs)


class Variant(object):
    """One sandbox + estate + activation running one version of the collection."""

    def __init__(self, name, workdir, source=None):
        self.name, self.workdir, self.source = name, workdir, source
        self.timing = os.path.join(workdir, "task-timing.jsonl")
        self.parts = (None, None, None)

    def start(self, max_restarts, chatops):
        env = {"SELFHEAL_TASK_TIMING": self.timing, "ANSIBLE_CALLBACKS_ENABLED": "task_timing",
               "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "bench", "callback_plugins")}
        # The role's default poll interval, not the demo's shorter one: the approve figure is what users get.
        overrides = {"incident_approval_poll_interval": 2 if self.name == "new" else 1,
                     # every run fixes web-01 again: no budget of automatic fixes per host or service here
                     "remediation_host_limit": 0, "remediation_service_limit": 0}
        os.makedirs(os.path.join(self.workdir, "state"), exist_ok=True)  # older versions did not make it themselves
        self.parts = run_demo.start_loop(self.workdir, max_restarts=max_restarts, source=self.source,
                                         inventory_vars=overrides, env=env,
                                         with_chatops=chatops and self.name == "new")
        return self

    def stop(self):
        run_demo.stop_loop(*self.parts)

    def idle(self):
        self.parts[2].wait_idle(timeout=120)

    def tasks_between(self, start, end):
        if not os.path.exists(self.timing):
            return []
        with open(self.timing) as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        return [r for r in rows if r.get("start") and start <= r["start"] <= end]

    def stages(self, run):
        """The run's stages from the bench's clock, the timeline and the task timing."""
        records = run["records"]
        fix = next(r for r in records if r["step"] in FIX_STEPS)
        fix_start, fix_end = span(fix)
        opened = [span(r) for r in records if r["step"] in OPEN_STEPS]
        resolved = max(span(r)[1] for r in records)
        plays = [r for r in self.tasks_between(run["detected"], fix_start) if r["task"] == "(play start)"]
        stages = {}
        if plays:
            stages["notification -> playbook"] = plays[0]["start"] - run["detected"]
            stages["playbook -> fix started"] = fix_start - plays[0]["start"]
        stages.update({
            "fix": fix["duration"],
            "detection -> healthy": run["healed"] - run["detected"],
            "comms open": max(e for s, e in opened) - min(s for s, e in opened) if opened else 0.0,
            "comms beside the fix": 1.0 if opened and min(s for s, e in opened) < fix_end
            and max(e for s, e in opened) > fix_start else 0.0,
            "detection -> resolved": resolved - run["detected"],
        })
        if run.get("answered"):
            stages["answer -> fix started"] = fix_start - run["answered"]
        return stages

    def crash(self):
        sandbox, supervisor, activation = self.parts
        return self.stages(run_demo.process_crash(sandbox, activation, supervisor, quiet=True))

    def disk(self):
        sandbox, dummy, activation = self.parts
        return self.stages(quietly(run_demo.full_disk, sandbox, activation))

    def bluegreen(self):
        sandbox, dummy, activation = self.parts
        nginx = activation.bluegreen.nginx
        nginx.write_active("green")  # the next slow release went live
        nginx.reload()
        return self.stages(quietly(run_demo.bluegreen, sandbox, activation))

    def approve(self):
        sandbox, supervisor, activation = self.parts
        return self.stages(run_demo.approved_crash(sandbox, activation, supervisor, answer_via="xmatters", quiet=True))

    def click(self):
        sandbox, supervisor, activation = self.parts
        return self.stages(run_demo.approved_crash(sandbox, activation, supervisor, answer_via="slack", quiet=True))


class Floor(object):
    """The Dynatrace source in ansible-rulebook running a one-task restart playbook; and the bare restart."""

    name = "floor"

    def __init__(self, workdir):
        self.workdir = workdir
        self.sandbox = self.supervisor = self.activation = None

    def start(self, max_restarts, chatops):
        collections = rulebook_harness.install_collection(self.workdir)
        self.sandbox = start_sandbox()
        self.supervisor = estate.Supervisor(self.workdir)
        # A folder of its own: ansible-rulebook copies the playbook's folder into each run's private data.
        os.makedirs(os.path.join(self.workdir, "playbook"))
        playbook = os.path.join(self.workdir, "playbook", "floor.yml")
        with open(playbook, "w") as handle:
            handle.write(FLOOR_PLAYBOOK.format(supervisorctl=os.path.join(rulebook_harness.BIN, "supervisorctl"),
                                               conf=self.supervisor.conf))
        port = rulebook_harness.free_port()
        self.activation = rulebook_harness.Activation(
            FLOOR_RULEBOOK.format(port=port, token=run_demo.TOKEN, playbook=playbook), collections,
            inventory={"all": {"hosts": {"web-01": {"ansible_connection": "local"}}}},
            env=credentials.environment(self.sandbox.url), workdir=os.path.join(self.workdir, "eda"),
            print_events=False)
        self.activation.start()
        self.activation.wait_for_url("http://127.0.0.1:%d/dynatrace/problems/health" % port, timeout=120)
        self.sandbox.call("POST", "/_sandbox/dynatrace/webhook", {
            "url": "http://127.0.0.1:%d/dynatrace/problems" % port,
            "headers": {"Authorization": "Bearer " + run_demo.TOKEN}})
        return self

    def idle(self):
        self.activation.wait_idle(timeout=120)

    def stop(self):
        if self.activation is not None:
            self.activation.stop()
            shutil.rmtree(os.path.join(self.workdir, "eda", "tmp"), ignore_errors=True)
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.sandbox is not None:
            stop_sandbox(self.sandbox)

    def _killed(self):
        old = self.supervisor.pid()
        estate.kill(old)
        estate.wait_until(lambda: self.supervisor.pid() == 0, what="supervisor to see the crash")
        return old

    def _healed(self, old):
        estate.wait_until(lambda: estate.healthy(self.supervisor.port) and self.supervisor.pid() not in (0, old),
                          timeout=120, what="the service to come back")
        return time.time()

    def crash(self):
        old = self._killed()
        detected = time.time()
        self.sandbox.call("POST", "/_sandbox/dynatrace/problems", {
            "title": "Process unavailable: web", "severity": "AVAILABILITY",
            "entities": [{"type": "HOST", "name": "web-01"}], "tags": {"process": "web"}})
        healed = self._healed(old)
        self.activation.wait_idle(timeout=60)
        return {"detection -> healthy": healed - detected}

    def bare(self):
        old = self._killed()
        started = time.time()
        subprocess.run([os.path.join(rulebook_harness.BIN, "supervisorctl"), "-c", self.supervisor.conf, "start",
                        "web"], check=True, capture_output=True)
        return {"detection -> healthy": self._healed(old) - started}


def summary(rows):
    names = []
    for row in rows:
        names += [n for n in row if n not in names]
    out = {}
    for name in names:
        values = sorted(r[name] for r in rows if name in r)
        p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
        out[name] = {"median": round(statistics.median(values), 2), "p90": round(p90, 2), "max": round(values[-1], 2),
                     "n": len(values)}
    return out


def checkout(ref, workdir):
    """The collection as it was at ref (git archive), for the side-by-side baseline."""
    folder = os.path.join(workdir, "source")
    os.makedirs(folder)
    archive = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", ref], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def load_average():
    return [round(value, 2) for value in os.getloadavg()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario and variant (at least 5 for targets)")
    parser.add_argument("--baseline", metavar="REF", help="also run the collection of this git commit, side by side")
    parser.add_argument("--ref", metavar="REF", help="run `new` from this git commit instead of the working tree")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--no-floor", action="store_true", help="leave out the floor and the bare restart")
    args = parser.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error("unknown scenarios: %s" % ", ".join(sorted(unknown)))
    signal.signal(signal.SIGTERM, lambda *dummy: sys.exit(143))  # a stopped bench still stops what it started
    base = tempfile.mkdtemp(prefix="selfheal-bench-loop-")
    variants = [Variant("new", os.path.join(base, "new"),
                        checkout(args.ref, os.path.join(base, "new")) if args.ref else ROOT)]
    if args.baseline:
        variants.append(Variant("old", os.path.join(base, "old"), checkout(args.baseline, os.path.join(base, "old"))))
    if not args.no_floor and "crash" in scenarios:
        variants.append(Floor(os.path.join(base, "floor")))
    results = {}  # (variant, scenario) -> [stages]
    loads = [load_average()]
    started = time.time()
    try:
        for variant in variants:
            os.makedirs(variant.workdir, exist_ok=True)
            # Every crash and approve run restarts the same program: lift the crash-loop guard's limit.
            variant.start(max_restarts=5 * args.runs + 4, chatops=bool({"approve", "click"} & set(scenarios)))
        for scenario in scenarios:
            for number in range(args.runs):
                order = variants if number % 2 == 0 else variants[::-1]  # ABBA: each variant first as often
                for variant in order:
                    if scenario == "disk" and isinstance(variant, Variant) and variant.parts[2].disk is None:
                        continue
                    if scenario == "click" and variant.name != "new":
                        continue  # Slack buttons are new: the old loop had none
                    if isinstance(variant, Floor):
                        if scenario != "crash":
                            continue
                        results.setdefault(("bare", scenario), []).append(variant.bare())
                    results.setdefault((variant.name, scenario), []).append(getattr(variant, scenario)())
                    variant.idle()  # the problem's closing runs a playbook too: one incident at a time is measured
                loads.append(load_average())
                print("%s run %d/%d done (load %s)" % (scenario, number + 1, args.runs, loads[-1][0]), flush=True)
    finally:
        for variant in variants:
            variant.stop()
    report = {
        "benchmark": "self_healing", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python bench/bench_self_healing.py " + " ".join(sys.argv[1:]),
        "machine": "%d cores" % os.cpu_count(), "load_average_1m": [l[0] for l in loads],
        "duration_s": round(time.time() - started),
        "baseline": args.baseline, "runs": {"%s/%s" % key: rows for key, rows in results.items()},
        "summary": {"%s/%s" % key: summary(rows) for key, rows in results.items()},
    }
    missed = []
    for (scenario, stage, statistic), target in TARGETS.items():
        rows = results.get(("new", scenario))
        if rows and len(rows) >= 1 and stage in summary(rows):
            value = summary(rows)[stage][statistic]
            if value > target:
                missed.append("%s %s %s %.2f s > %.1f s" % (scenario, stage, statistic, value, target))
    report["targets_missed"] = missed
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    name = "self_healing.json" if scenarios == list(SCENARIOS) else "self_healing-%s.json" % "-".join(scenarios)
    with open(os.path.join(ROOT, "bench", "results", name), "w") as handle:
        json.dump(report, handle, indent=2)
    print("\nload average (1 min) during the runs: %s" % ", ".join(str(l[0]) for l in loads))
    for scenario in scenarios:
        columns = [v for v in ("new", "old", "floor", "bare") if (v, scenario) in results]
        table = {v: summary(results[(v, scenario)]) for v in columns}
        stages = []
        for v in columns:
            stages += [s for s in table[v] if s not in stages]
        print("\n%s (%d runs): median / p90 s" % (scenario, args.runs))
        print("%-28s" % "stage" + "".join("%16s" % v for v in columns))
        for stage in stages:
            cells = ["%7.2f / %5.2f" % (table[v][stage]["median"], table[v][stage]["p90"]) if stage in table[v]
                     else "%16s" % "-" for v in columns]
            print("%-28s" % stage + "".join("%16s" % c for c in cells))
    print("\nresults: bench/results/%s" % name)
    if missed:
        print("TARGETS MISSED:\n  " + "\n  ".join(missed))
        return 1
    print("every target met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
