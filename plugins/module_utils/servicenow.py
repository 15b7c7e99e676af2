# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ServiceNow Table API and Attachment API service layer. Private to the selfheal.devops collection.

What it relies on (and what tests/integration/sandbox/test_servicenow_contract.py pins in the sandbox):
- `GET /api/now/table/{table}` with `sysparm_query` (encoded query: `field=value`, `^` for AND, `^OR`, `LIKE`,
  `IN`, `ORDERBY`/`ORDERBYDESC`; a `^` inside a value is written `^^`), `sysparm_fields`,
  `sysparm_display_value=all` (every field as `{"value", "display_value"}`, journal fields `work_notes` and
  `comments` with their entries in `display_value`), `sysparm_exclude_reference_link`, `sysparm_limit` and
  `sysparm_offset`, with `Link: <...>;rel="next"` and `X-Total-Count` on the answer. Answers are `{"result": ...}`.
- `POST` (201) and `PATCH` (200) `/api/now/table/incident[/{sys_id}]`; writing `work_notes` / `comments` adds a
  journal entry.
- `GET /api/now/attachment?sysparm_query=table_name=...^table_sys_id=...` (metadata with `file_name`,
  `size_bytes`, `hash`) and `POST /api/now/attachment/file?table_name=&table_sys_id=&file_name=` with the raw bytes
  and the file's Content-Type (201).
- Errors: `{"error": {"message", "detail"}, "status": "failure"}` with 400/401/403/404, 429 with Retry-After
  (retried by the transport), mapped here to the typed errors with message and detail in the text.
- Auth: Basic, a Bearer OAuth token, or a token from `POST /oauth_token.do` (client credentials or password
  grant; msgraph.OAuth2TokenAuth), fetched again once when the instance answers 401.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

from ansible_collections.selfheal.devops.plugins.module_utils import _http, _options
from ansible_collections.selfheal.devops.plugins.module_utils._errors import (
    AuthError,
    InvalidInput,
    NotFound,
    RateLimited,
    UnexpectedResponse,
    excerpt,
)
from ansible_collections.selfheal.devops.plugins.module_utils.msgraph import OAuth2TokenAuth

ANY_STATUS = tuple(range(100, 600))
PAGE_SIZE = 100
MAX_PAGES = 100
SYS_ID = re.compile(r"^[0-9a-f]{32}$")
MARKER_PATTERN = re.compile(r"\[selfheal:([A-Za-z0-9._-]+)\]")
DEFAULT_CORRELATION_DISPLAY = "selfheal.devops"
JOURNAL_FIELDS = ("work_notes", "comments")

