# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""selfheal.devops.dynatrace: Dynatrace problems as Event-Driven Ansible events (webhook and polling)."""

import asyncio
import collections
import concurrent.futures
import functools
import hashlib
import json
import logging
import os
import random
import sys
import threading
import time

DOCUMENTATION = r"""
---
short_description: Receive Dynatrace problems by webhook or polling, as normalised events, without losing any.
description:
  - An event source plugin for Event-Driven Ansible that turns Dynatrace problems into one normalised
    event shape, whether they arrive as problem notifications (O(mode=webhook)) or are read from the
    Problems API v2 on an interval (O(mode=poll)).
  - "Delivery: a notification answered C(202) has been handed to ansible-rulebook (put into its queue). When the
    rules engine has no room for it within O(handoff_timeout), the answer is C(503) with C(Retry-After) and nothing
    is recorded, so the sender's retry is delivered, never answered as a duplicate. The source also keeps such a
    notification (the latest per problem, at most O(max_pending) problems, in memory) and hands it over itself as
    soon as there is room, oldest first: a sender that does not retry loses nothing."
  - Each problem state change is emitted once as a transition (C(opened), C(updated), C(closed)); duplicate
    deliveries are dropped, entity order does not matter, and a problem that was closed is never opened again by a
    late or replayed OPEN notification.
  - "State: with O(state_file) the last transition per problem is kept in an SQLite database (created with its
    folder, mode 0700; WAL; one small commit per turn of the intake loop, checkpoints on their own thread; closed problems pruned after
    O(state_retention)). An unwritable state file stops the activation at start with a clear message; a write that
    fails later is answered C(503) and retried, and nothing is lost. A state file in the 0.1 JSON format is migrated."
  - "Reconciliation (O(reconcile)): at start the source reads Dynatrace itself and finishes what a previous run
    left unfinished - an open problem whose incident has no outcome yet (no C(Resolved) or C(Escalated) comment from
    this collection) is emitted C(opened) again, and a problem closed while the activation was down, whose incident
    was started, is emitted C(closed). The playbooks are idempotent on the incident key, so nothing is done twice.
    This holds without a persistent disk (EDA controller activations run in containers)."
  - Changes caused only by this collection's own writes (comments and events carrying its marker) are
    not emitted, so a remediation cannot trigger itself.
  - "Accepted notification shapes: the custom-integration webhook payload (C(PID), C(ProblemID), C(State),
    C(ProblemTitle), C(ProblemSeverity), C(ProblemImpact), C(ProblemURL), C(ImpactedEntities), C(Tags) and
    C(ProblemDetailsJSONv2)), and a Davis problem event as Dynatrace Workflows send it to Event-Driven Ansible
    (C({\"eventData\": {...}}), the shape of Dynatrace's own C(dynatrace.event_driven_ansible.dt_webhook) source:
    C(event.id), C(display_id), C(event.name), C(event.status), C(event.category), C(affected_entity_ids),
    C(host.name), C(entity_tags), C(root_cause_entity_id))."
  - "Event shape: C(problem) {id, display_id, title, status, severity, impact, entities, root_cause,
    tags, management_zones, url, start_time, end_time}, C(transition), C(incident_key) (for example
    C(dt-P-1234)), C(intake) (webhook or poll), C(reconciled) (true when reconciliation emitted it), C(incident_resolved) (on a
    C(closed) event, true when the problem carries this collection's C(Resolved) comment - the problem closed because
    the collection resolved its incident, so no closing run is needed; read from Dynatrace, within 2 seconds, when
    O(url) and O(api_token) or E(DYNATRACE_URL) and E(DYNATRACE_API_TOKEN) are set, else absent), C(meta.hosts) (names of impacted HOST entities, so
    C(run_playbook) targets them; absent when the problem names no host, or with O(meta_hosts=false)) and, with O(include_raw), C(raw)."
options:
  mode:
    description: V(webhook) listens for Dynatrace problem notifications; V(poll) reads the Problems API v2.
    type: str
    choices: [webhook, poll]
    default: webhook
  host:
    description:
      - Webhook mode. Address to listen on. In an EDA controller activation (a container behind a service) use
        V(0.0.0.0).
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
  hmac_timestamp_header:
    description:
      - Webhook mode. Header carrying the time the request was signed (epoch seconds). When set, the signed bytes
        are O(hmac_message_prefix) + timestamp + C(:) + body, a timestamp outside O(replay_window) is refused, and a
        signature that was already accepted is refused (no replay).
    type: str
  hmac_message_prefix:
    description: Webhook mode. Text signed before the timestamp (for example V(v0:)).
    type: str
    default: ""
  replay_window:
    description: Webhook mode. Seconds a signed timestamp stays valid (both directions).
    type: int
    default: 300
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
      - Webhook mode. Notifications waiting for room in the rulebook's queue at once; beyond it the answer is 503
        with C(Retry-After) at once.
      - Also the number of problems whose refused notification the source keeps to hand over itself; beyond it a
        refused notification depends on the sender's retry (logged as a warning).
    type: int
    default: 256
  handoff_timeout:
    description:
      - Webhook mode. Seconds a notification may wait for room in the rulebook's queue (the rules engine is busy)
        before it is answered 503 with C(Retry-After); nothing is recorded then, so the retry is delivered, and
        the source keeps the notification and hands it over itself once there is room (see O(max_pending)).
    type: float
    default: 10
  retry_after:
    description: Webhook mode. Seconds sent in C(Retry-After) with a 503 answer.
    type: int
    default: 5
  max_connections:
    description: Webhook mode. Open connections beyond this are closed at once (slow or idle clients cannot starve deliveries).
    type: int
    default: 512
  idle_timeout:
    description:
      - Webhook mode. Seconds a connection may stay open without a complete request line and headers (covers
        idle keep-alive connections and clients that send their headers slowly).
    type: float
    default: 15
  body_timeout:
    description: Webhook mode. Seconds the body of a request may take to arrive (then 408).
    type: float
    default: 30
  url:
    description:
      - Dynatrace environment URL (C(/api/v2) is appended), for poll mode and for O(reconcile). Falls back to
        E(DYNATRACE_URL).
    type: str
  api_token:
    description:
      - API token with C(problems.read), for poll mode and O(reconcile). Falls back to E(DYNATRACE_API_TOKEN).
    type: str
  interval:
    description: Poll mode. Seconds between polls.
    type: int
    default: 30
  problem_selector:
    description:
      - Problems API C(problemSelector), for example V(managementZones("Production")). Poll mode reads these
        problems. In webhook mode it is the scope of O(reconcile) (set it to what the alerting profile sends);
        without it, reconciliation only looks at problems this collection has already written to or remembers.
    type: str
  entity_selector:
    description: Problems API C(entitySelector) (poll mode and reconciliation).
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
    description: Problems per page (at most 500).
    type: int
    default: 500
  validate_certs:
    description: Verify the Dynatrace certificate (poll mode and reconciliation).
    type: bool
    default: true
  ca_path:
    description: CA bundle to verify the Dynatrace certificate with.
    type: path
  timeout:
    description: Seconds one Dynatrace API request may take.
    type: float
    default: 30
  max_retries:
    description:
      - Retries of a Dynatrace API request on 429, 502, 503, 504 and connection failures (C(Retry-After) honoured,
        in seconds or as an HTTP date; proxies from E(HTTPS_PROXY)/E(NO_PROXY); secrets redacted from every log line).
    type: int
    default: 4
  max_retry_wait:
    description: Seconds all retries of one request may wait in total.
    type: float
    default: 60
  reconcile:
    description:
      - At start, read Dynatrace and finish unfinished incidents (see the description). Needs O(url) and
        O(api_token) (or their environment variables); without them the source says so and does not reconcile.
    type: bool
    default: true
  reconcile_lookback:
    description: How far back reconciliation looks for problems (Dynatrace relative time or milliseconds).
    type: str
    default: now-24h
  state_file:
    description:
      - SQLite database remembering the last transition emitted per problem (and the last poll time). Its folder is
        created (mode 0700). Without it, state lives in memory only (reconciliation still finishes open incidents
        after a restart).
    type: path
  state_retention:
    description: Seconds a closed problem is remembered (a late OPEN of a forgotten problem would open it again).
    type: int
    default: 604800
  meta_hosts:
    description:
      - Put the names of the problem's HOST entities into C(meta.hosts), which ansible-rulebook uses as the C(--limit)
        of C(run_playbook) (and the hosts of C(run_module)). The collection's self-healing rulebooks set V(false), as
        their playbooks choose their targets themselves (only inventory hosts the problem names, never every host
        when it names none) and need C(localhost), which such a limit would exclude (they then stop at once, saying
        so).
    type: bool
    default: true
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
        state_file: /var/lib/eda/selfheal/dynatrace-state.db
        # Reconciliation at start reads DYNATRACE_URL / DYNATRACE_API_TOKEN from the environment.
        problem_selector: managementZones("Production")
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
        state_file: /var/lib/eda/selfheal/dynatrace-poll-state.db
  rules:
    - name: Closed by Dynatrace
      condition: event.transition == "closed" and event.incident_resolved is not defined
      action:
        debug:
"""

