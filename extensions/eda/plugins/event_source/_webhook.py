# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Webhook plumbing shared by the selfheal.devops event sources. Private to the collection; not a source.

One place for what every inbound webhook needs:
  - argument validation (WebhookConfig), bearer-token and HMAC authentication with an optional signed
    timestamp and replay window (constant-time compares), TLS and mutual TLS;
  - a hardened HTTP server: connection cap, idle/header timeout, body timeout, body-size and content-type
    limits, strict JSON decoding (no NaN/Infinity, bounded nesting) or, for a source that passes `decode=form_body`,
    strict form decoding (application/x-www-form-urlencoded: UTF-8, no repeated or malformed field, bounded field
    count), never a traceback for any input;
  - delivery (Handoff): an event answered 202 has been put into ansible-rulebook's queue. ansible-rulebook gives
    a source an asyncio.Queue(1) on its own loop; the server runs on a thread of its own and hands each event
    over with an awaited put on that loop. When there is no room within `handoff_timeout`, nothing was queued
    and the sender gets 503 + Retry-After, so it delivers again later.

A source supplies handle(payload, deliver) -> (status, body[, headers]) where `await deliver(event)` returns True
once the event is in the rulebook's queue and False when it could not be handed over (then the source answers 503).
A body of None is answered with an empty body (Slack wants an empty 200 for a button click). The payload is what
the source's decoder made of the authenticated body: decode(content_type, body, headers), json_body by default.
"""

import asyncio
import base64
import collections
import hashlib
import hmac
import json
import logging
import math
import ssl
import threading
import time
import urllib.parse

from aiohttp import web

LOGGER = logging.getLogger("selfheal.devops.webhook")

HMAC_ALGORITHMS = ("sha256", "sha512", "sha1")
MAX_JSON_DEPTH = 64
MAX_FORM_FIELDS = 100


class ConfigError(ValueError):
    """Invalid source arguments; raised before anything listens."""


class WebhookConfig(object):
    """Validated webhook arguments (see the DOCUMENTATION of each source for their meaning)."""

    def __init__(self, args, default_path, default_max_body=1024 * 1024, default_port=5000):
        self.host = str(args.get("host", "127.0.0.1"))
        self.port = _int(args, "port", default_port, 0, 65535)
        self.path = "/" + str(args.get("path", default_path)).strip("/")
        self.token = _secret(args, "token")
        self.token_header = str(args.get("token_header", "Authorization"))
        self.hmac_secret = _secret(args, "hmac_secret")
        self.hmac_header = str(args.get("hmac_header", "X-Selfheal-Signature"))
        self.hmac_algorithm = str(args.get("hmac_algorithm", "sha256")).lower()
        self.hmac_format = str(args.get("hmac_format", "hex")).lower()
        self.hmac_prefix = str(args.get("hmac_prefix", ""))
        self.hmac_timestamp_header = args.get("hmac_timestamp_header") or None
        self.hmac_message_prefix = str(args.get("hmac_message_prefix", ""))
        self.replay_window = _number(args, "replay_window", 300, 1, 86400)
        self.certfile = args.get("certfile")
        self.keyfile = args.get("keyfile")
        self.cafile = args.get("cafile")
        self.max_body_bytes = _int(args, "max_body_bytes", default_max_body, 1024, 64 * 1024 * 1024)
        self.max_pending = _int(args, "max_pending", 256, 1, 100000)
        self.retry_after = _int(args, "retry_after", 5, 1, 3600)
        self.handoff_timeout = _number(args, "handoff_timeout", 10, 0.1, 3600)
        self.max_connections = _int(args, "max_connections", 512, 1, 100000)
        self.idle_timeout = _number(args, "idle_timeout", 15, 0.5, 3600)
        self.body_timeout = _number(args, "body_timeout", 30, 0.5, 3600)
        if self.hmac_algorithm not in HMAC_ALGORITHMS:
            raise ConfigError("hmac_algorithm must be one of %s" % ", ".join(HMAC_ALGORITHMS))
        if self.hmac_format not in ("hex", "base64"):
            raise ConfigError("hmac_format must be hex or base64")
        if self.hmac_timestamp_header and not self.hmac_secret:
            raise ConfigError("hmac_timestamp_header needs hmac_secret")
        if self.keyfile and not self.certfile:
            raise ConfigError("keyfile needs certfile")
        if self.cafile and not self.certfile:
            raise ConfigError("cafile (client certificate verification) needs certfile (TLS)")
        if not (self.token or self.hmac_secret or self.cafile):
            LOGGER.warning("webhook on %s:%s%s accepts unauthenticated requests: set token, hmac_secret or cafile",
                           self.host, self.port, self.path)

    def ssl_context(self):
        if not self.certfile:
            return None
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.certfile, self.keyfile)
            if self.cafile:
                context.load_verify_locations(self.cafile)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("cannot load the TLS files (certfile %s, keyfile %s, cafile %s): %s"
                              % (self.certfile, self.keyfile, self.cafile, exc))
        return context


def _int(args, name, default, low, high):
    value = args.get(name, default)
    if isinstance(value, bool):
        raise ConfigError("%s must be an integer, got %r" % (name, value))
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise ConfigError("%s must be an integer, got %r" % (name, value))
    if not low <= value <= high:
        raise ConfigError("%s must be between %d and %d, got %d" % (name, low, high, value))
    return value


def _number(args, name, default, low, high):
    value = args.get(name, default)
    if isinstance(value, bool):
        raise ConfigError("%s must be a number, got %r" % (name, value))
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError("%s must be a number, got %r" % (name, value))
    if not low <= value <= high:
        raise ConfigError("%s must be between %s and %s, got %s" % (name, low, high, value))
    return value


def _secret(args, name):
    value = args.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError("%s must be a string" % name)
    return value


# --- input: strict JSON ---------------------------------------------------------------------------

class BadInput(ValueError):
    """A request body the source refuses with 400 (the message says why, never echoes secrets)."""


class UnsupportedMediaType(BadInput):
    """A body of a content type the source does not take (answered 415)."""


def _reject_constant(name):
    raise BadInput("%s is not valid JSON" % name)


def _depth(value, limit):
    """Nesting depth of a decoded JSON value, iteratively (no recursion); BadInput past limit."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise BadInput("JSON nested deeper than %d levels" % limit)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # what json.loads(text, parse_constant=...) builds per call


