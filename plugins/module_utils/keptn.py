# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keptn v1 API service layer (api-service, shipyard-controller, datastore). Private to selfheal.devops."""

import json
import re
import time

from ansible_collections.selfheal.devops.plugins.module_utils import _http, _options

INCIDENT_LABEL = "selfheal-incident"
TERMINAL_STATES = ("finished", "aborted", "timedOut")
# Keptn's entity names (project, stage, service; shipyard sequences follow the same rule): lowercase letters,
# digits and '-', starting with a letter. Services become Kubernetes names, hence the length limit.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]*$")
MAX_NAME_LENGTH = 63
MAX_EVENT_BYTES = 64 * 1024  # api-service's MAX_EVENT_SIZE_KB default


def valid_name(name):
    return bool(name) and len(name) <= MAX_NAME_LENGTH and NAME_PATTERN.match(name) is not None


def event_size(event):
    """The size of the event as it travels (JSON, UTF-8)."""
    return len(json.dumps(event).encode("utf-8"))


def client_from_params(params, log=None):
    return _http.Client(params["url"].rstrip("/") + "/api", service="Keptn",
                        auth=_http.HeaderAuth("x-token", params["api_token"]),
                        retry=_options.retry_policy(params), **_options.client_kwargs(params, log))


def sequence_event_type(stage, sequence):
    """The sequence-level type Keptn accepts from outside (a task-level rollback.triggered is rejected)."""
    return "sh.keptn.event.%s.%s.triggered" % (stage, sequence)


def context_seed(sequence, project, stage, service, incident_key):
    """The deterministic shkeptncontext seed: Keptn turns it into the same context UUID on every retry."""
    return "selfheal-%s-%s-%s-%s-%s" % (sequence, project, stage, service, incident_key)


class KeptnService(object):
    def __init__(self, client, sleep=time.sleep, clock=time.monotonic):
        self.client = client
        self.sleep = sleep
        self.clock = clock

    def trigger(self, event):
        """Send the sequence's triggered event; returns its keptnContext.

        An event whose answer was lost is looked for in the datastore (by the incident label) before it is sent
        once more, so the datastore holds one triggered event; even a second one would map to the same sequence,
        since the shkeptncontext is deterministic."""
        data = event.get("data") or {}
        incident_key = (data.get("labels") or {}).get(INCIDENT_LABEL)
        match = re.match(r"^sh\.keptn\.event\.([^.]+)\.([^.]+)\.triggered$", event.get("type") or "")

        def lookup():
            if not (incident_key and match):
                return None
            return self.find_context(data.get("project"), match.group(1), data.get("service"), match.group(2), incident_key)
        return _http.write_once(self.client, lambda: self.client.post("/v1/event", json_body=event).json["keptnContext"],
                                lookup, "triggered event", "labelled %s=%s" % (INCIDENT_LABEL, incident_key), resend=True)

    def find_context(self, project, stage, service, sequence, incident_key):
        """The context of the sequence already triggered for this incident, from the datastore, or None."""
        events = self.client.get("/mongodb-datastore/event", params={
            "type": sequence_event_type(stage, sequence), "project": project, "stage": stage, "service": service,
            "pageSize": "100"}).json.get("events") or []
        for event in events:
            labels = (event.get("data") or {}).get("labels") or {}
            if labels.get(INCIDENT_LABEL) == incident_key:
                return event["shkeptncontext"]
        return None

    def sequence(self, project, context):
        states = self.client.get("/controlPlane/v1/sequence/%s" % project, params={"keptnContext": context}).json
        found = [s for s in (states or {}).get("states") or [] if s.get("shkeptncontext") == context]
        return found[0] if found else None

    def finished_event(self, context, task):
        events = self.client.get("/mongodb-datastore/event", params={
            "keptnContext": context, "type": "sh.keptn.event.%s.finished" % task, "pageSize": "1"}).json.get("events")
        return events[0] if events else None

    def wait(self, project, context, timeout, interval):
        """The sequence once it reached a terminal state, or the last one seen (None: not visible yet) at timeout."""
        deadline = self.clock() + timeout
        delay = min(0.2, interval)
        while True:
            current = self.sequence(project, context)
            if current and current.get("state") in TERMINAL_STATES:
                return current, True
            if self.clock() + delay > deadline:
                return current, False
            self.sleep(delay)
            delay = min(delay * 2, interval)
