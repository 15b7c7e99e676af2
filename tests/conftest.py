"""Shared fixtures: the collection on sys.path, the SaaS API sandbox on a loopback port, event sources driven as
ansible-rulebook drives them, and real ansible-playbook runs."""

import asyncio
import datetime
import ipaddress
import json
import os
import socket
import subprocess
import sys
import urllib.request

import aiohttp
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


# --- event sources, driven as ansible-rulebook drives them --------------------------------------------

def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RulesEngine(object):
    """ansible-rulebook's side of a source, as it really is: an asyncio.Queue(1) drained by the rules engine.

    The engine takes one event at a time and may be slow (`delay` seconds per event) or stopped (`pause()`), so a
    source must wait for room in the queue: a put_nowait would lose events exactly as it did in real activations.
    """

    def __init__(self, delay=0.0):
        self.queue = asyncio.Queue(1)
        self.received = []
        self.delay = delay
        self.running = asyncio.Event()
        self.running.set()
        self.task = asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self):
        while True:
            await self.running.wait()
            item = await self.queue.get()
            self.received.append(item)
            if self.delay:
                await asyncio.sleep(self.delay)

    def pause(self):
        self.running.clear()

    def resume(self):
        self.running.set()

    def stop(self):
        self.task.cancel()


class RunningSource(object):
    def __init__(self, task, engine, base):
        self.task = task
        self.engine = engine
        self.queue = engine.queue
        self.base = base

    def events(self):
        """Every event the rules engine received so far (plus one still waiting in its queue); each returned once."""
        while not self.queue.empty():
            self.engine.received.append(self.queue.get_nowait())
        items, self.engine.received[:] = list(self.engine.received), []
        return items


async def start_source(main, args, engine=None, scheme="http", ssl_context=None):
    """Start main(queue, args) as a task on a real-sized queue and wait until its /health answers (bounded)."""
    engine = engine if engine is not None else RulesEngine()
    args = dict(args)
    args.setdefault("host", "127.0.0.1")
    args.setdefault("port", _free_port())
    args.setdefault("reconcile", False)
    task = asyncio.get_running_loop().create_task(main(engine.queue, args))
    base = "%s://127.0.0.1:%d" % (scheme, args["port"])
    health = base + args.get("path", "/").rstrip("/") + "/health"
    async with aiohttp.ClientSession() as session:
        for dummy in range(500):
            if task.done():
                task.result()  # raises the source's error
            try:
                async with session.get(health, ssl=ssl_context if ssl_context is not None else None) as response:
                    if response.status < 500:
                        break
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.01)
        else:
            raise AssertionError("source did not start listening")
    return RunningSource(task, engine, base)


async def stop_source(running):
    running.task.cancel()
    running.engine.stop()
    try:
        await running.task
    except asyncio.CancelledError:
        pass


@pytest.fixture
def rules_engine():
    """RulesEngine(delay=0.0): the queue ansible-rulebook gives a source, drained as its rules engine does."""
    return RulesEngine


@pytest.fixture
async def run_source():
    """run_source(main, args, ...) starts a source and returns a RunningSource; all are stopped after the test."""
    started = []

    async def start(main, args, **kwargs):
        running = await start_source(main, args, **kwargs)
        started.append(running)
        return running

    yield start
    for running in started:
        await stop_source(running)


@pytest.fixture
def certs(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, generated for this test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(stem, cert, key):
        cert_path, key_path = tmp_path / (stem + ".pem"), tmp_path / (stem + ".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))

    def leaf(common, usage, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    ca_path, dummy = write("ca", ca, ca_key)
    server_cert, server_key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_cert, client_key = leaf("dynatrace", ExtendedKeyUsageOID.CLIENT_AUTH)
    server = write("server", server_cert, server_key)
    client = write("client", client_cert, client_key)
    return {"ca": ca_path, "server": server, "client": client}
