# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real blue/green estate on 127.0.0.1 for tests, benchmarks and the demo (no pytest dependency).

Parts, each on a port picked at run time:
- two backends (one child process each, this file run as ``backend``) answering ``{"colour": "blue"}`` on
  any path and ``/health``; ``Backend.configure()`` makes one unhealthy, slow, erroring or misreporting;
- a private nginx (own prefix, pid, logs and temp paths; ``nginx -p DIR -c FILE``) whose active colour
  lives in ``bluegreen/active.conf``, a ``map`` included by the main config;
- a private HAProxy (foreground, stats socket with admin level in the work directory) with one backend
  ``app`` holding the servers ``blue`` and ``green``;
- ``LoadClient``: a bounded load generator (keep-alive or ``Connection: close``) that counts statuses,
  colours and socket errors separately.

Use::

    with Estate(routers=("nginx", "haproxy"), active="blue") as estate:
        estate.green.configure(healthy=False)
        role_vars = estate.role_vars("nginx")        # bluegreen_switch_* variables for the role
        estate.active_colour("nginx")                 # what the router really serves now

``python bluegreen_estate.py up`` starts an estate, prints its description as one JSON line and runs until
SIGTERM/SIGINT (for the demo and manual experiments).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COLOURS = ("blue", "green")
NGINX_VARIABLE = "bluegreen_upstream"
HAPROXY_BACKEND = "app"


class EstateError(RuntimeError):
    """A part of the estate could not be started, reached or stopped."""


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, timeout, what, process=None, interval=0.02):
    """Poll `predicate` until it is true, at most `timeout` seconds; fail early if `process` died."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            raise EstateError("%s: process exited with %s before it was ready" % (what, process.returncode))
        if time.monotonic() > deadline:
            raise EstateError("%s: not ready after %.1f s" % (what, timeout))
        time.sleep(interval)


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop_process(process, sig=signal.SIGTERM, timeout=10):
    if process is None or process.poll() is not None:
        return
    try:
        process.send_signal(sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def http_get(url, timeout=5.0, headers=None):
    """One GET with a fresh connection; returns (status, body bytes, headers dict)."""
    parsed = urllib_parse(url)
    conn = http.client.HTTPConnection(parsed[0], parsed[1], timeout=timeout)
    try:
        conn.request("GET", parsed[2], headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def urllib_parse(url):
    """Split http://host:port/path into (host, port, path)."""
    if not url.startswith("http://"):
        raise ValueError("only http:// URLs are supported: %s" % url)
    rest = url[len("http://"):]
    hostport, sep, path = rest.partition("/")
    host, colon, port = hostport.rpartition(":")
    if not colon:
        host, port = hostport, "80"
    return host, int(port), "/" + path if sep else "/"


def colour_of(body):
    """The colour a backend reported in a JSON body, or None."""
    try:
        return json.loads(body).get("colour")
    except (ValueError, AttributeError):
        return None


# --- backends -----------------------------------------------------------------------------------------

class _BackendState(object):
    def __init__(self, colour):
        self.colour = colour
        self.lock = threading.Lock()
        self.settings = {}
        self.requests = collections.Counter()
        self.reset()

    def reset(self):
        with self.lock:
            self.settings = {"healthy": True, "delay": 0.0, "status": 200, "colour": self.colour, "health_delay": 0.0}

    def snapshot(self):
        with self.lock:
            return dict(self.settings, requests=dict(self.requests))


