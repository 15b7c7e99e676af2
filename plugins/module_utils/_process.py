# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A program on a managed host: observe it, guard it against crash loops, restart it. Private to selfheal.devops.

Shared by the process_status (observe), restart_guard (guard) and process_heal (all three in one module run)
modules. Runs on the managed host (Python 3.9+, standard library and ansible.module_utils only).
"""

import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time

from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.selfheal.devops.plugins.module_utils._files import write_atomically
from ansible_collections.selfheal.devops.plugins.module_utils._supervisor import Supervisord


def probe_argument_spec(**own):
    """The options of every module that finds a process and proves its health (process_status, process_heal), with
    the module's own."""
    spec = dict(
        name=dict(type="str", required=True),
        manager=dict(type="str", default="auto", choices=["auto", "supervisor", "systemd", "service", "command"]),
        supervisorctl=dict(type="list", elements="str", default=["supervisorctl"]),
        pidfile=dict(type="path"),
        process_match=dict(type="str"),
        health_url=dict(type="str"),
        health_status=dict(type="list", elements="int", default=[200]),
        health_body=dict(type="str", default=""),
        health_host=dict(type="str", default="127.0.0.1"),
        health_port=dict(type="int", default=0),
        health_command=dict(type="str"),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="float", default=30),
        interval=dict(type="float", default=1),
    )
    spec.update(own)
    return spec


def probe_problem(params):
    """What is wrong with those shared options, before anything runs; None when nothing is."""
    for name in ("timeout", "interval"):
        if params[name] <= 0:
            return "%s must be more than 0, got %s" % (name, params[name])
    if not 0 <= params["health_port"] <= 65535:
        return "health_port must be between 0 and 65535, got %d" % params["health_port"]
    if params["health_body"]:
        try:
            re.compile(params["health_body"])
        except re.error as error:
            return "health_body is not a valid regular expression: %s" % error
    if params["manager"] == "command" and not (params["pidfile"] or params["process_match"]):
        return "the command manager needs a pidfile or a process_match to find the process"
    return None


class Observer(object):
    """Reads the PID and runs the checks; run(argv) -> (rc, stdout) is the module's run_command, injectable;
    supervisord: the Supervisord to ask (shared by the observations and the restart of one module run)."""

    def __init__(self, params, run, clock=time.time, sleep=time.sleep, supervisord=None):
        self.params = params
        self.run = run
        self.clock = clock
        self.sleep = sleep
        self.body = re.compile(params["health_body"]) if params["health_body"] else None
        self.manager = params["manager"]
        self.supervisord = supervisord or Supervisord(params["supervisorctl"], run)
        self.status = None

    def detect(self):
        """The manager auto means: supervisord if it runs the program, else systemd if it runs the host, else service."""
        status = self.supervisord.status(self.params["name"])
        if status[0]:
            self.status = status  # the first observation reads its PID from this answer
            return "supervisor"
        return "systemd" if os.path.isdir("/run/systemd/system") else "service"

    def supervisor_pid(self):
        """One status answers for a running or a dead program; `supervisorctl pid` only for the states in between when
        supervisorctl answered."""
        status, self.status = self.status, None
        known, state, pid, source = status or self.supervisord.status(self.params["name"])
        if pid is not None:
            return pid, source
        return self.supervisord.pid(self.params["name"]), "supervisorctl pid"

    # PID ------------------------------------------------------------------------------------------
    def read_pid(self):
        params = self.params
        if self.manager == "supervisor":
            return self.supervisor_pid()
        if self.manager == "systemd":
            rc, out = self.run(["systemctl", "show", "-p", "MainPID", "--value", params["name"]])
            return out.strip(), "systemctl show MainPID"
        if params["pidfile"]:
            try:
                with open(params["pidfile"]) as handle:
                    return handle.read(64).strip(), "pidfile"
            except (IOError, OSError):
                return "", "pidfile"
        if params["process_match"]:
            rc, out = self.run(["pgrep", "-o", "-f", params["process_match"]])
            return (out.split() or [""])[0], "pgrep"
        return None, None

    @staticmethod
    def alive(text):
        if not re.match(r"^[1-9][0-9]*$", text or ""):
            return 0
        return int(text) if os.path.exists("/proc/%s" % text) else 0

    # Checks ---------------------------------------------------------------------------------------
    def check_http(self, timeout):
        params = self.params
        try:
            response = open_url(params["health_url"], timeout=timeout, validate_certs=params["validate_certs"],
                                follow_redirects="safe", http_agent="selfheal.devops.process_status")
            status, body = response.getcode(), response.read() if self.body else b""
        except HTTPError as error:
            status, body = error.code, (error.read() if self.body else b"")
        except (URLError, socket.error, ValueError) as error:
            return {"status": -1, "passed": False, "error": to_text(getattr(error, "reason", error))}
        passed = status in params["health_status"] and (
            self.body is None or bool(self.body.search(to_text(body, errors="surrogate_or_replace"))))
        return {"status": status, "passed": passed}

    def check_tcp(self, timeout):
        try:
            socket.create_connection((self.params["health_host"], self.params["health_port"]), timeout=timeout).close()
        except (socket.error, OverflowError) as error:
            return {"passed": False, "error": to_text(error)}
        return {"passed": True}

    def check_command(self):
        rc, dummy = self.run(shlex.split(self.params["health_command"]))
        return {"rc": rc, "passed": rc == 0}

    def observe_once(self, timeout):
        params = self.params
        text, source = self.read_pid()
        pid = self.alive(text) if source else 0
        checks = {}
        if source:
            checks["pid"] = {"value": text, "source": source}
        if params["health_url"]:
            checks["http"] = self.check_http(timeout)
        if params["health_port"]:
            checks["tcp"] = self.check_tcp(timeout)
        if params["health_command"]:
            checks["command"] = self.check_command()
        # A plain init-script service may have no PID source: its health checks decide alone.
        pid_ok = pid > 0 or (source is None and self.manager == "service")
        healthy = pid_ok and all(check["passed"] for name, check in checks.items() if name != "pid")
        return {"pid": pid, "healthy": healthy, "checks": checks}

    def observe(self):
        params = self.params
        started = self.clock()
        if self.manager == "auto":
            self.manager = self.detect()
        deadline = started + (params["timeout"] if params["wait"] else 0)
        pause, observations = 0.1, 0
        while True:
            check_timeout = max(0.5, min(5.0, params["timeout"], deadline - self.clock()))
            result = self.observe_once(check_timeout)
            observations += 1
            now = self.clock()
            if result["healthy"] or not params["wait"] or now >= deadline:
                break
            self.sleep(min(pause, params["interval"], max(0.0, deadline - now)))
            pause *= 2
        result.update(manager=self.manager, observations=observations, waited=round(self.clock() - started, 3))
        return result


