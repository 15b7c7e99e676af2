"""The Ansible execution options that move the floor under every playbook run, side by side.

The same two playbooks run with each option, in rounds (the order rotates each round; the machine is shared), and the
median wall time of `ansible-playbook` is reported with its ratio to the defaults:

  empty     a play on localhost with no task (start-up, inventory, play)
  modules   the same play with 10 module executions (ansible.builtin.ping) and 10 set_fact: what a remediation costs
            per task on a host

Variants:
  default             what a fresh installation does here (interpreter discovery, no pipelining, facts off)
  interpreter         ansible_python_interpreter set explicitly (no discovery on the first module)
  pipelining          ANSIBLE_PIPELINING=True (the module goes through stdin: no temp file, chmod, rm per task)
  interpreter+pipe    both
  facts               gather_facts on (what a play without `gather_facts: false` pays)
  mitogen             the mitogen_linear strategy (only with --mitogen PATH: a folder holding the ansible_mitogen
                      package, e.g. from `pip install --target PATH "mitogen<0.4"`; the collection never needs it)

    .venv/bin/python bench/bench_ansible_options.py [--rounds 5] [--mitogen PATH]

Writes bench/results/ansible_options.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".venv", "bin")
PLAY = """---
- name: Floor
  hosts: localhost
  gather_facts: {facts}
  tasks:
{tasks}
"""
MODULE_TASKS = "".join("    - name: Module {0}\n      ansible.builtin.ping:\n    - name: Fact {0}\n"
                       "      ansible.builtin.set_fact:\n        value_{0}: {0}\n".format(n) for n in range(10))


def playbook(folder, name, facts, tasks):
    path = os.path.join(folder, name + ".yml")
    with open(path, "w") as handle:
        handle.write(PLAY.format(facts="true" if facts else "false", tasks=tasks or "    []"))
    return path


def variants(args):
    python = os.path.join(BIN, "python")
    found = {
        "default": ({}, False),
        "interpreter": ({"ANSIBLE_PYTHON_INTERPRETER": python}, False),
        "pipelining": ({"ANSIBLE_PIPELINING": "True"}, False),
        "interpreter+pipe": ({"ANSIBLE_PYTHON_INTERPRETER": python, "ANSIBLE_PIPELINING": "True"}, False),
        "facts": ({"ANSIBLE_PYTHON_INTERPRETER": python}, True),
    }
    if args.mitogen:
        strategy = os.path.join(args.mitogen, "ansible_mitogen", "plugins", "strategy")
        if not os.path.isdir(strategy):
            sys.exit("--mitogen %s holds no ansible_mitogen package" % args.mitogen)
        found["mitogen"] = ({"ANSIBLE_PYTHON_INTERPRETER": python, "PYTHONPATH": args.mitogen,
                             "ANSIBLE_STRATEGY_PLUGINS": strategy, "ANSIBLE_STRATEGY": "mitogen_linear"}, False)
    return found


def run(path, extra_env, folder):
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
               ANSIBLE_NOCOLOR="1", **extra_env)
    if "ANSIBLE_PYTHON_INTERPRETER" not in extra_env:
        env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
    # Interpreter discovery tries python3.13, python3.12, ... on PATH first: a version manager's shims there (pyenv)
    # answer for versions that are not installed. A managed host has no such shims.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".pyenv" not in p)
    started = time.perf_counter()
    # An inventory host (not the implicit localhost, which runs ansible-playbook's own Python): as a managed host.
    done = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", path], env=env, cwd=folder, capture_output=True,
                          text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (path, done.stdout[-2000:]))
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mitogen", metavar="PATH", help="folder holding the ansible_mitogen package (optional)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="selfheal-bench-options-")
    chosen = variants(args)
    times = dict((name, {"empty": [], "modules": []}) for name in chosen)
    loads = [os.getloadavg()[0]]
    names = list(chosen)
    for number in range(args.rounds):
        order = names[number % len(names):] + names[:number % len(names)]
        for name in order:
            extra_env, facts = chosen[name]
            for kind, tasks in (("empty", ""), ("modules", MODULE_TASKS)):
                times[name][kind].append(run(playbook(folder, "%s-%s" % (name, kind), facts, tasks), extra_env, folder))
        loads.append(os.getloadavg()[0])
        print("round %d/%d (load %.2f)" % (number + 1, args.rounds, loads[-1]), flush=True)
    summary = {}
    for name in names:
        summary[name] = dict((kind, round(statistics.median(values), 3)) for kind, values in times[name].items())
        summary[name]["per_task_pair"] = round((summary[name]["modules"] - summary[name]["empty"]) / 10, 3)
    base = summary["default"]
    print("\n%-18s %10s %12s %16s %14s" % ("variant", "empty s", "10+10 s", "per module+fact", "x default"))
    for name in names:
        row = summary[name]
        ratio = row["modules"] / base["modules"]
        print("%-18s %10.2f %12.2f %16.3f %14.2f" % (name, row["empty"], row["modules"], row["per_task_pair"], ratio))
    report = {"benchmark": "ansible_options", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": "python bench/bench_ansible_options.py " + " ".join(sys.argv[1:]),
              "machine": "%d cores" % os.cpu_count(), "load_average_1m": [round(l, 2) for l in loads],
              "runs": times, "summary": summary}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "ansible_options.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