def decode_json(body, max_depth=MAX_JSON_DEPTH):
    """The JSON object in body (bytes); BadInput for anything else (NaN/Infinity and deep nesting included)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("body is not UTF-8")
    if text.startswith("\ufeff"):  # as json.loads: a byte-order mark is not JSON
        raise BadInput("body is not valid JSON")
    try:
        payload = _DECODER.decode(text)
    except BadInput:
        raise
    except RecursionError:  # the C decoder stops cleanly at the interpreter's recursion limit
        raise BadInput("JSON nested deeper than %d levels" % max_depth)
    except ValueError:
        raise BadInput("body is not valid JSON")
    if not isinstance(payload, dict):
        raise BadInput("body must be a JSON object")
    if body.count(b"{") + body.count(b"[") > max_depth:  # else it cannot nest deeper: no walk (C-speed count)
        _depth(payload, max_depth)
    return payload


def json_body(content_type, body, headers=None):
    """The default decoder: an application/json body holding one JSON object."""
    if content_type != "application/json":
        raise UnsupportedMediaType("content type must be application/json")
    return decode_json(body)


def decode_form(body, max_fields=MAX_FORM_FIELDS):
    """The fields of an application/x-www-form-urlencoded body as {name: value} (str); BadInput for a body that is
    not UTF-8, a malformed pair, a value that is not UTF-8 once percent-decoded, a repeated name or more than
    max_fields fields. Messages never echo the body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("body is not UTF-8")
    if not text:
        return {}
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=True, encoding="utf-8",
                                       errors="strict", max_num_fields=max_fields)
    except UnicodeDecodeError:
        raise BadInput("a form field is not UTF-8 once percent-decoded")
    except ValueError as exc:
        if "max number of fields" in str(exc).lower():
            raise BadInput("more than %d form fields" % max_fields)
        raise BadInput("body is not a valid application/x-www-form-urlencoded form")
    fields = {}
    for name, value in pairs:
        if name in fields:
            raise BadInput("a form field name is repeated")
        fields[name] = value
    return fields


