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
      - Where the PID comes from. V(supervisor) asks supervisord for the program's state and PID (see
        O(supervisorctl)), V(systemd) asks C(systemctl show
        -p MainPID). V(service) and V(command) read O(pidfile) or, without one, find the oldest process whose
        command line matches O(process_match) (C(pgrep -o -f)).
      - V(auto) picks V(supervisor) when supervisord knows the program, else V(systemd) when
        systemd runs the host, else V(service); RV(manager) says which.
    type: str
    choices: [auto, supervisor, systemd, service, command]
    default: auto
  supervisorctl:
    description:
      - The C(supervisorctl) command and its options (for example V([supervisorctl, -c, /etc/sv.conf])).
      - supervisord is asked directly over its XML-RPC interface, at the address this command line would use (its
        C(-s), C(-u), C(-p) options, else the C([supervisorctl]) section of the configuration named by C(-c) or
        found where supervisorctl looks for it), which spares a C(supervisorctl) start-up per question. The command
        line itself is run when that address cannot be told for sure (another program in front, such as
        C(sudo); an option or a configuration this cannot read), when supervisord does not answer there, and for a
        name supervisord does not know as a program (a group, a pattern); RV(checks) says which answered.
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
  sample: {pid: {value: 4242, source: supervisord XML-RPC}, http: {status: 200, passed: true}}
  contains:
    pid:
      description:
        - C(source), where the PID came from (V(supervisord XML-RPC), V(supervisorctl status), V(supervisorctl pid),
          V(systemctl show MainPID), V(pidfile) or V(pgrep)), and C(value), the value read (before the liveness
          check).
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


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils._process import Observer, probe_argument_spec, probe_problem


def main():
    module = AnsibleModule(
        argument_spec=probe_argument_spec(wait=dict(type="bool", default=False)),
        supports_check_mode=True,
    )
    params = module.params
    problem = probe_problem(params)
    if problem:
        module.fail_json(msg=problem)

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
