# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors and secret redaction. Private to the selfheal.devops collection; not a public API.

Only a module's main() turns an error into fail_json (through to_fail_kwargs()); the transport, the
service layers and the event sources raise these and stay reusable.
"""

import re

REDACTED = "********"

# Credentials that can show up in URLs, headers or echoed bodies, whatever the caller registered.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?\s*(?:api-token|bearer|basic|geniekey|token)\s+)[^\s'\",}]+"),
    re.compile(r"(?i)\b((?:api-token|bearer|basic|genie[ -]?key)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)([?&](?:api-token|apikey|api_key|token|access_token)=)[^&\s'\"]+"),
    re.compile(r"(?i)(['\"]?(?:x-token|routing_key|password|client_secret|token)['\"]?\s*[:=]\s*['\"]?)[^\s'\",}&]{6,}"),
    re.compile(r"\b(xox[abposr]-)[A-Za-z0-9-]+"),
    re.compile(r"\b(dt0[cs]01\.)[A-Za-z0-9]+\.[A-Za-z0-9]+"),
)


def redact(text, secrets=()):
    """Return text with every known secret value and every credential-shaped token masked."""
    if text is None:
        return None
    text = str(text)
    for secret in secrets:
        if secret and len(str(secret)) >= 4:
            text = text.replace(str(secret), REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


class SelfHealError(Exception):
    """Base of every error this collection raises on purpose."""

    kind = "error"

    def __init__(self, message, status=None, url=None, details=None, secrets=()):
        self.message = redact(message, secrets)
        self.status = status
        self.url = redact(url, secrets)
        self.details = details
        super(SelfHealError, self).__init__(self.message)

    def to_fail_kwargs(self):
        """Keyword arguments for module.fail_json()."""
        result = {"msg": self.message, "error_kind": self.kind}
        if self.status is not None:
            result["status"] = self.status
        if self.url:
            result["url"] = self.url
        if self.details is not None:
            result["details"] = self.details
        return result

    def __str__(self):
        return self.message


class AuthError(SelfHealError):
    """The credentials were rejected (401) or lack a permission or scope (403)."""

    kind = "auth"


class NotFound(SelfHealError):
    """The object (problem, issue, channel, event...) does not exist or is not visible."""

    kind = "not_found"


class RateLimited(SelfHealError):
    """The API kept answering 429 until the retry budget ran out."""

    kind = "rate_limited"


class UnexpectedResponse(SelfHealError):
    """The API answered with an error status or a body that cannot be used."""

    kind = "unexpected_response"


class CommunicationError(SelfHealError):
    """The API could not be reached: DNS, refused or reset connection, TLS, timeout."""

    kind = "communication"


class InvalidInput(SelfHealError):
    """The request itself is wrong or unsafe; nothing was sent or changed."""

    kind = "invalid_input"


class AmbiguousWrite(CommunicationError):
    """A write that may have been applied: the API answered 502/504, the connection broke after the request was
    sent, or no answer came in time. The transport never sends such a request again on its own; the service layer
    looks the record up by its idempotency key and, when it cannot find it, raises this error again, saying so.

    method, path and attempts say what was attempted; reason why it is ambiguous (HTTP 502, read timeout...).
    A subclass of CommunicationError, so every handler of communication failures still catches it.
    """

    kind = "ambiguous_write"

    def __init__(self, message, method=None, path=None, reason=None, attempts=1, **kwargs):
        super(AmbiguousWrite, self).__init__(message, **kwargs)
        self.method = method
        self.path = redact(path, kwargs.get("secrets", ()))
        self.reason = reason
        self.attempts = attempts

    def to_fail_kwargs(self):
        result = super(AmbiguousWrite, self).to_fail_kwargs()
        result["may_have_been_applied"] = True
        return result

    def unresolved(self, what, key, hint=None):
        """The error to report when the lookup by idempotency key found nothing: same facts, the lookup said."""
        text = "%s; %s may have been applied, but no %s was found by its key %s%s" % (
            self.message, what, what, key, " (%s)" % hint if hint else "")
        return AmbiguousWrite(text, method=self.method, path=self.path, reason=self.reason, attempts=self.attempts,
                              status=self.status, url=self.url, details=self.details)


EXCERPT_LIMIT = 300
_TAGS = re.compile(r"(?is)<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]+>")


def excerpt(text, limit=EXCERPT_LIMIT):
    """An error body made fit for a message: at most `limit` characters, whitespace folded. A longer body has its
    HTML reduced to text first, and the size of the whole body is said (a 100 KB proxy error page never becomes the
    message). Only the first 32 KB are looked at, so the cost is bounded whatever was sent."""
    if text is None:
        return ""
    text = str(text)
    total = len(text)
    text = " ".join(text[:32768].split())
    if len(text) <= limit and total <= 32768:
        return text
    if "<" in text and ">" in text:
        text = _TAGS.sub(" ", text)
        text = text.replace("&nbsp;", " ").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        text = " ".join(text.split())
    return "%s... (cut; the body had %d characters)" % (text[:limit].rstrip(), total)


def api_error_text(body):
    """Extract the API's own error text from a decoded error body of any of the supported services."""
    if isinstance(body, list):
        return "; ".join(filter(None, (api_error_text(item) for item in body)))
    if not isinstance(body, dict):
        return str(body).strip() if body not in (None, "") else ""
    parts = []
    error = body.get("error")
    if isinstance(error, dict):  # Dynatrace envelope
        parts.append(str(error.get("message", "")))
        for violation in error.get("constraintViolations") or []:
            parts.append("%s: %s" % (violation.get("path"), violation.get("message")))
    elif isinstance(error, str):  # Slack ok:false, generic
        parts.append(error)
    parts.extend(str(msg) for msg in body.get("errorMessages") or [])  # Jira
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts.extend("%s: %s" % (key, value) for key, value in sorted(errors.items()))
    elif isinstance(errors, list):  # PagerDuty
        parts.extend(str(item) for item in errors)
    for key in ("message", "reason", "status", "errorMessage"):  # Keptn, xMatters, PagerDuty, Jira Service Management
        value = body.get(key)
        if isinstance(value, str) and value and value not in parts:
            parts.append(value)
    return "; ".join(part for part in parts if part)