def form_body(content_type, body, headers=None):
    """Decoder for sources that take application/x-www-form-urlencoded bodies (Slack interactivity, slash commands)."""
    if content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("content type must be application/x-www-form-urlencoded")
    return decode_form(body)


# --- authentication -------------------------------------------------------------------------------

def signature(secret, body, algorithm="sha256", fmt="hex"):
    """The HMAC of body with secret, as the sender computes it (hex or base64)."""
    digest = hmac.new(secret.encode("utf-8"), body, getattr(hashlib, algorithm)).digest()
    return digest.hex() if fmt == "hex" else base64.b64encode(digest).decode("ascii")


def _same(sent, expected):
    """Constant-time compare of a header value (any characters) with the expected text."""
    return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


class Authenticator(object):
    """Token, HMAC and signed-timestamp checks; remembers accepted signatures for the replay window."""

    def __init__(self, config, clock=time.time):
        self.config = config
        self.clock = clock
        self._accepted = {}  # signature -> expiry, only with a signed timestamp

    def check(self, headers, body):
        """None when the request may pass, else the reason it may not (never echoes what was sent)."""
        config = self.config
        if config.token:
            sent = headers.get(config.token_header, "")
            expected = config.token
            if config.token_header.lower() == "authorization":
                expected = "Bearer " + config.token
            if not _same(sent, expected):
                return "missing or invalid token"
        if config.hmac_secret:
            sent = headers.get(config.hmac_header, "").strip()
            if config.hmac_prefix:  # the prefix names the scheme (Slack's v0=, PagerDuty's v1=): required when set
                sent = sent[len(config.hmac_prefix):] if sent.startswith(config.hmac_prefix) else ""
            message = body
            if config.hmac_timestamp_header:
                stamp = headers.get(config.hmac_timestamp_header, "").strip()
                reason = self._stale(stamp)
                if reason:
                    return reason
                message = (config.hmac_message_prefix + stamp + ":").encode("utf-8") + body
            expected = signature(config.hmac_secret, message, config.hmac_algorithm, config.hmac_format)
            if not sent or not _same(sent, expected):
                return "missing or invalid signature"
            if config.hmac_timestamp_header and sent in self._accepted:
                return "replayed request (this signature was already accepted)"
        return None

    def _stale(self, stamp):
        try:
            sent_at = float(stamp)
        except ValueError:
            return "missing or invalid signature timestamp"
        if math.isnan(sent_at) or abs(self.clock() - sent_at) > self.config.replay_window:
            return "signature timestamp outside the replay window of %d s" % self.config.replay_window
        return None

    def accepted(self, headers):
        """Remember an accepted signed request, so that the same bytes cannot be replayed within the window."""
        if not (self.config.hmac_secret and self.config.hmac_timestamp_header):
            return
        now = self.clock()
        if len(self._accepted) > 10000:
            self._accepted = {k: v for k, v in self._accepted.items() if v > now}
        sent = headers.get(self.config.hmac_header, "").strip()
        self._accepted[sent[len(self.config.hmac_prefix):] if sent.startswith(self.config.hmac_prefix) else sent] = (
            now + 2 * self.config.replay_window)


# --- delivery into ansible-rulebook's queue -------------------------------------------------------

_PENDING, _PUTTING, _ABANDONED = "pending", "putting", "abandoned"
# While the pump still has HOLD_DEPTH events to put, the rules engine (its loop) is the bottleneck: outcomes are held
# back instead of waking the sender's loop for each one (a wake-up costs the engine's thread a system call and the
# GIL), and the sender's loop takes them every POLL_INTERVAL seconds while it has events on their way.
HOLD_DEPTH = 4
POLL_INTERVAL = 0.005

if hasattr(asyncio, "timeout"):  # Python 3.11+: a deadline on the running task, no extra task per put
    async def _within(seconds, awaitable):
        async with asyncio.timeout(seconds):
            return await awaitable
else:  # pragma: no cover - older Pythons
    def _within(seconds, awaitable):
        return asyncio.wait_for(awaitable, seconds)