LOGGER = logging.getLogger("selfheal.devops.dynatrace")
BACKLOG_PAUSE = 1.0  # seconds between two attempts at a kept notification when the previous one found no room


# ansible-rulebook runs a source from its path (runpy), outside any collection loader: make the ansible_collections
# folder this file is installed under importable, then import the collection's own modules as usual.
_ROOT = os.path.abspath(__file__).rpartition(os.sep + "ansible_collections" + os.sep)[0]
if _ROOT and _ROOT not in sys.path:
    sys.path.append(_ROOT)


from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import _webhook as webhook  # noqa: E402
from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import _state as state  # noqa: E402
from ansible_collections.selfheal.devops.plugins.module_utils import _problem as dt  # noqa: E402

TRANSITIONS = ("opened", "updated", "closed")
# Longest a closed problem's notification waits to learn whether this collection resolved its incident.
RESOLVED_CHECK_TIMEOUT = 2.0


# --- what a problem observation means ------------------------------------------------------------

# The encoders json.dumps(..., sort_keys=True[, default=str]) would build on every call (same output, built once).
_SORTED_JSON = json.JSONEncoder(sort_keys=True)
_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, default=str)
_FINGERPRINT_KEYS = ("status", "title", "severity", "impact", "root_cause", "tags")


def fingerprint(problem, raw=None):
    """What makes two deliveries of one problem 'the same': its normalised content (order-free) plus the
    evidence that did not come from this collection (its own events and comments must not look like news)."""
    content = {k: problem.get(k) for k in _FINGERPRINT_KEYS}
    content["entities"] = sorted(_SORTED_JSON.encode(e) for e in problem.get("entities") or [])
    content["management_zones"] = sorted(problem.get("management_zones") or [])
    content["evidence"] = sorted(dt.foreign_evidence(raw or {}))
    return hashlib.sha256(_FINGERPRINT_JSON.encode(content).encode("utf-8")).hexdigest()


