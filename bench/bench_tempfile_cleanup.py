"""tempfile_cleanup vs `find ROOT -type f -mmin +N -delete` vs the stock Ansible way, side by side.

Builds a realistic nested temp tree (FILES files in 2-level directories, half of them older than the age),
then times, on fresh copies of the same tree:
  find      find ROOT -type f -mmin +60 -delete
  module    the module's cleaner called in-process (what runs on the managed host), streaming mode
  playbook  the module through ansible-playbook once (adds Ansible's start-up and module transfer)
  stock     ansible.builtin.find + ansible.builtin.file (state=absent) loop, on STOCK_FILES files, extrapolated
and the peak memory (max RSS of a child process) of the module over MEMORY_FILES files.

    .venv/bin/python bench/bench_tempfile_cleanup.py [--files 200000] [--stock-files 2000] [--memory-files 1000000]

Writes bench/results/tempfile_cleanup.json and prints a table.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".venv", "bin")
sys.path.insert(0, os.path.join(ROOT, "build", "collections"))


def build_tree(root, files, per_dir=200):
    old = time.time() - 2 * 86400
    for number in range(files):
        directory = os.path.join(root, "d%03d" % (number // (per_dir * 50)), "s%03d" % ((number // per_dir) % 50))
        if number % per_dir == 0:
            os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "f%07d.tmp" % number)
        with open(path, "wb") as handle:
            handle.write(b"x" * 64)
        if number % 2 == 0:
            os.utime(path, (old, old))


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def module_params(root):
    return {"patterns": ["*"], "excludes": [], "age": "1h", "age_stamp": "mtime", "min_size": "0",
            "one_file_system": True, "remove_empty_dirs": False, "max_files": 0, "sample_size": 20,
            "skip_open_files": False, "paths": [root], "allowed_roots": [os.path.dirname(root)]}


def run_module_inprocess(root):
    from ansible_collections.selfheal.devops.plugins.modules import tempfile_cleanup

    cleaner = tempfile_cleanup.Cleaner(module_params(root), check_mode=False)
    cleaner.clean_streaming(root)
    return cleaner.deleted


def run_playbook(tasks, workdir):
    path = os.path.join(workdir, "play.yml")
    with open(path, "w") as handle:
        json.dump([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}], handle)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"),
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_PYTHON_INTERPRETER=os.path.join(BIN, "python"))
    subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", path], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def memory_child(root):
    """Run in a child: clean root, print the child's max RSS in MiB."""
    run_module_inprocess(root)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200000)
    parser.add_argument("--stock-files", type=int, default=2000)
    parser.add_argument("--memory-files", type=int, default=1000000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/var/tmp", help="where the trees are made (its filesystem is measured)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(args.child)
        return
    subprocess.run(["make", "-s", "collection"], cwd=ROOT, check=True)
    base = tempfile.mkdtemp(prefix="selfheal-bench-cleanup-", dir=args.dir)
    fstype = subprocess.run(["df", "--output=fstype", base], capture_output=True, text=True, check=True).stdout.split()[-1]
    try:
        template = os.path.join(base, "template")
        build_tree(template, args.files)

        def fresh(name):
            target = os.path.join(base, name)
            subprocess.run(["cp", "-a", template, target], check=True)
            subprocess.run(["sync"], check=True)  # the copy's writeback must not land in the next measurement
            return target

        figures = {}
        # find and the module alternate, each on a fresh copy, --rounds times; the medians are compared (this
        # machine is noisy, and one pair of runs can land either side of the target).
        rounds = {"find": [], "module": []}
        for number in range(args.rounds):
            tree = fresh("find-%d" % number)
            rounds["find"].append(timed(lambda: subprocess.run(["find", tree, "-type", "f", "-mmin", "+60", "-delete"], check=True)))
            tree = fresh("module-%d" % number)
            deleted = []
            rounds["module"].append(timed(lambda: deleted.append(run_module_inprocess(tree))))
            assert deleted[0] == args.files // 2, deleted
        figures["find"] = statistics.median(rounds["find"])
        figures["module"] = statistics.median(rounds["module"])
        tree = fresh("playbook")
        figures["playbook"] = timed(lambda: run_playbook([{"selfheal.devops.tempfile_cleanup": {
            "paths": [tree], "allowed_roots": [base], "age": "1h"}}], base))

        stock_tree = os.path.join(base, "stock")
        build_tree(stock_tree, args.stock_files)
        stock = timed(lambda: run_playbook([
            {"ansible.builtin.find": {"paths": stock_tree, "recurse": True, "age": "1h"}, "register": "found"},
            {"ansible.builtin.file": {"path": "{{ item.path }}", "state": "absent"}, "loop": "{{ found.files }}"}], base))
        figures["stock_extrapolated"] = stock * args.files / args.stock_files

        peak_mib = None  # --memory-files 0 skips the memory measurement
        if args.memory_files:
            memory_tree = os.path.join(base, "memory")
            build_tree(memory_tree, args.memory_files)
            child = subprocess.run([sys.executable, __file__, "--child", memory_tree], check=True, capture_output=True, text=True)
            peak_mib = float(child.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(base, ignore_errors=True)

    report = {"benchmark": "tempfile_cleanup", "files": args.files, "stock_files": args.stock_files,
              "memory_files": args.memory_files, "machine": "%d cores" % os.cpu_count(),
              "command": "python bench/bench_tempfile_cleanup.py --files %d --stock-files %d --memory-files %d --rounds %d --dir %s"
              % (args.files, args.stock_files, args.memory_files, args.rounds, args.dir),
              "filesystem": fstype, "load_average": os.getloadavg()[0],
              "seconds": {k: round(v, 2) for k, v in figures.items()},
              "rounds": {k: [round(v, 2) for v in values] for k, values in rounds.items()},
              "ratio_to_find": {k: round(v / figures["find"], 2) for k, v in figures.items()},
              "peak_rss_mib": peak_mib and round(peak_mib, 1), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "tempfile_cleanup-%s.json" % fstype), "w") as handle:
        json.dump(report, handle, indent=2)
    for name, seconds in figures.items():
        print("%-20s %9.2f s  %6.2fx find" % (name, seconds, seconds / figures["find"]))
    print("filesystem: %s; rounds: %s" % (fstype, json.dumps(report["rounds"])))
    if peak_mib is not None:
        print("peak RSS over %d files: %.1f MiB" % (args.memory_files, peak_mib))


if __name__ == "__main__":
    main()