def _has_room(queue):
    """True when put() cannot wait: the asyncio.Queue (inside what ansible-rulebook hands a source) is not full."""
    for dummy in range(3):
        full = getattr(queue, "full", None)
        if full is not None:
            return not full()
        queue = getattr(queue, "queue", None)
    return False


class _Ticket(object):
    """One event on its way to the rulebook's queue. Its state changes under the Handoff's lock, from either loop."""
    __slots__ = ("event", "state", "started", "future", "home")

    def __init__(self, event, future):
        self.event = event
        self.state = _PENDING
        self.started = time.monotonic()
        self.future = future  # on the sender's loop: True (in the queue) or False (not, and never will be)
        self.home = future.get_loop()


class Handoff(object):
    """Puts events into the rulebook's queue on its loop, from the webhook's loop, with a clear outcome.

    deliver(event) (on the webhook loop) returns True only when the event is in the queue, False when it is not
    and never will be: the put either completed or was abandoned before it started, never both. The rulebook's
    loop may be busy evaluating rules; a put that has started is bounded by its own timeout on that loop.

    Waking the other loop costs a write to its self-pipe and the GIL changing threads; one wake-up per event
    dominated intake under load. So events cross in batches: deliver() appends to an inbox and wakes the rulebook's
    loop only when no pump runs there; the pump puts the events one after the other (in arrival order, as concurrent
    awaited puts would be served) and reports each outcome through an outbox that wakes the sender's loop only when
    no flush is already due there. While the rules engine is the bottleneck (HOLD_DEPTH events still to put) outcomes
    are not even woken for: the sender's loop polls them every POLL_INTERVAL while it has events on their way, which
    costs an answer at most POLL_INTERVAL and spares the engine's thread a system call per event. The same poll
    gives up on events the rulebook's loop did not start to put within timeout + 1 s (no timer per event).
    """

    def __init__(self, queue, loop, timeout, max_pending):
        self.queue = queue
        self.loop = loop
        self.timeout = timeout
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._inbox = collections.deque()  # tickets waiting for the pump
        self._pumping = False  # a pump runs (or is about to) on the rulebook's loop
        self._outbox = {}  # sender's loop -> [(ticket, outcome)] not yet handed to it
        self._due = set()  # sender's loops with a flush scheduled (woken)
        self._polling = set()  # sender's loops running _poll
        self._watching = {}  # sender's loop -> its tickets in the order they were sent (for the timeout)
        self._pump_task = None
        self.pending = 0
        self.delivered = 0
        self.beat = None
        self._heartbeat = None

    def start_heartbeat(self, interval=0.25):
        """On the rulebook's loop: note when it last ran, so /health can tell that it is stalled (ansible-rulebook
        blocks it for seconds while it starts its rules engine; a hand-off cannot happen meanwhile)."""
        async def beat():
            while True:
                self.beat = time.monotonic()
                await asyncio.sleep(interval)

        self._heartbeat = self.loop.create_task(beat())

    def stop_heartbeat(self):
        if self._heartbeat is not None:
            self._heartbeat.cancel()

    def lag(self):
        """Seconds since the rulebook's loop last ran (None before its first beat, or without a heartbeat)."""
        return None if self.beat is None else round(time.monotonic() - self.beat, 3)

    async def deliver(self, event):
        if self.pending >= self.max_pending:
            return False
        self.pending += 1
        try:
            return await self._deliver(event)
        finally:
            self.pending -= 1

    async def _deliver(self, event):
        loop = asyncio.get_running_loop()
        ticket = _Ticket(event, loop.create_future())
        with self._lock:
            self._inbox.append(ticket)
            wake, self._pumping = not self._pumping, True
        if wake:
            loop.call_soon(self._wake_pump)  # after the other requests of this turn of the loop: one wake-up for all
        self._watching.setdefault(loop, collections.deque()).append(ticket)
        if loop not in self._polling:
            self._polling.add(loop)
            loop.call_later(POLL_INTERVAL, self._poll, loop)
        try:
            done = await ticket.future
        except asyncio.CancelledError:
            self._abandon(ticket)
            raise
        if done:
            self.delivered += 1
        return done

    def _abandon(self, ticket):
        """True when the ticket was still waiting (now it never will be put), False when its put has started."""
        with self._lock:
            if ticket.state == _PENDING:
                ticket.state = _ABANDONED  # the rulebook's loop never started the put: it never will
            return ticket.state == _ABANDONED

    def _wake_pump(self):
        try:
            self.loop.call_soon_threadsafe(self._start_pump)
        except RuntimeError:  # the rulebook's loop is closed: nothing can be handed over any more
            with self._lock:
                self._pumping = False
                left = [ticket for ticket in self._inbox if ticket.state == _PENDING]
                for ticket in left:
                    ticket.state = _ABANDONED
                self._inbox.clear()
            for ticket in left:
                self._report(ticket, False)

    def _expire(self, ticket):
        if self._abandon(ticket) and not ticket.future.done():
            ticket.future.set_result(False)
        # else the put started: its own timeout on the rulebook's loop bounds it, and its outcome is reported

    # --- on the rulebook's loop ---
    def _start_pump(self):
        self._pump_task = self.loop.create_task(self._pump())

    async def _pump(self):
        ticket = None
        try:
            while True:
                with self._lock:
                    if not self._inbox:
                        self._pumping = False
                        return
                    ticket = self._inbox.popleft()
                    if ticket.state == _ABANDONED:
                        continue
                    ticket.state = _PUTTING
                try:
                    if _has_room(self.queue):  # the put completes at once: no deadline to arm
                        await self.queue.put(ticket.event)
                    else:
                        await _within(max(0.05, self.timeout - (time.monotonic() - ticket.started)),
                                      self.queue.put(ticket.event))
                    outcome = True
                except asyncio.TimeoutError:
                    outcome = False
                except Exception as exc:  # noqa: BLE001 - a failing queue (filter): the sender's request fails with it
                    outcome = exc
                self._report(ticket, outcome)
                ticket = None
        except BaseException:  # cancelled: the source is stopping, nothing more is put
            with self._lock:
                left = [t for t in self._inbox if t.state == _PENDING]
                for waiting in left:
                    waiting.state = _ABANDONED
                self._inbox.clear()
                self._pumping = False
            for waiting in left + ([ticket] if ticket is not None else []):
                self._report(waiting, False)
            raise

    def _report(self, ticket, outcome):
        home = ticket.home
        with self._lock:
            self._outbox.setdefault(home, []).append((ticket, outcome))
            if home in self._due:
                return  # a flush is already due on that loop: it takes this one too
            if len(self._inbox) >= HOLD_DEPTH:
                return  # the rules engine is the bottleneck: the sender's poll takes it within POLL_INTERVAL
            self._due.add(home)
        try:
            home.call_soon_threadsafe(self._flush, home)
        except RuntimeError:  # the sender's loop is closed: nobody waits for the outcome any more
            with self._lock:
                self._outbox.pop(home, None)

    # --- on the sender's loop ---
    def _flush(self, home):
        with self._lock:
            self._due.discard(home)
            batch = self._outbox.pop(home, ())
        for ticket, outcome in batch:
            if ticket.future.done():  # its sender gave up (cancelled) meanwhile
                continue
            if isinstance(outcome, BaseException):
                ticket.future.set_exception(outcome)
            else:
                ticket.future.set_result(outcome)

    def _poll(self, home):
        """While events wait for their outcome: take the outcomes held back (at most POLL_INTERVAL old), and give up
        on those the rulebook's loop has not started to put within timeout + 1 s (it is blocked)."""
        self._flush(home)
        watching = self._watching.get(home)
        too_old = time.monotonic() - (self.timeout + 1.0)
        while watching and (watching[0].future.done() or watching[0].started <= too_old):
            ticket = watching.popleft()
            if not ticket.future.done():
                self._expire(ticket)
        if self.pending > 0:
            home.call_later(POLL_INTERVAL, self._poll, home)
        else:
            self._polling.discard(home)
            self._watching.pop(home, None)


