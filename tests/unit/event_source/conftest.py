"""Helpers to drive an event source's main() into a queue over real HTTP on 127.0.0.1."""

import asyncio
import datetime
import ipaddress
import socket

import aiohttp
import pytest


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningSource(object):
    def __init__(self, task, queue, base):
        self.task = task
        self.queue = queue
        self.base = base

    def events(self):
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items


async def start_source(main, args, queue=None, scheme="http", ssl_context=None):
    """Start main(queue, args) as a task and wait until its /health answers (bounded)."""
    queue = queue if queue is not None else asyncio.Queue()
    args = dict(args)
    args.setdefault("host", "127.0.0.1")
    args.setdefault("port", free_port())
    task = asyncio.get_running_loop().create_task(main(queue, args))
    base = "%s://127.0.0.1:%d" % (scheme, args["port"])
    health = base + args.get("path", "/").rstrip("/") + "/health"
    async with aiohttp.ClientSession() as session:
        for dummy in range(200):
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
    return RunningSource(task, queue, base)


async def stop_source(running):
    running.task.cancel()
    try:
        await running.task
    except asyncio.CancelledError:
        pass


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
