# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""selfheal.devops.oncall_callback: on-call responders' choices as Event-Driven Ansible events."""

import asyncio
import json
import logging
import os
import sys
import time

DOCUMENTATION = r"""
---
short_description: Receive on-call responses (xMatters response callbacks, PagerDuty v3 webhooks).
description:
  - An event source plugin for Event-Driven Ansible. When a responder picks a response option on an
    xMatters notification (for example C(Restart), C(Roll back), C(Ignore)), xMatters calls back; when an
    incident is acknowledged or resolved in PagerDuty, a v3 webhook subscription calls back. This source
    authenticates the callback like the Dynatrace webhook does (token, HMAC, TLS, mutual TLS) and emits
    C(oncall) {provider, incident_key, response, responder, event_id, received_at}, so a rulebook can
    launch the workflow the responder chose.
  - A callback answered C(202) has been handed to ansible-rulebook; when its queue has no room in time the answer
    is C(503) with C(Retry-After), and the retry is delivered (it is not a duplicate).
  - Repeated deliveries of the same response (same provider, event and response) are emitted once.
  - The incident key is read from the event property named by O(incident_key_property) (xMatters) or from
    the incident's C(incident_key) (PagerDuty, the dedup key the collection sent).
options:
  host:
    description: Address to listen on.
    type: str
    default: 127.0.0.1
  port:
    description: Port to listen on.
    type: int
    default: 5001
  path:
    description: URL path that accepts callbacks from both providers.
    type: str
    default: /oncall/callback
  token:
    description: Shared secret expected in O(token_header) (C(Bearer <token>) with the default header).
    type: str
  token_header:
    description: Header carrying O(token).
    type: str
    default: Authorization
  hmac_secret:
    description:
      - Verify an HMAC of the raw body. For PagerDuty v3 webhooks use the subscription's secret with
        O(hmac_header=X-PagerDuty-Signature) and O(hmac_prefix=v1=).
    type: str
  hmac_header:
    description: Header carrying the signature.
    type: str
    default: X-Selfheal-Signature
  hmac_algorithm:
    description: HMAC digest.
    type: str
    choices: [sha256, sha512, sha1]
    default: sha256
  hmac_format:
    description: Signature encoding.
    type: str
    choices: [hex, base64]
    default: hex
  hmac_prefix:
    description: Prefix before the signature, for example V(v1=).
    type: str
    default: ""
  certfile:
    description: PEM certificate (chain) to serve HTTPS with.
    type: path
  keyfile:
    description: PEM private key of O(certfile).
    type: path
  cafile:
    description: CA bundle to require and verify client certificates with (mutual TLS).
    type: path
  max_body_bytes:
    description: Larger requests are answered 413.
    type: int
    default: 262144
  hmac_timestamp_header:
    description:
      - Header carrying the time the request was signed (epoch seconds). When set, the signed bytes are
        O(hmac_message_prefix) + timestamp + C(:) + body, a timestamp outside O(replay_window) is refused, and a
        signature that was already accepted is refused (no replay).
    type: str
  hmac_message_prefix:
    description: Text signed before the timestamp (for example V(v0:)).
    type: str
    default: ""
  replay_window:
    description: Seconds a signed timestamp stays valid (both directions).
    type: int
    default: 300
  max_pending:
    description: Callbacks waiting for room in the rulebook's queue at once; beyond it the answer is 503 with C(Retry-After).
    type: int
    default: 256
  handoff_timeout:
    description:
      - Seconds a callback may wait for room in the rulebook's queue before it is answered 503 with C(Retry-After);
        a response is remembered as seen only once it was handed over, so the retry is delivered.
    type: float
    default: 10
  retry_after:
    description: Seconds sent in C(Retry-After) with a 503 answer.
    type: int
    default: 5
  max_connections:
    description: Open connections beyond this are closed at once.
    type: int
    default: 512
  idle_timeout:
    description: Seconds a connection may stay open without a complete request line and headers.
    type: float
    default: 15
  body_timeout:
    description: Seconds the body of a request may take to arrive (then 408).
    type: float
    default: 30
  decision_dir:
    description:
      - Write the first xMatters response to each incident into this folder (C(<incident_key>.decision.json), created
        with O_EXCL so the first answer wins), where a playbook waiting in approve mode (the C(selfheal.devops.incident)
        role's C(incident_decision_dir)) sees it at once. Later responses find it; the event then carries
        C(oncall.decided=false) and the answer that counts in C(oncall.decision).
    type: path
  incident_key_property:
    description: xMatters event property holding the incident key (as sent by M(selfheal.devops.oncall_notify)).
    type: str
    default: selfheal_incident_key
"""

EXAMPLES = r"""
- name: Responder decides
  hosts: all
  sources:
    - selfheal.devops.oncall_callback:
        host: 0.0.0.0
        port: 5001
        token: "{{ ONCALL_CALLBACK_TOKEN }}"
  rules:
    - name: Restart approved
      condition: event.oncall.response == "Restart"
      action:
        run_playbook:
          name: selfheal.devops.remediate_process_crash
          extra_vars:
            incident_key: "{{ event.oncall.incident_key }}"
"""

LOGGER = logging.getLogger("selfheal.devops.oncall_callback")


