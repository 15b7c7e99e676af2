"""Shared fixtures: the collection on sys.path, the SaaS API sandbox on a loopback port, event sources driven as
ansible-rulebook drives them, and real ansible-playbook runs (the parts themselves live in tests/utils)."""

import asyncio
import datetime
import ipaddress
import os
import socket
import sys

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

try:  # tests/ is on the import path through the .pth that `make venv` writes (pytest runs in importlib mode)
    from sandbox import credentials
    from utils.playbooks import run_collection_playbook, run_playbook
    from utils.sandbox_control import start_sandbox, stop_sandbox
except ModuleNotFoundError as missing:
    if missing.name not in ("sandbox", "utils"):
        raise
    pytest.exit("tests/ is not on this Python's import path (%s): run `make venv`, which writes the project's .pth "
                "into .venv, and run pytest from .venv" % missing, returncode=4)


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
    from utils import rulebook_harness

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
