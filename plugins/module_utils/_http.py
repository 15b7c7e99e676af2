# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one HTTP transport of selfheal.devops. Private to the collection; not a public API.

Owns the base URL, authentication, timeouts, TLS verification and CA bundle, proxies (from the
environment, as requests does), JSON/form/multipart bodies, the User-Agent, bounded retries with
exponential backoff, jitter and Retry-After, the mapping of HTTP failures to typed errors, and a count
of the requests it made. Service layers (dynatrace.py, jira.py, ...) build on it; modules never do HTTP.
"""

import email.utils
import json
import os
import random
import ssl
import time

from urllib.parse import urlsplit

try:
    import requests
    import requests.adapters
    import urllib3
    import urllib3.exceptions
except ImportError as exc:  # pragma: no cover - reported by the module through missing_required_lib
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = exc
else:
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None

from ansible_collections.selfheal.devops.plugins.module_utils._errors import (
    AmbiguousWrite,
    AuthError,
    CommunicationError,
    InvalidInput,
    NotFound,
    RateLimited,
    UnexpectedResponse,
    api_error_text,
    excerpt,
    redact,
)

COLLECTION_VERSION = "0.1.0"
USER_AGENT = "selfheal.devops/%s (ansible collection)" % COLLECTION_VERSION

RETRY_STATUSES = frozenset((429, 502, 503, 504))
# 429 and 503 say the request was not processed (rate limit, overload: the vendors' contracts, see
# docs/development.md), so any request may be sent again. 502 and 504 come from a gateway that lost or timed out
# on the upstream, which may have applied the write: only an idempotent request is sent again after them.
AMBIGUOUS_STATUSES = frozenset((502, 504))
IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
# What the TLS layer says when the other end answers in plain HTTP (OpenSSL 1.1 and 3).
_PLAIN_HTTP_SIGNS = ("wrong version number", "wrong_version_number", "record layer failure", "http request",
                     "unknown protocol", "packet length too long", "record_layer_failure")


# --- authentication strategies ------------------------------------------------------------------

class _Auth(object):
    """Adds credentials to the request headers and names the secret values to redact."""

    secrets = ()

    def apply(self, headers):
        return headers


class NoAuth(_Auth):
    """No header; the credential, if any, travels in the body (PagerDuty routing_key)."""

    def __init__(self, *secrets):
        self.secrets = tuple(s for s in secrets if s)


class HeaderAuth(_Auth):
    """A named header, e.g. Keptn's `x-token`, or `Authorization: <scheme> <token>`."""

    def __init__(self, name, value, secret=None):
        self.name = name
        self.value = value
        self.secrets = (secret or value,)

    def apply(self, headers):
        headers[self.name] = self.value
        return headers


def api_token_auth(token):
    """Dynatrace: `Authorization: Api-Token <token>`."""
    return HeaderAuth("Authorization", "Api-Token %s" % token, secret=token)


def bearer_auth(token):
    """Slack bot tokens, Jira Data Center PATs, OAuth access tokens."""
    return HeaderAuth("Authorization", "Bearer %s" % token, secret=token)


def basic_auth(user, password):
    """Jira Cloud (e-mail + API token), xMatters (user or API key + secret)."""
    import base64

    pair = ("%s:%s" % (user, password)).encode("utf-8")
    encoded = base64.b64encode(pair).decode("ascii")
    auth = HeaderAuth("Authorization", "Basic %s" % encoded, secret=encoded)
    auth.secrets = (encoded, password)
    return auth


# --- retry policy -------------------------------------------------------------------------------

class RetryPolicy(object):
    """Bounded, status-driven retries.

    max_attempts counts the first try. max_wait bounds the total time spent sleeping between tries:
    a Retry-After that would go past it ends the retries at once instead of sleeping in vain.
    """

    def __init__(self, max_attempts=5, max_wait=60.0, backoff=0.5, backoff_max=30.0, jitter=True,
                 default_retry_after=None):
        # Kept as given: problems() names a bad value and the client refuses it before any request.
        self.max_attempts = int(max_attempts)
        self.max_wait = float(max_wait)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.jitter = jitter
        # Wait used on a 429 without Retry-After (Dynatrace's SDK uses 5 s); None means backoff.
        self.default_retry_after = default_retry_after

    def problems(self):
        """What is wrong with the policy, in the words of the module options (max_retries, max_retry_wait)."""
        found = []
        if self.max_attempts < 1:
            found.append("max_retries must be 0 or more (got %d)" % (self.max_attempts - 1))
        if not (0 <= self.max_wait < float("inf")):
            found.append("max_retry_wait must be 0 or more seconds (got %s)" % self.max_wait)
        return found

    def backoff_delay(self, attempt):
        """Exponential backoff for the given (1-based) failed attempt, with 'equal jitter'."""
        delay = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        if self.jitter:
            delay = delay / 2.0 + random.uniform(0, delay / 2.0)
        return delay


def parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when unusable."""
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, parsed.timestamp() - current)


# --- writes that may have been applied --------------------------------------------------------------

def write_once(client, send, lookup, what, key, resend=False, settle=0.0, interval=0.5, clock=time.monotonic):
    """Run a write whose answer may be lost so that exactly one record results, whatever the network did.

    send() makes the write (the client never sends a non-idempotent request twice on its own) and returns its
    result; lookup() returns the record the write creates, found by the write's idempotency key (a label, a
    channel name, a marker...), shaped like send()'s result, or None. When send() raises AmbiguousWrite the record
    is looked up, for up to settle seconds when the API's read is eventually consistent (Jira search) or the record
    is created asynchronously (xMatters events). Found: it is returned and the write is not sent again. Not found:
    when resend is true (the read is authoritative, so the write was not applied) the write is sent once more, and
    looked up again if that answer is lost too; otherwise, or then, AmbiguousWrite says that the lookup by key
    found nothing (a re-run looks again before writing).
    """
    tries = 2 if resend else 1
    for attempt in range(1, tries + 1):
        try:
            return send()
        except AmbiguousWrite as error:
            found = _look_up(client, lookup, settle, interval, clock)
            if found is not None:
                client.log("%s: the answer to %s %s was lost (%s); %s %s exists, so it was not sent again"
                           % (client.service, error.method, error.path, error.reason, what, key))
                return found
            if attempt == tries:
                hint = "a re-run looks it up again before writing" if not resend else "it was sent twice without an answer"
                raise error.unresolved(what, key, hint)
            client.log("%s: the answer to %s %s was lost (%s) and no %s %s exists, so it was not applied: sending it "
                       "once more" % (client.service, error.method, error.path, error.reason, what, key))
    return None  # pragma: no cover - the loop always returns or raises


def _look_up(client, lookup, settle, interval, clock):
    deadline = clock() + max(0.0, settle)
    delay = min(0.2, interval)
    while True:
        found = lookup()
        if found is not None or clock() + delay > deadline:
            return found
        client.sleep(delay)
        delay = min(delay * 2, interval)


# --- responses ----------------------------------------------------------------------------------

class Response(object):
    """What a service layer gets back: status, headers and the decoded body."""

    def __init__(self, status, headers, content, url):
        self.status = status
        self.headers = headers
        self.content = content
        self.url = url
        self._json = None
        self._decoded = False

    @property
    def text(self):
        return self.content.decode("utf-8", errors="replace") if self.content else ""

    @property
    def json(self):
        """The decoded JSON body; None for an empty body. Raises UnexpectedResponse on bad JSON."""
        if not self._decoded:
            if not self.content or not self.content.strip():
                self._json = None
            else:
                try:
                    self._json = json.loads(self.text)
                except ValueError:
                    raise UnexpectedResponse(
                        "Expected a JSON body from %s (HTTP %s), got: %s" % (self.url, self.status, excerpt(self.text, 200)),
                        status=self.status, url=self.url)
            self._decoded = True
        return self._json


# --- the client ---------------------------------------------------------------------------------

class Client(object):
    """HTTP client for one API base URL.

    service names the API in error messages ("Dynatrace", "Jira", ...). log is called with one line per
    retry (modules pass module.warn) so that no retry happens silently.
    """

    def __init__(self, base_url, service="API", auth=None, timeout=30, connect_timeout=None,
                 validate_certs=True, ca_path=None, retry=None, log=None, extra_secrets=(),
                 headers=None, sleep=time.sleep):
        if not HAS_REQUESTS:
            raise RuntimeError("requests is required: %s" % REQUESTS_IMPORT_ERROR)
        self.service = service
        self.auth = auth or NoAuth()
        self.secrets = tuple(self.auth.secrets) + tuple(s for s in extra_secrets if s)
        # Every connection option is checked here, before any request, and a bad one named with the service.
        self.base_url = self._checked_url(base_url)
        timeout = self._checked_seconds("timeout", timeout)
        connect = self._checked_seconds("connect timeout", connect_timeout) if connect_timeout else min(10.0, timeout)
        self.timeout = (connect, timeout)
        self.verify = self._checked_ca_path(ca_path) if (validate_certs and ca_path) else bool(validate_certs)
        self.retry = retry or RetryPolicy()
        problems = self.retry.problems()
        if problems:
            raise InvalidInput("%s: %s; nothing was sent" % (service, "; ".join(problems)))
        self.log = log or (lambda message: None)
        self.headers = dict(headers or {})
        self.sleep = sleep
        self.request_count = 0
        self.retry_count = 0
        self.session = requests.Session()  # trust_env: HTTP(S)_PROXY / NO_PROXY are honoured
        if not validate_certs:
            # The user switched verification off on purpose; urllib3's per-request warning adds nothing.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        adapter = requests.adapters.HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=8)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _checked_url(self, base_url):
        text = str(base_url or "").strip()
        parts = urlsplit(text)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            shown = self.redact(text) if text else "empty"
            hint = " (write it with https://, for example https://%s)" % shown if text and "://" not in text else ""
            raise InvalidInput("%s: the URL must start with http:// or https:// and name a host; got %s%s; nothing was sent"
                               % (self.service, shown, hint))
        return text.rstrip("/")

    def _checked_seconds(self, name, value):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = float("nan")
        if not (0 < seconds < float("inf")):
            raise InvalidInput("%s: %s must be a number of seconds greater than 0 (got %s); nothing was sent"
                               % (self.service, name, value))
        return seconds

    def _checked_ca_path(self, ca_path):
        """The CA bundle file (or hashed certificate directory) if it exists and holds certificates."""
        path = os.path.expanduser(str(ca_path))
        if not os.path.exists(path):
            raise InvalidInput("%s: ca_path %s does not exist; nothing was sent" % (self.service, path))
        if not os.access(path, os.R_OK):
            raise InvalidInput("%s: ca_path %s is not readable; nothing was sent" % (self.service, path))
        if os.path.isfile(path):
            try:
                ssl.create_default_context(cafile=path)
            except (ssl.SSLError, ValueError, OSError) as exc:
                raise InvalidInput("%s: ca_path %s holds no usable PEM certificate (%s); nothing was sent"
                                   % (self.service, path, exc))
        return path

    def url(self, path):
        if path.startswith(("http://", "https://")):
            return path
        return "%s/%s" % (self.base_url, path.lstrip("/"))

    def redact(self, text):
        return redact(text, self.secrets)

    # Convenience verbs ----------------------------------------------------------------------------
    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.request("PUT", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def request(self, method, path, params=None, json_body=None, data=None, files=None, headers=None,
                expected=None, idempotent=None):
        """Send one logical request, retrying as the policy allows, and return a Response.

        expected: statuses that count as success (default: any 2xx). idempotent: whether a request that
        may have been applied (502/504 from a gateway, reset connection after sending, read timeout) can be
        sent again; defaults to the HTTP method's semantics; callers with a server-side dedup key (PagerDuty
        dedup_key, Keptn context) pass True. A request that is not idempotent is never sent again after such
        an answer: AmbiguousWrite says so, and the service layer looks the record up by its idempotency key.
        429, 503 and failures before the request left (refused connection, DNS, connect timeout) are retried
        whatever the method.
        """
        method = method.upper()
        url = self.url(path)
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        send_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        send_headers.update(self.headers)
        send_headers.update(headers or {})
        self.auth.apply(send_headers)

        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            self.request_count += 1
            try:
                raw = self.session.request(method, url, params=params, json=json_body, data=data, files=files,
                                           headers=send_headers, timeout=self.timeout, verify=self.verify,
                                           allow_redirects=True)
            except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                    requests.exceptions.InvalidURL) as exc:
                raise InvalidInput("%s request %s %s: the URL is not valid (%s); nothing was sent" % (
                    self.service, method, self._safe_url(url), self.redact(str(exc))), url=self._safe_url(url),
                    secrets=self.secrets)
            except requests.exceptions.RequestException as exc:
                sent = _maybe_processed(exc)
                reason = self._describe_exception(exc)
                delay = self.retry.backoff_delay(attempt)
                if _retryable(exc, idempotent) and self._may_retry(attempt, waited, delay):
                    self._note_retry(method, url, reason, delay, attempt)
                    self.sleep(delay)
                    waited += delay
                    continue
                if sent and not idempotent:
                    raise self._ambiguous(method, url, reason, attempt)
                raise CommunicationError(
                    "%s request %s %s failed after %d attempt(s): %s" % (self.service, method, self._safe_url(url), attempt, reason),
                    url=self._safe_url(url), secrets=self.secrets)

            response = Response(raw.status_code, raw.headers, raw.content, self._safe_url(raw.url))
            if raw.status_code in AMBIGUOUS_STATUSES and not idempotent:
                raise self._ambiguous(method, url, "HTTP %s %s" % (raw.status_code, _detail(response)), attempt,
                                      status=raw.status_code)
            if raw.status_code in RETRY_STATUSES:
                delay = self._retry_delay(raw, attempt)
                if self._may_retry(attempt, waited, delay):
                    self._note_retry(method, url, "HTTP %s" % raw.status_code, delay, attempt)
                    self.sleep(delay)
                    waited += delay
                    continue
            return self._check(method, response, expected, attempt)

    # Internals ------------------------------------------------------------------------------------
    def _ambiguous(self, method, url, reason, attempt, status=None):
        return AmbiguousWrite(
            "%s %s %s: %s after the request was sent; the write may have been applied, so it was not sent again "
            "(attempt %d)" % (self.service, method, self._safe_url(url), reason, attempt),
            method=method, path=self._safe_url(url), reason=reason, attempts=attempt, status=status,
            url=self._safe_url(url), secrets=self.secrets)

    def _retry_delay(self, raw, attempt):
        delay = parse_retry_after(raw.headers.get("Retry-After"))
        if delay is None and raw.status_code == 429 and self.retry.default_retry_after is not None:
            delay = float(self.retry.default_retry_after)
        if delay is None:
            delay = self.retry.backoff_delay(attempt)
        return delay

    def _may_retry(self, attempt, waited, delay):
        return attempt < self.retry.max_attempts and waited + delay <= self.retry.max_wait

    def _note_retry(self, method, url, reason, delay, attempt):
        self.retry_count += 1
        self.log("%s %s %s: %s; retrying in %.1f s (attempt %d of %d)" % (
            self.service, method, self._safe_url(url), reason, delay, attempt + 1, self.retry.max_attempts))

    def _check(self, method, response, expected, attempt):
        ok = response.status in expected if expected else 200 <= response.status < 300
        if ok:
            return response
        detail = self.redact(_detail(response))
        message = "%s %s %s answered HTTP %s: %s" % (self.service, method, response.url, response.status, detail)
        kwargs = dict(status=response.status, url=response.url, secrets=self.secrets)
        if response.status in (401, 403):
            raise AuthError(message + _AUTH_HINTS.get(response.status, ""), **kwargs)
        if response.status == 404:
            raise NotFound(message, **kwargs)
        if response.status == 429:
            raise RateLimited("%s (still rate limited after %d attempt(s))" % (message, attempt), **kwargs)
        raise UnexpectedResponse(message, **kwargs)

    def _safe_url(self, url):
        return self.redact(url)

    def _describe_exception(self, exc):
        if isinstance(exc, requests.exceptions.SSLError):
            if any(sign in str(exc).lower() for sign in _PLAIN_HTTP_SIGNS):
                text = ("TLS handshake failed: the server does not speak TLS on this port (it looks like plain HTTP); "
                        "check the URL's scheme and port, not the certificate settings: %s" % _root_cause(exc))
            else:
                text = "TLS error (check validate_certs / ca_path): %s" % _root_cause(exc)
        elif isinstance(exc, requests.exceptions.ConnectTimeout):
            text = "connect timeout after %.0f s" % self.timeout[0]
        elif isinstance(exc, requests.exceptions.ReadTimeout):
            text = "no response within %.0f s (read timeout)" % self.timeout[1]
        elif isinstance(exc, requests.exceptions.ConnectionError):
            text = "connection error: %s" % _root_cause(exc)
        else:
            text = "%s: %s" % (type(exc).__name__, exc)
        return self.redact(text)


_AUTH_HINTS = {
    401: " (check the token or credentials)",
    403: " (the credentials lack a permission or scope for this call)",
}


def _detail(response):
    """The API's own error text from an error answer, or an excerpt of its body; always short."""
    try:
        detail = api_error_text(response.json)
    except UnexpectedResponse:
        detail = None
    return excerpt(detail or response.text) or "no error text"


def _causes(exc):
    """The chain of causes of a requests/urllib3 exception, outermost first (bounded)."""
    seen = exc
    for dummy in range(8):
        yield seen
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException):
            inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        if inner is None or inner is seen:
            return
        seen = inner


def _root_cause(exc):
    """The innermost reason of a requests/urllib3 exception chain, as short text."""
    root = list(_causes(exc))[-1]
    return "%s: %s" % (type(root).__name__, root)


def _maybe_processed(exc):
    """Whether the failed request may have reached the server and been processed.

    Not when it certainly never left: refused connection, DNS failure, connect timeout, TLS handshake failure
    (nothing is sent before the handshake completes). Otherwise (reset or closed connection after sending, read
    timeout) it may have been.
    """
    if isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ConnectTimeout)):
        return False
    if any(isinstance(cause, urllib3.exceptions.NewConnectionError) for cause in _causes(exc)):
        return False
    return True


def _retryable(exc, idempotent):
    """Whether a failed request may be sent again.

    A request that certainly never reached the server may be repeated whatever its method; one that may have
    been processed only when idempotent. A TLS failure is a configuration problem: retrying cannot help.
    """
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    return bool(idempotent) or not _maybe_processed(exc)
