# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""selfheal.devops.dynatrace: Dynatrace problems as Event-Driven Ansible events (webhook and polling)."""

import asyncio
import hashlib
import importlib
import json
import logging
import os
import random
import sys
import time

DOCUMENTATION = r"""
---
short_description: Receive Dynatrace problems by webhook or polling, as normalised events.
description:
  - An event source plugin for Event-Driven Ansible that turns Dynatrace problems into one normalised
    event shape, whether they arrive as custom-integration problem notifications (O(mode=webhook)) or are
    read from the Problems API v2 on an interval (O(mode=poll)).
  - Each problem state change is emitted exactly once as a transition (C(opened), C(updated),
    C(closed)); duplicate deliveries are dropped, and with O(state_file) a restart neither re-emits handled
    transitions nor misses what changed while the activation was down (poll mode catches up on start).
  - Changes caused only by this collection's own writes (comments and events carrying its marker) are
    not emitted, so a remediation cannot trigger itself.
  - "Event shape: C(problem) {id, display_id, title, status, severity, impact, entities, root_cause,
    tags, management_zones, url, start_time, end_time}, C(transition), C(incident_key) (for example
    C(dt-P-1234)), C(intake) (webhook or poll), C(meta.hosts) (names of impacted HOST entities, so
    C(run_playbook) targets them) and, with O(include_raw), C(raw)."
options:
  mode:
    description: V(webhook) listens for Dynatrace problem notifications; V(poll) reads the Problems API v2.
    type: str
    choices: [webhook, poll]
    default: webhook
  host:
    description: Webhook mode. Address to listen on.
    type: str
    default: 127.0.0.1
  port:
    description: Webhook mode. Port to listen on (0 picks a free one).
    type: int
    default: 5000
  path:
    description: Webhook mode. URL path that accepts notifications; C(<path>/health) answers GET.
    type: str
    default: /dynatrace/problems
  token:
    description:
      - Webhook mode. Shared secret expected in O(token_header); with the default header the value must be
        C(Bearer <token>). Configure it as a custom header of the Dynatrace custom integration.
    type: str
  token_header:
    description: Webhook mode. Header carrying O(token).
    type: str
    default: Authorization
  hmac_secret:
    description:
      - Webhook mode. Verify an HMAC of the raw body in O(hmac_header) (for a relay that signs requests).
    type: str
  hmac_header:
    description: Webhook mode. Header carrying the signature.
    type: str
    default: X-Selfheal-Signature
  hmac_algorithm:
    description: Webhook mode. HMAC digest.
    type: str
    choices: [sha256, sha512, sha1]
    default: sha256
  hmac_format:
    description: Webhook mode. Signature encoding.
    type: str
    choices: [hex, base64]
    default: hex
  hmac_prefix:
    description: Webhook mode. Prefix before the signature, for example V(sha256=).
    type: str
    default: ""
  certfile:
    description: Webhook mode. PEM certificate (chain) to serve HTTPS with.
    type: path
  keyfile:
    description: Webhook mode. PEM private key of O(certfile).
    type: path
  cafile:
    description: Webhook mode. CA bundle to require and verify client certificates with (mutual TLS).
    type: path
  max_body_bytes:
    description: Webhook mode. Larger requests are answered 413.
    type: int
    default: 1048576
  max_pending:
    description:
      - Events waiting for the rulebook above which the webhook answers 503 with C(Retry-After) instead of
        buffering without bound.
    type: int
    default: 1000
  retry_after:
    description: Webhook mode. Seconds sent in C(Retry-After) with a 503 answer.
    type: int
    default: 5
  url:
    description:
      - Poll mode. Dynatrace environment URL (C(/api/v2) is appended). Falls back to E(DYNATRACE_URL).
    type: str
  api_token:
    description: Poll mode. API token with C(problems.read). Falls back to E(DYNATRACE_API_TOKEN).
    type: str
  interval:
    description: Poll mode. Seconds between polls.
    type: int
    default: 30
  problem_selector:
    description: Poll mode. Problems API C(problemSelector), for example V(managementZones("Production")).
    type: str
  entity_selector:
    description: Poll mode. Problems API C(entitySelector).
    type: str
  fields:
    description: Poll mode. Extra problem fields to request on every page (evidenceDetails, impactAnalysis, recentComments).
    type: list
    elements: str
  lookback:
    description: Poll mode. How far back the first poll looks (Dynatrace relative time or milliseconds).
    type: str
    default: now-2h
  page_size:
    description: Poll mode. Problems per page (at most 500).
    type: int
    default: 500
  validate_certs:
    description: Poll mode. Verify the Dynatrace certificate.
    type: bool
    default: true
  ca_path:
    description: Poll mode. CA bundle to verify the Dynatrace certificate with.
    type: path
  timeout:
    description: Poll mode. Seconds one API request may take.
    type: int
    default: 30
  state_file:
    description:
      - JSON file remembering the last state emitted per problem (and the last poll time), written
        atomically after each change. Without it, state lives in memory only.
    type: path
  include_raw:
    description: Add the payload or API object the event was made from as C(raw).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Self-healing from Dynatrace notifications
  hosts: all
  sources:
    - selfheal.devops.dynatrace:
        mode: webhook
        host: 0.0.0.0
        port: 5000
        token: "{{ DYNATRACE_WEBHOOK_TOKEN }}"
        certfile: /etc/eda/tls/cert.pem
        keyfile: /etc/eda/tls/key.pem
        state_file: /var/lib/eda/dynatrace-state.json
  rules:
    - name: Process crash
      condition: event.transition == "opened" and event.problem.severity == "AVAILABILITY"
      action:
        run_playbook:
          name: selfheal.devops.remediate_process_crash

- name: Self-healing by polling the Problems API
  hosts: all
  sources:
    - selfheal.devops.dynatrace:
        mode: poll
        url: https://abc12345.live.dynatrace.com
        api_token: "{{ DYNATRACE_API_TOKEN }}"
        interval: 30
        problem_selector: managementZones("Production")
        state_file: /var/lib/eda/dynatrace-poll-state.json
  rules:
    - name: Closed by Dynatrace
      condition: event.transition == "closed"
      action:
        debug:
"""

