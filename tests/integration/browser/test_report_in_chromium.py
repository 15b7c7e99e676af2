"""The HTML incident report and a post-mortem page rendered by a real headless Chromium (Debian's package), driven
through the DevTools protocol (a small websocket client on aiohttp): the charts (inline SVG) and the tables are there
and not empty, a screenshot of each page is kept under tests/output/, and no network request leaves the page (the
DevTools Network domain sees only the page itself; the page's Content-Security-Policy is default-src 'none')."""

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

aiohttp = pytest.importorskip("aiohttp")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
OUTPUT = os.path.join(ROOT, "tests", "output")
END_EPOCH = 1796083200.0
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-default-apps", "--remote-debugging-port=0", "--window-size=1200,2400"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)")

INSPECT = """(() => {
  const charts = [...document.querySelectorAll('figure.chart')].map(f => ({
    name: f.dataset.chart, shapes: f.querySelectorAll('svg path, svg rect, svg use').length,
    width: f.querySelector('svg') ? f.querySelector('svg').getBoundingClientRect().width : 0}));
  const tables = [...document.querySelectorAll('table')].map(t => t.querySelectorAll('tbody tr').length);
  const urls = [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]
      .filter(a => ['src', 'href', 'xlink:href', 'action', 'poster', 'data'].includes(a.name)).map(a => a.value));
  const csp = document.querySelector('meta[http-equiv="Content-Security-Policy"]');
  return {charts, tables, urls, csp: csp ? csp.content : null, scripts: document.scripts.length,
          title: document.title, text: document.body.innerText.length};
})()"""


class DevTools(object):
    """Just enough of the Chrome DevTools Protocol: commands with ids, events collected."""

    def __init__(self, socket):
        self.socket = socket
        self.next_id = 0
        self.events = []

    async def send(self, method, **params):
        self.next_id += 1
        ident = self.next_id
        await self.socket.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.socket.receive_json(), timeout=30)
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError("%s failed: %s" % (method, message["error"]))
                return message.get("result", {})
            self.events.append(message)

    async def wait_for(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e.get("method") == method]
            if found:
                return found[0]
            message = await asyncio.wait_for(self.socket.receive_json(), timeout=max(0.1, deadline - time.monotonic()))
            self.events.append(message)


async def render(url, screenshot):
    profile = tempfile.mkdtemp(prefix="selfheal-chromium-")
    process = subprocess.Popen([CHROMIUM, "--user-data-dir=" + profile] + FLAGS + ["about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = None
        deadline = time.monotonic() + 60
        while endpoint is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                raise AssertionError("chromium exited with %s" % process.returncode)
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                endpoint = match.group(1)
        assert endpoint, "chromium did not open its DevTools port"
        port = re.search(r":(\d+)/", endpoint).group(1)
        async with aiohttp.ClientSession() as session:
            async with session.get("http://127.0.0.1:%s/json/list" % port) as response:
                targets = await response.json()
            page = [t for t in targets if t.get("type") == "page"][0]
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024) as socket:
                tools = DevTools(socket)
                await tools.send("Network.enable")
                await tools.send("Page.enable")
                await tools.send("Page.navigate", url=url)
                await tools.wait_for("Page.loadEventFired")
                inspected = await tools.send("Runtime.evaluate", expression=INSPECT, returnByValue=True)
                shot = await tools.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                requests_seen = [e["params"]["request"]["url"] for e in tools.events if e.get("method") == "Network.requestWillBeSent"]
                failed = [e["params"] for e in tools.events if e.get("method") == "Network.loadingFailed"]
        import base64

        with open(screenshot, "wb") as handle:
            handle.write(base64.b64decode(shot["data"]))
        return inspected["result"]["value"], requests_seen, failed
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def check_page(url, screenshot, expected_charts):
    page, requests_seen, failed = asyncio.run(render(url, screenshot))
    assert page["csp"].startswith("default-src 'none'") and page["scripts"] == 0
    assert sorted(c["name"] for c in page["charts"]) == sorted(expected_charts)
    assert all(c["shapes"] > 10 and c["width"] > 100 for c in page["charts"]), page["charts"]
    assert page["tables"] and all(rows > 0 for rows in page["tables"]), page["tables"]
    assert all(u.startswith("#") or u.startswith("data:") for u in page["urls"]), page["urls"]
    assert requests_seen == [url] and failed == [], (requests_seen, failed)  # the page itself, nothing else
    assert os.path.getsize(screenshot) > 20000
    return page


def test_report_and_post_mortem_render_with_charts_tables_and_no_network(sandbox, sandbox_env, playbook, tmp_path):
    sandbox.call("POST", "/_sandbox/history/seed", {"count": 120, "days": 30, "seed": 21, "end": END_EPOCH})
    key = [label for label in sorted(sandbox.state()["jira"]["cloud"]["issues"].values(), key=lambda i: int(i["id"]))[7]
           ["fields"]["labels"] if label.startswith("dt-")][0]
    run = playbook([
        {"name": "report", "selfheal.devops.incident_report": {
            "sources": ["jira", "dynatrace", "xmatters"], "start": "2026-11-01", "end": "2026-12-01", "dest": str(tmp_path)}},
        {"name": "postmortem", "selfheal.devops.incident_postmortem": {
            "incident_key": key, "sources": ["jira", "dynatrace", "xmatters"], "dest": str(tmp_path)}},
    ], env=sandbox_env)
    assert run.rc == 0, run.stdout[-3000:]
    os.makedirs(OUTPUT, exist_ok=True)
    report = check_page("file://%s" % (tmp_path / "incident-report.html"), os.path.join(OUTPUT, "incident-report.png"),
                        ["per-day", "times-by-mode", "per-scenario", "per-host", "responders", "recurrences"])
    assert report["title"] == "Incident report" and report["text"] > 2000
    postmortem = check_page("file://%s" % (tmp_path / (key + "-postmortem.html")), os.path.join(OUTPUT, "incident-postmortem.png"),
                            ["stages"])
    assert postmortem["title"].startswith("Post-mortem: ")
    with open(os.path.join(OUTPUT, "incident-report-summary.json"), "w") as handle:
        json.dump({"report": report["charts"], "postmortem": postmortem["charts"]}, handle, indent=2)
