# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Webhook plumbing shared by the selfheal.devops event sources. Private to the collection; not a source.

One place for what every inbound webhook needs: argument validation, bearer-token and HMAC
authentication (constant-time compares), TLS and mutual TLS, body-size and content-type limits, JSON
decoding, and back-pressure (503 + Retry-After when the rulebook's queue is full). A source supplies a
`handle(payload, emit)` coroutine that returns an (HTTP status, JSON body) pair and calls emit(event) for
each event; the HTTP server runs on its own thread and loop (see _ServerThread).
"""

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import ssl
import threading

from aiohttp import web

LOGGER = logging.getLogger("selfheal.devops.webhook")

HMAC_ALGORITHMS = ("sha256", "sha512", "sha1")


class ConfigError(ValueError):
    """Invalid source arguments; raised before anything listens."""


class WebhookConfig(object):
    """Validated webhook arguments (see the DOCUMENTATION of each source for their meaning)."""

    def __init__(self, args, default_path, default_max_body=1024 * 1024):
        self.host = str(args.get("host", "127.0.0.1"))
        self.port = _int(args, "port", 5000, 0, 65535)
        self.path = "/" + str(args.get("path", default_path)).lstrip("/")
        self.token = args.get("token")
        self.token_header = str(args.get("token_header", "Authorization"))
        self.hmac_secret = args.get("hmac_secret")
        self.hmac_header = str(args.get("hmac_header", "X-Selfheal-Signature"))
        self.hmac_algorithm = str(args.get("hmac_algorithm", "sha256")).lower()
        self.hmac_format = str(args.get("hmac_format", "hex")).lower()
        self.hmac_prefix = str(args.get("hmac_prefix", ""))
        self.certfile = args.get("certfile")
        self.keyfile = args.get("keyfile")
        self.cafile = args.get("cafile")
        self.max_body_bytes = _int(args, "max_body_bytes", default_max_body, 1024, 64 * 1024 * 1024)
        self.max_pending = _int(args, "max_pending", 1000, 1, 1000000)
        self.retry_after = _int(args, "retry_after", 5, 1, 3600)
        if self.hmac_algorithm not in HMAC_ALGORITHMS:
            raise ConfigError("hmac_algorithm must be one of %s" % ", ".join(HMAC_ALGORITHMS))
        if self.hmac_format not in ("hex", "base64"):
            raise ConfigError("hmac_format must be hex or base64")
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
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        if self.cafile:
            context.load_verify_locations(self.cafile)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def _int(args, name, default, low, high):
    value = args.get(name, default)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise ConfigError("%s must be an integer, got %r" % (name, value))
    if not low <= value <= high:
        raise ConfigError("%s must be between %d and %d, got %d" % (name, low, high, value))
    return value


def pending(queue):
    """Events waiting in the rulebook's queue (ansible-rulebook hands sources a wrapper around it)."""
    for dummy in range(3):
        if hasattr(queue, "qsize"):
            return queue.qsize()
        queue = getattr(queue, "queue", None)
    return 0


def _error(status, message, headers=None):
    return web.json_response({"status": "rejected", "error": message}, status=status, headers=headers)


def signature(secret, body, algorithm="sha256", fmt="hex"):
    """The HMAC of body with secret, as the sender computes it (hex or base64)."""
    digest = hmac.new(secret.encode("utf-8"), body, getattr(hashlib, algorithm)).digest()
    return digest.hex() if fmt == "hex" else base64.b64encode(digest).decode("ascii")


def authenticate(config, headers, body):
    """None when the request may pass, else the reason it may not (never echoes what was sent)."""
    if config.token:
        sent = headers.get(config.token_header, "")
        expected = config.token
        if config.token_header.lower() == "authorization":
            expected = "Bearer " + config.token
        if not hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8")):
            return "missing or invalid token"
    if config.hmac_secret:
        sent = headers.get(config.hmac_header, "")
        if config.hmac_prefix and sent.startswith(config.hmac_prefix):
            sent = sent[len(config.hmac_prefix):]
        expected = signature(config.hmac_secret, body, config.hmac_algorithm, config.hmac_format)
        if not sent or not hmac.compare_digest(sent.strip().encode("utf-8"), expected.encode("utf-8")):
            return "missing or invalid signature"
    return None


def build_app(config, queue, handle, emit):
    """The aiohttp application: every check runs before `handle(payload, emit)` sees a byte of input."""

    async def receive(request):
        if request.content_length is not None and request.content_length > config.max_body_bytes:
            return _error(413, "body larger than %d bytes" % config.max_body_bytes)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "body larger than %d bytes" % config.max_body_bytes)
        reason = authenticate(config, request.headers, body)
        if reason:
            return _error(401, reason)
        if request.content_type != "application/json":
            return _error(415, "content type must be application/json")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _error(400, "body is not valid JSON")
        if not isinstance(payload, dict):
            return _error(400, "body must be a JSON object")
        if pending(queue) >= config.max_pending:
            return _error(503, "too many pending events", headers={"Retry-After": str(config.retry_after)})
        status, answer = await handle(payload, emit)
        return web.json_response(answer, status=status)

    async def health(request):
        return web.json_response({"status": "ok", "pending": pending(queue)})

    app = web.Application(client_max_size=config.max_body_bytes)
    app.router.add_post(config.path, receive)
    app.router.add_get(config.path.rstrip("/") + "/health", health)
    return app


class _ServerThread(object):
    """The webhook's own event loop in its own thread.

    ansible-rulebook evaluates rules synchronously on the loop that runs the source; serving HTTP from a
    separate loop keeps accept latency low while the rules engine works. Events cross over with
    call_soon_threadsafe, in order.
    """

    def __init__(self, config, queue, handle, emit):
        self.config = config
        self.app = build_app(config, queue, handle, emit)
        self.loop = None
        self.runner = None
        self.port = None
        self.thread = threading.Thread(target=self._run, name="selfheal-webhook", daemon=True)
        self.started = threading.Event()
        self.error = None

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
            self.error = exc
            self.started.set()
            return
        self.started.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.close()

    async def _start(self):
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.host, self.config.port, ssl_context=self.config.ssl_context())
        await site.start()
        self.port = self.runner.addresses[0][1]

    def start(self):
        self.thread.start()
        self.started.wait()
        if self.error is not None:
            raise self.error

    def stop(self):
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


async def serve(config, queue, handle):
    """Serve the webhook until cancelled (the rulebook stops the source by cancelling its task).

    handle(payload, emit) returns (HTTP status, JSON body) and calls emit(event) for each event to queue.
    """
    main_loop = asyncio.get_running_loop()

    def emit(event):
        main_loop.call_soon_threadsafe(queue.put_nowait, event)

    server = _ServerThread(config, queue, handle, emit)
    await main_loop.run_in_executor(None, server.start)
    LOGGER.info("listening on %s://%s:%s%s", "https" if config.certfile else "http", config.host, server.port, config.path)
    try:
        await asyncio.Event().wait()
    finally:
        server.stop()
