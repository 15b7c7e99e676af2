# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""On-call service layer: xMatters (xmapi v1 + inbound integration) and PagerDuty Events API v2.

Resource verbs on top of the one transport (_http.Client), with each API's quirks: xMatters creates
events asynchronously after a trigger (find them by requestId), paginates with links.next, requires `at`
on user-deliveries and `groups` on on-call; PagerDuty Events v2 is write-only (no read-back), keyed by
dedup_key, answers 202. Used by the oncall_notify module; raises typed errors, never calls fail_json.
"""

import datetime
import json
import time

from urllib.parse import quote, unquote, urlsplit

from ansible_collections.selfheal.devops.plugins.module_utils import _http, _options
from ansible_collections.selfheal.devops.plugins.module_utils._errors import (
    InvalidInput,
    NotFound,
    UnexpectedResponse,
)

XM_API = "/api/xm/1"
MAX_PAGES = 50
MARKER = "[selfheal.devops]"
OPEN_STATUSES = ("ACTIVE", "SUSPENDED")
SEVERITY_TO_PRIORITY = {"critical": "HIGH", "error": "HIGH", "warning": "MEDIUM", "info": "LOW"}
PD_SEVERITIES = ("critical", "error", "warning", "info")
PD_SUMMARY_MAX = 1024
PD_DEDUP_MAX = 255
URL_KEY_NAMES = ("apikey", "key", "token", "accesstoken")
TRIGGER_SETTLE = 15.0  # seconds to look for the event of a trigger whose answer was lost (created asynchronously)


def utc_now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def marked(comment):
    """The text this collection writes as an annotation: the marker plus the comment."""
    return "%s %s" % (MARKER, comment)


# --- xMatters ------------------------------------------------------------------------------------

def xmatters_trigger_body(incident_key, key_property, summary=None, priority=None, severity=None, groups=None,
                          people=None, source=None, component=None, group=None, event_class=None, custom_details=None,
                          links=None, properties=None, response_options=None):
    """The JSON sent to the inbound integration: recipients, priority, flat properties, response options.

    xMatters properties are flat (text, number, boolean); nested values are sent as JSON text.
    """
    props = {}
    for name, value in (properties or {}).items():
        props[name] = _flat(value)
    for name, value in (custom_details or {}).items():
        props.setdefault(name, _flat(value))
    for name, value in (("summary", summary), ("source", source), ("severity", severity), ("component", component),
                        ("group", group), ("class", event_class)):
        if value not in (None, ""):
            props[name] = value
    if links:
        props["links"] = "\n".join("%s %s" % (link.get("text") or link["href"], link["href"]) if link.get("text")
                                   else link["href"] for link in links)
    props[key_property] = incident_key
    body = {"priority": (priority or SEVERITY_TO_PRIORITY.get(severity or "", "MEDIUM")).upper(), "properties": props}
    recipients = [{"id": name, "recipientType": "GROUP"} for name in groups or []]
    recipients += [{"id": name, "recipientType": "PERSON"} for name in people or []]
    if recipients:
        body["recipients"] = recipients
    if response_options:
        body["responseOptions"] = [_response_option(option) for option in response_options]
    return body


def _flat(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value, sort_keys=True)


def _response_option(option):
    if not isinstance(option, dict):
        option = {"text": str(option)}
    out = {"text": option["text"]}
    if option.get("description"):
        out["description"] = option["description"]
    if option.get("action"):
        out["action"] = option["action"].upper()
    return out


def event_summary(event, key_property=None):
    """The fields of an xMatters event that a playbook needs."""
    if not event:
        return None
    out = {key: event.get(key) for key in ("id", "eventId", "status", "priority", "created", "terminated", "requestId",
                                           "incident")}
    if "properties" in event:
        out["properties"] = event["properties"]
    if key_property and event.get("properties"):
        out["incident_key"] = property_value(event["properties"], key_property)
    return out


def property_value(properties, name):
    """A property by name, ignoring a language suffix (name#en) on either side."""
    if name in properties:
        return properties[name]
    base = name.split("#", 1)[0]
    for key, value in properties.items():
        if key.split("#", 1)[0] == base:
            return value
    return None


def parse_on_call(items):
    """On-call API items -> [{group, shift, members: [{target_name, name, position}]}]."""
    result = []
    for item in items:
        members = []
        for entry in sorted(((item.get("members") or {}).get("data") or []), key=lambda m: m.get("position") or 0):
            member = entry.get("member") or {}
            name = " ".join(filter(None, (member.get("firstName"), member.get("lastName"))))
            members.append({"target_name": member.get("targetName"), "name": name or None,
                            "position": entry.get("position"), "type": member.get("recipientType")})
        result.append({"group": (item.get("group") or {}).get("targetName"),
                       "shift": (item.get("shift") or {}).get("name"), "members": members})
    return result


def parse_deliveries(items):
    """user-deliveries items -> [{recipient, delivery_status, response, responded_at}]."""
    result = []
    for item in items:
        response = item.get("response") or {}
        result.append({"recipient": (item.get("person") or {}).get("targetName"),
                       "delivery_status": item.get("deliveryStatus"),
                       "response": response.get("text"), "responded_at": response.get("received")})
    return result


def first_response(deliveries):
    """The earliest response among parsed deliveries, or None."""
    answered = [d for d in deliveries if d.get("response")]
    if not answered:
        return None
    return sorted(answered, key=lambda d: d.get("responded_at") or "")[0]


class XMatters(object):
    """xmapi v1 verbs. client's base URL is the xMatters instance root (REST under /api/xm/1)."""

    def __init__(self, client, trigger_url, sleep=time.sleep, clock=time.monotonic, key_property=None,
                 settle=TRIGGER_SETTLE):
        self.client = client
        self.trigger_url = trigger_url
        self.sleep = sleep
        self.clock = clock
        # The property that carries the incident key: the idempotency key of a trigger whose answer was lost.
        self.key_property = key_property
        self.settle = settle

    def _collect(self, path, params):
        """Follow links.next (relative to the instance root) until it is missing; bounded."""
        items = []
        response = self.client.get(path, params=params).json or {}
        for dummy in range(MAX_PAGES):
            if not isinstance(response, dict) or not isinstance(response.get("data"), list):
                raise UnexpectedResponse("xMatters GET %s returned no 'data' list" % path)
            items.extend(response["data"])
            following = (response.get("links") or {}).get("next")
            if not following:
                return items
            response = self.client.get(following).json or {}
        raise UnexpectedResponse("xMatters GET %s: more than %d pages" % (path, MAX_PAGES))

    def find_events(self, key_property, incident_key, status=None):
        """Events whose key property equals incident_key exactly (newest first), with properties embedded."""
        params = {"propertyName": key_property, "propertyValue": incident_key, "embed": "properties", "limit": 100}
        if status:
            params["status"] = status
        events = self._collect(XM_API + "/events", params)
        matching = [e for e in events if property_value(e.get("properties") or {}, key_property) == incident_key]
        return sorted(matching, key=lambda e: e.get("created") or "", reverse=True)

    def find_open_events(self, key_property, incident_key):
        """ACTIVE or SUSPENDED events with that key: a suspended page is still open, and must not be doubled.

        Filtered here rather than with a status list in the query, whose syntax xMatters does not document.
        """
        return [e for e in self.find_events(key_property, incident_key) if e.get("status") in OPEN_STATUSES]

    def get_event(self, event_id, embed="properties"):
        return self.client.get("%s/events/%s" % (XM_API, event_id), params={"embed": embed}).json

    def trigger(self, body, key_property=None):
        """POST to the inbound integration; returns the requestId (the event is created asynchronously).

        A trigger whose answer is lost (502/504, dropped connection, timeout) is not sent again: the open event
        carrying the incident key in key_property (default: the one given at construction) is looked for, for up to
        `settle` seconds since xMatters creates events after answering, and its requestId returned. Callers trigger
        only when no open event carries the key, so the one found is this trigger's.
        """
        def send():
            response = self.client.post(self.trigger_url, json_body=body, expected=(200, 201, 202), idempotent=False)
            data = response.json if isinstance(response.json, dict) else {}
            request_id = data.get("requestId")
            if not request_id:
                raise UnexpectedResponse("xMatters trigger answered HTTP %s without a requestId" % response.status)
            return request_id

        name = key_property or self.key_property
        key = property_value(body.get("properties") or {}, name) if name else None

        def lookup():
            if not key:
                return None
            found = [e for e in self.find_open_events(name, key) if e.get("requestId")]
            return found[0]["requestId"] if found else None
        return _http.write_once(self.client, send, lookup, "xMatters event", "%s=%s" % (name, key) if key else "(no key property)",
                                settle=self.settle, interval=1.0, clock=self.clock)

    def wait_for_request(self, request_id, timeout, interval):
        """The event created for requestId, polling until it exists or timeout seconds pass.

        xMatters usually creates the event within a second: polls start at 0.2 s and double up to interval.
        """
        deadline = self.clock() + timeout
        delay = min(0.2, interval)
        while True:
            events = self._collect(XM_API + "/events", {"requestId": request_id, "embed": "properties"})
            if events:
                return events[0]
            if self.clock() + delay > deadline:
                raise UnexpectedResponse(
                    "xMatters accepted the trigger (requestId %s) but no event appeared within %.0f s; "
                    "check the workflow's flow or form" % (request_id, timeout))
            self.sleep(delay)
            delay = min(delay * 2, interval)

    def set_status(self, event_uuid, status):
        # Setting a status is idempotent: sent again after a lost answer, it sets the same status.
        return self.client.post(XM_API + "/events", json_body={"id": event_uuid, "status": status}, idempotent=True).json

    def annotations(self, event_uuid):
        return self._collect("%s/events/%s/annotations" % (XM_API, event_uuid), {"limit": 100})

    def annotate(self, event_uuid, comment):
        """Add an annotation; one whose answer was lost is looked for among the event's annotations (by its text)
        before it is sent once more."""
        def send():
            return self.client.post("%s/events/%s/annotations" % (XM_API, event_uuid), json_body={"comment": comment},
                                    expected=(200, 201)).json

        def lookup():
            return next((note for note in self.annotations(event_uuid) if note.get("comment") == comment), None)
        return _http.write_once(self.client, send, lookup, "xMatters annotation", "on event %s" % event_uuid, resend=True)

    def on_call(self, groups):
        if not groups:
            return []
        items = self._collect(XM_API + "/on-call", {"groups": ",".join(groups), "embed": "members.owner"})
        return parse_on_call(items)

    def on_call_checked(self, groups):
        """on_call(groups), failing with InvalidInput that names every group xMatters does not know.

        The on-call read answers 404 for an unknown group (one request for all of them); only then is each group
        read alone, to name the unknown ones. A group missing from a successful answer is unknown as well.
        """
        try:
            items = self._collect(XM_API + "/on-call", {"groups": ",".join(groups), "embed": "members.owner"}) if groups else []
        except NotFound:
            unknown = [name for name in groups if not self._group_known(name)]
            if not unknown:
                raise
            raise InvalidInput("unknown xMatters group(s): %s; nothing was sent" % ", ".join(unknown))
        seen = set()
        for item in items:
            group = item.get("group") or {}
            seen.update((group.get("targetName"), group.get("id")))
        unknown = [name for name in groups if name not in seen]
        if unknown:
            raise InvalidInput("unknown xMatters group(s): %s; nothing was sent" % ", ".join(unknown))
        return parse_on_call(items)

    def _group_known(self, name):
        try:
            self.client.get(XM_API + "/on-call", params={"groups": name})
        except NotFound:
            return False
        return True

    def unknown_people(self, people):
        """The target names among people that xMatters does not know (GET /people/{id or targetName}: 404)."""
        unknown = []
        for name in people:
            try:
                self.client.get("%s/people/%s" % (XM_API, quote(name, safe="")))
            except NotFound:
                unknown.append(name)
        return unknown

    def deliveries(self, event_uuid):
        items = self._collect("%s/events/%s/user-deliveries" % (XM_API, event_uuid),
                              {"at": utc_now_iso(), "limit": 100})
        return parse_deliveries(items)

    def wait_for_response(self, event_uuid, timeout, interval):
        """(first response, deliveries) once someone responded, or (None, deliveries) at timeout."""
        deadline = self.clock() + timeout
        while True:
            deliveries = self.deliveries(event_uuid)
            answer = first_response(deliveries)
            if answer is not None or self.clock() + interval > deadline:
                return answer, deliveries
            self.sleep(interval)


# --- PagerDuty -----------------------------------------------------------------------------------

def pagerduty_event(event_action, dedup_key, summary=None, source=None, severity=None, component=None, group=None,
                    event_class=None, custom_details=None, links=None, client_name=None, client_url=None,
                    timestamp=None):
    """The Events v2 body, without routing_key (added at send time so that it never reaches a result)."""
    if not dedup_key:
        raise InvalidInput("incident_key (the PagerDuty dedup_key) is required")
    if len(dedup_key) > PD_DEDUP_MAX:
        raise InvalidInput("incident_key is %d characters; PagerDuty accepts at most %d" % (len(dedup_key), PD_DEDUP_MAX))
    body = {"event_action": event_action, "dedup_key": dedup_key}
    if event_action == "trigger":
        missing = [name for name, value in (("summary", summary), ("source", source)) if not value]
        if missing:
            raise InvalidInput("PagerDuty trigger events need %s" % " and ".join(missing))
        if severity not in PD_SEVERITIES:
            raise InvalidInput("severity must be one of %s" % ", ".join(PD_SEVERITIES))
        payload = {"summary": summary[:PD_SUMMARY_MAX], "source": source, "severity": severity}
        for name, value in (("component", component), ("group", group), ("class", event_class),
                            ("custom_details", custom_details), ("timestamp", timestamp)):
            if value not in (None, "", {}):
                payload[name] = value
        body["payload"] = payload
        if links:
            body["links"] = [dict((k, v) for k, v in link.items() if v) for link in links]
        if client_name:
            body["client"] = client_name
        if client_url:
            body["client_url"] = client_url
    return body


class PagerDuty(object):
    """Events API v2: POST /v2/enqueue. The routing key is the credential and travels in the body."""

    def __init__(self, client, routing_key):
        self.client = client
        self.routing_key = routing_key

    def send(self, body):
        """Send one event; dedup_key makes it safe to repeat, so it is retried like an idempotent call."""
        full = dict(body, routing_key=self.routing_key)
        response = self.client.post("/v2/enqueue", json_body=full, expected=(200, 201, 202), idempotent=True)
        data = response.json if isinstance(response.json, dict) else {}
        return {"status": data.get("status"), "message": data.get("message"),
                "dedup_key": data.get("dedup_key") or body.get("dedup_key")}


# --- construction --------------------------------------------------------------------------------

def trigger_url_secrets(url):
    """The credentials a trigger URL can carry, as typed and decoded: the value of every key-like query parameter
    (apiKey and the like) and the password of user:password@host. The transport masks them wherever they show."""
    parts = urlsplit(url)
    found = []
    for pair in filter(None, parts.query.split("&")):
        name, dummy, value = pair.partition("=")
        if value and unquote(name).lower().replace("-", "").replace("_", "") in URL_KEY_NAMES:
            found.extend((value, unquote(value)))
    if parts.password:
        found.extend((parts.password, unquote(parts.password)))
    return list(dict.fromkeys(found))


def client_from_params(params, log=None, sleep=time.sleep):
    """The service object for params['provider'], validated connection options included."""
    kwargs = _options.client_kwargs(params, log=log)
    retry = _options.retry_policy(params)
    if params["provider"] == "xmatters":
        missing = [name for name in ("xmatters_url", "xmatters_user", "xmatters_password", "xmatters_trigger_url")
                   if not params.get(name)]
        if missing:
            raise InvalidInput("provider=xmatters needs %s (or their environment variables)" % ", ".join(missing))
        trigger_url = params["xmatters_trigger_url"]
        if urlsplit(trigger_url).scheme not in ("http", "https") or not urlsplit(trigger_url).netloc:
            raise InvalidInput("xmatters_trigger_url must be an http:// or https:// URL (value not shown: it is a secret)")
        client = _http.Client(params["xmatters_url"], service="xMatters",
                              auth=_http.basic_auth(params["xmatters_user"], params["xmatters_password"]),
                              retry=retry, extra_secrets=trigger_url_secrets(trigger_url), sleep=sleep, **kwargs)
        return XMatters(client, trigger_url, sleep=sleep, key_property=params.get("key_property"))
    if not params.get("routing_key"):
        raise InvalidInput("provider=pagerduty needs routing_key (or PAGERDUTY_ROUTING_KEY)")
    client = _http.Client(params["pagerduty_url"], service="PagerDuty", auth=_http.NoAuth(params["routing_key"]),
                          retry=retry, sleep=sleep, **kwargs)
    return PagerDuty(client, params["routing_key"])