LOGGER = logging.getLogger("selfheal.devops.dynatrace")


def _collection_import(name):
    """Import a module of this collection.

    ansible-rulebook runs sources with runpy.run_path, outside Ansible's collection loader; when the
    collection's `ansible_collections` root is not importable yet, add the root this file lives under.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        parts = os.path.abspath(__file__).split(os.sep)
        if "ansible_collections" not in parts:
            raise
        root = os.sep.join(parts[:len(parts) - 1 - parts[::-1].index("ansible_collections")])
        if root not in sys.path:
            sys.path.append(root)
        return importlib.import_module(name)


webhook = _collection_import("ansible_collections.selfheal.devops.extensions.eda.plugins.event_source._webhook")
dt = _collection_import("ansible_collections.selfheal.devops.plugins.module_utils._problem")

TRANSITIONS = ("opened", "updated", "closed")


# --- state: what was emitted, per problem --------------------------------------------------------

def fingerprint(problem, raw=None):
    """What makes two deliveries of one problem 'the same': its normalised content plus the evidence that
    did not come from this collection (its own events and comments must not look like news)."""
    keys = ("status", "title", "severity", "impact", "entities", "root_cause", "tags", "management_zones")
    content = {k: problem.get(k) for k in keys}
    content["evidence"] = sorted(dt.foreign_evidence(raw or {}))
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class ProblemTracker(object):
    """Decides the transition a problem observation represents, and remembers it (optionally on disk)."""

    def __init__(self, state_file=None):
        self.state_file = state_file
        self.problems = {}
        self.last_poll = None
        if state_file and os.path.exists(state_file):
            try:
                with open(state_file) as handle:
                    saved = json.load(handle)
                self.problems = dict(saved.get("problems", {}))
                self.last_poll = saved.get("last_poll")
            except (OSError, ValueError) as exc:
                LOGGER.warning("state file %s unreadable (%s); starting empty", state_file, exc)

    def observe(self, problem, raw=None):
        """Return the transition to emit for this observation, or None for a duplicate."""
        pid = problem["id"]
        previous = self.problems.get(pid)
        current = fingerprint(problem, raw)
        if problem["status"] == "CLOSED":
            if previous is not None and previous["status"] == "CLOSED":
                return None
            transition = "closed"
        elif previous is None or previous["status"] == "CLOSED":
            transition = "opened"
        elif previous["fingerprint"] != current:
            transition = "updated"
        else:
            return None
        self.problems[pid] = {"status": problem["status"], "fingerprint": current,
                              "display_id": problem.get("display_id"), "seen": int(time.time())}
        return transition

    def open_ids(self):
        return [pid for pid, known in self.problems.items() if known["status"] == "OPEN"]

    def save(self):
        if not self.state_file:
            return
        tmp = "%s.tmp.%d" % (self.state_file, os.getpid())
        with open(tmp, "w") as handle:
            json.dump({"problems": self.problems, "last_poll": self.last_poll}, handle)
        os.replace(tmp, self.state_file)


def make_event(problem, transition, intake, raw=None, include_raw=False):
    event = {"problem": problem, "transition": transition, "intake": intake,
             "incident_key": dt.incident_key(problem)}
    hosts = dt.problem_hosts(problem)
    if hosts:
        event["meta"] = {"hosts": hosts}
    if include_raw and raw is not None:
        event["raw"] = raw
    return event


# --- webhook intake ------------------------------------------------------------------------------

def webhook_handler(tracker, include_raw):
    async def handle(payload, emit):
        try:
            problem = dt.normalize_notification(payload)
        except ValueError as exc:
            return 400, {"status": "rejected", "error": str(exc)}
        transition = tracker.observe(problem, payload)
        if transition is None:
            return 202, {"status": "duplicate", "problem": problem["id"]}
        tracker.save()
        emit(make_event(problem, transition, "webhook", payload, include_raw))
        return 202, {"status": "accepted", "problem": problem["id"], "transition": transition}

    return handle


# --- poll intake ---------------------------------------------------------------------------------

class PollConfig(object):
    def __init__(self, args):
        self.url = (args.get("url") or os.environ.get("DYNATRACE_URL") or "").rstrip("/")
        self.token = args.get("api_token") or os.environ.get("DYNATRACE_API_TOKEN")
        if not self.url or not self.token:
            raise webhook.ConfigError("poll mode needs url and api_token (or DYNATRACE_URL / DYNATRACE_API_TOKEN)")
        self.interval = max(1, int(args.get("interval", 30)))
        self.problem_selector = args.get("problem_selector")
        self.entity_selector = args.get("entity_selector")
        self.fields = list(args.get("fields") or [])
        self.lookback = str(args.get("lookback", "now-2h"))
        self.page_size = int(args.get("page_size", 500))
        if not 1 <= self.page_size <= 500:
            raise webhook.ConfigError("page_size must be between 1 and 500")
        self.validate_certs = bool(args.get("validate_certs", True))
        self.ca_path = args.get("ca_path")
        self.timeout = float(args.get("timeout", 30))


class Poller(object):
    """Reads every page of the Problems API per cycle and emits transitions; never gives up."""

    def __init__(self, config, queue, tracker, include_raw=False):
        self.config = config
        self.queue = queue
        self.tracker = tracker
        self.include_raw = include_raw
        self.list_requests = 0
        self.failures = 0

    def _ssl(self):
        if not self.config.validate_certs:
            return False
        if self.config.ca_path:
            import ssl

            return ssl.create_default_context(cafile=self.config.ca_path)
        return None

    async def _get(self, session, path, params):
        url = self.config.url + "/api/v2" + path
        async with session.get(url, params=params, ssl=self._ssl()) as response:
            body = await response.text()
            if response.status == 429 or response.status >= 500:
                raise _Transient(response.status, response.headers.get("Retry-After"), body[:200])
            if response.status >= 400:
                raise _Failed(response.status, body[:300])
            try:
                return json.loads(body) if body else None
            except ValueError:
                raise _Failed(response.status, "not JSON: %s" % body[:100])

    async def list_problems(self, session, since):
        params = {"from": since, "pageSize": str(self.config.page_size)}
        if self.config.problem_selector:
            params["problemSelector"] = self.config.problem_selector
        if self.config.entity_selector:
            params["entitySelector"] = self.config.entity_selector
        if self.config.fields:
            params["fields"] = ",".join(self.config.fields)
        problems = []
        while True:
            self.list_requests += 1
            page = await self._get(session, "/problems", params)
            problems.extend(page.get("problems") or [])
            key = page.get("nextPageKey")
            if not key:
                return problems
            params = {"nextPageKey": key}  # the API rejects any other parameter with a page key ...
            if self.config.fields:
                params["fields"] = ",".join(self.config.fields)  # ... except fields, which is per page

    async def cycle(self, session):
        started_ms = int(time.time() * 1000)
        since = str(self.tracker.last_poll - 60000) if self.tracker.last_poll else self.config.lookback
        listed = await self.list_problems(session, since)
        seen = set()
        for raw in listed:
            problem = dt.normalize_problem(raw, self.config.url)
            seen.add(problem["id"])
            await self._emit(problem, raw)
        # Tracked as open but no longer listed (closed before the window): ask for each one.
        for pid in [p for p in self.tracker.open_ids() if p not in seen]:
            try:
                raw = await self._get(session, "/problems/%s" % pid, None)
            except _Failed as exc:
                if exc.status == 404:
                    LOGGER.warning("problem %s is gone from Dynatrace; forgetting it", pid)
                    self.tracker.problems.pop(pid, None)
                    continue
                raise
            await self._emit(dt.normalize_problem(raw, self.config.url), raw)
        self.tracker.last_poll = started_ms
        self.tracker.save()

    async def _emit(self, problem, raw):
        transition = self.tracker.observe(problem, raw)
        if transition is not None:
            self.tracker.save()
            await self.queue.put(make_event(problem, transition, "poll", raw, self.include_raw))

    async def run(self):
        import aiohttp

        headers = {"Authorization": "Api-Token " + self.config.token, "Accept": "application/json",
                   "User-Agent": "selfheal.devops event source"}
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            while True:
                delay = self.config.interval
                try:
                    await self.cycle(session)
                    self.failures = 0
                except asyncio.CancelledError:
                    raise
                except _Transient as exc:
                    self.failures += 1
                    delay = exc.wait() or self._backoff()
                    LOGGER.warning("Dynatrace answered HTTP %s; next poll in %.1f s", exc.status, delay)
                except _Failed as exc:
                    self.failures += 1
                    delay = max(self.config.interval, self._backoff())
                    LOGGER.error("Dynatrace poll failed with HTTP %s: %s; retrying in %.1f s",
                                 exc.status, _redact(exc.text, self.config.token), delay)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                    self.failures += 1
                    delay = self._backoff()
                    LOGGER.warning("Dynatrace poll failed (%s: %s); retrying in %.1f s", type(exc).__name__,
                                   _redact(str(exc), self.config.token), delay)
                await asyncio.sleep(delay)

    def _backoff(self):
        base = min(300.0, self.config.interval * (2 ** min(self.failures, 8)) / 2.0)
        return base / 2.0 + random.uniform(0, base / 2.0)


class _Transient(Exception):
    def __init__(self, status, retry_after, text):
        super(_Transient, self).__init__(text)
        self.status = status
        self.retry_after = retry_after

    def wait(self):
        try:
            return max(0.0, float(self.retry_after))
        except (TypeError, ValueError):
            return 5.0 if self.status == 429 else None


class _Failed(Exception):
    def __init__(self, status, text):
        super(_Failed, self).__init__(text)
        self.status = status
        self.text = text


def _redact(text, token):
    return text.replace(token, "********") if token else text


# --- entry point ---------------------------------------------------------------------------------

async def main(queue, args):
    """Run until cancelled. Bad arguments raise at once (an activation must not start half-configured)."""
    mode = args.get("mode", "webhook")
    tracker = ProblemTracker(args.get("state_file"))
    include_raw = bool(args.get("include_raw", False))
    if mode == "webhook":
        config = webhook.WebhookConfig(args, default_path="/dynatrace/problems")
        await webhook.serve(config, queue, webhook_handler(tracker, include_raw))
    elif mode == "poll":
        await Poller(PollConfig(args), queue, tracker, include_raw).run()
    else:
        raise webhook.ConfigError("mode must be webhook or poll, got %r" % mode)


if __name__ == "__main__":
    # Manual run: print events as they arrive, e.g. `python dynatrace.py 8080 TOKEN`.
    class PrintQueue(asyncio.Queue):
        def put_nowait(self, item):
            print(json.dumps(item, indent=2), flush=True)

        async def put(self, item):
            self.put_nowait(item)

        def qsize(self):
            return 0

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(PrintQueue(), {"port": int(sys.argv[1]) if len(sys.argv) > 1 else 5000,
                                    "token": sys.argv[2] if len(sys.argv) > 2 else None}))
