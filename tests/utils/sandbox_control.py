"""The sandbox as a process: start tests/sandbox/server.py on a free loopback port, call its admin API, stop it."""

import json
import os
import subprocess
import sys
import urllib.request

from utils.estate import ROOT


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
        [sys.executable, "-m", "sandbox.server", "--port", "0"], cwd=os.path.join(ROOT, "tests"),
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