# incident.state choices of the base system.
STATE_NEW, STATE_IN_PROGRESS, STATE_ON_HOLD, STATE_RESOLVED, STATE_CLOSED, STATE_CANCELED = "1", "2", "3", "6", "7", "8"
STATE_NAMES = {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"}
DONE_STATES = (STATE_RESOLVED, STATE_CLOSED, STATE_CANCELED)

# Dynatrace severityLevel -> incident urgency / impact (1 high, 2 medium, 3 low). With the base system's priority
# lookup (urgency + impact) this gives AVAILABILITY P1 Critical, ERROR P2 High, PERFORMANCE P3 Moderate,
# RESOURCE_CONTENTION and MONITORING_UNAVAILABLE P4 Low, CUSTOM_ALERT and INFO P5 Planning.
SEVERITY_MAP = {
    "AVAILABILITY": {"urgency": 1, "impact": 1},
    "ERROR": {"urgency": 1, "impact": 2},
    "PERFORMANCE": {"urgency": 2, "impact": 2},
    "RESOURCE_CONTENTION": {"urgency": 2, "impact": 3},
    "MONITORING_UNAVAILABLE": {"urgency": 3, "impact": 2},
    "CUSTOM_ALERT": {"urgency": 3, "impact": 3},
    "INFO": {"urgency": 3, "impact": 3},
}

INCIDENT_FIELDS = ("sys_id", "number", "state", "short_description", "description", "urgency", "impact", "priority",
                   "assignment_group", "cmdb_ci", "correlation_id", "correlation_display", "close_code",
                   "close_notes", "work_notes", "comments", "sys_created_on", "sys_updated_on")


# --- connection ----------------------------------------------------------------------------------------------

def client_from_params(params, log=None):
    """The ServiceNow service for a module's validated parameters (token, OAuth client, or Basic)."""
    base = params["url"].rstrip("/")
    kwargs = dict(retry=_options.retry_policy(params), **_options.client_kwargs(params, log))
    auth = None
    if params.get("token"):
        auth = _http.bearer_auth(params["token"])
    elif params.get("client_id") or params.get("client_secret"):
        if not (params.get("client_id") and params.get("client_secret")):
            raise InvalidInput("ServiceNow: client_id and client_secret go together (OAuth)")
        form = {"client_id": params["client_id"], "client_secret": params["client_secret"]}
        if params.get("user") and params.get("password"):
            form.update(grant_type="password", username=params["user"], password=params["password"])
        else:
            form.update(grant_type="client_credentials")
        token_client = _http.Client(base, service="ServiceNow OAuth", **kwargs)
        auth = OAuth2TokenAuth(token_client, "/oauth_token.do", form, "ServiceNow OAuth",
                               hint="check client_id and client_secret, and user and password for the password grant")
    elif params.get("user") and params.get("password"):
        auth = _http.basic_auth(params["user"], params["password"])
    else:
        raise InvalidInput("ServiceNow: no credentials; set user and password, token, or client_id and client_secret")
    client = _http.Client(base, service="ServiceNow", auth=auth, **kwargs)
    if isinstance(auth, OAuth2TokenAuth):
        auth.register(client)
    return ServiceNowService(client, auth)


# --- pure helpers --------------------------------------------------------------------------------------------

def q(value):
    """A value for an encoded query: a '^' inside it is written '^^'."""
    return str(value).replace("^", "^^")


def next_link(header):
    """The rel="next" URL of a Link header, or None."""
    for part in (header or "").split(","):
        match = re.match(r'\s*<([^>]*)>\s*;(.*)$', part)
        if match and re.search(r'rel="?next"?', match.group(2)):
            return match.group(1)
    return None


def value(record, field):
    """The raw value of a field of a record read with sysparm_display_value=all (or plain)."""
    item = (record or {}).get(field)
    if isinstance(item, dict):
        return item.get("value")
    return item


def display(record, field):
    item = (record or {}).get(field)
    if isinstance(item, dict):
        return item.get("display_value")
    return item


def marker(text, marker_id=None):
    """The id a note is marked with: the caller's id, else a hash of the text."""
    if marker_id:
        if not re.match(r"^[A-Za-z0-9._-]+$", marker_id):
            raise InvalidInput("note ids may contain letters, digits, '.', '_' and '-' only (got %r)" % marker_id)
        return marker_id
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()[:12]


def marked(text, marker_id):
    return "%s\n\n[selfheal:%s]" % (text.rstrip(), marker_id)


def markers_in(journal_text):
    return set(MARKER_PATTERN.findall(journal_text or ""))


def urgency_impact(severity=None, severity_map=None, urgency=None, impact=None):
    """(urgency, impact) as strings from the Dynatrace severity (mapping overridable), explicit values first."""
    mapping = dict(SEVERITY_MAP)
    for name, entry in (severity_map or {}).items():
        if not isinstance(entry, dict) or not set(entry) <= {"urgency", "impact"}:
            raise InvalidInput("severity_map: %s must map to {urgency: 1-3, impact: 1-3}" % name)
        mapping[str(name).upper()] = dict(mapping.get(str(name).upper(), {}), **entry)
    found = {}
    if severity:
        found = mapping.get(str(severity).upper())
        if found is None:
            raise InvalidInput("severity %s is not in the severity map (%s)" % (severity, ", ".join(sorted(mapping))))
    chosen = (urgency if urgency is not None else found.get("urgency"), impact if impact is not None else found.get("impact"))
    for name, level in zip(("urgency", "impact"), chosen):
        if level is not None and str(level) not in ("1", "2", "3"):
            raise InvalidInput("%s must be 1, 2 or 3 (got %s)" % (name, level))
    return tuple(str(level) if level is not None else None for level in chosen)


def summary(record, base_url):
    """The compact view of an incident the module returns (values and display values)."""
    if not record:
        return None
    sys_id = value(record, "sys_id")
    return {
        "sys_id": sys_id, "number": value(record, "number"),
        "url": "%s/nav_to.do?uri=incident.do?sys_id=%s" % (base_url, sys_id) if sys_id else None,
        "state": value(record, "state"), "state_name": display(record, "state") or STATE_NAMES.get(value(record, "state")),
        "short_description": value(record, "short_description"),
        "urgency": value(record, "urgency"), "impact": value(record, "impact"), "priority": value(record, "priority"),
        "priority_name": display(record, "priority"),
        "assignment_group": value(record, "assignment_group") or None,
        "assignment_group_name": display(record, "assignment_group") or None,
        "cmdb_ci": value(record, "cmdb_ci") or None, "cmdb_ci_name": display(record, "cmdb_ci") or None,
        "correlation_id": value(record, "correlation_id"), "correlation_display": value(record, "correlation_display"),
        "close_code": value(record, "close_code") or None, "close_notes": value(record, "close_notes") or None,
    }


# --- the service ---------------------------------------------------------------------------------------------

class ServiceNowService(object):
    """Table API records (incident, sys_user_group, cmdb_ci) and the Attachment API of one instance."""

    def __init__(self, client, auth=None):
        self.client = client
        self.auth = auth

    @property
    def base_url(self):
        return self.client.base_url

    def call(self, method, path, params=None, json_body=None, data=None, headers=None, idempotent=None):
        """One request; the ServiceNow error body mapped to a typed error; one new OAuth token on a 401."""
        for attempt in (1, 2):
            response = self.client.request(method, path, params=params, json_body=json_body, data=data, headers=headers,
                                           expected=ANY_STATUS, idempotent=idempotent)
            if response.status == 401 and attempt == 1 and isinstance(self.auth, OAuth2TokenAuth):
                self.auth.invalidate()
                continue
            return self.check(method, response)
        return None  # pragma: no cover - the loop always returns or raises

    def check(self, method, response):
        if 200 <= response.status < 300:
            return response
        detail = error_text(response)
        text = "ServiceNow %s %s answered HTTP %s: %s" % (method, response.url, response.status, detail)
        kwargs = dict(status=response.status, url=response.url, secrets=self.client.secrets)
        if response.status == 401:
            raise AuthError(text + " (check user and password, or the token)", **kwargs)
        if response.status == 403:
            raise AuthError(text + " (the account lacks a role or an ACL refuses it; incidents need itil)", **kwargs)
        if response.status == 404:
            raise NotFound(text, **kwargs)
        if response.status == 429:
            raise RateLimited(text + " (still rate limited after the retries)", **kwargs)
        raise UnexpectedResponse(text, **kwargs)

    # Table API -------------------------------------------------------------------------------------------------
    def records(self, table, query, fields=None, display_value="all", limit=None, path=None):
        """Every record the encoded query selects (up to limit), paged with sysparm_offset / the Link header."""
        params = {"sysparm_query": query, "sysparm_display_value": display_value,
                  "sysparm_exclude_reference_link": "true", "sysparm_limit": str(min(limit or PAGE_SIZE, PAGE_SIZE)),
                  "sysparm_offset": "0"}
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        url = path or "/api/now/table/%s" % table
        found = []
        for dummy in range(MAX_PAGES):
            response = self.call("GET", url, params=params)
            found.extend((response.json or {}).get("result") or [])
            link = next_link(response.headers.get("Link"))
            if not link or (limit and len(found) >= limit):
                return found[:limit] if limit else found
            url, params = link, None
        raise UnexpectedResponse("ServiceNow GET %s returned more than %d pages" % (path or table, MAX_PAGES))

    def create(self, table, body, fields=None):
        """Create a record. An incident whose answer was lost is looked up by its correlation_id (the idempotency key
        this collection sets) before it is sent once more: the instance ends with exactly one."""
        params = {"sysparm_display_value": "all", "sysparm_exclude_reference_link": "true"}
        if fields:
            params["sysparm_fields"] = ",".join(fields)

        def send():
            return (self.call("POST", "/api/now/table/%s" % table, params=params, json_body=body).json or {}).get("result")

        key = body.get("correlation_id") if table == "incident" else None

        def lookup():
            if not key:
                return None
            found = self.find_incidents(key, body.get("correlation_display"), fields=fields or INCIDENT_FIELDS)
            return found[0] if found else None
        return _http.write_once(self.client, send, lookup, "%s record" % table,
                                "correlation_id=%s" % key if key else "(none: no correlation_id)", resend=bool(key))

    def update(self, table, sys_id, body, fields=None):
        """Update a record. Field values are idempotent; a journal entry (work_notes, comments) is not: an update
        carrying one whose answer was lost is looked up by the entry's marker before it is sent once more."""
        params = {"sysparm_display_value": "all", "sysparm_exclude_reference_link": "true"}
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        journal = dict((field, markers_in(body[field])) for field in JOURNAL_FIELDS if body.get(field))
        path = "/api/now/table/%s/%s" % (table, sys_id)

        def send():
            return (self.call("PATCH", path, params=params, json_body=body, idempotent=not journal).json or {}).get("result")

        def lookup():
            if not journal or not all(journal.values()):
                return None
            record = (self.call("GET", path, params=params).json or {}).get("result") or {}
            applied = all(marks <= markers_in(display(record, field)) for field, marks in journal.items())
            return record if applied else None
        key = ", ".join("%s [selfheal:%s]" % (field, ",".join(sorted(marks))) for field, marks in sorted(journal.items()))
        return _http.write_once(self.client, send, lookup, "journal entry", key or "(no marker)", resend=all(journal.values()))

    # incidents ---------------------------------------------------------------------------------------------------
    def find_incidents(self, correlation_id=None, correlation_display=None, number=None, fields=INCIDENT_FIELDS):
        """Incidents with that number, or that correlation_id (and correlation_display), oldest first."""
        if number:
            query = "number=%s" % q(number)
        else:
            query = "correlation_id=%s" % q(correlation_id)
            if correlation_display:
                query += "^correlation_display=%s" % q(correlation_display)
        return self.records("incident", query + "^ORDERBYsys_created_on", fields=fields, limit=20)

    def find_group(self, ident):
        """The assignment group with that sys_id or name; None when there is none; InvalidInput when ambiguous."""
        query = "sys_id=%s^ORname=%s" % (q(ident), q(ident)) if SYS_ID.match(ident) else "name=%s" % q(ident)
        found = self.records("sys_user_group", query, fields=("sys_id", "name", "active"), display_value="false", limit=5)
        if len(found) > 1:
            raise InvalidInput("ServiceNow: %d assignment groups are named %r; give its sys_id" % (len(found), ident))
        return found[0] if found else None

    def find_ci(self, host):
        """The configuration item (cmdb_ci) for a host: by name or FQDN, the short name too; None when there is none."""
        names = [host]
        short = host.split(".")[0]
        if short and short != host:
            names.append(short)
        query = "^OR".join(["nameIN%s" % ",".join(q(n) for n in names), "fqdn=%s" % q(host)]) + "^ORDERBYname"
        found = self.records("cmdb_ci", query, fields=("sys_id", "name", "fqdn", "sys_class_name"), display_value="false", limit=10)
        for wanted in names:
            exact = [ci for ci in found if (ci.get("name") or "").lower() == wanted.lower()]
            if exact:
                return exact[0]
        return found[0] if found else None

    # attachments -------------------------------------------------------------------------------------------------
    def attachments(self, table, sys_id):
        return self.records(None, "table_name=%s^table_sys_id=%s" % (q(table), q(sys_id)), display_value="false",
                            path="/api/now/attachment")

    def upload(self, table, sys_id, file_name, content, content_type):
        """Attach a file. One whose answer was lost is looked for (same name, and same hash or size) before it is
        sent once more."""
        params = {"table_name": table, "table_sys_id": sys_id, "file_name": file_name}
        digest = hashlib.sha256(content).hexdigest()

        def send():
            response = self.call("POST", "/api/now/attachment/file", params=params, data=content,
                                 headers={"Content-Type": content_type})
            return (response.json or {}).get("result")

        def lookup():
            return next((a for a in self.attachments(table, sys_id) if a.get("file_name") == file_name and (
                a.get("hash") == digest if a.get("hash") else str(a.get("size_bytes")) == str(len(content)))), None)
        return _http.write_once(self.client, send, lookup, "attachment", "%s on %s %s" % (file_name, table, sys_id), resend=True)


def error_text(response):
    """`message (detail)` of ServiceNow's error body, or the start of whatever it sent."""
    try:
        body = response.json
    except UnexpectedResponse:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message, detail = error.get("message"), error.get("detail")
        if message and detail:
            return "%s (%s)" % (str(message).strip(), str(detail).strip())
        return excerpt(str(message or detail or "no error text").strip())
    return excerpt(response.text) or "no error text"
