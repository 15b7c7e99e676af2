"""Run real ansible-rulebook activations in tests and the demo, with the collection installed from its tarball."""

import json
import os
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request

import yaml

from utils import estate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")
free_port = estate.free_port
wait_until = estate.wait_until


def install_collection(dest, source=ROOT):
    """Build the collection tarball (from source, the clone by default) and install it under dest; return the path."""
    build = os.path.join(dest, "dist")
    os.makedirs(build, exist_ok=True)
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", build, source],
                   check=True, capture_output=True, text=True, cwd=source)
    tarball = [name for name in os.listdir(build) if name.endswith(".tar.gz")][0]
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p",
                    os.path.join(dest, "collections"), os.path.join(build, tarball)],
                   check=True, capture_output=True, text=True)
    return os.path.join(dest, "collections")


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except (urllib.error.URLError, OSError):
        return False


class Activation(object):
    """One ansible-rulebook process running a rulebook; its output goes to a log file (no pipe deadlocks)."""

    def __init__(self, rulebook, collections_path, variables=None, inventory=None, env=None, workdir=None, verbosity=1,
                 print_events=True, env_vars=()):
        self.workdir = workdir or tempfile.mkdtemp(prefix="selfheal-eda-")
        os.makedirs(self.workdir, exist_ok=True)
        self.collections_path = collections_path
        # A rulebook given by name (selfheal.devops.self_healing) is loaded from the installed collection.
        is_name = isinstance(rulebook, str) and "\n" not in rulebook and rulebook.count(".") == 2
        self.rulebook_path = rulebook if is_name else self._write("rulebook.yml", rulebook)
        self.vars_path = self._write("vars.yml", variables or {})
        self.inventory_path = self._write("inventory.yml", inventory or {
            "all": {"hosts": {"localhost": {"ansible_connection": "local"}}}})
        self.log_path = os.path.join(self.workdir, "ansible-rulebook.log")
        self.env = env or {}
        self.verbosity = verbosity
        self.print_events = print_events
        self.env_vars = list(env_vars)  # environment variables the rulebook reads as variables (--env-vars)
        self.process = None
        self._log = None

    def _write(self, name, content):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as handle:
            if isinstance(content, str):
                handle.write(content)
            else:
                yaml.safe_dump(content, handle, sort_keys=False)
        return path

    def start(self):
        env = dict(os.environ)
        # ansible-rulebook writes each run's private data (artifacts with the job's command and environment) under
        # TMPDIR: keep it in this activation's folder, so removing the folder leaves nothing behind.
        scratch = os.path.join(self.workdir, "tmp")
        os.makedirs(scratch, exist_ok=True)
        env.update({
            "TMPDIR": scratch,
            "ANSIBLE_COLLECTIONS_PATH": self.collections_path,
            "PATH": BIN + os.pathsep + env.get("PATH", ""),
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_PYTHON_INTERPRETER": os.path.join(BIN, "python"),
            "ANSIBLE_NOCOLOR": "1",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        command = [os.path.join(BIN, "ansible-rulebook"), "-r", self.rulebook_path, "-i", self.inventory_path,
                   "-e", self.vars_path]
        if self.env_vars:
            command += ["--env-vars", ",".join(self.env_vars)]
        if self.print_events:
            command.append("--print-events")
        command += ["-v"] * self.verbosity
        self._log = open(self.log_path, "a" if self.process is not None else "w")  # a restart appends
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.workdir, start_new_session=True)
        return self

    def output(self):
        with open(self.log_path, errors="replace") as handle:
            return handle.read()

    def wait_for_output(self, text, timeout=60):
        def found():
            if self.process.poll() is not None:
                raise AssertionError("ansible-rulebook exited (%s):\n%s" % (self.process.returncode, self.output()[-4000:]))
            return text in self.output()

        return wait_until(found, timeout, what=repr(text))

    def wait_for_url(self, url, timeout=60):
        def ready():
            if self.process.poll() is not None:
                raise AssertionError("ansible-rulebook exited (%s):\n%s" % (self.process.returncode, self.output()[-4000:]))
            return http_ok(url)

        return wait_until(ready, timeout, interval=0.1, what=url)

    def descendants(self):
        """PIDs of every process this activation started and that still runs (ansible-runner runs each playbook in
        a session of its own, so a signal to the activation's process group does not reach them)."""
        return estate.descendants(self.process.pid)

    def playbooks(self):
        """PIDs of the ansible-playbook runs this activation has going (its descendants; not their forked workers,
        which carry the same command line)."""
        found = []
        for child in self.descendants():  # parents before their children
            try:
                with open("/proc/%d/cmdline" % child, "rb") as handle:
                    command = handle.read()
                parent = int(estate.proc_stat(child)[1])
            except (OSError, IndexError, ValueError):
                continue
            if b"ansible-playbook" in command and parent not in found:
                found.append(child)
        return found

    def wait_idle(self, timeout=120):
        """Wait until no playbook of this activation runs any more (a stop would cut one short)."""
        return wait_until(lambda: self.process.poll() is not None or not self.playbooks(), timeout, interval=0.2,
                          what="the activation's playbooks to end")

    def _started(self, pids):
        """(pid, start time) of each: a PID freed and given to another process meanwhile is then left alone."""
        started = []
        for pid in pids:
            try:
                started.append((pid, estate.proc_stat(pid)[19]))
            except (OSError, IndexError):
                pass
        return started

    def _kill_all(self, started):
        for pid, start in started:
            if self._started([pid]) == [(pid, start)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def kill(self):
        """SIGKILL the activation and everything it started (ansible-runner, ansible-playbook): a container dying."""
        if self.process is not None and self.process.poll() is None:
            left = self._started(self.descendants())
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._kill_all(left)
            self.process.wait(timeout=10)

    def stop(self):
        """Stop the activation, then kill what it left running (a playbook still waiting for an answer would go on
        acting on the estate of a test that has ended, and take the CPU of the next one)."""
        if self.process is not None and self.process.poll() is None:
            left = self._started(self.descendants())
            try:
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=10)
            self._kill_all(left)
        if self._log is not None:
            self._log.close()
            self._log = None


def read_json_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