def make_backend_server(colour, port=0):
    """A ThreadingHTTPServer (HTTP/1.1, keep-alive) for one colour; the caller runs serve_forever()."""
    state = _BackendState(colour)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 120  # idle keep-alive connections are closed after this
        disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

        def log_message(self, *args):
            pass

        def _send(self, status, payload, head=False):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Colour", str(payload.get("colour", "")))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _answer(self, head=False):
            path = self.path.split("?", 1)[0]
            with state.lock:
                settings = dict(state.settings)
                state.requests[path if path in ("/health",) else "app"] += 1
            if path == "/_backend/state":
                return self._send(200, state.snapshot(), head)
            if path == "/health":
                if settings["health_delay"]:
                    time.sleep(settings["health_delay"])
                if settings["healthy"]:
                    return self._send(200, {"status": "ok", "colour": settings["colour"]}, head)
                return self._send(503, {"status": "unhealthy", "colour": settings["colour"]}, head)
            if settings["delay"]:
                time.sleep(settings["delay"])
            return self._send(settings["status"], {"colour": settings["colour"], "path": path}, head)

        def do_GET(self):  # noqa: N802 (http.server API)
            self._answer()

        def do_HEAD(self):  # noqa: N802
            self._answer(head=True)

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path == "/_backend/control":
                try:
                    update = json.loads(raw or b"{}")
                    if not isinstance(update, dict):
                        raise ValueError("a JSON object is required")
                    unknown = set(update) - {"healthy", "delay", "status", "colour", "health_delay", "reset"}
                    if unknown:
                        raise ValueError("unknown settings: %s" % ", ".join(sorted(unknown)))
                except ValueError as error:
                    return self._send(400, {"error": str(error)})
                if update.pop("reset", False):
                    state.reset()
                with state.lock:
                    state.settings.update(update)
                return self._send(200, state.snapshot())
            return self._answer()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    server.state = state
    return server


