"""tempfile_cleanup (streaming and target mode) vs `find ROOT -type f -mmin +N -delete` vs the stock Ansible way.

Builds a realistic nested temp tree (FILES files in 2-level directories, half of them older than the age), then times,
on fresh copies of the same tree, alternating in every round (the order rotates from round to round):
  find       find ROOT -type f -mmin +60 -delete
  streaming  the module's logic in process (validation, root pinning, walk), no target: deletes as it walks
  target     the same with a free-space target no deletion can reach: every candidate is collected, chosen oldest
             first, re-checked and deleted (the same files as find, the role's default path); the CPU time of its
             second pass (re-open, re-check, unlink) is recorded separately
  bare       a bare Python loop (scandir, lstat, unlink of old regular files, none of the module's checks): the floor
             of any pure-Python walk, for reference
and once each:
  playbook   the module through ansible-playbook (adds Ansible's start-up and module transfer), both modes
  stock      ansible.builtin.find + ansible.builtin.file (state=absent) loop, on STOCK_FILES files, extrapolated
The rounds record wall time and CPU time (user + system, of this process or of find); medians of both are compared.
then the peak memory (max RSS of a child process that imported AnsibleModule like the module does) over MEMORY_FILES
files in streaming mode, in target mode when every candidate goes, and in target mode when half of the candidates are
needed (the oldest-first sort).

    .venv/bin/python bench/bench_tempfile_cleanup.py [--files 200000] [--rounds 7] [--stock-files 2000]
                                                     [--memory-files 1000000] [--dir /dev/shm]

Writes bench/results/tempfile_cleanup-<fstype>.json and prints a table.
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


def cpu_seconds():
    """CPU time (user + system) used so far by this process and its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def timed_cpu(function):
    """Wall seconds, CPU seconds and the result: on a shared, loaded machine the CPU time varies much less."""
    started, cpu = time.perf_counter(), cpu_seconds()
    result = function()
    return time.perf_counter() - started, cpu_seconds() - cpu, result


def module_params(root, **extra):
    # The bench trees may live under /dev/shm, a protected tree: named exactly, as a user would have to.
    params = {"paths": [root], "allowed_roots": [root], "allow_protected_roots": [root], "patterns": ["*"], "excludes": [],
              "age": "1h", "age_stamp": "mtime", "min_size": "0", "target_free_percent": None, "target_free_bytes": None,
              "one_file_system": True, "remove_empty_dirs": False, "max_files": 0, "sample_size": 20,
              "skip_open_files": False, "usage_only": False}
    params.update(extra)
    return params