class ProblemTracker(object):
    """Decides the transition a problem observation represents; the store remembers what was handed over."""

    def __init__(self, store):
        self.store = store
        self._saving = {}  # loop -> the waiters of persist() calls for the save that loop has scheduled

    def decide(self, problem, raw=None, reconcile=False):
        """(transition, record, reason): transition None means nothing to emit, and reason says why."""
        pid = problem["id"]
        previous = self.store.get(pid)
        record = {"status": problem["status"], "fingerprint": fingerprint(problem, raw),
                  "display_id": problem.get("display_id"), "seen": time.time()}
        if problem["status"] == "CLOSED":
            if previous is not None and previous["status"] == "CLOSED":
                return None, record, "duplicate"
            return "closed", record, None
        if previous is not None and previous["status"] == "CLOSED":
            return None, record, "stale: the problem was closed; a problem never opens again"
        if previous is None or reconcile:
            return "opened", record, None
        if previous["fingerprint"] != record["fingerprint"]:
            return "updated", record, None
        return None, record, "duplicate"

    def remember(self, pid, record):
        self.store.put(pid, record)

    async def persist(self):
        """True once every change made before the call is saved (at once without a state file), False when the
        save failed (the changes stay pending and are saved with the next one).

        Calls made in one turn of the loop share one save: it runs once they have all asked, in one transaction,
        so a burst of notifications costs one commit, not one per notification."""
        if not self.store.durable:
            return self.store.persist()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        waiting = self._saving.get(loop)
        if waiting is None:
            waiting = self._saving[loop] = []
            loop.call_soon(self._save, loop)
        waiting.append(waiter)
        return await waiter

    def _save(self, loop):
        waiting = self._saving.pop(loop)
        saved = self.store.persist()  # every change made before the persist() calls above is in this save
        for waiter in waiting:
            if not waiter.done():  # its caller may have been cancelled
                waiter.set_result(saved)


