"""Sandbox core: one aiohttp application hosting every simulated SaaS API on loopback.

Each service lives in its own module (dynatrace.py, jira.py, slack.py, oncall.py, keptn.py) exposing

    PREFIX = "/dynatrace"                   # path prefix the service is mounted under
    def setup(sandbox, app) -> None         # add routes to app.router under PREFIX, sandbox.add_seeder(...),
                                            # sandbox.add_error_shape(prefix, fn) for the vendor's error body

Handlers receive the aiohttp request; `sandbox = request.app[SANDBOX]` gives the shared state.
The core provides what every service needs: the request log, per-route fault injection, the admin API
under /_sandbox (dump/reset state, faults, request log), outbound delivery (webhooks/callbacks), the
vendor's error shape for unknown paths and failed handlers, and a monotonically increasing id generator.
"""

import asyncio
import fnmatch
import itertools
import json
import logging
import time
from collections import deque

from aiohttp import ClientSession, ClientTimeout, web

SANDBOX = web.AppKey("sandbox", object)
LOGGER = logging.getLogger("sandbox")

# A hanging request is released after the fault's duration, and never later than this.
MAX_HANG_SECONDS = 300.0
REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class FaultSpecError(ValueError):
    """A fault specification the admin API cannot accept (answered 400)."""


def _number(spec, key, default, minimum=0.0):
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise FaultSpecError("%s must be a number >= %s" % (key, minimum))
    return float(value)


def _flag(spec, key):
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise FaultSpecError("%s must be true or false" % key)
    return value


class Fault(object):
    """One injected fault: for `times` requests matching method + path glob, answer or act differently.

    Before the handler (the default): wait `latency` s, then answer `status` (with `body`, `headers`), drop the
    connection (`drop`) or hang (`hang`); with neither, the real handler answers after the latency.
    With `after: true` the real handler runs first (its write is applied), then the fault acts on the answer.
    """

    FIELDS = ("path", "method", "times", "status", "body", "headers", "latency", "drop", "hang", "after",
              "duration", "service")

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise FaultSpecError("a fault is a JSON object")
        unknown = sorted(set(spec) - set(self.FIELDS))
        if unknown:
            raise FaultSpecError("unknown fault field(s): %s" % ", ".join(unknown))
        if not isinstance(spec.get("path"), str) or not spec["path"]:
            raise FaultSpecError("path (a glob) is required")
        self.path = spec["path"]
        self.method = str(spec.get("method") or "*").upper()
        times = spec.get("times", 1)
        if isinstance(times, bool) or not isinstance(times, int) or times < -1:
            raise FaultSpecError("times must be an integer >= -1 (-1: every matching request)")
        self.remaining = times
        status = spec.get("status")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599):
            raise FaultSpecError("status must be an HTTP status code")
        self.status = status
        self.body = spec.get("body")
        self.headers = spec.get("headers") or {}
        if not isinstance(self.headers, dict) or not all(isinstance(v, str) for v in self.headers.values()):
            raise FaultSpecError("headers must map names to strings")
        self.latency = _number(spec, "latency", 0.0)
        self.drop, self.hang, self.after = _flag(spec, "drop"), _flag(spec, "hang"), _flag(spec, "after")
        if sum(1 for action in (self.status is not None, self.drop, self.hang) if action) > 1:
            raise FaultSpecError("status, drop and hang exclude each other")
        if self.after and self.status is None and not self.drop and not self.hang:
            raise FaultSpecError("after needs status, drop or hang: what should happen to the real answer?")
        duration = _number(spec, "duration", None)
        # duration: the fault lasts that many seconds from now (times=-1 with it: every request meanwhile);
        # it also bounds how long a hanging request is held.
        self.duration = duration
        self.expires = time.time() + duration if duration is not None else None
        self.service = spec.get("service")

    def matches(self, request):
        if self.expires is not None and time.time() > self.expires:
            return False
        return (self.remaining != 0 and (self.method == "*" or self.method == request.method)
                and fnmatch.fnmatchcase(request.path, self.path))

    def hang_seconds(self):
        return min(MAX_HANG_SECONDS, self.duration) if self.duration is not None else MAX_HANG_SECONDS

    def describe(self):
        return dict(path=self.path, method=self.method, remaining=self.remaining, status=self.status,
                    latency=self.latency, drop=self.drop, hang=self.hang, after=self.after,
                    seconds_left=None if self.expires is None else max(0.0, round(self.expires - time.time(), 3)))


