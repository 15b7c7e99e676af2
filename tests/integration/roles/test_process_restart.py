"""roles/process_restart against real processes: a supervisord program and a command-mode process."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(ROOT, ".venv", "bin")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met within %.0f s" % timeout)


def healthy(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with open("/proc/%d/stat" % pid) as handle:
        return handle.read().split()[2] != "Z"


class Supervisor(object):
    """A private supervisord with a web program (dies when killed, no autorestart) and a program that dies at once."""

    def __init__(self, workdir, port):
        self.workdir = str(workdir)
        self.port = port
        self.conf = os.path.join(self.workdir, "supervisord.conf")
        with open(self.conf, "w") as handle:
            handle.write(textwrap.dedent("""\
                [unix_http_server]
                file={d}/supervisor.sock
                [supervisord]
                logfile={d}/supervisord.log
                pidfile={d}/supervisord.pid
                childlogdir={d}
                [rpcinterface:supervisor]
                supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
                [supervisorctl]
                serverurl=unix://{d}/supervisor.sock
                [program:web]
                command={py} -m http.server {port} --bind 127.0.0.1
                directory={d}
                autostart=true
                autorestart=false
                startsecs=1
                [program:dying]
                command={py} -c "import sys; sys.exit(3)"
                autostart=false
                autorestart=false
                startsecs=1
                startretries=0
                """).format(d=self.workdir, py=sys.executable, port=port))
        subprocess.run([os.path.join(BIN, "supervisord"), "-c", self.conf], check=True)
        wait_until(lambda: "RUNNING" in self.ctl("status", "web").stdout and healthy(port))
        with open(os.path.join(self.workdir, "supervisord.pid")) as handle:
            self.daemon_pid = int(handle.read())

    def ctl(self, *args):
        return subprocess.run([os.path.join(BIN, "supervisorctl"), "-c", self.conf] + list(args),
                              capture_output=True, text=True, check=False)

    def pid(self, program):
        return int(self.ctl("pid", program).stdout.strip() or 0)

    def stop(self):
        self.ctl("shutdown")
        wait_until(lambda: not os.path.exists("/proc/%d" % self.daemon_pid) or not alive(self.daemon_pid), timeout=15)


@pytest.fixture
def supervisor(tmp_path):
    sup = Supervisor(tmp_path, free_port())
    yield sup
    sup.stop()


def role_tasks(variables):
    """Run the role; the task named `result` reports {result, failed, error} whatever happened."""
    return [
        {"name": "run the role", "block": [
            {"name": "restart", "ansible.builtin.include_role": {"name": "selfheal.devops.process_restart"}, "vars": variables},
        ], "rescue": [
            {"name": "failure", "ansible.builtin.set_fact": {"role_error": "{{ ansible_failed_result.msg | default('') }}"}},
        ]},
        {"name": "result", "ansible.builtin.debug": {"msg": {
            "result": "{{ process_restart_result | default(None) }}",
            "failed": "{{ role_error is defined }}",
            "error": "{{ role_error | default('') }}"}}},
    ]


def outcome(run):
    assert "result" in run.results, run.stdout[-3000:] + run.stderr[-2000:]
    return run["result"]["msg"]


def supervisor_vars(sup, tmp_path, **extra):
    variables = {
        "process_restart_name": "web",
        "process_restart_supervisorctl": os.path.join(BIN, "supervisorctl"),
        "process_restart_supervisor_config": sup.conf,
        "process_restart_health_url": "http://127.0.0.1:%d/" % sup.port,
        "process_restart_health_timeout": 10,
        "process_restart_state_dir": str(tmp_path / "state"),
    }
    variables.update(extra)
    return variables


def kill(pid):
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid))


def test_supervisor_program_comes_back_with_a_new_pid(playbook, supervisor, tmp_path):
    old = supervisor.pid("web")
    kill(old)
    wait_until(lambda: supervisor.pid("web") == 0)

    run = outcome(playbook(role_tasks(supervisor_vars(supervisor, tmp_path))))
    result = run["result"]
    assert not run["failed"], run["error"]
    assert result["manager"] == "supervisor", result  # found by auto detection
    assert result["restarted"] and result["healthy"] and not result["crash_loop"], result
    assert result["pid_before"] == 0 and result["pid_after"] == supervisor.pid("web") != old
    assert alive(result["pid_after"]) and healthy(supervisor.port)

    again = outcome(playbook(role_tasks(supervisor_vars(supervisor, tmp_path))))["result"]
    assert not again["restarted"] and again["reason"] == "already_healthy"
    assert again["pid_after"] == result["pid_after"]


def test_check_mode_restarts_nothing(playbook, supervisor, tmp_path):
    kill(supervisor.pid("web"))
    result = outcome(playbook(role_tasks(supervisor_vars(supervisor, tmp_path)), check=True))["result"]
    assert result["restarted"] is False and result["reason"] == "check_mode"
    assert supervisor.pid("web") == 0 and not healthy(supervisor.port)
    assert not (tmp_path / "state").exists()


def test_program_that_dies_at_once_stops_with_crash_loop(playbook, supervisor, tmp_path):
    variables = supervisor_vars(supervisor, tmp_path, process_restart_name="dying", process_restart_health_url="",
                                process_restart_health_timeout=2, process_restart_max_attempts=2,
                                process_restart_attempts_per_run=3)
    run = outcome(playbook(role_tasks(variables)))
    result = run["result"]
    assert run["failed"] and run["error"].startswith("crash_loop: dying was restarted 2 times")
    assert result["crash_loop"] and result["reason"] == "crash_loop" and not result["healthy"]
    assert result["attempts"] == 2  # the third attempt was refused by the guard
    # A later run (a new notification for the same problem) restarts nothing either.
    later = outcome(playbook(role_tasks(variables)))["result"]
    assert later["crash_loop"] and later["attempts"] == 0


def test_command_mode_process(playbook, tmp_path):
    port = free_port()
    pidfile = tmp_path / "app.pid"
    variables = {
        "process_restart_name": "app",
        "process_restart_manager": "command",
        "process_restart_start_command": "%s -m http.server %d --bind 127.0.0.1" % (sys.executable, port),
        "process_restart_chdir": str(tmp_path),
        "process_restart_pidfile": str(pidfile),
        "process_restart_log_file": str(tmp_path / "app.log"),
        "process_restart_health_url": "http://127.0.0.1:%d/" % port,
        "process_restart_health_port": port,
        "process_restart_health_timeout": 10,
        "process_restart_state_dir": str(tmp_path / "state"),
    }
    first = outcome(playbook(role_tasks(variables)))["result"]
    try:
        assert first["restarted"] and first["healthy"] and first["pid_before"] == 0
        pid = int(pidfile.read_text())
        assert pid == first["pid_after"] and alive(pid)

        kill(pid)
        second = outcome(playbook(role_tasks(variables)))["result"]
        assert second["restarted"] and second["healthy"]
        assert second["pid_after"] != pid and alive(second["pid_after"]) and healthy(port)
    finally:
        for candidate in (pidfile.read_text().strip() if pidfile.exists() else "",):
            if candidate.isdigit() and alive(int(candidate)):
                os.kill(int(candidate), signal.SIGTERM)


def test_preflight_refuses_incomplete_input(playbook, tmp_path):
    run = outcome(playbook(role_tasks({"process_restart_name": "x", "process_restart_manager": "command",
                                       "process_restart_state_dir": str(tmp_path)})))
    assert run["failed"] and "start command plus a pidfile or a process match" in run["error"]
    assert run["result"] is None