def make_event(problem, transition, intake, raw=None, include_raw=False, reconciled=False, meta_hosts=True,
               incident_resolved=False):
    event = {"problem": problem, "transition": transition, "intake": intake,
             "incident_key": dt.incident_key(problem)}
    if reconciled:
        event["reconciled"] = True
    if incident_resolved:
        event["incident_resolved"] = True
    hosts = dt.problem_hosts(problem) if meta_hosts else []
    if hosts:
        event["meta"] = {"hosts": hosts}
    if include_raw and raw is not None:
        event["raw"] = raw
    return event


class _Kept(object):
    """A notification the rulebook had no room for: handed over later by Intake itself."""

    def __init__(self, args, resolved):
        self.args = args  # (problem, raw, intake, reconcile), as given to Intake.observe
        self.resolved = resolved or None  # a Resolved comment once seen stays: not read again on each attempt
        self.failures = 0


class Intake(object):
    """Observation -> decision -> hand-off -> remembered -> saved, one problem at a time (per-problem lock).

    deliver(event) puts the event into the rulebook's queue and says whether it did. Only a delivered transition is
    remembered, so a notification that could not be handed over is not a duplicate when it comes again.

    With backlog > 0 (webhook mode) a notification the rulebook had no room for is also kept (the latest per problem,
    at most `backlog` problems) and handed over by the source itself, in arrival order, as soon as there is room: a
    sender that does not retry its 503 loses nothing. Each attempt goes through observe() again, so an attempt that
    the sender's retry or a newer notification made needless is a duplicate (or stale) and delivers nothing.
    """

    def __init__(self, tracker, deliver, include_raw=False, meta_hosts=True, resolved=None, backlog=0):
        self.tracker = tracker
        self.deliver = deliver
        self.include_raw = include_raw
        self.meta_hosts = meta_hosts
        self.resolved = resolved  # None, or `await resolved(problem, raw)`: True when its incident is resolved
        self.locks = webhook.KeyedLocks()
        self.emitted = 0
        self.backlog_size = backlog
        self.backlog = collections.OrderedDict()  # problem id -> _Kept, oldest first
        self._drainer = None

    async def observe(self, problem, raw, intake, reconcile=None, resolved=None):
        """(HTTP status, answer) for this observation: 202 handled, 503 to be delivered again later.

        reconcile: None for a notification or a poll; "reopen" or "close" when reconciliation hands it over.
        resolved: whether its incident is resolved, when already known (else read for a closing, see self.resolved).
        """
        return await self.locks(problem["id"], lambda: self._observe(problem, raw, intake, reconcile, resolved))

    async def _observe(self, problem, raw, intake, reconcile, resolved):
        pid = problem["id"]
        transition, record, reason = self.tracker.decide(problem, raw, reconcile == "reopen")
        if transition is None:
            if not await self.tracker.persist():  # an earlier change of it may still wait to be saved
                return 503, {"status": "retry", "problem": pid, "error": "the state file could not be written"}
            return 202, {"status": reason.split(":")[0], "problem": pid, "reason": reason}
        # A problem that closes because this collection resolved its incident needs no closing run: say so.
        if resolved is None:
            resolved = transition == "closed" and self.resolved is not None and await self.resolved(problem, raw)
        event = make_event(problem, transition, intake, raw, self.include_raw, reconciled=reconcile is not None,
                           meta_hosts=self.meta_hosts, incident_resolved=resolved)
        if not await self.deliver(event):
            if self._keep(pid, (problem, raw, intake, reconcile), resolved):
                return 503, {"status": "retry", "problem": pid, "kept": True,
                             "error": "the rulebook did not take the event in time; this source hands it over as soon "
                                      "as there is room (a retry is answered as a duplicate then)"}
            return 503, {"status": "retry", "problem": pid,
                         "error": "the rulebook did not take the event in time; deliver it again"}
        self.emitted += 1
        self.tracker.remember(pid, record)
        if not await self.tracker.persist():
            return 503, {"status": "delivered", "problem": pid, "transition": transition,
                         "error": "delivered, but the state file could not be written; a retry is answered once it is"}
        return 202, {"status": "accepted", "problem": pid, "transition": transition}

    def _keep(self, pid, args, resolved):
        """Keep a notification that was not handed over (the latest per problem); False when the backlog is full."""
        if not self.backlog_size:
            return False
        kept = self.backlog.get(pid)
        if kept is not None and kept.args[1] is args[1]:  # the backlog's own attempt found no room either
            kept.failures += 1
            kept.resolved = kept.resolved or resolved or None
            return True
        if kept is None and len(self.backlog) >= self.backlog_size:
            LOGGER.warning("problem %s: the rulebook took nothing within handoff_timeout and %d other notifications "
                           "already wait for room: it depends on the sender's retry", pid, len(self.backlog))
            return False
        if kept is None:
            LOGGER.warning("problem %s: the rulebook took nothing within handoff_timeout (its rules engine is busy); "
                           "kept, and handed over as soon as there is room", pid)
        self.backlog.pop(pid, None)
        self.backlog[pid] = _Kept(args, resolved)
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return True

    async def _drain(self):
        """Hand over what was kept, oldest first, one at a time (the rules engine takes one event at a time)."""
        try:
            while self.backlog:
                pid, kept = next(iter(self.backlog.items()))
                failures = kept.failures
                try:
                    await self.observe(*kept.args, resolved=kept.resolved)
                    again = kept.failures != failures  # no room this time either
                except Exception:  # noqa: BLE001 - one bad entry must not stop the others
                    LOGGER.exception("problem %s: handing over a kept notification failed; dropped", pid)
                    again = False
                if self.backlog.get(pid) is not kept:
                    continue  # a newer notification of the problem replaced it
                if again:
                    await asyncio.sleep(BACKLOG_PAUSE)  # the rulebook may be going away: no busy loop
                else:
                    del self.backlog[pid]
                    LOGGER.info("problem %s: the kept notification is handed over (or was made needless)", pid)
        finally:
            self._drainer = None