class KeyedLocks(object):
    """One asyncio.Lock per key, dropped when nobody holds or waits for it (bounded memory).

    `await locks(key, work)` runs the coroutine function work() while holding the key's lock: two deliveries of the
    same thing are decided one after the other, so the second sees what the first did.
    """

    def __init__(self):
        self._locks = {}

    async def __call__(self, key, work):
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                return await work()
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]


def _unwrap(queue):
    """The asyncio.Queue inside what ansible-rulebook hands a source (a FilteredQueue around it), or None."""
    for dummy in range(3):
        if hasattr(queue, "qsize"):
            return queue
        queue = getattr(queue, "queue", None)
    return None


def pending(queue):
    """Events waiting in the rulebook's queue (ansible-rulebook hands sources a wrapper around it)."""
    inner = _unwrap(queue)
    return inner.qsize() if inner is not None else 0


def engine_waiting(queue):
    """True while the rules engine waits on the queue for the next event (it has started and is idle), False while
    it does not (starting, or busy with an event), None when that cannot be told (an unusual queue)."""
    getters = getattr(_unwrap(queue), "_getters", None)  # asyncio.Queue's waiting get() calls
    if getters is None:
        return None
    return any(not getter.done() for getter in list(getters))


# --- the HTTP server ------------------------------------------------------------------------------