# --- the crash-loop guard ------------------------------------------------------------------------------------------

def read_attempts(path):
    """(attempts, warning): the recorded times, or [] and why when the file is missing, unreadable or corrupt."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (IOError, OSError) as error:
        return [], (None if getattr(error, "errno", None) == 2 else "record %s unreadable: %s" % (path, error))
    except ValueError as error:
        return [], "record %s is not JSON (%s); starting afresh" % (path, error)
    attempts = data.get("attempts") if isinstance(data, dict) else None
    if not isinstance(attempts, list):
        return [], "record %s has no attempts list; starting afresh" % path
    return [float(value) for value in attempts if isinstance(value, (int, float))], None


def write_attempts(path, name, attempts):
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o750)
    write_atomically(path, json.dumps({"name": name, "attempts": attempts}) + "\n")


def decide(attempts, now, window, max_attempts):
    """The restarts within the window, and whether one more is allowed."""
    recent = sorted(value for value in attempts if now - window < value <= now)
    return recent, len(recent) < max_attempts


def guard(path, name, max_attempts, window, record=True, check_mode=False, clock=time.time):
    """Read, decide and (when allowed and recording) write the attempt, under a lock on the record's directory, so
    two remediations of one host at once never lose an attempt. Returns the restart_guard module's result fields.
    Raises OSError (the path and why) when the record cannot be used."""
    directory = os.path.dirname(path) or "."
    writing = record and not check_mode
    if writing and not os.path.isdir(directory):
        os.makedirs(directory, 0o750)
    lock = os.open(directory, os.O_RDONLY) if os.path.isdir(directory) else None
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        now = clock()
        attempts, warning = read_attempts(path)
        recent, allowed = decide(attempts, now, window, max_attempts)
        result = {"allowed": allowed, "crash_loop": not allowed, "recent": recent, "recorded_at": None}
        if warning:
            result["warning"] = warning
        if allowed and record:
            if writing:
                write_attempts(path, name, recent + [now])
            result["recorded_at"] = now
        return result
    finally:
        if lock is not None:
            os.close(lock)


# --- restarting ----------------------------------------------------------------------------------------------------

class Restarter(object):
    """Restarts a program through its manager; run(argv) -> (rc, stdout) is the module's run_command."""

    def __init__(self, params, run, sleep=time.sleep, clock=time.time, supervisord=None):
        self.params = params
        self.run = run
        self.sleep = sleep
        self.clock = clock
        self.supervisord = supervisord or Supervisord(params["supervisorctl"], run)

    def restart(self, manager, pid):
        """(done, detail): whether the manager accepted the restart, and what it said."""
        params = self.params
        name = params["name"]
        if manager == "supervisor":
            # Stops the program if it runs (a dead one just reports "not running") and starts it.
            return self.supervisord.restart(name)
        if manager == "systemd":
            rc, out = self.run(["systemctl", "restart", name])
            return rc == 0, out.strip() or "systemctl restart %s: rc %d" % (name, rc)
        if manager == "service":
            rc, out = self.run(["service", name, "restart"])
            if rc == 127 and os.path.exists("/etc/init.d/%s" % name):
                rc, out = self.run(["/etc/init.d/%s" % name, "restart"])
            return rc == 0, out.strip() or "service %s restart: rc %d" % (name, rc)
        return self.restart_command(pid)

    def restart_command(self, pid):
        """Command mode: stop the old process (its stop command, else TERM then KILL), then start it detached."""
        params = self.params
        if params["stop_command"]:
            self.run(shlex.split(params["stop_command"]))
        elif pid:
            _signal(pid, signal.SIGTERM)
        if pid:
            deadline = self.clock() + params["stop_timeout"]
            while os.path.exists("/proc/%d" % pid) and self.clock() < deadline:
                self.sleep(0.05)
            if os.path.exists("/proc/%d" % pid):
                _signal(pid, signal.SIGKILL)
        if params["pidfile"] and os.path.exists(params["pidfile"]):
            os.unlink(params["pidfile"])
        with open(params["log_file"], "ab") as log:
            child = subprocess.Popen(["sh", "-c", "exec " + params["start_command"]], cwd=params["chdir"],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     close_fds=True, start_new_session=True)
        if params["pidfile"] and not os.path.exists(params["pidfile"]):
            write_atomically(params["pidfile"], "%d\n" % child.pid, mode=0o644)
        return True, "started PID %d" % child.pid