def _backend_main(colour, port):
    server = make_backend_server(colour, port)
    signal.signal(signal.SIGTERM, lambda *args: threading.Thread(target=server.shutdown).start())
    print("PORT=%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    server.server_close()


class Backend(object):
    """One colour's backend, running as a child process."""

    def __init__(self, colour):
        self.colour = colour
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "backend", "--colour", colour, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = _read_line(self.process, 10)
        if not line.startswith("PORT="):
            _stop_process(self.process)
            raise EstateError("backend %s did not start: %r %s" % (colour, line, self.process.stderr.read()))
        self.port = int(line.strip().split("=", 1)[1])
        self.address = "127.0.0.1:%d" % self.port
        self.url = "http://%s/" % self.address
        self.health_url = "http://%s/health" % self.address

    def configure(self, **settings):
        """Change behaviour: healthy=bool, delay=s (app paths), health_delay=s, status=int (app paths),
        colour=str (what it reports), reset=True (back to a healthy, fast, honest backend)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST", "/_backend/control", body=json.dumps(settings), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise EstateError("backend %s rejected %s: %s" % (self.colour, settings, body.decode(errors="replace")))
        return json.loads(body)

    def reset(self):
        return self.configure(reset=True)

    def state(self):
        status, body, headers = http_get("http://%s/_backend/state" % self.address)
        return json.loads(body)

    def stop(self):
        _stop_process(self.process)
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()


def _read_line(process, timeout):
    """First stdout line of a child, waiting at most `timeout` seconds."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            return ""
        return process.stdout.readline()
    finally:
        selector.close()


# --- nginx --------------------------------------------------------------------------------------------

NGINX_CONF = """\
# Private nginx for the selfheal.devops blue/green estate.
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_timeout 60s;
    keepalive_requests 100000;

    # max_fails=0: one failed attempt must never take the only server of a colour out of rotation.
    upstream blue {{ server {blue} max_fails=0; keepalive 32; }}
    upstream green {{ server {green} max_fails=0; keepalive 32; }}

    # The active colour: a map managed by selfheal.devops.bluegreen_switch.
    include {d}/bluegreen/active.conf;

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://${variable};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            # Idempotent requests are retried on a fresh upstream connection when a kept-alive one fails.
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 5s;
        }}
    }}
}}
"""

# What an operator writes before adopting the role (the role's own template adds a marker comment).
NGINX_ACTIVE = """\
# active colour of the blue/green estate
map $host ${variable} {{ default {colour}; }}
"""


class Nginx(object):
    """A private nginx master (foreground child process) routing to the active colour's upstream."""

    binary = shutil.which("nginx") or "/usr/sbin/nginx"

    def __init__(self, workdir, backends, active="blue"):
        self.dir = os.path.join(workdir, "nginx")
        for sub in ("logs", "tmp", "bluegreen"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.port = _free_port()
        self.url = "http://127.0.0.1:%d/" % self.port
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.pidfile = os.path.join(self.dir, "nginx.pid")
        self.active_file = os.path.join(self.dir, "bluegreen", "active.conf")
        with open(self.conf, "w") as handle:
            handle.write(NGINX_CONF.format(d=self.dir, port=self.port, variable=NGINX_VARIABLE,
                                           blue=backends["blue"].address, green=backends["green"].address))
        self.write_active(active)
        self.process = None

    def command(self, *args):
        return [self.binary, "-p", self.dir + "/", "-c", self.conf] + list(args)

    def write_active(self, colour):
        with open(self.active_file, "w") as handle:
            handle.write(NGINX_ACTIVE.format(variable=NGINX_VARIABLE, colour=colour))

    def start(self):
        check = subprocess.run(self.command("-t", "-q"), capture_output=True, text=True, check=False)
        if check.returncode:
            raise EstateError("nginx config invalid: %s" % check.stderr)
        self.process = subprocess.Popen(self.command("-g", "daemon off;"), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: _port_open(self.port) and os.path.exists(self.pidfile), 10, "nginx", self.process)

    def reload(self):
        subprocess.run(self.command("-s", "reload"), check=True, capture_output=True)

    def worker_pids(self):
        """PIDs of the master's worker processes (old ones included while they drain)."""
        master = self.process.pid
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == master:
                    pids.append(int(entry))
        return pids

    def stop(self):
        _stop_process(self.process, signal.SIGQUIT)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()


# --- HAProxy ------------------------------------------------------------------------------------------

HAPROXY_CONF = """\
# Private HAProxy for the selfheal.devops blue/green estate.
global
    stats socket {d}/admin.sock mode 600 level admin
    stats timeout 30s
    pidfile {d}/haproxy.pid

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    option redispatch
    retries 3
    retry-on conn-failure empty-response response-timeout

frontend fe
    bind 127.0.0.1:{port}
    default_backend {backend}

backend {backend}
    option httpchk GET /health
    http-reuse safe
    server blue {blue} check inter 300ms fall 2 rise 1{blue_disabled}
    server green {green} check inter 300ms fall 2 rise 1{green_disabled}
"""


class HAProxy(object):
    """A private HAProxy (foreground, -db) with the stats socket at admin level in its directory."""

    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    backend = HAPROXY_BACKEND

    def __init__(self, workdir, backends, active="blue", addresses=None):
        self.dir = os.path.join(workdir, "haproxy")
        os.makedirs(self.dir, exist_ok=True)
        self.port = _free_port()
        self.url = "http://127.0.0.1:%d/" % self.port
        self.conf = os.path.join(self.dir, "haproxy.cfg")
        self.socket = os.path.join(self.dir, "admin.sock")
        self.servers = {colour: colour for colour in COLOURS}
        # addresses lets a test route a server name to another colour's backend (a misconfigured router).
        addresses = dict({colour: backends[colour].address for colour in COLOURS}, **(addresses or {}))
        with open(self.conf, "w") as handle:
            handle.write(HAPROXY_CONF.format(
                d=self.dir, port=self.port, backend=self.backend, blue=addresses["blue"], green=addresses["green"],
                blue_disabled="" if active == "blue" else " disabled",
                green_disabled="" if active == "green" else " disabled"))
        self.process = None

    def start(self):
        check = subprocess.run([self.binary, "-c", "-q", "-f", self.conf], capture_output=True, text=True, check=False)
        if check.returncode:
            raise EstateError("haproxy config invalid: %s %s" % (check.stdout, check.stderr))
        self.process = subprocess.Popen([self.binary, "-db", "-f", self.conf], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: _port_open(self.port) and os.path.exists(self.socket), 10, "haproxy", self.process)

    def command(self, line, timeout=5.0):
        """Send one runtime API command over the stats socket; return the answer text."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.socket)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def server_states(self):
        """{server: {"op": srv_op_state, "admin": srv_admin_state}} from `show servers state`."""
        lines = self.command("show servers state %s" % self.backend).splitlines()
        header = next(line for line in lines if line.startswith("# be_id"))[2:].split()
        states = {}
        for line in lines:
            if line and not line.startswith("#") and len(line.split()) == len(header):
                row = dict(zip(header, line.split()))
                states[row["srv_name"]] = {"op": int(row["srv_op_state"]), "admin": int(row["srv_admin_state"])}
        return states

    def wait_up(self, colour, timeout=10):
        _wait_for(lambda: self.server_states()[self.servers[colour]]["op"] == 2, timeout, "haproxy server %s UP" % colour)

    def stop(self):
        _stop_process(self.process, signal.SIGUSR1)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()


# --- the estate ---------------------------------------------------------------------------------------

class Estate(object):
    """Two backends and the requested routers; a context manager that stops everything it started."""

    def __init__(self, routers=("nginx", "haproxy"), active="blue", workdir=None, haproxy_addresses=None):
        if active not in COLOURS:
            raise ValueError("active must be one of %s" % (COLOURS,))
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="selfheal-bluegreen-")
        os.chmod(self.workdir, 0o755)  # nginx workers run as an unprivileged user when the master is root
        self.backends = {}
        self.routers = {}
        try:
            for colour in COLOURS:
                self.backends[colour] = Backend(colour)
            for name in routers:
                if name == "nginx":
                    router = Nginx(self.workdir, self.backends, active)
                elif name == "haproxy":
                    router = HAProxy(self.workdir, self.backends, active, addresses=haproxy_addresses)
                else:
                    raise ValueError("unknown router %r (nginx, haproxy)" % name)
                router.start()
                self.routers[name] = router
            if "haproxy" in self.routers:
                self.routers["haproxy"].wait_up(active)
        except BaseException:
            self.close()
            raise

    @property
    def blue(self):
        return self.backends["blue"]

    @property
    def green(self):
        return self.backends["green"]

    @property
    def nginx(self):
        return self.routers["nginx"]

    @property
    def haproxy(self):
        return self.routers["haproxy"]

    def router_url(self, router):
        return self.routers[router].url

    def active_colour(self, router, requests=5):
        """The colour the router serves, asked `requests` times through the router; None if mixed or failing."""
        seen = set()
        for index in range(requests):
            status, body, headers = http_get(self.routers[router].url + "probe-%d" % index)
            seen.add(colour_of(body) if 200 <= status < 300 else "HTTP %d" % status)
        return seen.pop() if len(seen) == 1 else None

    def role_vars(self, router, **overrides):
        """The bluegreen_switch_* variables that point the role at this estate's `router`."""
        values = {
            "bluegreen_switch_router": router,
            "bluegreen_switch_health_urls": {colour: self.backends[colour].health_url for colour in COLOURS},
            "bluegreen_switch_verify_url": self.routers[router].url + "bluegreen-verify",
        }
        if router == "nginx":
            nginx = self.routers["nginx"]
            values.update({
                "bluegreen_switch_nginx_binary": nginx.binary,
                "bluegreen_switch_nginx_conf": nginx.conf,
                "bluegreen_switch_nginx_prefix": nginx.dir + "/",
                "bluegreen_switch_nginx_active_file": nginx.active_file,
                "bluegreen_switch_nginx_variable": NGINX_VARIABLE,
            })
        else:
            haproxy = self.routers["haproxy"]
            values.update({
                "bluegreen_switch_haproxy_socket": haproxy.socket,
                "bluegreen_switch_haproxy_backend": haproxy.backend,
                "bluegreen_switch_haproxy_servers": {colour: [name] for colour, name in haproxy.servers.items()},
            })
        values.update(overrides)
        return values

    def describe(self):
        return {
            "workdir": self.workdir,
            "backends": {c: {"url": b.url, "health_url": b.health_url, "pid": b.process.pid} for c, b in self.backends.items()},
            "routers": {name: {"url": router.url, "conf": router.conf} for name, router in self.routers.items()},
            "role_vars": {name: self.role_vars(name) for name in self.routers},
        }

    def close(self):
        for router in list(self.routers.values()):
            router.stop()
        self.routers = {}
        for backend in list(self.backends.values()):
            backend.stop()
        self.backends = {}
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- load ---------------------------------------------------------------------------------------------

class LoadReport(object):
    """What a LoadClient saw. `failed` counts requests with no 2xx answer even after the allowed retry."""

    def __init__(self, keepalive):
        self.keepalive = keepalive
        self.lock = threading.Lock()
        self.requests = 0
        self.statuses = collections.Counter()
        self.colours = collections.Counter()
        self.socket_errors = collections.Counter()  # every socket-level failure seen, by kind
        self.stale_retries = 0  # keep-alive: a reused connection closed under us, retried once on a fresh one
        self.failed = 0
        self.started = time.monotonic()
        self.elapsed = 0.0

    @property
    def non_2xx(self):
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    def as_dict(self):
        return {
            "mode": "keep-alive" if self.keepalive else "connection-close",
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non_2xx": self.non_2xx,
            "socket_errors": sum(self.socket_errors.values()),
            "socket_errors_by_kind": dict(self.socket_errors),
            "stale_keepalive_retries": self.stale_retries,
            "failed": self.failed,
            "colours": dict(self.colours),
            "seconds": round(self.elapsed, 3),
        }


class LoadClient(object):
    """Bounded HTTP GET load against a URL from `concurrency` threads.

    Stops at `max_requests` in total, after `max_seconds`, or on stop(), whichever comes first.
    Keep-alive clients reuse one connection per thread; when the server closes a *reused* connection before
    any byte of the answer (an idle connection closed by an nginx reload), the request is retried once on a
    fresh connection, as RFC 9112 section 9.3.1 allows for idempotent requests and as browsers and urllib3
    do; that socket error is still counted in `socket_errors`, and in `stale_keepalive_retries`.
    `Connection: close` clients never retry.
    """

    def __init__(self, url, keepalive=True, concurrency=4, max_requests=20000, max_seconds=30.0, timeout=5.0, pause=0.0):
        self.host, self.port, self.path = urllib_parse(url)
        self.keepalive = keepalive
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.pause = pause  # seconds each thread waits between two requests (bounds the rate, spares the CPU)
        self.report = LoadReport(keepalive)
        self._stop = threading.Event()
        self._threads = []
        self._budget = max_requests
        self._budget_lock = threading.Lock()

    def _take(self):
        with self._budget_lock:
            if self._budget <= 0:
                return False
            self._budget -= 1
            return True

    def _record(self, status=None, colour=None, error=None, failed=False, stale=False):
        report = self.report
        with report.lock:
            if status is not None:
                report.requests += 1
                report.statuses[status] += 1
                report.colours[colour or "?"] += 1
            if error is not None:
                report.socket_errors[error] += 1
            if stale:
                report.stale_retries += 1
            if failed:
                report.requests += 1
                report.failed += 1

    def _worker(self):
        deadline = self.report.started + self.max_seconds
        conn = None
        used = 0  # requests answered on the current connection
        headers = {} if self.keepalive else {"Connection": "close"}
        while not self._stop.is_set() and time.monotonic() < deadline and self._take():
            if self.pause:
                self._stop.wait(self.pause)
            for attempt in (1, 2):
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                    used = 0
                try:
                    conn.request("GET", self.path, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as error:
                    conn.close()
                    conn = None
                    stale = self.keepalive and used > 0 and attempt == 1 and isinstance(
                        error, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                    self._record(error=type(error).__name__, stale=stale, failed=not stale)
                    if stale:
                        continue
                    break
                used += 1
                self._record(status=response.status, colour=colour_of(body),
                             failed=False)
                if not self.keepalive or response.will_close:
                    conn.close()
                    conn = None
                break
        if conn is not None:
            conn.close()

    def start(self):
        self.report.started = time.monotonic()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._worker, name="load-%d" % index, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self):
        self._stop.set()
        return self.join()

    def join(self):
        for thread in self._threads:
            thread.join(self.max_seconds + self.timeout * 3)
        self.report.elapsed = time.monotonic() - self.report.started
        return self.report


# --- command line -------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    backend = commands.add_parser("backend", help="run one backend (used by Estate)")
    backend.add_argument("--colour", choices=COLOURS, required=True)
    backend.add_argument("--port", type=int, default=0)
    up = commands.add_parser("up", help="start an estate, print it as JSON, run until SIGTERM/SIGINT")
    up.add_argument("--routers", default="nginx,haproxy")
    up.add_argument("--active", choices=COLOURS, default="blue")
    args = parser.parse_args(argv)
    if args.command == "backend":
        return _backend_main(args.colour, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    try:
        estate = Estate(routers=[name for name in args.routers.split(",") if name], active=args.active)
    except (EstateError, ValueError) as error:
        print("error: %s" % error, file=sys.stderr)
        return 1
    with estate:
        print(json.dumps(estate.describe()), flush=True)
        while not stop.wait(1):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