def _answer(status, body, headers=None):
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.json_response(body, status=status, headers=headers)


def _error(status, message, headers=None):
    return _answer(status, {"status": "rejected", "error": message}, headers)


class _GuardedServer(web.Server):
    """aiohttp's low-level server with a connection cap and an idle timer per connection.

    The idle timer runs from the connection's start and from the end of each response until the next request's
    headers are complete: a client that connects and sends nothing, sends its headers slowly, or idles between
    requests is disconnected after idle_timeout. Connections beyond max_connections are closed at once.
    """

    def __init__(self, handler, config, **kwargs):
        super(_GuardedServer, self).__init__(handler, **kwargs)
        self.config = config
        self.timers = {}
        self.refused = 0

    def connection_made(self, handler, transport):
        super(_GuardedServer, self).connection_made(handler, transport)
        if len(self._connections) > self.config.max_connections:
            self.refused += 1
            transport.close()
            return
        self.arm(handler)

    def connection_lost(self, handler, exc=None):
        self.disarm(handler)
        super(_GuardedServer, self).connection_lost(handler, exc)

    def arm(self, handler):
        self.disarm(handler)
        self.timers[handler] = asyncio.get_running_loop().call_later(self.config.idle_timeout, self._expire, handler)

    def disarm(self, handler):
        timer = self.timers.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, handler):
        self.timers.pop(handler, None)
        transport = self._connections.get(handler)
        if transport is not None:
            transport.close()


class WebhookServer(object):
    """Receives, checks and decodes requests, then calls handle(payload, deliver) for the source's answer.

    decode(content_type, body, headers) turns the authenticated body into the payload handed to handle; it raises
    UnsupportedMediaType (415) or BadInput (400). The default takes JSON objects only.
    """

    def __init__(self, config, handle, handoff, queue, authenticator=None, decode=None):
        self.config = config
        self.handle = handle
        self.decode = decode or json_body
        self.handoff = handoff
        self.queue = queue
        self.auth = authenticator or Authenticator(config)
        self.health_path = config.path.rstrip("/") + "/health"
        self.health = None  # a source's own figures for /health: health() -> dict, called on the webhook's loop
        self.server = None
        self.answered = {}

    def make_server(self):
        # aiohttp's own keep-alive timer closes idle connections too; the idle timer also covers slow headers.
        self.server = _GuardedServer(self.dispatch, self.config, keepalive_timeout=self.config.idle_timeout,
                                     access_log=None)
        return self.server

    async def dispatch(self, request):
        self.server.disarm(request.protocol)
        try:
            response = await self._dispatch(request)
        except Exception:  # noqa: BLE001 - the last guard: a bug must not become a traceback per request
            LOGGER.exception("webhook: unexpected error while handling a request")
            response = _error(500, "internal error")
        self.answered[response.status] = self.answered.get(response.status, 0) + 1
        if request.protocol.transport is not None:
            self.server.arm(request.protocol)
        return response

    async def _dispatch(self, request):
        if request.path == self.health_path and request.method in ("GET", "HEAD"):
            figures = {"status": "ok", "pending": pending(self.queue), "in_flight": self.handoff.pending,
                       "engine_lag": self.handoff.lag(), "engine_waiting": engine_waiting(self.queue)}
            return _answer(200, dict(figures, **self.health()) if self.health is not None else figures)
        if request.path != self.config.path:
            return _error(404, "not found")
        if request.method != "POST":
            return _error(405, "method not allowed", headers={"Allow": "POST"})
        if request.content_length is not None and request.content_length > self.config.max_body_bytes:
            return _error(413, "body larger than %d bytes" % self.config.max_body_bytes)
        try:
            if request.content.is_eof():  # the whole body came with the headers: nothing to wait for, no deadline
                body = await self._read(request)
            else:
                body = await _within(self.config.body_timeout, self._read(request))
        except asyncio.TimeoutError:
            return _error(408, "body not received within %g s" % self.config.body_timeout, headers={"Connection": "close"})
        if body is None:
            return _error(413, "body larger than %d bytes" % self.config.max_body_bytes)
        reason = self.auth.check(request.headers, body)
        if reason:
            return _error(401, reason)
        try:
            payload = self.decode(request.content_type, body, request.headers)
        except UnsupportedMediaType as exc:
            return _error(415, str(exc))
        except BadInput as exc:
            return _error(400, str(exc))
        answer = await self.handle(payload, self.handoff.deliver)
        status, body = answer[0], answer[1]
        headers = answer[2] if len(answer) > 2 else None
        if status == 503:
            headers = dict(headers or {}, **{"Retry-After": str(self.config.retry_after)})
        elif status < 300:
            self.auth.accepted(request.headers)
        return _answer(status, body, headers)

    async def _read(self, request):
        chunks, size = [], 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.config.max_body_bytes:
                return None
            chunks.append(chunk)


