"""The 12-host fleet estate (tests/utils/fleet.py) proven with real Ansible over SSH.

Twelve hosts, each its own loopback address, supervisord, program `web` and state directory, behind one private
sshd: ad-hoc ping reaches each on its own address; the process_restart role run by ansible-playbook with
`serial: 5` restarts each host's own program after a crash; a host whose program can no longer start fails its
restart (and, with `max_fail_percentage: 0`, stops the roll after its batch). stop() leaves nothing running.
"""

import json
import os
import socket
import subprocess
import time

import pytest
import yaml

from utils.estate import BIN, alive
from utils.fleet import Fleet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, "build", "collections")
SIZE = 12
BATCH = 5


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with Fleet(tmp_path_factory.mktemp("estate"), size=SIZE) as running:
        print("\nfleet of %d hosts up in %.2f s" % (SIZE, running.startup_seconds))
        yield running


@pytest.fixture
def estate(fleet, tmp_path):
    """The module's fleet, every host repaired, running, healthy and with an empty state directory."""
    fleet.reset()
    fleet.write_inventory(tmp_path / "inventory.yml")
    return fleet


def ansible_env(results_file=None):
    env = dict(os.environ)
    env.update({"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False",
                "ANSIBLE_DEPRECATION_WARNINGS": "False", "ANSIBLE_HOST_KEY_CHECKING": "False",
                "PATH": BIN + os.pathsep + env.get("PATH", "")})
    if results_file:
        env.update({"ANSIBLE_CALLBACKS_ENABLED": "record_results",
                    "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "utils", "callback_plugins"),
                    "SELFHEAL_RESULTS_FILE": str(results_file)})
    return env


def adhoc(fleet, module, args=None, extra=()):
    """`ansible fleet -m module` (real ad-hoc run, results recorded by the test callback); returns {host: result}."""
    command = [os.path.join(BIN, "ansible"), "-i", fleet.inventory_path, "fleet", "-f", str(SIZE), "-m", module]
    command += (["-a", args] if args else []) + list(extra)
    results = os.path.join(os.path.dirname(fleet.inventory_path), "adhoc-results.json")
    env = ansible_env(results)
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"  # ad-hoc runs load no callback but stdout's without it
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(results) as handle:
        by_task = json.load(handle)
    assert len(by_task) == 1, by_task
    return next(iter(by_task.values()))


def run_play(fleet, tmp_path, play):
    """ansible-playbook over SSH on the fleet; returns (rc, output, {task name: {host: result}}, seconds)."""
    path, results = tmp_path / "play.yml", tmp_path / "results.json"
    path.write_text(yaml.safe_dump([play], sort_keys=False))
    command = [os.path.join(BIN, "ansible-playbook"), "-i", fleet.inventory_path, "-f", str(SIZE), str(path)]
    began = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, env=ansible_env(results), timeout=900, check=False)
    seconds = time.monotonic() - began
    recorded = json.loads(results.read_text()) if results.exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, recorded, seconds


def restart_play(**play_options):
    """The process_restart role on every fleet host in batches; `batch` records each host's batch, `result` its outcome."""
    play = {"name": "heal the fleet", "hosts": "fleet", "gather_facts": False, "serial": BATCH,
            "vars": {"process_restart_health_timeout": 20},
            "tasks": [
                {"name": "batch", "ansible.builtin.debug": {"msg": "{{ ansible_play_batch }}"}},
                {"name": "restart", "ansible.builtin.include_role": {"name": "selfheal.devops.process_restart"}},
                {"name": "result", "ansible.builtin.debug": {"msg": "{{ process_restart_result }}"}},
            ]}
    play.update(play_options)
    return play


def guard_attempts(host):
    """Restarts recorded by the crash-loop guard in the host's own state directory."""
    path = os.path.join(host.state_dir, "web.json")
    if not os.path.exists(path):
        return 0
    with open(path) as handle:
        return len(json.load(handle)["attempts"])


def listening(address, port):
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0


def test_the_hosts_are_distinct(estate):
    hosts = estate.inventory()["all"]["children"]["fleet"]["hosts"]
    assert sorted(hosts) == ["fleet-%02d" % index for index in range(1, SIZE + 1)]
    for key in ("ansible_host", "process_restart_health_url", "process_restart_state_dir",
                "process_restart_supervisor_config", "ansible_remote_tmp"):
        assert len({variables[key] for variables in hosts.values()}) == SIZE, key
    assert {variables["ansible_host"] for variables in hosts.values()} == {"127.0.0.%d" % (10 + i) for i in range(1, SIZE + 1)}
    assert len({estate.pid(name) for name in hosts}) == SIZE and all(estate.healthy(name) for name in hosts)
    # One host's page is not another's: the health check names the host.
    assert all(estate[name].healthy() and not estate[name].health_url == estate["fleet-01"].health_url
               for name in estate.names[1:])