class Sandbox(object):
    """Shared state of all simulated services plus the machinery around them."""

    def __init__(self, services=None, public_url=None):
        self.services = services or {}
        self.state = {}
        self.faults = []
        self.log = deque(maxlen=100000)
        self.outbound = deque(maxlen=10000)
        self.ids = itertools.count(10000)
        self.public_url = public_url
        self.started = time.time()
        self.error_shapes = []       # (prefix, fn(status, message) -> web.Response), longest prefix first
        self.hanging = set()         # events that release hanging requests (reset, cleared faults, shutdown)
        self._http = None
        self._tasks = set()
        self._seeders = []

    # ids and time -------------------------------------------------------------------------------
    def next_id(self):
        return next(self.ids)

    @staticmethod
    def now_ms():
        return int(time.time() * 1000)

    # registration -------------------------------------------------------------------------------
    def add_seeder(self, seeder):
        """Register fn(sandbox) that (re)creates a service's initial state; called now and on reset."""
        self._seeders.append(seeder)
        seeder(self)

    def add_error_shape(self, prefix, shape):
        """Register fn(status, message) -> web.Response: the vendor's error body for paths under prefix
        (unknown paths, methods a route does not take, a handler that failed)."""
        self.error_shapes.append((prefix.rstrip("/"), shape))
        self.error_shapes.sort(key=lambda item: -len(item[0]))

    def error_shape(self, path):
        for prefix, shape in self.error_shapes:
            if path == prefix or path.startswith(prefix + "/"):
                return shape
        return None

    def release_hanging(self):
        for event in list(self.hanging):
            event.set()

    def reset(self):
        self.state.clear()
        self.faults = []
        self.release_hanging()
        self.log.clear()
        for task in list(self._tasks):  # a delivery still under way belongs to the state being dropped
            task.cancel()
        self.outbound.clear()
        for seeder in self._seeders:
            seeder(self)

    # outbound calls (webhooks, callbacks) --------------------------------------------------------
    def deliver(self, url, payload, headers=None, delay=0.0, raw_body=None):
        """POST payload to url in the background, as the real services do; recorded in self.outbound."""
        task = asyncio.get_running_loop().create_task(self._deliver(url, payload, headers or {}, delay, raw_body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, url, payload, headers, delay, raw_body):
        if delay:
            await asyncio.sleep(delay)
        if self._http is None:
            self._http = ClientSession(timeout=ClientTimeout(total=10))
        record = dict(url=url, time=time.time(), payload=payload, status=None, error=None)
        body = raw_body if raw_body is not None else json.dumps(payload).encode()
        send_headers = {"Content-Type": "application/json"}
        send_headers.update(headers)
        try:
            async with self._http.post(url, data=body, headers=send_headers) as response:
                record["status"] = response.status
                await response.read()
        except Exception as exc:  # noqa: BLE001 - recorded for the test to see
            record["error"] = "%s: %s" % (type(exc).__name__, exc)
        self.outbound.append(record)
        return record

    async def close(self):
        self.release_hanging()
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()


# --- the middleware: request log, faults, vendor error shapes ------------------------------------

def _drop(request, entry, status):
    """Close the connection without an answer (the client sees a reset / disconnect)."""
    entry["status"] = status
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError()


async def _hang(request, entry, sandbox, fault):
    """Hold the request without answering until the client gives up (the handler task is cancelled when the
    connection closes), the bound passes, the faults are cleared, or the sandbox resets or stops; then drop."""
    entry["status"] = "hanging"
    release = asyncio.Event()
    sandbox.hanging.add(release)
    try:
        await asyncio.wait_for(release.wait(), fault.hang_seconds())
    except asyncio.TimeoutError:
        pass
    except asyncio.CancelledError:
        entry["status"] = "hung: client gave up"
        raise
    finally:
        sandbox.hanging.discard(release)
    _drop(request, entry, "hung: released")


async def _act(request, entry, sandbox, fault):
    """Apply a fault's action; returns the fault's answer, or None to let the real answer through."""
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.hang:
        await _hang(request, entry, sandbox, fault)
    if fault.drop:
        _drop(request, entry, "dropped")
    if fault.status is not None:
        entry["status"] = fault.status
        body = fault.body if fault.body is not None else {"error": "injected fault"}
        return web.json_response(body, status=fault.status, headers=fault.headers)
    return None


def _vendor_error(sandbox, request, status, message):
    shape = sandbox.error_shape(request.path)
    if shape is not None:
        return shape(status, message)
    if request.path.startswith("/_sandbox"):
        return web.json_response({"error": message}, status=status)
    return None


async def _handle(request, handler, entry, sandbox):
    """The real answer, with the status recorded whatever happens; unknown paths and failures in the
    vendor's error shape."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        entry["status"] = exc.status
        unrouted = request.match_info.http_exception is not None
        if unrouted:
            if exc.status == 405:
                message = "Method %s is not allowed for %s." % (request.method, request.path)
            else:
                message = "No resource at %s." % request.path
            shaped = _vendor_error(sandbox, request, exc.status, message)
            if shaped is not None:
                if exc.status == 405 and "Allow" in exc.headers:
                    shaped.headers["Allow"] = exc.headers["Allow"]
                return shaped
        raise
    except asyncio.CancelledError:
        if entry["status"] is None:
            entry["status"] = "cancelled"
        raise
    except Exception as exc:  # noqa: BLE001 - a failing handler answers 500 in the vendor's shape
        LOGGER.exception("handler failed: %s %s", request.method, request.path)
        entry["status"], entry["error"] = 500, type(exc).__name__
        shaped = _vendor_error(sandbox, request, 500, "Internal error (%s)." % type(exc).__name__)
        if shaped is None:
            raise
        return shaped
    entry["status"] = response.status
    return response


@web.middleware
async def log_and_faults(request, handler):
    sandbox = request.app[SANDBOX]
    entry = dict(time=time.time(), method=request.method, path=request.path, query=dict(request.query),
                 status=None)
    sandbox.log.append(entry)
    fault = next((f for f in sandbox.faults if f.matches(request)), None)
    if fault is not None:
        fault.remaining -= 1
        if not fault.after:
            answer = await _act(request, entry, sandbox, fault)
            if answer is not None:
                return answer
            return await _handle(request, handler, entry, sandbox)
    if fault is None:
        return await _handle(request, handler, entry, sandbox)
    try:
        response = await _handle(request, handler, entry, sandbox)
    except web.HTTPException as exc:  # the handler refused (e.g. 400): the fault still decides what is seen
        response = exc
    entry["applied_status"] = response.status  # the real handler ran: its write (if any) is applied
    return await _act(request, entry, sandbox, fault)  # after needs status, drop or hang: never None


# --- admin API -----------------------------------------------------------------------------------

async def admin_state(request):
    sandbox = request.app[SANDBOX]
    return web.json_response(sandbox.state, dumps=lambda obj: json.dumps(obj, default=str))


async def admin_reset(request):
    request.app[SANDBOX].reset()
    return web.json_response({"ok": True})


async def admin_faults(request):
    sandbox = request.app[SANDBOX]
    if request.method == "GET":
        return web.json_response([f.describe() for f in sandbox.faults])
    if request.method == "DELETE":
        sandbox.faults = []
        sandbox.release_hanging()
        return web.json_response({"ok": True})
    try:
        spec = await request.json()
        specs = spec if isinstance(spec, list) else [spec]
        faults = [Fault(item) for item in specs]
    except (ValueError, FaultSpecError) as exc:
        return web.json_response({"error": "invalid fault: %s" % exc}, status=400)
    sandbox.faults.extend(faults)
    return web.json_response({"ok": True, "faults": len(sandbox.faults)}, status=201)


async def admin_log(request):
    sandbox = request.app[SANDBOX]
    entries = list(sandbox.log)
    prefix = request.query.get("path")
    if prefix:
        entries = [e for e in entries if fnmatch.fnmatchcase(e["path"], prefix)]
    if request.method == "DELETE":
        sandbox.log.clear()
        return web.json_response({"ok": True})
    return web.json_response(entries)


async def admin_outbound(request):
    return web.json_response(list(request.app[SANDBOX].outbound))


def build_app(service_modules, public_url=None):
    """Create the application with every service module mounted."""
    app = web.Application(middlewares=[log_and_faults], client_max_size=64 * 1024 * 1024)
    sandbox = Sandbox(services={m.PREFIX: m for m in service_modules}, public_url=public_url)
    app[SANDBOX] = sandbox
    app.router.add_get("/_sandbox/state", admin_state)
    app.router.add_post("/_sandbox/reset", admin_reset)
    app.router.add_route("*", "/_sandbox/faults", admin_faults)
    app.router.add_route("*", "/_sandbox/log", admin_log)
    app.router.add_get("/_sandbox/outbound", admin_outbound)
    for module in service_modules:
        module.setup(sandbox, app)

    async def on_shutdown(app_):
        sandbox.release_hanging()  # hanging requests must not hold the shutdown

    async def on_cleanup(app_):
        await sandbox.close()

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app