def run_module_inprocess(root, mode):
    from ansible_collections.selfheal.devops.plugins.module_utils import _tempfiles

    extra = {}
    if mode == "target":
        extra["target_free_bytes"] = "1000T"  # unreachable: every candidate goes, oldest first
    elif mode == "target-half":
        # Half of the candidates (a quarter of the files, one page each on tmpfs) are needed: the oldest-first sort runs.
        vfs = os.statvfs(root)
        files = sum(len(names) for dummy, dummy2, names in os.walk(root))
        extra["target_free_bytes"] = str(vfs.f_bavail * vfs.f_frsize + files // 4 * vfs.f_bsize)
    result, warnings = _tempfiles.clean(module_params(root, **extra), False)
    assert not warnings and not result["errors"], (warnings, result["errors"][:3])
    return result["deleted"]


def run_playbook(tasks, workdir):
    path = os.path.join(workdir, "play.yml")
    with open(path, "w") as handle:
        json.dump([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}], handle)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"),
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_PYTHON_INTERPRETER=os.path.join(BIN, "python"))
    subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", path], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def memory_child(root, mode):
    """Run in a child: clean root like the module process does, print deleted files and the max RSS in MiB."""
    from ansible.module_utils.basic import AnsibleModule  # noqa: F401  (the module process imports it too)

    deleted = run_module_inprocess(root, mode)
    print(deleted, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def bare_python(root):
    """scandir + lstat + unlink of old regular files through directory descriptors, nothing else."""
    cutoff = time.time_ns() - 3600 * 10 ** 9
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW

    def walk(fd):
        subdirs, deleted = [], 0
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
                    continue
                info = os.lstat(entry.name, dir_fd=fd)
                if info.st_mode & 0o170000 == 0o100000 and info.st_mtime_ns <= cutoff:
                    os.unlink(entry.name, dir_fd=fd)
                    deleted += 1
        for name in subdirs:
            child = os.open(name, flags, dir_fd=fd)
            try:
                deleted += walk(child)
            finally:
                os.close(child)
        return deleted

    top = os.open(root, flags)
    try:
        return walk(top)
    finally:
        os.close(top)


class SecondPass(object):
    """Accumulates the CPU time of the target mode's second pass (Cleaner._delete_chosen)."""

    def __init__(self):
        from ansible_collections.selfheal.devops.plugins.module_utils import _tempfiles

        self.seconds = 0.0
        original = _tempfiles.Cleaner._delete_chosen

        def timed_pass(cleaner, group):
            started = cpu_seconds()
            try:
                return original(cleaner, group)
            finally:
                self.seconds += cpu_seconds() - started

        _tempfiles.Cleaner._delete_chosen = timed_pass


def find_delete(tree, expected):
    subprocess.run(["find", tree, "-type", "f", "-mmin", "+60", "-delete"], check=True)
    return expected  # checked by counting what is left


def remove(path):
    subprocess.run(["rm", "-rf", path], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200000)
    parser.add_argument("--stock-files", type=int, default=2000)
    parser.add_argument("--memory-files", type=int, default=1000000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default="/var/tmp", help="where the trees are made (its filesystem is measured)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(*args.child)
        return
    subprocess.run(["make", "-s", "collection"], cwd=ROOT, check=True)
    base = tempfile.mkdtemp(prefix="selfheal-bench-cleanup-", dir=args.dir)
    fstype = subprocess.run(["df", "--output=fstype", base], capture_output=True, text=True, check=True).stdout.split()[-1]
    load = {"start": os.getloadavg()}
    expected = args.files // 2
    try:
        template = os.path.join(base, "template")
        build_tree(template, args.files)

        def fresh(name):
            target = os.path.join(base, name)
            subprocess.run(["cp", "-a", template, target], check=True)
            subprocess.run(["sync"], check=True)  # the copy's writeback must not land in the next measurement
            return target

        variants = {
            "find": lambda tree: find_delete(tree, expected),
            "streaming": lambda tree: run_module_inprocess(tree, "streaming"),
            "target": lambda tree: run_module_inprocess(tree, "target"),
            "bare": bare_python,
        }
        second_pass = SecondPass()
        second_pass_rounds = []
        rounds = {name: [] for name in variants}
        cpu_rounds = {name: [] for name in variants}
        names = list(variants)
        for number in range(args.rounds):
            for name in names[number % len(names):] + names[:number % len(names)]:  # rotate: no variant always runs first
                tree = fresh("%s-%d" % (name, number))
                before_second_pass = second_pass.seconds
                seconds, cpu, deleted = timed_cpu(lambda: variants[name](tree))
                if name == "target":
                    second_pass_rounds.append(second_pass.seconds - before_second_pass)
                assert deleted == expected and sum(len(n) for dummy, dummy2, n in os.walk(tree)) == args.files - expected, name
                rounds[name].append(seconds)
                cpu_rounds[name].append(cpu)
                remove(tree)
        figures = {name: statistics.median(values) for name, values in rounds.items()}
        cpu_figures = {name: statistics.median(values) for name, values in cpu_rounds.items()}
        load["after_rounds"] = os.getloadavg()

        for mode, extra in (("playbook_streaming", {}), ("playbook_target", {"target_free_bytes": "1000T"})):
            tree = fresh(mode)
            figures[mode] = timed(lambda: run_playbook([{"selfheal.devops.tempfile_cleanup": dict({
                "paths": [tree], "allowed_roots": [tree], "allow_protected_roots": [tree], "age": "1h"}, **extra)}], base))[0]
            remove(tree)

        stock_tree = os.path.join(base, "stock")
        build_tree(stock_tree, args.stock_files)
        stock = timed(lambda: run_playbook([
            {"ansible.builtin.find": {"paths": stock_tree, "recurse": True, "age": "1h"}, "register": "found"},
            {"ansible.builtin.file": {"path": "{{ item.path }}", "state": "absent"}, "loop": "{{ found.files }}"}], base))[0]
        figures["stock_extrapolated"] = stock * args.files / args.stock_files
        remove(template)

        memory = {}  # --memory-files 0 skips the memory measurement
        for mode in ("streaming", "target", "target-half") if args.memory_files else ():
            memory_tree = os.path.join(base, "memory-" + mode)
            build_tree(memory_tree, args.memory_files)
            child = subprocess.run([sys.executable, __file__, "--child", memory_tree, mode], check=True, capture_output=True, text=True)
            deleted, peak = child.stdout.strip().splitlines()[-1].split()
            memory[mode] = {"deleted": int(deleted), "peak_rss_mib": round(float(peak), 1)}
            remove(memory_tree)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    load["end"] = os.getloadavg()

    report = {"benchmark": "tempfile_cleanup", "files": args.files, "stock_files": args.stock_files,
              "memory_files": args.memory_files, "machine": "%d cores" % os.cpu_count(),
              "command": "python bench/bench_tempfile_cleanup.py --files %d --stock-files %d --memory-files %d --rounds %d --dir %s"
              % (args.files, args.stock_files, args.memory_files, args.rounds, args.dir),
              "filesystem": fstype, "load_average": {k: [round(v, 2) for v in values] for k, values in load.items()},
              "seconds": {k: round(v, 3) for k, v in figures.items()},
              "rounds": {k: [round(v, 3) for v in values] for k, values in rounds.items()},
              "ratio_to_find": {k: round(v / figures["find"], 2) for k, v in figures.items()},
              "round_ratios": {k: [round(v / f, 2) for v, f in zip(values, rounds["find"])] for k, values in rounds.items()},
              "cpu_seconds": {k: round(v, 3) for k, v in cpu_figures.items()},
              "cpu_rounds": {k: [round(v, 3) for v in values] for k, values in cpu_rounds.items()},
              "cpu_ratio_to_find": {k: round(v / cpu_figures["find"], 2) for k, v in cpu_figures.items()},
              "target_second_pass_cpu_seconds": round(statistics.median(second_pass_rounds), 3),
              "target_second_pass_cpu_rounds": [round(v, 3) for v in second_pass_rounds],
              "memory": memory, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "tempfile_cleanup-%s.json" % fstype), "w") as handle:
        json.dump(report, handle, indent=2)
    for name, seconds in figures.items():
        cpu = " (CPU %.3f s, %.2fx find)" % (cpu_figures[name], cpu_figures[name] / cpu_figures["find"]) if name in cpu_figures else ""
        print("%-20s %9.3f s  %6.2fx find%s" % (name, seconds, seconds / figures["find"], cpu))
    print("target mode, second pass (re-open, re-check, unlink): CPU %.3f s (median)" % report["target_second_pass_cpu_seconds"])
    print("filesystem: %s; rounds: %s" % (fstype, json.dumps(report["rounds"])))
    print("load average: %s" % json.dumps(report["load_average"]))
    for mode, values in memory.items():
        print("peak RSS over %d files, %s: %.1f MiB (%d deleted)" % (args.memory_files, mode, values["peak_rss_mib"], values["deleted"]))


if __name__ == "__main__":
    main()
