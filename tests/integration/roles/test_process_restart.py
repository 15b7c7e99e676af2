"""roles/process_restart against real processes: a supervisord program and a command-mode process."""

import os
import signal
import sys

import pytest

from utils.estate import Supervisor, alive, free_port, healthy, kill, wait_until


@pytest.fixture
def supervisor(tmp_path):
    sup = Supervisor(tmp_path)
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
    variables = dict(sup.role_vars(), process_restart_name="web", process_restart_health_timeout=10,
                     process_restart_state_dir=str(tmp_path / "state"))
    variables.update(extra)
    return variables


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


def counting_supervisorctl(tmp_path):
    """A `supervisorctl` that writes down each of its runs before running the real one; (its path, the log)."""
    (tmp_path / "bin").mkdir()
    program, log = tmp_path / "bin" / "supervisorctl", tmp_path / "supervisorctl.log"
    program.write_text("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\"\n"
                       % (log, os.path.join(os.path.dirname(sys.executable), "supervisorctl")))
    program.chmod(0o755)
    return str(program), log


def test_a_restart_asks_supervisord_directly_and_runs_no_supervisorctl(playbook, supervisor, tmp_path):
    """The module reads where supervisorctl would connect from its -c configuration and asks supervisord over that
    socket: no supervisorctl start-up (about 0.1 CPU second each) for the status, the restart and the check."""
    program, log = counting_supervisorctl(tmp_path)
    old = supervisor.pid("web")
    kill(old)
    wait_until(lambda: supervisor.pid("web") == 0)

    run = outcome(playbook(role_tasks(supervisor_vars(supervisor, tmp_path, process_restart_supervisorctl=program))))
    result = run["result"]
    assert not run["failed"], run["error"]
    assert result["manager"] == "supervisor" and result["restarted"] and result["healthy"], result
    assert result["pid_after"] == supervisor.pid("web") and result["pid_after"] not in (0, old) and healthy(supervisor.port)
    assert result["checks"]["pid"]["source"] == "supervisord XML-RPC", result
    assert result["restart_output"] == ["web: ERROR (not running)\nweb: started"], result
    assert not log.exists(), log.read_text()

    # a name supervisord does not know as a program is left to supervisorctl, which says what it makes of it
    unknown = outcome(playbook(role_tasks(supervisor_vars(supervisor, tmp_path, process_restart_supervisorctl=program,
                                                          process_restart_name="nope",
                                                          process_restart_manager="supervisor",
                                                          process_restart_health_timeout=1))))
    assert unknown["failed"] and log.read_text().splitlines()[0].endswith("status nope"), unknown


def test_check_mode_restarts_nothing(playbook, supervisor, tmp_path):
    kill(supervisor.pid("web"))
    result = outcome(playbook(role_tasks(supervisor_vars(supervisor, tmp_path)), check=True))["result"]
    assert result["restarted"] is False and result["reason"] == "check_mode"
    assert supervisor.pid("web") == 0 and not healthy(supervisor.port)
    assert not (tmp_path / "state").exists()
    # the module says it would change something, as Ansible's check mode asks
    variables = supervisor_vars(supervisor, tmp_path)
    module = playbook([{"name": "heal", "check_mode": True, "selfheal.devops.process_heal": {
        "name": "web", "manager": "supervisor", "state_file": str(tmp_path / "state" / "web.json"),
        "supervisorctl": [variables["process_restart_supervisorctl"], "-c", variables["process_restart_supervisor_config"]],
        "health_url": variables["process_restart_health_url"]}}])
    assert module["heal"]["changed"] is True and module["heal"]["reason"] == "check_mode", module["heal"]
    assert supervisor.pid("web") == 0 and not (tmp_path / "state").exists()


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
