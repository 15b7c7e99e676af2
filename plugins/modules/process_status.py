#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: process_status
short_description: Find a program's PID and check its health in one step, optionally waiting until it is healthy
version_added: 0.1.0
description:
  - Reads the PID of a program from its process manager (supervisord, systemd), a pidfile or its command line,
    checks that the process is alive, and runs the configured health checks (HTTP URL, TCP port, command).
  - The program is B(healthy) when it has a live PID (an init-script service without a pidfile or process match
    counts on its health checks alone) and every configured health check passes.
  - With O(wait), it repeats the whole observation until the program is healthy or O(timeout) has passed. The
    first retries come quickly (0.1 s, doubling) and are never further apart than O(interval), so a program
    that comes back at once is seen at once.
  - Used by the C(selfheal.devops.process_restart) role before and after a restart; one module run replaces a
    PID read, a liveness check and a health probe, which matters when every second to healthy counts.
  - Only reads; it behaves the same in check mode.
extends_documentation_fragment:
  - selfheal.devops.attributes
  - selfheal.devops.attributes.INFO_MODULE
options:
  name:
    description: supervisord program, systemd unit, or a label (O(manager=service) and O(manager=command)).
    type: str
    required: true
  manager:
    description:
      - Where the PID comes from. V(supervisor) asks C(supervisorctl status) (and C(supervisorctl pid) while the
        program is starting or stopping), V(systemd) asks C(systemctl show
        -p MainPID). V(service) and V(command) read O(pidfile) or, without one, find the oldest process whose
        command line matches O(process_match) (C(pgrep -o -f)).
      - V(auto) picks V(supervisor) when C(supervisorctl status) knows the program, else V(systemd) when
        systemd runs the host, else V(service); RV(manager) says which.
    type: str
    choices: [auto, supervisor, systemd, service, command]
    default: auto
  supervisorctl:
    description: The C(supervisorctl) command and its options (for example V([supervisorctl, -c, /etc/sv.conf])).
    type: list
    elements: str
    default: [supervisorctl]
  pidfile:
    description: File holding the PID (V(service) and V(command) managers).
    type: path
  process_match:
    description: Extended regular expression matched against full command lines, as C(pgrep -f) does.
    type: str
  health_url:
    description: HTTP(S) URL that must answer with a status in O(health_status) (and match O(health_body)).
    type: str
  health_status:
    description: HTTP statuses that pass.
    type: list
    elements: int
    default: [200]
  health_body:
    description: Regular expression the response body must contain (Python syntax). Empty means any body.
    type: str
    default: ""
  health_host:
    description: Host of the TCP health check.
    type: str
    default: 127.0.0.1
  health_port:
    description: TCP port that must accept a connection. V(0) disables the check.
    type: int
    default: 0
  health_command:
    description: Command (split like a shell would, not run through one) that must exit with status 0.
    type: str
  validate_certs:
    description: Verify TLS certificates of an C(https://) O(health_url).
    type: bool
    default: true
  wait:
    description: Repeat until healthy or until O(timeout); without it, observe once.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for health with O(wait); also bounds a single HTTP or TCP check (at most 5 s).
    type: float
    default: 30
  interval:
    description: Longest pause in seconds between two observations with O(wait).
    type: float
    default: 1
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
author:
  - selfheal.devops contributors (@selfheal-devops)
"""

EXAMPLES = r"""
- name: Is the web program running and answering?
  selfheal.devops.process_status:
    name: web
    manager: supervisor
    health_url: http://127.0.0.1:8080/health
  register: web

- name: After a restart, wait up to 30 s for a new PID that answers on its port
  selfheal.devops.process_status:
    name: worker
    manager: command
    pidfile: /run/worker.pid
    health_port: 9000
    wait: true
    timeout: 30
"""

RETURN = r"""
manager:
  description: The process manager used (the one detected with O(manager=auto)).
  returned: always
  type: str
  sample: supervisor
pid:
  description: PID of the live process, V(0) when none runs.
  returned: always
  type: int
  sample: 4242
healthy:
  description: Whether the program has a live PID (where one is known) and every configured check passed.
  returned: always
  type: bool
  sample: true
checks:
  description: The last observation's checks; a check that is not configured is absent.
  returned: always
  type: dict
  sample: {pid: {value: 4242, source: supervisorctl pid}, http: {status: 200, passed: true}}
  contains:
    pid:
      description: Where the PID came from and the value read (before the liveness check).
      type: dict
    http:
      description: C(status) (V(-1) with C(error) when no answer came) and C(passed).
      type: dict
    tcp:
      description: C(passed) and, when the connection failed, C(error).
      type: dict
    command:
      description: C(rc) and C(passed) (output is not returned).
      type: dict
observations:
  description: How many times the program was observed (1 without O(wait)).
  returned: always
  type: int
  sample: 3
waited:
  description: Seconds spent observing.
  returned: always
  type: float
  sample: 1.21
"""

import os
import re
import shlex
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url


# `supervisorctl status NAME`: "NAME  RUNNING   pid 4242, uptime 0:01:00" or "NAME  EXITED  Nov 30 05:00 AM".
SUPERVISOR_STATUS = re.compile(r"^\S+\s+([A-Z]+)(?:\s+pid (\d+),)?", re.MULTILINE)
SUPERVISOR_DOWN = frozenset(["STOPPED", "EXITED", "FATAL", "BACKOFF"])


class Observer(object):
    """Reads the PID and runs the checks; run(argv) -> (rc, stdout) is the module's run_command, injectable."""

    def __init__(self, params, run, clock=time.time, sleep=time.sleep):
        self.params = params
        self.run = run
        self.clock = clock
        self.sleep = sleep
        self.body = re.compile(params["health_body"]) if params["health_body"] else None
        self.manager = params["manager"]
        self.status_out = None

    def detect(self):
        """The manager auto means: supervisord if it runs the program, else systemd if it runs the host, else service."""
        rc, out = self.run(self.params["supervisorctl"] + ["status", self.params["name"]])
        text = out.lower()
        if rc in (0, 3) and "no such process" not in text and "error" not in text:
            self.status_out = out  # the first observation reads its PID from this answer
            return "supervisor"
        return "systemd" if os.path.isdir("/run/systemd/system") else "service"

    def supervisor_pid(self):
        """One `supervisorctl status` answers for a running or a dead program; `pid` only for the states in between."""
        out, self.status_out = self.status_out, None
        if out is None:
            rc, out = self.run(self.params["supervisorctl"] + ["status", self.params["name"]])
        match = SUPERVISOR_STATUS.search(out)
        if match and match.group(2):
            return match.group(2), "supervisorctl status"
        if match and match.group(1) in SUPERVISOR_DOWN:
            return "0", "supervisorctl status"
        rc, out = self.run(self.params["supervisorctl"] + ["pid", self.params["name"]])
        return out.strip(), "supervisorctl pid"

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


def main():
    module = AnsibleModule(
        argument_spec=dict(
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
            wait=dict(type="bool", default=False),
            timeout=dict(type="float", default=30),
            interval=dict(type="float", default=1),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] <= 0 or params["interval"] <= 0:
        module.fail_json(msg="timeout and interval must be positive")
    if not 0 <= params["health_port"] <= 65535:
        module.fail_json(msg="health_port must be between 0 and 65535, got %d" % params["health_port"])
    if params["health_body"]:
        try:
            re.compile(params["health_body"])
        except re.error as error:
            module.fail_json(msg="health_body is not a valid regular expression: %s" % error)
    if params["manager"] == "command" and not (params["pidfile"] or params["process_match"]):
        module.fail_json(msg="the command manager needs a pidfile or a process_match to find the process")

    def run(argv):
        """A command that cannot run (missing program) is a failed check, not a failed task."""
        try:
            rc, out, dummy = module.run_command(argv, handle_exceptions=False)
        except (OSError, IOError):
            return 127, ""
        return rc, out

    result = Observer(params, run).observe()
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