def test_ping_over_ssh_reaches_each_host_on_its_own_address(estate):
    # Without pipelining: modules are copied with SFTP into each host's own remote temp directory, then run.
    pings = adhoc(estate, "ansible.builtin.ping", extra=["-e", "ansible_pipelining=false"])
    assert sorted(pings) == estate.names
    assert all(result.get("ping") == "pong" and not result.get("failed") for result in pings.values()), pings
    # Each answer comes from an SSH session on the host's own address (SSH_CONNECTION: client ip, port, server ip, port).
    seen = adhoc(estate, "ansible.builtin.command", "printenv SSH_CONNECTION")
    for name in estate.names:
        server_ip, server_port = seen[name]["stdout"].split()[2:4]
        assert (server_ip, int(server_port)) == (estate[name].address, estate.ssh_port), (name, seen[name]["stdout"])
    # And sshd saw a connection on every one of the twelve addresses.
    with open(os.path.join(estate.ssh_dir, "sshd.log")) as handle:
        log = handle.read()
    for host in estate.hosts:
        assert " on %s port %d" % (host.address, estate.ssh_port) in log, host.address


def test_process_restart_heals_every_host_in_batches_of_five(estate, tmp_path):
    crashed = {name: estate.crash(name) for name in estate.names}
    assert not any(estate.healthy(name) or estate.pid(name) for name in estate.names)

    rc, output, recorded, seconds = run_play(estate, tmp_path, restart_play())
    assert rc == 0, output[-4000:]
    durations = sorted(float(recorded["result"][name]["msg"]["duration"]) for name in estate.names)
    print("\nprocess_restart over SSH on %d crashed hosts, serial %d: %.1f s for the playbook; the role took %.1f .. %.1f s"
          " per host (load average %.1f)" % (SIZE, BATCH, seconds, durations[0], durations[-1], os.getloadavg()[0]))

    batches = {tuple(recorded["batch"][name]["msg"]) for name in estate.names}
    assert sorted(batches) == [tuple(estate.names[start:start + BATCH]) for start in range(0, SIZE, BATCH)]
    results = {name: recorded["result"][name]["msg"] for name in estate.names}
    for name, result in results.items():
        assert result["restarted"] and result["healthy"] and result["reason"] == "restarted", (name, result)
        assert result["manager"] == "supervisor" and result["pid_before"] == 0
        assert result["pid_after"] == estate.pid(name) != crashed[name] and alive(result["pid_after"])
        assert estate.healthy(name), name
        assert guard_attempts(estate[name]) == 1, name
    assert len({result["pid_after"] for result in results.values()}) == SIZE


def test_a_broken_host_fails_its_restart_and_the_gate_stops_the_roll(estate, tmp_path):
    crashed = {name: estate.crash(name) for name in estate.names}
    estate.break_restart("fleet-03")  # batch 1: fleet-01 .. fleet-05

    play = restart_play(max_fail_percentage=0, vars={"process_restart_health_timeout": 3})
    rc, output, recorded, dummy = run_play(estate, tmp_path, play)
    assert rc != 0, output[-4000:]

    # fleet-03 tried once (recorded in its own state directory), did not come back, and its restart failed.
    failed = {task: hosts["fleet-03"] for task, hosts in recorded.items() if hosts.get("fleet-03", {}).get("failed")}
    assert len(failed) == 1, (failed, output[-3000:])
    assert "web is not healthy after 1 restart attempt(s)" in next(iter(failed.values()))["msg"], failed
    assert not estate.healthy("fleet-03") and estate.pid("fleet-03") == 0
    assert guard_attempts(estate["fleet-03"]) == 1
    assert not [task for task, hosts in recorded.items() if any(result.get("failed") for name, result in hosts.items() if name != "fleet-03")]

    # The rest of its batch was healed, each host its own program ...
    for name in ("fleet-01", "fleet-02", "fleet-04", "fleet-05"):
        assert estate.healthy(name) and estate.pid(name) not in (0, crashed[name]), name
        assert guard_attempts(estate[name]) == 1, name
    # ... and max_fail_percentage 0 ended the play with that batch: no host reached the task after the role, and
    # fleet-06 .. fleet-12 were never touched (still down, nothing recorded on them).
    assert "result" not in recorded
    for name in estate.names[5:]:
        assert all(name not in hosts for hosts in recorded.values()), name
        assert not estate.healthy(name) and estate.pid(name) == 0 and guard_attempts(estate[name]) == 0, name


def test_ssh_takes_the_fleet_key_only(estate, tmp_path):
    other = str(tmp_path / "other_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other], check=True, timeout=30)
    base = ["ssh", "-p", str(estate.ssh_port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none"]
    host = estate["fleet-04"].address
    good = subprocess.run(base + ["-i", estate.client_key, "root@" + host, "echo", "$SSH_CONNECTION"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert good.returncode == 0 and good.stdout.split()[2] == host, good.stderr
    refused = subprocess.run(base + ["-i", other, "root@" + host, "true"], capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr, refused.stderr


def test_stop_leaves_nothing_running(tmp_path):
    fleet = Fleet(tmp_path, size=3)
    fleet.start()
    try:
        fleet.write_inventory(tmp_path / "inventory.yml")
        assert sorted(adhoc(fleet, "ansible.builtin.ping")) == fleet.names
        masters = fleet.control_masters()
        assert len(masters) == 3  # Ansible left one master connection per host, kept for the next run
        pids = fleet.pids()
        ports = [(host.address, fleet.ssh_port) for host in fleet.hosts] + [(host.address, host.port) for host in fleet.hosts]
        control_dir = fleet.control_dir
        assert set(masters.values()) <= set(pids) and all(listening(*port) for port in ports)
    finally:
        fleet.stop()
    assert not [pid for pid in pids if alive(pid)]
    assert not [port for port in ports if listening(*port)]
    assert not os.path.exists(control_dir)
