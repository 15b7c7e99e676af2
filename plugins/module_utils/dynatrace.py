# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dynatrace API v2 service layer. Private to the selfheal.devops collection; not a public API.

Resource verbs on top of the transport: problems (every page done right: `nextPageKey` sent alone, but
`fields` re-sent on every page), one problem by internal or display id, close, comments, and events ingest
with per-entity result checking. The normaliser itself lives in _problem (shared with the event source).
"""

from ansible_collections.selfheal.devops.plugins.module_utils import _http, _options, _problem
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, UnexpectedResponse

normalize_problem = _problem.normalize_problem
MARKER = _problem.MARKER
COMMENT_CONTEXT = _problem.COMMENT_CONTEXT
EVENT_PROPERTY = _problem.EVENT_PROPERTY
MAX_PAGE_SIZE = 500
INGEST_SETTLE = 5.0  # seconds to look for an event whose answer was lost (Davis merges events into problems later)


def client_from_params(params, log=None):
    """The transport client for a module's validated parameters (Api-Token auth, SDK-like 429 default)."""
    return _http.Client(params["url"].rstrip("/") + "/api/v2", service="Dynatrace",
                        auth=_http.api_token_auth(params["api_token"]),
                        retry=_options.retry_policy(params, default_retry_after=5),
                        **_options.client_kwargs(params, log))


def is_display_id(ident):
    return str(ident).upper().startswith("P-")


