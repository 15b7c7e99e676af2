"""process_status's decisions with a scripted host: PID sources, health composition, the wait's pauses."""

import pytest

from ansible_collections.selfheal.devops.plugins.module_utils import _process as ps

BASE = {"name": "web", "manager": "supervisor", "supervisorctl": ["supervisorctl"], "pidfile": None,
        "process_match": None, "health_url": None, "health_status": [200], "health_body": "", "health_host": "127.0.0.1",
        "health_port": 0, "health_command": None, "validate_certs": True, "wait": False, "timeout": 30, "interval": 1}


class Host(object):
    """Answers commands from a script and keeps a fake clock advanced by sleep()."""

    def __init__(self, answers):
        self.answers = answers  # first word of argv after the program -> list of (rc, stdout), last one repeats
        self.calls = []
        self.now = 1000.0
        self.pauses = []

    def run(self, argv):
        self.calls.append(argv)
        key = argv[1] if argv[0] == "supervisorctl" else argv[0]
        answers = self.answers[key]
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.pauses.append(round(seconds, 3))
        self.now += seconds


def observer(host, **params):
    """An Observer whose supervisord is asked through the scripted supervisorctl command line only."""
    params = dict(BASE, **params)
    return ps.Observer(params, host.run, clock=host.clock, sleep=host.sleep,
                       supervisord=ps.Supervisord(params["supervisorctl"], host.run, server=False))


@pytest.fixture(autouse=True)
def live_pids(monkeypatch):
    monkeypatch.setattr(ps.os.path, "exists", lambda path: path in ("/proc/4242", "/proc/77"))


RUNNING = (0, "web                              RUNNING   pid 4242, uptime 0:01:00\n")
EXITED = (3, "web                              EXITED    Nov 30 05:00 AM\n")


def test_auto_detects_supervisor_and_reads_its_pid_from_the_same_answer():
    host = Host({"status": [RUNNING]})
    result = observer(host, manager="auto").observe()
    assert result["manager"] == "supervisor" and result["pid"] == 4242 and result["healthy"]
    assert host.calls == [["supervisorctl", "status", "web"]]


def test_a_dead_program_needs_no_second_call():
    host = Host({"status": [EXITED]})
    result = observer(host).observe()
    assert result["pid"] == 0 and not result["healthy"] and len(host.calls) == 1


@pytest.mark.parametrize("answer", [(4, "web: ERROR (no such process)\n"), (127, "")])
def test_auto_without_supervisor_falls_back(answer, monkeypatch):
    monkeypatch.setattr(ps.os.path, "isdir", lambda path: path == "/run/systemd/system")
    host = Host({"status": [answer], "systemctl": [(0, "77\n")]})
    result = observer(host, manager="auto").observe()
    assert result["manager"] == "systemd" and result["pid"] == 77


@pytest.mark.parametrize("text, pid", [("4242", 4242), ("0", 0), ("999", 0), ("ERROR (no such process)", 0), ("", 0)])
def test_only_a_live_numeric_pid_counts(text, pid):
    """While starting or stopping, supervisorctl status shows no PID: `supervisorctl pid` is asked."""
    result = observer(Host({"status": [(0, "web  STARTING\n")], "pid": [(0, text)]})).observe()
    assert result["pid"] == pid and result["healthy"] is (pid > 0)


def test_every_configured_check_must_pass():
    host = Host({"status": [RUNNING], "probe": [(1, "")]})
    result = observer(host, health_command="probe --quick").observe()
    assert result["pid"] == 4242 and not result["healthy"]
    assert result["checks"]["command"] == {"rc": 1, "passed": False}
    assert host.calls[-1] == ["probe", "--quick"]  # split like a shell, no shell


def test_a_service_without_pid_source_is_judged_by_its_checks():
    host = Host({"probe": [(0, "")]})
    result = observer(host, manager="service", health_command="probe").observe()
    assert result["healthy"] and result["pid"] == 0 and "pid" not in result["checks"]


def test_wait_backs_off_from_a_tenth_of_a_second_up_to_the_interval():
    host = Host({"status": [EXITED] * 6 + [RUNNING]})
    result = observer(host, wait=True, timeout=30, interval=1).observe()
    assert result["healthy"] and result["observations"] == 7
    assert host.pauses == [0.1, 0.2, 0.4, 0.8, 1, 1]


def test_wait_stops_at_the_timeout():
    host = Host({"status": [EXITED]})
    result = observer(host, wait=True, timeout=2, interval=1).observe()
    assert not result["healthy"] and result["waited"] == 2.0
    assert sum(host.pauses) == pytest.approx(2.0)