class Webhook(object):
    """The webhook server on its own event loop in its own thread.

    ansible-rulebook evaluates rules synchronously on the loop that runs the source; serving HTTP from a separate
    loop keeps accepting, authenticating and decoding off that loop. Events cross over through self.handoff.
    Create it on the source's loop (inside main()), then start(handle[, decode]); run(coro) runs a coroutine on the
    server's loop (so other intake shares the handler's per-key locks); stop() ends it.
    """

    def __init__(self, config, queue):
        self.config = config
        self.queue = queue
        self.handoff = Handoff(queue, asyncio.get_running_loop(), config.handoff_timeout, config.max_pending)
        self.ssl = config.ssl_context()  # bad TLS files fail here, before anything listens
        self.server = None
        self.loop = None
        self.runner = None
        self.port = None
        self.thread = None
        self.started = threading.Event()
        self.error = None

    async def start(self, handle, decode=None, health=None):
        self.handoff.start_heartbeat()
        self.server = WebhookServer(self.config, handle, self.handoff, self.queue, decode=decode)
        self.server.health = health
        self.thread = threading.Thread(target=self._run, name="selfheal-webhook", daemon=True)
        self.thread.start()
        await asyncio.get_running_loop().run_in_executor(None, self.started.wait)
        if self.error is not None:
            raise self.error
        LOGGER.info("listening on %s://%s:%s%s", "https" if self.config.certfile else "http", self.config.host, self.port,
                    self.config.path)

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._listen())
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
            self.error = exc
            self.started.set()
            return
        self.started.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.runner.cleanup())
            leftover = asyncio.all_tasks(self.loop)  # a source's own work on this loop (its kept notifications)
            for task in leftover:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            self.loop.close()

    async def _listen(self):
        self.runner = web.ServerRunner(self.server.make_server(), handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.host, self.config.port, ssl_context=self.ssl,
                           backlog=min(self.config.max_connections, 1024))
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise ConfigError("cannot listen on %s:%s: %s" % (self.config.host, self.config.port, exc.strerror or exc))
        self.port = self.runner.addresses[0][1]

    async def run(self, coro):
        """Run coro on the webhook's loop and return its result."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self):
        self.handoff.stop_heartbeat()
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


async def serve(config, queue, handle, decode=None):
    """Serve the webhook until cancelled (the rulebook stops the source by cancelling its task).

    handle(payload, deliver) returns (HTTP status, JSON body or None[, headers]); `await deliver(event)` puts one
    event into the rulebook's queue and says whether it did. decode: see WebhookServer (JSON objects by default).
    """
    server = Webhook(config, queue)
    await server.start(handle, decode)
    try:
        await asyncio.Event().wait()
    finally:
        server.stop()