# --- webhook intake ------------------------------------------------------------------------------

def webhook_handler(intake):
    async def handle(payload, deliver):
        try:
            problem = dt.normalize_notification(payload)
        except ValueError as exc:
            return 400, {"status": "rejected", "error": str(exc)}
        return await intake.observe(problem, payload, "webhook")

    return handle


# --- the Dynatrace API (poll mode and reconciliation) ---------------------------------------------

class ApiConfig(object):
    """Connection to the Problems API, validated up front."""

    def __init__(self, args, required):
        self.url = str(args.get("url") or os.environ.get("DYNATRACE_URL") or "").rstrip("/")
        self.token = args.get("api_token") or os.environ.get("DYNATRACE_API_TOKEN")
        self.available = bool(self.url and self.token)
        if required and not self.available:
            raise webhook.ConfigError("poll mode needs url and api_token (or DYNATRACE_URL / DYNATRACE_API_TOKEN)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise webhook.ConfigError("url must start with https:// (or http://), got %r" % self.url)
        self.problem_selector = args.get("problem_selector")
        self.entity_selector = args.get("entity_selector")
        self.fields = [str(f) for f in args.get("fields") or []]
        self.page_size = webhook._int(args, "page_size", 500, 1, 500)
        self.validate_certs = bool(args.get("validate_certs", True))
        self.ca_path = args.get("ca_path")
        if self.ca_path and not os.path.isfile(self.ca_path):
            raise webhook.ConfigError("ca_path %s is not a readable file" % self.ca_path)
        self.timeout = webhook._number(args, "timeout", 30, 0.5, 3600)
        self.max_retries = webhook._int(args, "max_retries", 4, 0, 100)
        self.max_retry_wait = webhook._number(args, "max_retry_wait", 60, 0, 86400)


class DynatraceReader(object):
    """The collection's Dynatrace service layer on its one transport, called from a worker thread.

    The transport (retries on 429/5xx with Retry-After in seconds or as an HTTP date, backoff, proxies from the
    environment, TLS settings, redaction of secrets) is synchronous; the source's loop never waits on it.
    """

    def __init__(self, config):
        from ansible_collections.selfheal.devops.plugins.module_utils import _http as http
        from ansible_collections.selfheal.devops.plugins.module_utils import dynatrace as service
        from ansible_collections.selfheal.devops.plugins.module_utils import _errors
        self.errors = _errors
        self.config = config
        self.stopping = threading.Event()
        client = http.Client(config.url + "/api/v2", service="Dynatrace", auth=http.api_token_auth(config.token),
                             timeout=config.timeout, validate_certs=config.validate_certs, ca_path=config.ca_path,
                             retry=http.RetryPolicy(max_attempts=config.max_retries + 1, max_wait=config.max_retry_wait,
                                                    default_retry_after=5),
                             log=LOGGER.warning, sleep=self._sleep)
        self.service = service.DynatraceService(client, config.url)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="selfheal-dynatrace")

    def _sleep(self, seconds):
        if self.stopping.wait(seconds):
            raise self.errors.CommunicationError("stopped while waiting to retry a Dynatrace request")

    async def call(self, method, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(method, *args, **kwargs))

    async def list_problems(self, time_from, fields=(), problem_selector=None):
        config = self.config
        return await self.call(self.service.list_problems, problem_selector=problem_selector or config.problem_selector,
                               entity_selector=config.entity_selector, time_from=time_from, fields=fields,
                               page_size=config.page_size)

    async def get_problem(self, pid, fields=()):
        return await self.call(self.service.get_problem, pid, fields=fields)

    async def comments(self, pid):
        return await self.call(self.service.comments, pid)

    def close(self):
        self.stopping.set()
        self.executor.shutdown(wait=False)


