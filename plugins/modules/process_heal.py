#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: process_heal
short_description: Make a program healthy again in one module run - observe, guard, restart, wait for health
version_added: 0.1.0
description:
  - What the C(selfheal.devops.process_restart) role does, in one module run on the managed host, so a restart costs
    one module execution instead of four to eight.
  - Observes the program as M(selfheal.devops.process_status) does (PID from supervisord, systemd, a pidfile or
    C(pgrep); HTTP, TCP and command health checks). When it is healthy (and O(force) is not set) nothing is done.
  - Otherwise, within the crash-loop guard (the record M(selfheal.devops.restart_guard) keeps in O(state_file), at
    most O(max_attempts) restarts within O(window) seconds, the attempt recorded B(before) acting, under a lock),
    restarts it through its manager - supervisord (stop, then start and wait for RUNNING, as C(supervisorctl
    restart) does), C(systemctl restart), C(service NAME restart), or in command mode its stop command (else TERM,
    then KILL after O(stop_timeout)) and its start command detached from the run - and waits up to O(timeout) for
    health, retrying quickly at first (0.1 s, doubling up to O(interval)).
  - Fails (with the result) when the guard trips (C(crash_loop)) or the program is not healthy after
    O(attempts_per_run) restarts.
extends_documentation_fragment:
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: >-
      Observes and consults the guard, restarts nothing and records nothing. Reports C(changed) where it would
      restart (RV(reason=check_mode)).
  diff_mode:
    support: none
options:
  name:
    description: Service, unit, supervisord program, or a label (command mode).
    type: str
    required: true
  manager:
    description: V(auto) picks supervisor when supervisord knows the program, then systemd when it runs the host, else service.
    type: str
    choices: [auto, supervisor, systemd, service, command]
    default: auto
  supervisorctl:
    description:
      - The supervisorctl command line (with C(-c CONFIG) when needed).
      - supervisord is asked directly over its XML-RPC interface, at the address this command line would use (its
        C(-s), C(-u), C(-p) options, else the C([supervisorctl]) section of the configuration named by C(-c) or
        found where supervisorctl looks for it), so a restart starts no C(supervisorctl) process (about 0.1 CPU
        second each, three per restart). The command line itself is run when that address cannot be told for sure
        (another program in front, such as C(sudo); an option or a configuration this cannot read), when
        supervisord does not answer there, and for a name supervisord does not know as a program.
    type: list
    elements: str
    default: [supervisorctl]
  pidfile:
    description: PID file (command and service managers).
    type: path
  process_match:
    description: C(pgrep -f) pattern finding the process (command and service managers).
    type: str
  health_url:
    description: URL that must answer one of O(health_status).
    type: str
  health_status:
    description: HTTP statuses that count as healthy.
    type: list
    elements: int
    default: [200]
  health_body:
    description: Regular expression the body must match.
    type: str
    default: ""
  health_host:
    description: Host of the TCP check.
    type: str
    default: 127.0.0.1
  health_port:
    description: Port that must accept a TCP connection (0 for no TCP check).
    type: int
    default: 0
  health_command:
    description: Command that must exit 0.
    type: str
  validate_certs:
    description: Verify the certificate of an HTTPS O(health_url).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for health after a restart.
    type: float
    default: 30
  interval:
    description: Longest pause between two health checks while waiting.
    type: float
    default: 1
  force:
    description: Restart even when the program is healthy.
    type: bool
    default: false
  state_file:
    description: The crash-loop guard's record of this program's restarts (its directory is created).
    type: path
    required: true
  max_attempts:
    description: Restarts allowed within O(window).
    type: int
    default: 3
  window:
    description: Seconds the restarts are counted over.
    type: float
    default: 900
  attempts_per_run:
    description: Restarts within this run while the program does not come back healthy (bounded by the guard).
    type: int
    default: 1
  start_command:
    description: Command mode. Starts the program (run with C(sh -c exec ...), detached, in O(chdir)).
    type: str
  chdir:
    description: Command mode. Working directory of the program.
    type: path
    default: /
  stop_command:
    description: Command mode. Stops the old process (else it gets TERM, then KILL after O(stop_timeout)).
    type: str
  stop_timeout:
    description: Command mode. Seconds the old process may take to exit.
    type: float
    default: 10
  log_file:
    description: Command mode. Where the program's output goes.
    type: path
    default: /dev/null