# ansible-rulebook runs a source from its path (runpy), outside any collection loader: make the ansible_collections
# folder this file is installed under importable, then import the collection's own modules as usual.
_ROOT = os.path.abspath(__file__).rpartition(os.sep + "ansible_collections" + os.sep)[0]
if _ROOT and _ROOT not in sys.path:
    sys.path.append(_ROOT)


from ansible_collections.selfheal.devops.extensions.eda.plugins.event_source import _webhook as webhook  # noqa: E402
from ansible_collections.selfheal.devops.plugins.module_utils import _decisions as decisions  # noqa: E402


def _property(properties, name):
    """xMatters property values may carry a language suffix (`name#en`)."""
    if not isinstance(properties, dict):
        return None
    for key, value in properties.items():
        if key == name or key.split("#", 1)[0] == name:
            return value
    return None


def _person(value):
    if isinstance(value, dict):
        return value.get("targetName") or value.get("name") or value.get("summary") or value.get("id")
    return value


def parse_xmatters(payload, key_property):
    """An xMatters response callback -> the oncall event body (ValueError when it is not one)."""
    response = payload.get("response")
    if isinstance(response, dict):
        response = response.get("text") or response.get("response")
    event_id = payload.get("eventIdentifier") or payload.get("eventId") or payload.get("id")
    if not response or not event_id:
        raise ValueError("not an xMatters response callback: response and eventIdentifier/eventId are required")
    properties = payload.get("eventProperties") or payload.get("properties") or {}
    if isinstance(properties, list):
        # Outbound integrations send a list: one-key objects ([{"key": "value"}]) or {"name", "value"} pairs.
        merged = {}
        for item in properties:
            if isinstance(item, dict) and set(item) == {"name", "value"}:
                merged[item["name"]] = item["value"]
            elif isinstance(item, dict):
                merged.update(item)
        properties = merged
    annotation = payload.get("annotation")
    return {
        "provider": "xmatters",
        "incident_key": _property(properties, key_property),
        "response": str(response),
        "responder": _person(payload.get("recipient") or payload.get("responder") or payload.get("user")),
        "event_id": str(event_id),
        "annotation": None if annotation in (None, "", "null") else annotation,
    }


def parse_pagerduty(payload):
    """A PagerDuty v3 webhook (incident.acknowledged, incident.resolved, ...) -> the oncall event body."""
    event = payload.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise ValueError("not a PagerDuty v3 webhook: event.event_type is required")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    return {
        "provider": "pagerduty",
        "incident_key": data.get("incident_key") or data.get("dedup_key"),
        "response": event["event_type"].rsplit(".", 1)[-1],
        "responder": _person(event.get("agent")),
        "event_id": str(data.get("id") or event.get("id") or ""),
        "annotation": None,
    }


def parse(payload, key_property):
    if isinstance(payload.get("event"), dict):
        return parse_pagerduty(payload)
    return parse_xmatters(payload, key_property)


def callback_handler(key_property, seen, locks, decision_dir=None):
    """Deliveries of the same response are decided one after the other; one is remembered only once handed over."""

    async def handle(payload, deliver):
        try:
            oncall = parse(payload, key_property)
        except ValueError as exc:
            return 400, {"status": "rejected", "error": str(exc)}
        identity = (oncall["provider"], oncall["event_id"], oncall["response"])
        return await locks(identity, lambda: _deliver_once(oncall, identity, seen, deliver, decision_dir))

    return handle


def record_decision(decision_dir, oncall):
    """The first xMatters answer to an incident wins: write it down (see _decisions) and say whether this one did."""
    if not decision_dir or oncall["provider"] != "xmatters" or not oncall.get("incident_key"):
        return
    try:
        decision, ours = decisions.write(decision_dir, str(oncall["incident_key"]), {
            "source": "xmatters", "response": oncall["response"], "responder": oncall.get("responder"),
            "event_id": oncall["event_id"]})
    except (OSError, ValueError) as exc:
        LOGGER.warning("decision for %s not written to %s: %s", oncall["incident_key"], decision_dir, exc)
        return
    oncall["decided"] = ours
    oncall["decision"] = decision


async def _deliver_once(oncall, identity, seen, deliver, decision_dir=None):
    if identity in seen:
        return 202, {"status": "duplicate"}
    oncall["received_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record_decision(decision_dir, oncall)
    if not await deliver({"oncall": oncall}):
        return 503, {"status": "retry", "error": "the rulebook did not take the event in time; deliver it again"}
    seen[identity] = True
    if len(seen) > 100000:  # bounded memory: forget the oldest half (dicts keep insertion order)
        for old in list(seen)[:50000]:
            del seen[old]
    return 202, {"status": "accepted", "response": oncall["response"]}


async def main(queue, args):
    config = webhook.WebhookConfig(args, default_path="/oncall/callback", default_max_body=262144)
    key_property = str(args.get("incident_key_property", "selfheal_incident_key"))
    await webhook.serve(config, queue, callback_handler(key_property, {}, webhook.KeyedLocks(), args.get("decision_dir")))


if __name__ == "__main__":
    class PrintQueue(asyncio.Queue):
        async def put(self, item):
            print(json.dumps(item, indent=2), flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(PrintQueue(), {"port": int(sys.argv[1]) if len(sys.argv) > 1 else 5001}))