async def own_steps(reader, pid, raw):
    """The steps this collection wrote on the problem as comments (started, resolved, escalated): from the problem's
    recentComments when they are all there, else read from Dynatrace (a notification carries none)."""
    recent = raw.get("recentComments") if isinstance(raw, dict) else None
    if isinstance(recent, dict) and (recent.get("totalCount") or 0) <= len(recent.get("comments") or []):
        return dt.own_comment_steps(recent.get("comments"))
    return dt.own_comment_steps(await reader.comments(pid))


def resolved_check(reader, timeout=RESOLVED_CHECK_TIMEOUT):
    """For Intake: whether a closed problem's incident was resolved by this collection (its Resolved comment is on
    the problem). Read within `timeout` seconds; when it cannot be told, False: the closing rule then runs as usual."""
    async def resolved(problem, raw):
        try:
            return "resolved" in await asyncio.wait_for(own_steps(reader, problem["id"], raw), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - typed transport errors (already redacted), a timeout, anything else
            LOGGER.info("closed problem %s: whether its incident is resolved could not be read (%s)", problem["id"],
                        exc.__class__.__name__ if isinstance(exc, asyncio.TimeoutError) else exc)
            return False

    return resolved


class Reconciler(object):
    """Finishes what a previous run left unfinished, from Dynatrace's own record (see the DOCUMENTATION)."""

    def __init__(self, reader, tracker, lookback, scoped):
        self.reader = reader
        self.tracker = tracker
        self.lookback = lookback
        self.scoped = scoped  # a problem_selector says which problems are ours even without a trace of us

    async def outcome_steps(self, raw):
        return await own_steps(self.reader, raw["problemId"], raw)

    async def run(self, observe):
        """observe(problem, raw, how) hands one problem to the intake (how: reopen or close); returns counts."""
        listed = await self.reader.list_problems(self.lookback, fields=("recentComments",))
        counts = {"opened": 0, "closed": 0, "finished": 0, "skipped": 0}
        for raw in listed:
            try:
                problem = dt.normalize_problem(raw, self.reader.config.url)
            except ValueError as exc:
                LOGGER.warning("reconcile: problem %s skipped: %s", raw.get("problemId"), exc)
                continue
            known = self.tracker.store.get(problem["id"])
            steps = await self.outcome_steps(raw)
            ours = self.scoped or known is not None or "started" in steps
            if not ours:
                counts["skipped"] += 1
                continue
            if problem["status"] == "OPEN":
                if steps & {"resolved", "escalated"}:
                    counts["finished"] += 1  # its incident has an outcome: remember it so a repeat is a duplicate
                    if known is None:
                        transition, record, dummy = self.tracker.decide(problem, raw)
                        self.tracker.remember(problem["id"], record)
                    continue
                status, answer = await observe(problem, raw, "reopen")
            else:
                if known is not None and known["status"] == "CLOSED":
                    continue
                if known is None and "started" not in steps:
                    continue  # closed before anything of ours began: nothing to finish
                status, answer = await observe(problem, raw, "close")  # its incident's records are resolved
            if status == 202 and answer.get("transition") in counts:
                counts[answer["transition"]] += 1
            elif status != 202:
                LOGGER.warning("reconcile: %s for %s: %s", answer.get("status"), problem["id"], answer.get("error"))
        await self.tracker.persist()
        return counts


async def reconcile_with_retries(reconciler, observe, stopping):
    """Reconcile once, retrying (with backoff) while Dynatrace cannot be read; intake goes on meanwhile."""
    delay = 2.0
    while True:
        try:
            counts = await reconciler.run(observe)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - typed transport errors (already redacted) and anything unforeseen
            if stopping.is_set():
                return None
            LOGGER.warning("reconcile: Dynatrace could not be read (%s); trying again in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(300.0, delay * 2)
            continue
        LOGGER.info("reconcile: %(opened)d unfinished incident(s) emitted again, %(closed)d closed while down, "
                    "%(finished)d already finished, %(skipped)d not ours", counts)
        return counts


# --- poll intake ---------------------------------------------------------------------------------

class Poller(object):
    """Reads every page of the Problems API per cycle and emits transitions; never gives up."""

    def __init__(self, reader, intake, tracker, interval, lookback):
        self.reader = reader
        self.intake = intake
        self.tracker = tracker
        self.interval = interval
        self.lookback = lookback
        self.failures = 0

    async def cycle(self):
        started_ms = int(time.time() * 1000)
        last_poll = self.tracker.store.meta.get("last_poll")
        since = str(int(last_poll) - 60000) if last_poll else self.lookback
        listed = await self.reader.list_problems(since, fields=self.reader.config.fields)
        seen = set()
        for raw in listed:
            try:
                problem = dt.normalize_problem(raw, self.reader.config.url)
            except ValueError as exc:
                LOGGER.warning("problem %s skipped: %s", raw.get("problemId") if isinstance(raw, dict) else raw, exc)
                continue
            seen.add(problem["id"])
            await self.intake.observe(problem, raw, "poll")
        # Tracked as open but no longer listed (closed before the window): ask for each one.
        for pid in [p for p in self.tracker.store.open_ids() if p not in seen]:
            try:
                raw = await self.reader.get_problem(pid, fields=self.reader.config.fields)
            except self.reader.errors.NotFound:
                LOGGER.warning("problem %s is gone from Dynatrace; forgetting it", pid)
                self.tracker.store.forget(pid)
                continue
            await self.intake.observe(dt.normalize_problem(raw, self.reader.config.url), raw, "poll")
        self.tracker.store.set_meta("last_poll", started_ms)
        await self.tracker.persist()

    async def run(self):
        while True:
            delay = self.interval
            try:
                await self.cycle()
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except self.reader.errors.SelfHealError as exc:  # already redacted by the transport
                self.failures += 1
                delay = max(self.interval, self._backoff())
                LOGGER.warning("Dynatrace poll failed: %s; next poll in %.1f s", exc, delay)
            await asyncio.sleep(delay)

    def _backoff(self):
        base = min(300.0, self.interval * (2 ** min(self.failures, 8)) / 2.0)
        return base / 2.0 + random.uniform(0, base / 2.0)


# --- entry point ---------------------------------------------------------------------------------

def _open_store(args):
    retention = webhook._int(args, "state_retention", 7 * 86400, 60, 10 * 365 * 86400)
    try:
        return state.ProblemStore(args.get("state_file"), retention=retention)
    except state.StateError as exc:
        raise webhook.ConfigError(str(exc))


async def main(queue, args):
    """Run until cancelled. Bad arguments or an unusable state file raise at once (before anything listens)."""
    mode = args.get("mode", "webhook")
    if mode not in ("webhook", "poll"):
        raise webhook.ConfigError("mode must be webhook or poll, got %r" % mode)
    include_raw = bool(args.get("include_raw", False))
    meta_hosts = bool(args.get("meta_hosts", True))
    api = ApiConfig(args, required=mode == "poll")
    reconcile = bool(args.get("reconcile", True))
    webhook_config = webhook.WebhookConfig(args, default_path="/dynatrace/problems") if mode == "webhook" else None
    if reconcile and not api.available:
        LOGGER.warning("reconcile is on but url/api_token (DYNATRACE_URL/DYNATRACE_API_TOKEN) are not set: incidents "
                       "left unfinished by a previous run are not picked up again")
    store = _open_store(args)
    tracker = ProblemTracker(store)
    reader = DynatraceReader(api) if api.available else None
    tasks = []
    try:
        if mode == "webhook":
            server = webhook.Webhook(webhook_config, queue)
            intake = Intake(tracker, server.handoff.deliver, include_raw, meta_hosts,
                            resolved_check(reader) if reader is not None else None, backlog=webhook_config.max_pending)
            await server.start(webhook_handler(intake), health=lambda: {"kept": len(intake.backlog)})
            if reconcile and reader is not None:
                reconciler = Reconciler(reader, tracker, str(args.get("reconcile_lookback", "now-24h")),
                                        scoped=bool(api.problem_selector))

                async def observe(problem, raw, how):  # on the webhook's loop: same locks as notifications
                    return await server.run(intake.observe(problem, raw, "webhook", how))

                tasks.append(asyncio.get_running_loop().create_task(
                    reconcile_with_retries(reconciler, observe, reader.stopping)))
            try:
                await asyncio.Event().wait()
            finally:
                server.stop()
        else:
            async def put(event):
                await queue.put(event)
                return True

            intake = Intake(tracker, put, include_raw, meta_hosts, resolved_check(reader))
            if reconcile:
                reconciler = Reconciler(reader, tracker, str(args.get("reconcile_lookback", "now-24h")),
                                        scoped=bool(api.problem_selector))
                await reconcile_with_retries(
                    reconciler, lambda problem, raw, how: intake.observe(problem, raw, "poll", how), reader.stopping)
            interval = webhook._int(args, "interval", 30, 1, 86400)
            await Poller(reader, intake, tracker, interval, str(args.get("lookback", "now-2h"))).run()
    finally:
        for task in tasks:
            task.cancel()
        if reader is not None:
            reader.close()
        store.close()


if __name__ == "__main__":
    # Manual run: print events as they arrive, e.g. `python dynatrace.py 8080 TOKEN`.
    class PrintQueue(asyncio.Queue):
        async def put(self, item):
            print(json.dumps(item, indent=2), flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(PrintQueue(), {"port": int(sys.argv[1]) if len(sys.argv) > 1 else 5000,
                                    "token": sys.argv[2] if len(sys.argv) > 2 else None, "reconcile": False}))
