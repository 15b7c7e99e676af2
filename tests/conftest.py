"""Shared fixtures: the collection on sys.path, and the SaaS API sandbox on a loopback port."""

import json
import os
import subprocess
import sys
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "selfheal", "devops")

if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)


class SandboxHandle(object):
    """A running sandbox process and helpers for its admin API (/_sandbox)."""

    def __init__(self, process, url):
        self.process = process
        self.url = url

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def call_raw(self, method, path):
        """The body of an admin call as text (attachments, pages)."""
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode("utf-8", "replace")

    def state(self):
        return self.call("GET", "/_sandbox/state")

    def reset(self):
        return self.call("POST", "/_sandbox/reset")

    def fault(self, path, method="*", times=1, **kwargs):
        """Inject a fault: status=503, headers={...}, body=..., latency=1.0, drop=True."""
        return self.call("POST", "/_sandbox/faults", dict(path=path, method=method, times=times, **kwargs))

    def requests(self, path_glob=None):
        suffix = "?path=%s" % urllib.request.quote(path_glob) if path_glob else ""
        return self.call("GET", "/_sandbox/log" + suffix)

    def outbound(self):
        return self.call("GET", "/_sandbox/outbound")


def start_sandbox():
    """Start tests/sandbox/server.py on a free loopback port; return a SandboxHandle."""
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "sandbox", "server.py"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("SANDBOX_URL="):
        process.kill()
        raise RuntimeError("sandbox did not start: %s %s" % (line, process.stderr.read()))
    return SandboxHandle(process, line.strip().split("=", 1)[1])


def stop_sandbox(handle):
    handle.process.terminate()
    try:
        handle.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        handle.process.kill()


@pytest.fixture(scope="session")
def sandbox_session():
    handle = start_sandbox()
    yield handle
    stop_sandbox(handle)


@pytest.fixture
def sandbox(sandbox_session):
    """The session's sandbox, reset to its seed state before each test."""
    sandbox_session.reset()
    return sandbox_session


# --- running real ansible-playbook ----------------------------------------------------------------

sys.path.insert(0, os.path.join(ROOT, "tests", "sandbox"))
sys.path.insert(0, os.path.join(ROOT, "tests", "utils"))
import credentials  # noqa: E402  (tests/sandbox/credentials.py)


class PlaybookRun(object):
    """Outcome of one ansible-playbook run: rc, raw output and per-task results by task name."""

    def __init__(self, rc, stdout, stderr, results):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.results = results

    def __getitem__(self, task_name):
        return self.results[task_name]

    def assert_no_secret(self):
        text = self.stdout + self.stderr
        leaked = [s for s in credentials.SECRETS if s in text]
        assert not leaked, "secret leaked into ansible output"


def run_playbook(tasks, extra_vars=None, env=None, check=False, diff=False, hosts="localhost",
                 inventory="localhost,", timeout=600, extra_args=(), connection="local"):
    """Run `tasks` (a list of task dicts) with real ansible-playbook and the JSON stdout callback.

    Every task must have a unique `name`; the result of each is returned under that name (the last one
    if it ran several times; a dict by host when several hosts ran it). A failing task ends the play
    unless it has ignore_errors: look at its `failed` key.
    """
    import tempfile

    import yaml

    play = [{"name": "test", "hosts": hosts, "gather_facts": False, "connection": connection, "tasks": tasks}]
    with tempfile.TemporaryDirectory(prefix="selfheal-pb-") as tmp:
        path = os.path.join(tmp, "playbook.yml")
        with open(path, "w") as handle:
            yaml.safe_dump(play, handle, sort_keys=False)
        command = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", inventory, path]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        command += list(extra_args)
        results_file = os.path.join(tmp, "results.json")
        run_env = dict(os.environ)
        run_env.update({
            "ANSIBLE_CALLBACKS_ENABLED": "record_results",
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "utils", "callback_plugins"),
            "SELFHEAL_RESULTS_FILE": results_file,
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "PATH": os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""),
        })
        run_env.update(env or {})
        proc = subprocess.run(command, capture_output=True, text=True, env=run_env, timeout=timeout, check=False)
        by_task = {}
        if os.path.exists(results_file):
            with open(results_file) as handle:
                by_task = json.load(handle)
    # One host (the usual case): results[name] is that host's result; else a dict by host.
    results = {name: (hosts_[next(iter(hosts_))] if len(hosts_) == 1 else hosts_) for name, hosts_ in by_task.items()}
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results)


def run_collection_playbook(name, inventory, extra_vars=None, env=None, timeout=600):
    """Run one of the collection's playbooks (selfheal.devops.<name>) as users do; inventory is a dict."""
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory(prefix="selfheal-pb-") as tmp:
        path = os.path.join(tmp, "inventory.yml")
        with open(path, "w") as handle:
            yaml.safe_dump(inventory, handle)
        command = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", path, "selfheal.devops." + name]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        run_env = dict(os.environ)
        run_env.update({"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False",
                        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
                        "PATH": os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ.get("PATH", "")})
        run_env.update(env or {})
        proc = subprocess.run(command, capture_output=True, text=True, env=run_env, timeout=timeout, check=False)
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, {})


@pytest.fixture
def collection_playbook():
    return run_collection_playbook


@pytest.fixture
def sandbox_env(sandbox):
    """Environment variables pointing every module at the (reset) sandbox."""
    return credentials.environment(sandbox.url)


@pytest.fixture
def playbook():
    return run_playbook


@pytest.fixture(scope="session")
def installed_collection(tmp_path_factory):
    """The collection built into a tarball and installed, as users get it; returns the collections path."""
    import rulebook_harness

    return rulebook_harness.install_collection(str(tmp_path_factory.mktemp("installed")))
