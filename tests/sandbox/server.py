"""Run the SaaS API sandbox on loopback.

    python -m sandbox.server [--host 127.0.0.1] [--port 0] [--url-file PATH] [--tls]

(`make venv` puts tests/ on the virtualenv's import path, so `.venv/bin/python -m sandbox.server` runs it from anywhere.)

Port 0 picks a free port; the base URL is printed on stdout ("SANDBOX_URL=http://127.0.0.1:PORT") and,
with --url-file, written to that file once the server accepts connections.

--tls serves HTTPS with a CA and a server certificate (127.0.0.1, ::1, localhost) generated at start: the CA
bundle (PEM) is written to <url-file>.ca (or to a temporary directory without --url-file) before the server
starts, and its path printed as "SANDBOX_CA=..." on the line after SANDBOX_URL. The private keys never touch a
file that outlives the start-up.
"""

import argparse
import asyncio
import datetime
import importlib
import ipaddress
import os
import shutil
import signal
import ssl
import tempfile

from aiohttp import web

from sandbox import core

HERE = os.path.dirname(os.path.abspath(__file__))

SERVICE_MODULES = ("dynatrace", "jira", "slack", "oncall", "keptn", "ui", "servicenow", "msgraph", "history", "slack_interactivity")


def load_services():
    modules = []
    for name in SERVICE_MODULES:
        if os.path.exists(os.path.join(HERE, name + ".py")):
            modules.append(importlib.import_module("sandbox." + name))
    return modules


def create_app(public_url=None):
    return core.build_app(load_services(), public_url=public_url)


# --- TLS ------------------------------------------------------------------------------------------

def _write(path, data, mode=0o644):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def make_certificates(hosts=("localhost",), addresses=("127.0.0.1", "::1")):
    """(ca_pem, cert_pem, key_pem): a one-day CA and a server certificate it signed, for the loopback names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(minutes=5), not_valid_after=now + datetime.timedelta(days=1))
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "selfheal sandbox CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(valid["not_valid_before"])
          .not_valid_after(valid["not_valid_after"])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    names = [x509.DNSName(h) for h in hosts] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem), cert.public_bytes(pem), key_pem


def tls_context(ca_path):
    """Generate the certificates, write the CA bundle to ca_path, return the server's SSLContext."""
    ca_pem, cert_pem, key_pem = make_certificates()
    _write(ca_path, ca_pem)
    private = tempfile.mkdtemp(prefix="sandbox-tls-")  # 0700; removed as soon as the chain is loaded
    try:
        cert_file, key_file = os.path.join(private, "cert.pem"), os.path.join(private, "key.pem")
        _write(cert_file, cert_pem, 0o600)
        _write(key_file, key_pem, 0o600)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return context


# --- serving --------------------------------------------------------------------------------------

async def serve(host, port, url_file=None, tls=False):
    app = create_app()
    context, ca_dir = None, None
    if tls:
        if url_file:
            ca_path = url_file + ".ca"
        else:
            ca_dir = tempfile.mkdtemp(prefix="sandbox-ca-")
            ca_path = os.path.join(ca_dir, "ca.pem")
        context = tls_context(ca_path)
    # handler_cancellation: a handler whose client went away is cancelled (a hanging fault ends with the client)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=context)
    await site.start()
    bound = runner.addresses[0][1]
    url = "%s://%s:%d" % ("https" if tls else "http", host, bound)
    app[core.SANDBOX].public_url = url
    print("SANDBOX_URL=%s" % url, flush=True)
    if tls:  # the CA file is already written
        print("SANDBOX_CA=%s" % ca_path, flush=True)
    if url_file:
        _write(url_file, (url + "\n").encode())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    if ca_dir:
        shutil.rmtree(ca_dir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--url-file")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a CA generated at start")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.url_file, args.tls))


if __name__ == "__main__":
    main()
