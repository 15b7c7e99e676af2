# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading incidents from the systems of record. Private to the selfheal.devops collection; not a public API.

The incident_report, incident_postmortem and incident_recurrence modules read incidents from:
- local timeline files (the incident role's <key>.json, and <key>-postmortem.json when the post-mortem was built);
- Jira: the issues labelled with the incident label, and their attachments (the same two files);
- Dynatrace: the problems of a period (detection, onset from the evidence, entities, root cause, zones);
- xMatters: the pages (events with the incident key property) and who answered when (user deliveries).
Each reader returns incident records of _incident_metrics; nothing here calls fail_json. Errors are typed.
"""

import json
import os
import re
import threading

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import env_fallback

from ansible_collections.selfheal.devops.plugins.module_utils import _http, _options, dynatrace, jira
from ansible_collections.selfheal.devops.plugins.module_utils import _incident_metrics as metrics
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, NotFound, UnexpectedResponse

POSTMORTEM_SUFFIX = "-postmortem.json"
SEARCH_FIELDS = ("summary", "status", "created", "resolutiondate", "labels", "attachment")
XM_API = "/api/xm/1"
XM_MAX_PAGES = 200
KEY_PROPERTY = "selfheal_incident_key"


# --- connections: the modules that read several systems name each system's options ------------------------------

JIRA_OPTIONS = dict(
    jira_url=dict(type="str", fallback=(env_fallback, ["JIRA_URL"])),
    jira_user=dict(type="str", fallback=(env_fallback, ["JIRA_USER"])),
    jira_token=dict(type="str", no_log=True, fallback=(env_fallback, ["JIRA_TOKEN"])),
    jira_api_version=dict(type="str", default="3", choices=["2", "3"], fallback=(env_fallback, ["JIRA_API_VERSION"])),
)
DYNATRACE_OPTIONS = dict(
    dynatrace_url=dict(type="str", fallback=(env_fallback, ["DYNATRACE_URL"])),
    dynatrace_api_token=dict(type="str", no_log=True, fallback=(env_fallback, ["DYNATRACE_API_TOKEN"])),
)
XMATTERS_OPTIONS = dict(
    xmatters_url=dict(type="str", fallback=(env_fallback, ["XMATTERS_URL"])),
    xmatters_user=dict(type="str", fallback=(env_fallback, ["XMATTERS_USER"])),
    xmatters_password=dict(type="str", no_log=True, fallback=(env_fallback, ["XMATTERS_PASSWORD"])),
)


def connection_spec(**own):
    """A module's argument spec: its own options, the three systems' connection options and the transport's."""
    spec = {}
    for options in (JIRA_OPTIONS, DYNATRACE_OPTIONS, XMATTERS_OPTIONS, _options.CONNECTION):
        spec.update(options)
    spec.update(own)
    return spec


def _require(params, names, source):
    missing = [name for name in names if not params.get(name)]
    if missing:
        raise InvalidInput("reading %s needs %s (or the environment variables %s)" % (
            source, ", ".join(missing), ", ".join(name.upper() for name in missing)))


def jira_factory(params, log=None):
    """A function that builds a JiraService (one per thread) from the jira_* options."""
    _require(params, ("jira_url", "jira_token"), "Jira")
    mapped = dict(params, url=params["jira_url"], user=params.get("jira_user"), token=params["jira_token"])

    def build():
        return jira.JiraService(jira.client_from_params(mapped, log), params["jira_api_version"],
                                deployment="dc" if (not params.get("jira_user") and params["jira_api_version"] == "2") else "cloud")
    return build


def dynatrace_service(params, log=None):
    _require(params, ("dynatrace_url", "dynatrace_api_token"), "Dynatrace")
    mapped = dict(params, url=params["dynatrace_url"], api_token=params["dynatrace_api_token"])
    return dynatrace.DynatraceService(dynatrace.client_from_params(mapped, log), params["dynatrace_url"])


def xmatters_client(params, log=None):
    _require(params, ("xmatters_url", "xmatters_user", "xmatters_password"), "xMatters")
    return _http.Client(params["xmatters_url"], service="xMatters",
                        auth=_http.basic_auth(params["xmatters_user"], params["xmatters_password"]),
                        retry=_options.retry_policy(params), **_options.client_kwargs(params, log))


# --- records and files ---------------------------------------------------------------------------------------

def incident_from_document(document, name="document"):
    """An incident record from a post-mortem document ({"incident": record, ...}) or a timeline document."""
    if isinstance(document, dict) and isinstance(document.get("incident"), dict):
        record = document["incident"]
        if not record.get("key") or not isinstance(record.get("times"), dict):
            raise ValueError("%s: the post-mortem record has no key or times" % name)
        incident = metrics.new_incident(record["key"])
        incident.update(record)
        incident["times"] = dict(metrics.new_incident(record["key"])["times"], **record["times"])
        return metrics.finish(incident)
    return metrics.from_timeline(document)


def read_json_file(path):
    with open(path, "rb") as handle:
        return json.loads(handle.read().decode("utf-8"))


def incidents_from_directory(directory):
    """(incidents, warnings) from a directory of timeline files: <key>-postmortem.json when present (the assembled
    record), else <key>.json. Files that are not timelines are skipped with a warning; nothing is changed."""
    if not os.path.isdir(directory):
        raise InvalidInput("timeline_dir %s is not a directory" % directory)
    names = sorted(os.listdir(directory))
    postmortems = set(n[:-len(POSTMORTEM_SUFFIX)] for n in names if n.endswith(POSTMORTEM_SUFFIX))
    incidents, warnings = [], []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        if name.endswith(POSTMORTEM_SUFFIX):
            key = name[:-len(POSTMORTEM_SUFFIX)]
        else:
            key = name[:-len(".json")]
            if key in postmortems:
                continue
        try:
            incidents.append(incident_from_document(read_json_file(os.path.join(directory, name)), name))
        except (ValueError, IOError, OSError) as error:
            warnings.append("skipped %s: %s" % (os.path.join(directory, name), error))
    return incidents, warnings


# --- Jira ------------------------------------------------------------------------------------------------------

def incident_jql(label, project=None, start=None, end=None, extra=None):
    """The bounded JQL that selects the incident tickets of a period (created from a day before the period, as a
    ticket is opened a little after its problem was detected; the period is applied to the detection time)."""
    clauses = ["labels = %s" % jira.jql_quote(label)]
    if project:
        clauses.insert(0, "project = %s" % jira.jql_quote(project))
    if start is not None:
        clauses.append('created >= "%s"' % _jql_minute(start - 86400))
    if end is not None:
        clauses.append('created < "%s"' % _jql_minute(end + 86400))
    if extra:
        clauses.append("(%s)" % extra)
    return " AND ".join(clauses) + " ORDER BY created ASC"


def _jql_minute(epoch):
    return metrics.iso(epoch)[:16].replace("T", " ")


def pick_attachment(issue):
    """(attachment id, kind) of the ticket's post-mortem record, else of its timeline; (None, None) without either."""
    attachments = (issue.get("fields") or {}).get("attachment") or []
    names = dict((a.get("filename"), a) for a in attachments)
    for name, item in names.items():
        if name and name.endswith(POSTMORTEM_SUFFIX):
            return item.get("id"), "postmortem"
    for name, item in names.items():
        if name and name.endswith(".json") and not name.endswith(POSTMORTEM_SUFFIX) and not name.endswith("-slack.json"):
            return item.get("id"), "timeline"
    return None, None


def incident_from_issue(service, issue):
    """The incident record of one ticket: its attached record (downloaded and parsed, then dropped) plus the ticket."""
    attachment, dummy = pick_attachment(issue)
    if attachment is None:
        raise ValueError("%s has no timeline attachment" % issue.get("key"))
    try:
        document = json.loads(service.attachment_content(attachment).decode("utf-8"))
    except ValueError as error:
        raise ValueError("%s: the attachment is not JSON (%s)" % (issue.get("key"), error))
    incident = incident_from_document(document, issue.get("key"))
    return metrics.apply_ticket(incident, issue, service.browse_url(issue.get("key")))


def incidents_from_jira(service_factory, jql, workers=4, max_issues=100000):
    """(incidents, warnings, stats) for every ticket the JQL selects. Attachments are downloaded by `workers` threads,
    each with its own service (service_factory() builds one), one page of issues at a time; each attachment is parsed
    into a compact record at once, so memory holds records, never the raw files of thousands of incidents."""
    local = threading.local()

    def worker_service():
        if getattr(local, "service", None) is None:
            local.service = service_factory()
        return local.service

    def one(issue):
        try:
            return incident_from_issue(worker_service(), issue), None
        except ValueError as error:
            return None, "skipped %s" % error
        except NotFound:
            return None, "skipped %s: its attachment is gone" % issue.get("key")

    searcher = service_factory()
    incidents, warnings = [], []
    stats = {"issues": 0, "pages": 0}
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        page = []
        for issue in searcher.iter_search(jql, fields=SEARCH_FIELDS, max_issues=max_issues):
            page.append(issue)
            if len(page) >= 100:
                _collect(pool, one, page, incidents, warnings)
                stats["pages"] += 1
                page = []
            stats["issues"] += 1
        if page:
            _collect(pool, one, page, incidents, warnings)
            stats["pages"] += 1
    return incidents, warnings, stats


def _collect(pool, one, page, incidents, warnings):
    for incident, warning in pool.map(one, page):
        if incident is not None:
            incidents.append(incident)
        if warning:
            warnings.append(warning)


def find_ticket(service, incident_key, project=None):
    """The incident's ticket (oldest with the label), or None."""
    found = service.find_by_label(incident_key, project)
    return found[0] if found else None


# --- Dynatrace ---------------------------------------------------------------------------------------------------

def key_of_display_id(display_id):
    return "dt-" + re.sub(r"[^A-Za-z0-9_.-]", "-", str(display_id))


def enrich_from_dynatrace(service, incidents, start=None, end=None):
    """Add each incident's Dynatrace problem (problems of [start - 1 day, end], with evidence). Returns (enriched,
    problems without an incident): problems the automation never handled."""
    by_key = dict((i["key"], i) for i in incidents)
    time_from = str(int((start - 86400) * 1000)) if start is not None else "now-30d"
    time_to = str(int(end * 1000)) if end is not None else None
    problems = service.list_problems(time_from=time_from, time_to=time_to, fields=("evidenceDetails",))
    enriched, unhandled = 0, 0
    for problem in problems:
        incident = by_key.get(key_of_display_id(problem.get("displayId")))
        if incident is None:
            detected = metrics.parse_time(problem.get("startTime"))
            if detected is not None and (start is None or detected >= start) and (end is None or detected < end):
                unhandled += 1
            continue
        metrics.apply_problem(incident, problem)
        enriched += 1
    return enriched, unhandled


# --- xMatters ------------------------------------------------------------------------------------------------------

def _xm_collect(client, path, params):
    items = []
    response = client.get(path, params=params).json or {}
    for dummy in range(XM_MAX_PAGES):
        if not isinstance(response, dict) or not isinstance(response.get("data"), list):
            raise UnexpectedResponse("xMatters GET %s returned no 'data' list" % path)
        items.extend(response["data"])
        following = (response.get("links") or {}).get("next")
        if not following:
            return items
        response = client.get(following).json or {}
    raise UnexpectedResponse("xMatters GET %s: more than %d pages" % (path, XM_MAX_PAGES))


def _property(properties, name):
    for key, value in (properties or {}).items():
        if key.split("#", 1)[0] == name:
            return value
    return None


def xmatters_deliveries(client, event_uuid):
    """[{recipient, delivered, response, responded_at}] of one event (user deliveries at now)."""
    items = _xm_collect(client, "%s/events/%s/user-deliveries" % (XM_API, event_uuid),
                        {"at": metrics.iso(_now()), "limit": 1000})
    out = []
    for item in items:
        notifications = ((item.get("notifications") or {}).get("data") or [{}])
        response = item.get("response") or {}
        out.append({"recipient": (item.get("person") or {}).get("targetName"),
                    "delivered": notifications[0].get("delivered") or notifications[0].get("created"),
                    "response": response.get("text"), "responded_at": response.get("received")})
    return out


def _now():
    import time

    return time.time()


def enrich_from_xmatters(client, incidents, start=None, end=None, key_property=KEY_PROPERTY):
    """Add the pages and responses of each incident (events whose key property is the incident key, or the key of
    its escalation page <key>-escalated). Returns the number of incidents that had a page."""
    by_key = dict((i["key"], i) for i in incidents)
    params = {"embed": "properties", "limit": 1000}
    if start is not None:
        params["from"] = metrics.iso(start - 86400)
    if end is not None:
        params["to"] = metrics.iso(end + 86400)
    events = _xm_collect(client, XM_API + "/events", params)
    enriched = set()
    for event in sorted(events, key=lambda e: metrics.parse_time(e.get("created")) or 0):
        value = _property(event.get("properties"), key_property)
        if not value:
            continue
        key = value[:-len("-escalated")] if value.endswith("-escalated") else value
        incident = by_key.get(key)
        if incident is None:
            continue
        deliveries = xmatters_deliveries(client, event.get("id"))
        metrics.apply_deliveries(incident, deliveries, paged=metrics.parse_time(event.get("created")))
        enriched.add(key)
    return len(enriched)


def enrich_incident_from_xmatters(client, incident, key_property=KEY_PROPERTY):
    """Add the pages of one incident (found by its key property, the escalation page's key too); returns how many."""
    events = []
    for value in (incident["key"], incident["key"] + "-escalated"):
        found = _xm_collect(client, XM_API + "/events", {"propertyName": key_property, "propertyValue": value,
                                                         "embed": "properties", "limit": 100})
        events.extend(e for e in found if _property(e.get("properties"), key_property) == value)
    for event in sorted(events, key=lambda e: metrics.parse_time(e.get("created")) or 0):
        metrics.apply_deliveries(incident, xmatters_deliveries(client, event.get("id")),
                                 paged=metrics.parse_time(event.get("created")))
    return len(events)


def evidence_of(problem):
    """The evidence of a Dynatrace problem (API object) as rows: type, what, entity, since (ISO)."""
    rows = []
    for item in (problem.get("evidenceDetails") or {}).get("details") or []:
        entity = item.get("entity") or {}
        rows.append({"type": item.get("evidenceType"), "name": item.get("displayName"), "entity": entity.get("name"),
                     "start": metrics.iso(metrics.parse_time(item.get("startTime"))),
                     "root_cause_relevant": bool(item.get("rootCauseRelevant"))})
    return rows
