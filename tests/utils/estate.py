"""Real local targets for tests and the demo: a private supervisord running a small web service."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import xmlrpc.client

from ansible_collections.selfheal.devops.plugins.module_utils._supervisor import proxy as supervisord_proxy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout=20.0, interval=0.05, what="condition"):
    """Poll predicate() until it returns a truthy value (bounded by timeout); return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def healthy(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def alive(pid):
    try:
        os.kill(pid, 0)
        return proc_stat(pid)[0] != "Z"
    except OSError:
        return False


def kill(pid):
    # os.kill(0, ...) would kill this very process group (pytest included): a PID must name one process.
    if not isinstance(pid, int) or pid <= 0:
        raise AssertionError("no process to kill (PID %r): the service was not running" % (pid,))
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), what="process %d to die" % pid)


def socket_dir(directory):
    """Where the UNIX sockets of the services kept in `directory` go: the directory itself, or a short folder in the
    temporary directory when its path is too long for a socket address (108 bytes on Linux; pytest-xdist nests the
    test folders one level deeper). remove_socket_dir() removes the short folder."""
    if len(os.path.join(directory, "supervisor.sock")) < 100:
        return directory
    short = os.path.join(tempfile.gettempdir(), "selfheal-sock-" + hashlib.sha1(directory.encode()).hexdigest()[:12])
    os.makedirs(short, mode=0o700, exist_ok=True)
    return short


def remove_socket_dir(directory):
    if socket_dir(directory) != directory:
        shutil.rmtree(socket_dir(directory), ignore_errors=True)


def supervisor_rpc(path):
    """supervisord's XML-RPC interface at the unix socket path (the collection's own client: no process per call)."""
    return supervisord_proxy("unix://" + path, timeout=10)


def proc_stat(pid):
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses): [0] state,
    [1] parent PID, [11]/[12] user/system ticks, [13]/[14] those of waited-for children, [19] start time."""
    with open("/proc/%d/stat" % pid) as handle:
        return handle.read().rsplit(")", 1)[1].split()


def descendants(pid):
    """PIDs of the live descendants of pid, read from /proc, each parent before its children."""
    by_parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                by_parent.setdefault(int(proc_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    found, todo = [], [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid, children=False):
    """User + system CPU seconds of a process so far (all its threads; with children, also the children it waited
    for), or None when it is gone."""
    try:
        fields = proc_stat(pid)
    except OSError:
        return None
    return sum(int(value) for value in fields[11:15 if children else 13]) / float(os.sysconf("SC_CLK_TCK"))


class Supervisor(object):
    """A private supervisord: program `web` (an HTTP server that stays dead when killed) and `dying` (exits at once)."""

    def __init__(self, workdir, port=None):
        self.workdir = str(workdir)
        self.port = port or free_port()
        self.conf = os.path.join(self.workdir, "supervisord.conf")
        with open(self.conf, "w") as handle:
            handle.write(textwrap.dedent("""\
                [unix_http_server]
                file={s}/supervisor.sock
                [supervisord]
                logfile={d}/supervisord.log
                pidfile={d}/supervisord.pid
                childlogdir={d}
                [rpcinterface:supervisor]
                supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
                [supervisorctl]
                serverurl=unix://{s}/supervisor.sock
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
                """).format(d=self.workdir, s=socket_dir(self.workdir), py=sys.executable, port=self.port))
        subprocess.run([os.path.join(BIN, "supervisord"), "-c", self.conf], check=True)
        wait_until(lambda: "RUNNING" in self.ctl("status", "web").stdout and healthy(self.port), what="supervisord")
        with open(os.path.join(self.workdir, "supervisord.pid")) as handle:
            self.daemon_pid = int(handle.read())

    def ctl(self, *args):
        return subprocess.run([os.path.join(BIN, "supervisorctl"), "-c", self.conf] + list(args),
                              capture_output=True, text=True, check=False)

    def pid(self, program="web"):
        """The program's PID, 0 when it does not run (what `supervisorctl pid` prints), asked over supervisord's XML-RPC
        socket in this process: tests and benchmarks poll it, and a supervisorctl per poll (a Python start-up, about
        0.2 CPU seconds) took most of a core from the fixes they were timing."""
        try:
            return int(supervisor_rpc(os.path.join(socket_dir(self.workdir), "supervisor.sock"))
                       .supervisor.getProcessInfo(program)["pid"])
        except (OSError, xmlrpc.client.Error):
            return 0

    def role_vars(self):
        """process_restart settings for this supervisor."""
        return {"process_restart_supervisorctl": os.path.join(BIN, "supervisorctl"),
                "process_restart_supervisor_config": self.conf,
                "process_restart_health_url": "http://127.0.0.1:%d/" % self.port}

    def stop(self):
        self.ctl("shutdown")
        wait_until(lambda: not alive(self.daemon_pid), timeout=15, what="supervisord to stop")
        remove_socket_dir(self.workdir)
