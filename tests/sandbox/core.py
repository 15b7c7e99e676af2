"""Sandbox core: one aiohttp application hosting every simulated SaaS API on loopback.

Each service lives in its own module (dynatrace.py, jira.py, slack.py, oncall.py, keptn.py) exposing

    PREFIX = "/dynatrace"                   # path prefix the service is mounted under
    def setup(sandbox, app) -> None         # add routes to app.router under PREFIX, sandbox.add_seeder(...)

Handlers receive the aiohttp request; `sandbox = request.app[SANDBOX]` gives the shared state.
The core provides what every service needs: the request log, per-route fault injection, the admin API
under /_sandbox (dump/reset state, faults, request log), outbound delivery (webhooks/callbacks) and
a monotonically increasing id generator.
"""

import asyncio
import fnmatch
import itertools
import json
import time
from collections import deque

from aiohttp import ClientSession, ClientTimeout, web

SANDBOX = web.AppKey("sandbox", object)


class Fault(object):
    """One injected fault: for `times` requests matching method+path glob, answer/act differently."""

    def __init__(self, path, method="*", times=1, status=None, body=None, headers=None, latency=0.0,
                 drop=False, service=None, duration=None):
        self.path = path
        # duration: the fault lasts that many seconds from now (times=-1 with it: every request meanwhile).
        self.expires = time.time() + float(duration) if duration is not None else None
        self.method = method.upper()
        self.remaining = int(times)
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.latency = float(latency)
        self.drop = drop
        self.service = service

    def matches(self, request):
        if self.expires is not None and time.time() > self.expires:
            return False
        return (self.remaining != 0 and (self.method == "*" or self.method == request.method)
                and fnmatch.fnmatchcase(request.path, self.path))

    def describe(self):
        return dict(path=self.path, method=self.method, remaining=self.remaining, status=self.status,
                    latency=self.latency, drop=self.drop,
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

    def reset(self):
        self.state.clear()
        self.faults = []
        self.log.clear()
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
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()


@web.middleware
async def log_and_faults(request, handler):
    sandbox = request.app[SANDBOX]
    entry = dict(time=time.time(), method=request.method, path=request.path, query=dict(request.query),
                 status=None)
    sandbox.log.append(entry)
    fault = next((f for f in sandbox.faults if f.matches(request)), None)
    if fault is not None:
        fault.remaining -= 1
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.drop:
            entry["status"] = "dropped"
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError()
        if fault.status is not None:
            entry["status"] = fault.status
            body = fault.body if fault.body is not None else {"error": "injected fault"}
            return web.json_response(body, status=fault.status, headers=fault.headers)
    response = await handler(request)
    entry["status"] = response.status
    return response


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
        return web.json_response({"ok": True})
    spec = await request.json()
    specs = spec if isinstance(spec, list) else [spec]
    for item in specs:
        sandbox.faults.append(Fault(**item))
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

    async def on_cleanup(app_):
        await sandbox.close()

    app.on_cleanup.append(on_cleanup)
    return app