author:
  - selfheal.devops contributors (@selfheal-devops)
seealso:
  - module: selfheal.devops.process_status
    description: Only observe.
  - module: selfheal.devops.restart_guard
    description: Only the crash-loop guard.
"""

EXAMPLES = r"""
- name: Bring the web program back
  selfheal.devops.process_heal:
    name: web
    manager: supervisor
    health_url: http://127.0.0.1:8080/health
    state_file: /var/lib/selfheal/process_restart/web.json
    max_attempts: 3
    window: 900
  register: healed
"""

RETURN = r"""
restarted:
  description: Whether a restart was made.
  returned: always
  type: bool
healthy:
  description: Whether the program is healthy at the end.
  returned: always
  type: bool
healthy_before:
  description: Whether it was healthy before anything was done.
  returned: always
  type: bool
reason:
  description: already_healthy, restarted, crash_loop, unhealthy or check_mode.
  returned: always
  type: str
  sample: restarted
manager:
  description: The process manager used (auto resolved).
  returned: always
  type: str
  sample: supervisor
pid_before:
  description: PID before (0 when it was not running).
  returned: always
  type: int
pid_after:
  description: PID at the end.
  returned: always
  type: int
attempts:
  description: Restarts made in this run.
  returned: always
  type: int
recent_attempts:
  description: Restarts the guard counted within the window before this run's last attempt.
  returned: always
  type: int
crash_loop:
  description: Whether the guard refused a restart.
  returned: always
  type: bool
duration:
  description: Seconds the module took.
  returned: always
  type: float
checks:
  description: The last health observation (pid, http, tcp, command).
  returned: always
  type: dict
restart_output:
  description: What the process manager said to each restart.
  returned: always
  type: list
  elements: str
"""


from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.selfheal.devops.plugins.module_utils._process import heal, probe_argument_spec, probe_problem


def check(params):
    problem = probe_problem(params)
    if problem:
        return problem
    if params["window"] <= 0:
        return "window must be more than 0, got %s" % params["window"]
    if params["max_attempts"] < 1 or params["attempts_per_run"] < 1:
        return "max_attempts and attempts_per_run must be at least 1"
    if params["manager"] == "command" and not params["start_command"]:
        return "the command manager needs start_command"
    if params["manager"] == "service" and not (params["health_url"] or params["health_port"] or params["health_command"]
                                               or params["pidfile"] or params["process_match"]):
        return "an init-script service needs a way to tell it is healthy: a health check, a pidfile or a process_match"
    return None


def main():
    module = AnsibleModule(
        argument_spec=probe_argument_spec(
            force=dict(type="bool", default=False),
            state_file=dict(type="path", required=True),
            max_attempts=dict(type="int", default=3),
            window=dict(type="float", default=900),
            attempts_per_run=dict(type="int", default=1),
            start_command=dict(type="str"),
            chdir=dict(type="path", default="/"),
            stop_command=dict(type="str"),
            stop_timeout=dict(type="float", default=10),
            log_file=dict(type="path", default="/dev/null"),
        ),
        supports_check_mode=True,
    )
    problem = check(module.params)
    if problem:
        module.fail_json(msg=problem)

    def run(argv):
        """A command that cannot run (missing program) is a failed check or restart, not a crash."""
        try:
            rc, out, dummy = module.run_command(argv, handle_exceptions=False)
        except (OSError, IOError):
            return 127, ""
        return rc, out

    try:
        result = heal(module.params, run, module.check_mode)
    except (IOError, OSError) as error:
        module.fail_json(msg="cannot restart %s: %s" % (module.params["name"], to_text(error)))
    name, params = module.params["name"], module.params
    if result["crash_loop"]:
        module.fail_json(msg="crash_loop: %s was restarted %d times within %g s (limit %d); not restarting it again. "
                         "Escalate." % (name, result["recent_attempts"], params["window"], params["max_attempts"]),
                         changed=result["restarted"], **result)
    if not result["healthy"] and not module.check_mode:
        module.fail_json(msg="%s is not healthy after %d restart attempt(s) (PID %d)." % (
            name, result["attempts"], result["pid_after"]), changed=result["restarted"], **result)
    # In check mode a restart that would have run is the change it would have made.
    module.exit_json(changed=result["restarted"] or result["reason"] == "check_mode", **result)


if __name__ == "__main__":
    main()
