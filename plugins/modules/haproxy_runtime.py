#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: haproxy_runtime
short_description: Read and set HAProxy server states through the runtime API, without a reload
version_added: 0.1.0
description:
  - Talks to the HAProxy runtime API over the stats socket (a UNIX socket path, or C(tcp://host:port)); no
    C(socat) or other tool is needed.
  - Reads C(show servers state <backend>) first and sends only the C(set server <backend>/<server> state ...)
    commands that change something, so a re-run with the same O(states) reports C(changed=false).
  - Order of the commands is safe for traffic; servers that should become V(ready) are set first, and (with
    O(wait_timeout) > 0) the module waits until every server requested as V(ready) is operationally UP
    before any server is set to V(drain) or V(maint). If they are not UP in time, the servers it had
    readied are put back into their previous state and the module fails, so the backend never ends up with
    nobody serving because of this module.
  - Without O(states) the module only reads and returns the servers of O(backend).
  - The stats socket must be bound with C(level admin) for V(ready), V(drain) and V(maint).
extends_documentation_fragment:
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: Reads the server states and returns the commands it would send in RV(commands); sends none.
  diff_mode:
    support: full
options:
  socket:
    description:
      - Path of the HAProxy stats socket (C(stats socket /run/haproxy/admin.sock level admin)), or
        C(tcp://host:port) for a socket bound to a TCP address.
    type: str
    required: true
  backend:
    description: Name of the backend whose servers are read and set.
    type: str
    required: true
  states:
    description:
      - Wanted administrative state by server name of O(backend). V(ready) leaves maintenance and drain mode,
        V(drain) stops new traffic but keeps persistent sessions, V(maint) takes the server out.
      - Omit it to only read the servers.
    type: dict
  wait_timeout:
    description:
      - Seconds to wait for the servers requested as V(ready) to be operationally UP (health checks passed)
        before servers are set to V(drain) or V(maint). V(0) does not wait.
    type: float
    default: 10
  timeout:
    description: Seconds allowed for each exchange on the socket.
    type: float
    default: 5
notes:
  - Changes made through the runtime API last until HAProxy restarts or reloads; keep the configuration (or a
    C(server-state-file)) in step when they must survive that.
seealso:
  - name: HAProxy management guide, runtime API
    description: The C(show servers state) and C(set server) commands.
    link: https://docs.haproxy.org/2.6/management.html#9.3
  - module: ansible.builtin.uri
author:
  - selfheal.devops contributors (@selfheal-devops)
"""

EXAMPLES = r"""
- name: Move traffic of backend app to the green server
  selfheal.devops.haproxy_runtime:
    socket: /run/haproxy/admin.sock
    backend: app
    states:
      green: ready
      blue: maint

- name: Read the servers of backend app
  selfheal.devops.haproxy_runtime:
    socket: /run/haproxy/admin.sock
    backend: app
  register: app_servers
"""

RETURN = r"""
servers:
  description: The servers of O(backend) after the change (predicted in check mode), by name.
  returned: success
  type: dict
  sample:
    green: {admin_state: ready, op_state: up, address: 127.0.0.1, port: 8081, weight: 1}
    blue: {admin_state: maint, op_state: down, address: 127.0.0.1, port: 8080, weight: 1}
before:
  description: The servers of O(backend) as read before any command, by name (same shape as RV(servers)).
  returned: success
  type: dict
commands:
  description: The runtime API commands sent (in check mode, the ones that would be sent), in order.
  returned: success
  type: list
  elements: str
  sample: ["set server app/green state ready", "set server app/blue state maint"]
waited:
  description: Seconds spent waiting for the V(ready) servers to be UP.
  returned: success
  type: float
  sample: 0.2
"""

import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text

STATES = ("ready", "drain", "maint")
OP_STATES = {0: "down", 1: "starting", 2: "up", 3: "stopping"}
# srv_admin_state bits (HAProxy include/haproxy/server-t.h): forced, inherited, resolver, hostname maint.
# 0x04 (CMAINT, "disabled" in the configuration) comes with 0x01 at start-up and stays set after a runtime
# `set server ... state ready` although the server is then UP and in service (HAProxy 2.6: `show stat` says UP),
# so it alone does not mean maintenance.
MAINT_BITS = 0x01 | 0x02 | 0x20 | 0x40
DRAIN_BITS = 0x08 | 0x10
WAIT_STEP = 0.05


class RuntimeApiError(Exception):
    """The socket could not be reached, or HAProxy answered with an error."""


class RuntimeApi(object):
    """One command per connection on the stats socket (HAProxy closes it after answering)."""

    def __init__(self, address, timeout):
        self.address = address
        self.timeout = timeout

    def _connect(self):
        if self.address.startswith("tcp://"):
            host, sep, port = self.address[len("tcp://"):].rpartition(":")
            if not sep or not port.isdigit():
                raise RuntimeApiError("socket %s: expected tcp://host:port" % self.address)
            return socket.create_connection((host.strip("[]"), int(port)), timeout=self.timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock

    def send(self, command):
        try:
            sock = self._connect()
            try:
                sock.sendall(to_bytes(command) + b"\n")
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            finally:
                sock.close()
        except (OSError, socket.timeout) as error:
            raise RuntimeApiError("cannot talk to the HAProxy stats socket %s: %s" % (self.address, error))
        return to_text(b"".join(chunks), errors="surrogate_or_replace")


def admin_state(admin_bits):
    """ready, drain or maint from srv_admin_state."""
    if admin_bits & MAINT_BITS:
        return "maint"
    if admin_bits & DRAIN_BITS:
        return "drain"
    return "ready"


def parse_servers_state(text, backend):
    """Parse `show servers state <backend>` (format version 1) into {server: {...}}."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    header = None
    servers = {}
    for line in lines:
        if line.startswith("# "):
            header = line[2:].split()
            continue
        if header is None:
            if line == "1":  # format version
                continue
            raise RuntimeApiError("backend %s: %s" % (backend, line))
        fields = line.split()
        if len(fields) < len(header):
            continue
        row = dict(zip(header, fields))
        admin_bits = int(row.get("srv_admin_state", "0"))
        op_code = int(row.get("srv_op_state", "0"))
        servers[row["srv_name"]] = {
            "admin_state": admin_state(admin_bits),
            "admin_bits": admin_bits,
            "op_state": OP_STATES.get(op_code, str(op_code)),
            "address": row.get("srv_addr"),
            "port": int(row["srv_port"]) if row.get("srv_port", "").isdigit() else row.get("srv_port"),
            "weight": int(row["srv_uweight"]) if row.get("srv_uweight", "").isdigit() else row.get("srv_uweight"),
        }
    if header is None:
        raise RuntimeApiError("backend %s: unexpected answer to 'show servers state': %r" % (backend, text.strip()[:200]))
    return servers


def plan(backend, servers, states):
    """Commands in a traffic-safe order: (ready commands, drain/maint commands)."""
    unknown = sorted(name for name in states if name not in servers)
    if unknown:
        raise RuntimeApiError("backend %s has no server %s (servers: %s)"
                              % (backend, ", ".join(unknown), ", ".join(sorted(servers)) or "none"))
    first, then = [], []
    for name in sorted(states):
        wanted = states[name]
        if servers[name]["admin_state"] != wanted:
            command = "set server %s/%s state %s" % (backend, name, wanted)
            (first if wanted == "ready" else then).append(command)
    return first, then


def predict(servers, states):
    after = dict((name, dict(info)) for name, info in servers.items())
    for name, wanted in states.items():
        if after[name]["admin_state"] != wanted:
            after[name]["admin_state"] = wanted
            if wanted == "maint":
                after[name]["op_state"] = "down"
    return after


def render(backend, servers):
    return "".join("%s/%s: %s (%s)\n" % (backend, name, info["admin_state"], info["op_state"]) for name, info in sorted(servers.items()))


class Switcher(object):
    """Reads, plans and applies; returns (changed, result) or raises RuntimeApiError."""

    def __init__(self, api, backend, check_mode):
        self.api = api
        self.backend = backend
        self.check_mode = check_mode

    def read(self):
        return parse_servers_state(self.api.send("show servers state %s" % self.backend), self.backend)

    def execute(self, command):
        answer = self.api.send(command).strip()
        if answer:
            raise RuntimeApiError("'%s' failed: %s" % (command, answer))

    def wait_up(self, names, timeout):
        started = time.monotonic()
        deadline = started + timeout
        while True:
            servers = self.read()
            down = sorted(name for name in names if servers[name]["op_state"] != "up")
            if not down:
                return time.monotonic() - started, servers
            if time.monotonic() >= deadline:
                return None, servers
            time.sleep(WAIT_STEP)

    def run(self, states, wait_timeout):
        before = self.read()
        result = {"before": before, "servers": before, "commands": [], "waited": 0.0}
        if not states:
            return False, result
        first, then = plan(self.backend, before, states)
        result["commands"] = first + then
        if not result["commands"]:
            return False, result
        if self.check_mode:
            result["servers"] = predict(before, states)
            return True, result
        for command in first:
            self.execute(command)
        ready = sorted(name for name, wanted in states.items() if wanted == "ready")
        if then and ready and wait_timeout > 0:
            waited, servers = self.wait_up(ready, wait_timeout)
            if waited is None:
                self.restore(before, first)
                raise RuntimeApiError(
                    "server(s) %s of backend %s not UP after %.1f s (%s); put back to their previous state, nothing set to drain/maint"
                    % (", ".join(ready), self.backend, wait_timeout,
                       ", ".join("%s is %s" % (name, servers[name]["op_state"]) for name in ready)))
            result["waited"] = round(waited, 3)
        for command in then:
            self.execute(command)
        result["servers"] = self.read()
        return True, result

    def restore(self, before, sent):
        for command in sent:
            name = command.split("/", 1)[1].split()[0]
            try:
                self.execute("set server %s/%s state %s" % (self.backend, name, before[name]["admin_state"]))
            except RuntimeApiError:
                pass


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="str", required=True),
            backend=dict(type="str", required=True),
            states=dict(type="dict"),
            wait_timeout=dict(type="float", default=10),
            timeout=dict(type="float", default=5),
        ),
        supports_check_mode=True,
    )
    states = module.params["states"] or {}
    bad = sorted("%s=%s" % (name, value) for name, value in states.items() if value not in STATES)
    if bad:
        module.fail_json(msg="states: each value must be one of %s; got %s" % (", ".join(STATES), ", ".join(bad)))
    switcher = Switcher(RuntimeApi(module.params["socket"], module.params["timeout"]), module.params["backend"], module.check_mode)
    try:
        changed, result = switcher.run(states, module.params["wait_timeout"])
    except RuntimeApiError as error:
        module.fail_json(msg=str(error))
    diff = {"before": render(module.params["backend"], result["before"]), "after": render(module.params["backend"], result["servers"])}
    module.exit_json(changed=changed, diff=diff, **result)


if __name__ == "__main__":
    main()
