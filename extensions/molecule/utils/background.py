# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start and stop the long-running parts a molecule scenario needs (sandbox, blue/green estate).

    background.py start --name NAME --dir DIR [--ready-file F | --ready-line TEXT] [--timeout S] -- CMD...
    background.py stop --name NAME --dir DIR [--timeout S]

`start` runs CMD in its own session (it outlives the Ansible task that started it), stdout and stderr to
DIR/NAME.log, and returns once it is ready: the file F exists, or a line of the log contains TEXT. It fails,
with the log's tail, when the process exits first or the timeout passes (and then stops what it started).
Its PID goes to DIR/NAME.pid. A part that already runs is left alone and reported unchanged.
`stop` sends SIGTERM to the part (which stops its own children), waits for its whole process group to exit
(SIGTERM, then SIGKILL past the timeout, to what is left) and removes the PID file; a part that does not run is
reported unchanged.

Each command prints one JSON line: {"changed": bool, "pid": int, "msg": str} (exit status 1 on failure), so a
task can use `changed_when: (result.stdout | from_json).changed`.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time


class PartError(Exception):
    """A part could not be started or stopped."""


def _paths(directory, name):
    return os.path.join(directory, name + ".pid"), os.path.join(directory, name + ".log")


def _running(pid):
    """True while pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _start_time(pid):
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _read_pid(pidfile):
    """The PID recorded in pidfile, or 0 when there is none or it now belongs to another process (PID reuse).

    A PID whose process is gone is still returned: it stays the id of its process group, which may have members
    left, and Linux does not hand a PID out again while a process group carries it.
    """
    try:
        with open(pidfile) as handle:
            fields = handle.read().split()
    except FileNotFoundError:
        return 0
    if len(fields) != 2 or not fields[0].isdigit():
        return 0
    pid = int(fields[0])
    started = _start_time(pid)
    return pid if started is None or started == fields[1] else 0


def _tail(path, size=2000):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _ready(ready_file, ready_line, logfile):
    if ready_file:
        return os.path.exists(ready_file)
    if ready_line:
        try:
            with open(logfile, encoding="utf-8", errors="replace") as handle:
                return any(ready_line in line for line in handle)
        except OSError:
            return False
    return True


def _wait(condition, timeout, interval=0.05):
    """Poll condition() until true or timeout seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def start(name, directory, command, ready_file=None, ready_line=None, timeout=60.0):
    pidfile, logfile = _paths(directory, name)
    pid = _read_pid(pidfile)
    if pid and _running(pid):
        return {"changed": False, "pid": pid, "msg": "%s already runs (PID %d)" % (name, pid)}
    if not command:
        raise PartError("%s: no command to start" % name)
    os.makedirs(directory, exist_ok=True)
    if ready_file and os.path.exists(ready_file):
        os.unlink(ready_file)  # left by an earlier run: readiness must come from this process
    with open(logfile, "wb") as log, open(os.devnull, "rb") as devnull:
        try:
            process = subprocess.Popen(command, stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, close_fds=True)
        except OSError as error:
            raise PartError("%s: cannot run %s: %s" % (name, command[0], error))
    up = _wait(lambda: process.poll() is not None or _ready(ready_file, ready_line, logfile), timeout)
    if process.poll() is not None:
        raise PartError("%s exited with status %s before it was ready; log tail:\n%s" % (name, process.returncode, _tail(logfile)))
    if not up:
        _terminate(process.pid, 10.0)
        raise PartError("%s was not ready after %.0f s; log tail:\n%s" % (name, timeout, _tail(logfile)))
    with open(pidfile + ".tmp", "w") as handle:
        handle.write("%d %s\n" % (process.pid, _start_time(process.pid)))
    os.replace(pidfile + ".tmp", pidfile)
    return {"changed": True, "pid": process.pid, "msg": "%s started (PID %d)" % (name, process.pid)}


def _group_members(pgid):
    """PIDs of the live (not zombie) processes in process group pgid."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _terminate(pid, timeout):
    """Stop the part led by pid: SIGTERM to the leader (it stops its own children), then SIGTERM to whatever of its
    process group is left, then SIGKILL; returns True when something had to be killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _wait(lambda: not _running(pid), timeout)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_members(pid):
            return sig == signal.SIGKILL
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return sig == signal.SIGKILL
        if _wait(lambda: not _group_members(pid), timeout):
            return sig == signal.SIGKILL
    raise PartError("process group %d did not exit after SIGKILL: %s" % (pid, _group_members(pid)))


def stop(name, directory, timeout=15.0):
    pidfile = _paths(directory, name)[0]
    pid = _read_pid(pidfile)
    if not pid or not (_running(pid) or _group_members(pid)):
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        return {"changed": False, "pid": pid, "msg": "%s does not run" % name}
    killed = _terminate(pid, timeout)
    os.unlink(pidfile)
    return {"changed": True, "pid": pid, "msg": "%s stopped (PID %d)%s" % (name, pid, " with SIGKILL" if killed else "")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="action", required=True)
    for action in ("start", "stop"):
        sub = commands.add_parser(action)
        sub.add_argument("--name", required=True)
        sub.add_argument("--dir", required=True)
        sub.add_argument("--timeout", type=float, default=60.0 if action == "start" else 15.0)
        if action == "start":
            ready = sub.add_mutually_exclusive_group()
            ready.add_argument("--ready-file")
            ready.add_argument("--ready-line")
            sub.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            result = start(args.name, args.dir, command, args.ready_file, args.ready_line, args.timeout)
        else:
            result = stop(args.name, args.dir, args.timeout)
    except (PartError, OSError) as error:
        print(json.dumps({"changed": False, "failed": True, "msg": str(error)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
