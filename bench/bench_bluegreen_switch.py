"""Benchmark: bluegreen_switch's switch time on real nginx and HAProxy, side by side in one run.

    .venv/bin/python bench/bench_bluegreen_switch.py [--switches 10]

For each router, the role switches blue <-> green --switches times through ansible-playbook, against the real
estate of the tests (two colour backends, a private nginx, a private HAProxy on 127.0.0.1). Figures per switch:
- switch: from the role's decision (the task before the switch) to the first answer of the new colour through
  the router (what bluegreen_switch_result.switch_seconds reports; includes two Ansible module executions);
- router only, without Ansible: the same change made directly (nginx: write the active file, `nginx -s reload`;
  HAProxy: `set server ... state` over the stats socket) until the first answer of the new colour, polled every
  1 ms: the router's own part.
Writes bench/results/bluegreen_switch.json.
"""

import argparse
import json
import os
import statistics
import time

from utils import bluegreen_estate
from utils.playbooks import run_playbook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tasks(switches):
    out = []
    for number, colour in enumerate(["green", "blue"] * (switches // 2) + ["green"] * (switches % 2), start=1):
        out += [{"name": "switch %d" % number, "ansible.builtin.include_role": {"name": "selfheal.devops.bluegreen_switch"},
                 "vars": {"bluegreen_switch_target": colour}},
                {"name": "result %d" % number, "ansible.builtin.set_fact": {"switch_%d" % number: "{{ bluegreen_switch_result }}"}}]
    return out


def serves(estate, router, colour):
    try:
        status, body, headers = bluegreen_estate.http_get(estate.router_url(router), timeout=2)
    except OSError:
        return False
    return status == 200 and bluegreen_estate.colour_of(body) == colour


def router_only(estate, router, switches):
    """Seconds from the change to the first answer of the new colour, for each direct switch."""
    seconds = []
    for number in range(switches):
        colour = "green" if number % 2 == 0 else "blue"
        other = "blue" if colour == "green" else "green"
        began = time.perf_counter()
        if router == "nginx":
            estate.nginx.write_active(colour)
            estate.nginx.reload()
        else:
            estate.haproxy.command("set server app/%s state ready" % colour)
            estate.haproxy.wait_up(colour)
            estate.haproxy.command("set server app/%s state maint" % other)
        while not serves(estate, router, colour):
            time.sleep(0.001)
        seconds.append(time.perf_counter() - began)
    return seconds


def summary(values):
    values = sorted(values)
    return {"median_s": round(statistics.median(values), 3), "p95_s": round(values[int(0.95 * (len(values) - 1))], 3),
            "max_s": round(values[-1], 3), "n": len(values)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=10)
    args = parser.parse_args()
    report = {"benchmark": "bluegreen_switch", "command": "python bench/bench_bluegreen_switch.py --switches %d" % args.switches,
              "machine": "%d cores" % os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "routers": {}}
    with bluegreen_estate.Estate(routers=("nginx", "haproxy"), active="blue") as estate:
        for router in ("nginx", "haproxy"):
            settings = dict(estate.role_vars(router), bluegreen_switch_health_interval=0.05)
            began = time.time()
            run = run_playbook(tasks(args.switches), extra_vars=settings)
            wall = time.time() - began
            if run.rc != 0:
                print(run.stdout[-3000:])
                raise SystemExit("the %s switches failed" % router)
            facts = [run["result %d" % n]["ansible_facts"]["switch_%d" % n] for n in range(1, args.switches + 1)]
            report["routers"][router] = {"role_switch": summary([float(f["switch_seconds"]) for f in facts]),
                                         "playbook_wall_s_per_switch": round(wall / args.switches, 2),
                                         "router_only": summary(router_only(estate, router, args.switches))}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "bluegreen_switch.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
