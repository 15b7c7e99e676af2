"""process_status against real processes: supervisord's program, a pidfile, a command-line match, real checks."""

import os
import subprocess
import sys

import pytest

from utils.estate import Supervisor, free_port, kill


@pytest.fixture
def supervisor(tmp_path):
    sup = Supervisor(tmp_path)
    yield sup
    sup.stop()


def status(task="status", **args):
    return {"name": task, "selfheal.devops.process_status": args, "register": "r", "ignore_errors": True}


def sv_args(sup, **extra):
    args = {"name": "web", "supervisorctl": [os.path.join(os.path.dirname(sys.executable), "supervisorctl"), "-c", sup.conf],
            "health_url": "http://127.0.0.1:%d/" % sup.port}
    args.update(extra)
    return args


def test_supervisor_program_is_found_by_auto_and_checked(playbook, supervisor):
    run = playbook([status(**sv_args(supervisor, health_port=supervisor.port, health_command="true",
                                     health_body="Directory listing"))], check=True)
    result = run["status"]
    assert not result.get("failed"), result
    assert result["manager"] == "supervisor" and result["pid"] == supervisor.pid("web") > 0
    assert result["healthy"] and result["observations"] == 1 and not result["changed"]
    assert result["checks"]["http"] == {"status": 200, "passed": True}
    assert result["checks"]["tcp"]["passed"] and result["checks"]["command"] == {"rc": 0, "passed": True}


def test_each_failing_check_makes_it_unhealthy_without_failing_the_task(playbook, supervisor):
    closed = free_port()
    run = playbook([status("body", **sv_args(supervisor, health_body="no such text")),
                    status("status code", **sv_args(supervisor, health_status=[204])),
                    status("tcp", **sv_args(supervisor, health_port=closed)),
                    status("command", **sv_args(supervisor, health_command="false")),
                    status("missing command", **sv_args(supervisor, health_command="/nonexistent/probe")),
                    status("unknown program", **sv_args(supervisor, name="nope", manager="supervisor")),
                    status("auto without supervisor", **sv_args(supervisor, name="nope"))])
    for task in ("body", "status code", "tcp", "command", "missing command"):
        result = run[task]
        assert not result.get("failed") and result["pid"] > 0 and not result["healthy"], (task, result)
    assert run["tcp"]["checks"]["tcp"]["error"]
    assert run["missing command"]["checks"]["command"]["rc"] == 127
    unknown = run["unknown program"]
    assert unknown["pid"] == 0 and not unknown["healthy"], unknown
    # auto falls back to systemd or, here without it, to an init-script service judged by its health checks
    assert run["auto without supervisor"]["manager"] in ("systemd", "service")


def test_wait_observes_again_until_healthy(playbook, tmp_path):
    """The health command passes from its third run: the module observes three times, quickly, then stops."""
    calls = tmp_path / "calls"
    probe = "sh -c 'echo x >> %s; test $(wc -l < %s) -ge 3'" % (calls, calls)
    run = playbook([status(name="app", manager="service", health_command=probe, wait=True, timeout=20, interval=5)])
    result = run["status"]
    assert result["healthy"] and result["observations"] == 3, result
    assert result["waited"] < 2, result  # pauses of 0.1 s then 0.2 s, not the 5 s interval
    assert len(calls.read_text().splitlines()) == 3


def test_wait_gives_up_at_the_timeout(playbook, supervisor):
    kill(supervisor.pid("web"))
    run = playbook([status(**sv_args(supervisor, manager="supervisor", wait=True, timeout=1.5, interval=0.5))])
    result = run["status"]
    assert not result.get("failed") and not result["healthy"] and result["pid"] == 0, result
    assert 1.5 <= result["waited"] < 5 and result["checks"]["http"]["status"] == -1, result


def test_pidfile_and_process_match(playbook, tmp_path):
    marker = "selfheal-status-%s" % tmp_path.name
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        pidfile = tmp_path / "app.pid"
        pidfile.write_text("%d\n" % proc.pid)
        stale = tmp_path / "stale.pid"
        stale.write_text("999999999\n")
        run = playbook([status("pidfile", name="app", manager="command", pidfile=str(pidfile)),
                        status("match", name="app", manager="command", process_match=marker),
                        status("stale", name="app", manager="command", pidfile=str(stale)),
                        status("service", name="app", manager="service", health_command="true"),
                        status("nothing to find", name="app", manager="command")])
        assert run["pidfile"]["pid"] == proc.pid and run["pidfile"]["healthy"]
        assert run["match"]["pid"] == proc.pid and run["match"]["checks"]["pid"]["source"] == "pgrep"
        assert run["stale"]["pid"] == 0 and not run["stale"]["healthy"]
        assert run["service"]["healthy"] and run["service"]["pid"] == 0  # an init script without PID source
        assert run["nothing to find"]["failed"] and "pidfile or a process_match" in run["nothing to find"]["msg"]
    finally:
        proc.kill()
        proc.wait()