class DynatraceService(object):
    """Problems, comments and events of one Dynatrace environment."""

    def __init__(self, client, environment_url=None):
        self.client = client
        self.environment_url = environment_url
        self.list_requests = 0

    def normalize(self, raw):
        return normalize_problem(raw, self.environment_url)

    # Problems -------------------------------------------------------------------------------------
    def list_problems(self, problem_selector=None, entity_selector=None, time_from=None, time_to=None, fields=(),
                      page_size=MAX_PAGE_SIZE, sort=None):
        """Every problem matching the query, across all pages."""
        params = {"pageSize": str(min(int(page_size), MAX_PAGE_SIZE))}
        for key, value in (("problemSelector", problem_selector), ("entitySelector", entity_selector),
                           ("from", time_from), ("to", time_to), ("sort", sort)):
            if value:
                params[key] = value
        fields_param = ",".join(fields) if fields else None
        if fields_param:
            params["fields"] = fields_param
        problems = []
        while True:
            self.list_requests += 1
            page = self.client.get("/problems", params=params).json or {}
            problems.extend(page.get("problems") or [])
            key = page.get("nextPageKey")
            if not key:
                return problems
            # With a page key the API rejects every other parameter, except `fields`, which is per page.
            params = {"nextPageKey": key}
            if fields_param:
                params["fields"] = fields_param

    def get_problem(self, ident, fields=()):
        """One problem by internal id or display id (P-1234); NotFound when there is none."""
        if is_display_id(ident):
            found = self.list_problems(problem_selector='displayId("%s")' % ident, time_from="now-1y", fields=fields,
                                       page_size=10)
            if not found:
                raise NotFound("Dynatrace has no problem with display id %s in the last year" % ident)
            return found[0]
        params = {"fields": ",".join(fields)} if fields else None
        return self.client.get("/problems/%s" % ident, params=params).json

    def close(self, problem_id, message):
        """Close a problem; returns the close answer, or None when it was already closed (HTTP 204).

        A close whose answer was lost is looked up: the problem closed, or the close message among its comments
        (Dynatrace closes asynchronously), and only then sent once more (a close of a closed problem is a 204)."""
        def send():
            response = self.client.post("/problems/%s/close" % problem_id, json_body={"message": message},
                                        expected=(200, 204))
            return None if response.status == 204 else response.json

        def lookup():
            problem = self.client.get("/problems/%s" % problem_id).json or {}
            comment = next((c for c in self.comments(problem_id) if c.get("content") == message), None)
            if problem.get("status") != "CLOSED" and comment is None:
                return None
            return {"problemId": problem_id, "closing": True, "closeTimestamp": problem.get("endTime"), "comment": comment}
        return _http.write_once(self.client, send, lookup, "close of problem", problem_id, resend=True)

    # Comments -------------------------------------------------------------------------------------
    def comments(self, problem_id):
        params = {"pageSize": str(MAX_PAGE_SIZE)}
        comments = []
        while True:
            page = self.client.get("/problems/%s/comments" % problem_id, params=params).json or {}
            comments.extend(page.get("comments") or [])
            if not page.get("nextPageKey"):
                return comments
            params = {"nextPageKey": page["nextPageKey"]}

    def add_comment(self, problem_id, message, context):
        """Add a comment; one whose answer was lost is looked for (same content and context) before it is sent
        once more, so the problem ends with exactly one."""
        body = {"message": message}
        if context:
            body["context"] = context

        def send():
            return self.client.post("/problems/%s/comments" % problem_id, json_body=body, expected=(201,)).json

        def lookup():
            return next((c for c in self.comments(problem_id)
                         if c.get("content") == message and (c.get("context") or None) == (context or None)), None)
        return _http.write_once(self.client, send, lookup, "comment", "on problem %s" % problem_id, resend=True)

    # Events ---------------------------------------------------------------------------------------
    def ingest_event(self, event):
        """POST /events/ingest; a per-entity status other than OK (even under HTTP 201) is an error.

        Events have no dedup key (a resent info event is duplicated), so one whose answer was lost is never sent
        again: it is looked for, by title and marker property (EVENT_PROPERTY), in the evidence of the open problems
        on the event's entities, and when it is not found AmbiguousWrite says so."""
        answer = _http.write_once(self.client, lambda: self.client.post("/events/ingest", json_body=event, expected=(201,)).json or {},
                                  lambda: self.find_ingested(event), "event", "%r marked %s=%s" % (
                                      event.get("title"), EVENT_PROPERTY, (event.get("properties") or {}).get(EVENT_PROPERTY)),
                                  settle=INGEST_SETTLE, interval=1.0)
        results = answer.get("eventIngestResults") or []
        failed = [r for r in results if r.get("status") != "OK"]
        if failed or not results:
            detail = ", ".join("%s: %s" % (r.get("correlationId"), r.get("status")) for r in failed) or "no entity matched"
            raise UnexpectedResponse("Dynatrace accepted the event but did not apply it (%s); entity selector %s"
                                     % (detail, event.get("entitySelector")), status=201, details=answer)
        return answer

    def find_ingested(self, event):
        """The ingest answer for an event found in the evidence of the open problems on its entities (by title and
        marker property), or None. Evidence of type EVENT carries the event's properties [U: read from the problems
        API documentation's evidence model]."""
        marker = (event.get("properties") or {}).get(EVENT_PROPERTY)
        if not marker or not event.get("entitySelector"):
            return None
        found = []
        for raw in self.list_problems(problem_selector='status("open")', entity_selector=event["entitySelector"],
                                      time_from="now-1d", fields=("evidenceDetails",)):
            for detail in (raw.get("evidenceDetails") or {}).get("details") or []:
                if detail.get("evidenceType") == "EVENT" and detail.get("displayName") == event.get("title") and \
                        (detail.get("properties") or {}).get(EVENT_PROPERTY) == marker:
                    found.append({"correlationId": None, "status": "OK", "problemId": raw.get("problemId"),
                                  "entityId": ((detail.get("entity") or {}).get("entityId") or {}).get("id")})
        if not found:
            return None
        return {"reportCount": len(found), "eventIngestResults": found, "found_after_lost_answer": True}


def entity_selector(problem, target):
    """An entitySelector for the problem's root cause or impacted entities (normalised problem)."""
    if target == "root_cause":
        if not problem.get("root_cause"):
            raise InvalidInput("problem %s has no root-cause entity; use target=impacted" % problem["display_id"])
        ids = [problem["root_cause"]["id"]]
    else:
        ids = [e["id"] for e in problem["entities"] if target == "impacted" or e["type"] == target.upper()]
    if not ids:
        raise InvalidInput("problem %s has no %s entities to attach the event to" % (problem["display_id"], target))
    return "entityId(%s)" % ",".join('"%s"' % i for i in ids)