def _signal(pid, number):
    try:
        os.kill(pid, number)
    except OSError:
        pass


def heal(params, run, check_mode=False, clock=time.time, sleep=time.sleep, supervisord=None):
    """Observe; when unhealthy (or forced), restart within the crash-loop guard and wait for health; all in one call.

    Returns the result of the process_heal module (the process_restart role's process_restart_result)."""
    started = clock()
    supervisord = supervisord or Supervisord(params["supervisorctl"], run)
    observed = dict(params, wait=False)
    observer = Observer(observed, run, clock=clock, sleep=sleep, supervisord=supervisord)
    before = observer.observe()
    manager = before["manager"]
    result = {"name": params["name"], "manager": manager, "restarted": False, "healthy": before["healthy"],
              "healthy_before": before["healthy"], "attempts": 0, "recent_attempts": 0, "pid_before": before["pid"],
              "pid_after": before["pid"], "crash_loop": False, "check_mode": check_mode, "checks": before["checks"],
              "restart_output": []}
    if before["healthy"] and not params["force"]:
        result["reason"] = "already_healthy"
    else:
        restarter = Restarter(params, run, sleep=sleep, clock=clock, supervisord=supervisord)
        waiting = Observer(dict(params, wait=True, manager=manager), run, clock=clock, sleep=sleep,
                           supervisord=supervisord)
        pid = before["pid"]
        for dummy in range(params["attempts_per_run"]):
            verdict = guard(params["state_file"], params["name"], params["max_attempts"], params["window"], True,
                            check_mode, clock)
            result["recent_attempts"] = len(verdict["recent"])
            if verdict["crash_loop"]:
                result["crash_loop"] = True
                break
            if check_mode:
                break
            done, detail = restarter.restart(manager, pid)
            result["restart_output"].append(detail)
            result["restarted"] = True
            result["attempts"] += 1
            after = waiting.observe()
            pid = after["pid"]
            result.update(healthy=after["healthy"], pid_after=after["pid"], checks=after["checks"])
            if after["healthy"]:
                break
        result["reason"] = ("crash_loop" if result["crash_loop"] else "check_mode" if check_mode
                            else "restarted" if result["healthy"] else "unhealthy")
    result["duration"] = round(clock() - started, 2)
    return result
