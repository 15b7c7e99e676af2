#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: incident_report
short_description: Incident analytics over a period (MTTD, MTTA, MTTR, recurrences, responders) from the systems of record
version_added: 0.1.0
description:
  - Reads the incidents of a period from the systems of record and writes an analytics report as JSON, Markdown and a
    self-contained HTML page (inline SVG charts, no script, font or anything else loaded from elsewhere).
  - "Sources (O(sources)): V(jira) - the tickets labelled O(label) and their attachments (the incident role's timeline
    C(<key>.json), or the post-mortem record C(<key>-postmortem.json) when there is one), so the report works on an
    AWX or EDA controller where local files do not survive the job; V(timelines) - the same files in O(timeline_dir);
    V(dynatrace) - the problems of the period (detection time, onset from the evidence, entities, root cause,
    management zones, the C(service) tag); V(xmatters) - the pages and who answered them, when."
  - "The report: counts per scenario, service, host and management zone; time to detect, acknowledge, heal and
    resolve (median, p90, mean) for all incidents and split by mode (auto, approve, escalated); fix success and
    escalation rates; per-responder pages, responses and response times, with whether their latest week beat every
    earlier one; incidents the automation healed before anyone acknowledged and the time it saved; the most frequent
    recurrences. C(docs/postmortem.md) defines every figure."
  - An incident belongs to the period when it was detected in it (the Dynatrace problem's start; without Dynatrace,
    the first timeline record).
  - The files are written only when their content changes (atomically), so a re-run over the same fixed period
    reports V(changed=false).
author:
  - selfheal.devops contributors (@selfheal-devops)
requirements:
  - requests
  - matplotlib (only for the charts of the HTML report; JSON and Markdown do not need it)
extends_documentation_fragment:
  - selfheal.devops.connection
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: Reads the sources and computes the report; writes no file and says which files would change.
  diff_mode:
    support: full
    details: Shows the Markdown report before and after.
options:
  sources:
    description: Where the incidents come from. V(jira) and V(timelines) provide incidents; V(dynatrace) and V(xmatters) add to them.
    type: list
    elements: str
    choices: [jira, timelines, dynatrace, xmatters]
    default: [jira]
  start:
    description: Start of the period, an ISO-8601 date or time (UTC unless it says otherwise) or epoch seconds. Default O(end) minus O(period_days).
    type: str
  end:
    description: End of the period (excluded), as O(start). Default now.
    type: str
  period_days:
    description: Length of the period in days when O(start) is not given.
    type: float
    default: 30
  dest:
    description: Directory the report files are written to (created when missing).
    type: path
    required: true
  name:
    description: File name stem of the report files (C(<name>.json), C(<name>.md), C(<name>.html)).
    type: str
    default: incident-report
  formats:
    description: Which files to write.
    type: list
    elements: str
    choices: [json, markdown, html]
    default: [json, markdown, html]
  charts:
    description:
      - Draw the charts of the HTML report (needs C(matplotlib) on the host that runs the module; the module fails naming
        it when it is missing). V(false) writes the HTML with tables only.
    type: bool
    default: true
  title:
    description: Title of the report.
    type: str
    default: Incident report
  timeline_dir:
    description: Directory of the timeline files, for the V(timelines) source.
    type: path
    default: /var/tmp/selfheal/incidents
  label:
    description: The Jira label every incident ticket carries (the incident role's C(incident_jira_labels)).
    type: str
    default: selfheal
  project:
    description: Jira project key to narrow the search to.
    type: str
  jql:
    description: An extra JQL clause the tickets must also match, for example V(component = payments).
    type: str
  key_property:
    description: The xMatters event property that holds the incident key.
    type: str
    default: selfheal_incident_key
  manual_baseline:
    description:
      - Seconds a person would take to resolve an incident, used for the time the automation saved when the period
        has no escalated incident to measure it from.
    type: float
  top:
    description: How many recurrences the report lists.
    type: int
    default: 10
  rows:
    description: How many of the latest incidents the Markdown and HTML list (the JSON lists them all).
    type: int
    default: 50
  workers:
    description: Attachments downloaded in parallel from Jira.
    type: int
    default: 4
  max_incidents:
    description: Upper bound on the tickets read from Jira (a bound for a query that selects far more than intended).
    type: int
    default: 100000
  jira_url:
    description:
      - Jira base URL. If not set, the value of the E(JIRA_URL) environment variable is used.
      - Needed for the V(jira) source.
    type: str
  jira_user:
    description:
      - Account e-mail for Jira Cloud basic authentication; unset sends O(jira_token) as a Bearer token (Data Center).
      - If not set, the value of the E(JIRA_USER) environment variable is used.
    type: str
  jira_token:
    description: Jira API token or personal access token. If not set, the value of the E(JIRA_TOKEN) environment variable is used.
    type: str
  jira_api_version:
    description: Jira REST API version. If not set, the value of the E(JIRA_API_VERSION) environment variable is used.
    type: str
    choices: ['2', '3']
    default: '3'
  dynatrace_url:
    description: Dynatrace environment URL, for the V(dynatrace) source. If not set, the value of the E(DYNATRACE_URL) environment variable is used.
    type: str
  dynatrace_api_token:
    description: Dynatrace API token (scope C(problems.read)). If not set, the value of the E(DYNATRACE_API_TOKEN) environment variable is used.
    type: str
  xmatters_url:
    description: xMatters base URL, for the V(xmatters) source. If not set, the value of the E(XMATTERS_URL) environment variable is used.
    type: str
  xmatters_user:
    description: xMatters user or API key. If not set, the value of the E(XMATTERS_USER) environment variable is used.
    type: str
  xmatters_password:
    description: xMatters password or API key secret. If not set, the value of the E(XMATTERS_PASSWORD) environment variable is used.
    type: str
seealso:
  - module: selfheal.devops.incident_postmortem
  - module: selfheal.devops.incident_recurrence
"""

EXAMPLES = r"""
- name: Last 30 days from Jira, enriched from Dynatrace and xMatters
  selfheal.devops.incident_report:
    sources: [jira, dynatrace, xmatters]
    project: OPS
    dest: /var/tmp/selfheal/reports
  register: report

- name: November from the local timeline files, JSON and Markdown only (no matplotlib needed)
  selfheal.devops.incident_report:
    sources: [timelines]
    start: "2026-11-01"
    end: "2026-12-01"
    formats: [json, markdown]
    dest: /var/tmp/selfheal/reports
    name: incidents-2026-11
"""

RETURN = r"""
paths:
  description: The report files, by format.
  returned: always
  type: dict
  sample: {"json": "/var/tmp/selfheal/reports/incident-report.json", "html": "/var/tmp/selfheal/reports/incident-report.html"}
summary:
  description: The report's totals, automation savings and response times of all incidents (the full report is in the JSON file).
  returned: always
  type: dict
incidents:
  description: Number of incidents in the period.
  returned: always
  type: int
charts:
  description: The charts drawn into the HTML report.
  returned: always
  type: list
  elements: str
sources:
  description: What each source contributed (incidents read, incidents enriched, problems without an incident).
  returned: always
  type: dict
warnings_count:
  description: Tickets or files skipped because they hold no readable timeline (each is named in a warning, up to 20).
  returned: always
  type: int
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.selfheal.devops.plugins.module_utils import _incident_metrics as metrics
from ansible_collections.selfheal.devops.plugins.module_utils import _incident_render as render
from ansible_collections.selfheal.devops.plugins.module_utils import _incident_sources as sources
from ansible_collections.selfheal.devops.plugins.module_utils import _options
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, SelfHealError
from ansible_collections.selfheal.devops.plugins.module_utils._files import write_atomically

EXTENSIONS = {"json": ".json", "markdown": ".md", "html": ".html"}
MAX_WARNINGS = 20


def period(params, now=None):
    """(start, end) epoch seconds from the options; InvalidInput when they do not make a period."""
    end = now if now is not None else time.time()
    if params["end"]:
        end = metrics.parse_time(params["end"])
        if end is None:
            raise InvalidInput("end %r is not an ISO-8601 date/time or epoch seconds" % params["end"])
    if params["start"]:
        start = metrics.parse_time(params["start"])
        if start is None:
            raise InvalidInput("start %r is not an ISO-8601 date/time or epoch seconds" % params["start"])
    else:
        if params["period_days"] <= 0:
            raise InvalidInput("period_days must be above 0")
        start = end - params["period_days"] * 86400
    if start >= end:
        raise InvalidInput("the period is empty: start %s is not before end %s" % (metrics.iso(start), metrics.iso(end)))
    return start, end


def check_params(params):
    if not set(params["sources"]) & {"jira", "timelines"}:
        raise InvalidInput("sources must include jira or timelines (dynatrace and xmatters only add to the incidents they provide)")
    for name in ("top", "rows", "workers", "max_incidents"):
        if params[name] < 1:
            raise InvalidInput("%s must be at least 1" % name)
    if params["workers"] > 16:
        raise InvalidInput("workers must be at most 16")
    if "/" in params["name"] or params["name"] in ("", ".", ".."):
        raise InvalidInput("name must be a file name stem without '/'")
    if not params["formats"]:
        raise InvalidInput("formats must name at least one of json, markdown, html")


def gather(params, start, end, log):
    """(incidents, warnings, per-source statistics)."""
    found, warnings, stats = {}, [], {}
    if "jira" in params["sources"]:
        jql = sources.incident_jql(params["label"], params["project"], start, end, params["jql"])
        incidents, skipped, counts = sources.incidents_from_jira(sources.jira_factory(params, log), jql, params["workers"],
                                                                 params["max_incidents"])
        warnings.extend(skipped)
        stats["jira"] = dict(counts, incidents=len(incidents))
        for incident in incidents:
            found[incident["key"]] = incident
    if "timelines" in params["sources"]:
        incidents, skipped = sources.incidents_from_directory(params["timeline_dir"])
        warnings.extend(skipped)
        stats["timelines"] = {"incidents": len(incidents)}
        for incident in incidents:
            found.setdefault(incident["key"], incident)  # a ticket's copy and the local file are the same incident
    incidents = list(found.values())
    if "dynatrace" in params["sources"]:
        enriched, unhandled = sources.enrich_from_dynatrace(sources.dynatrace_service(params, log), incidents, start, end)
        stats["dynatrace"] = {"enriched": enriched, "problems_without_incident": unhandled}
    if "xmatters" in params["sources"]:
        paged = sources.enrich_from_xmatters(sources.xmatters_client(params, log), incidents, start, end,
                                             params["key_property"])
        stats["xmatters"] = {"enriched": paged}
    return incidents, warnings, stats


def documents(params, report):
    """{format: text} of the report files asked for, and the charts drawn."""
    out, charts = {}, []
    if "json" in params["formats"]:
        out["json"] = json.dumps(report, indent=2, sort_keys=True) + "\n"
    if "markdown" in params["formats"]:
        out["markdown"] = render.report_markdown(report, params["title"], params["rows"])
    if "html" in params["formats"]:
        out["html"], charts = render.report_html(report, params["title"], charts=params["charts"], limit=params["rows"])
    return out, charts


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def write_files(params, texts, check_mode):
    """(changed, paths, before markdown): each file written only when its content differs."""
    paths, changed, before = {}, False, None
    if not check_mode and not os.path.isdir(params["dest"]):
        os.makedirs(params["dest"], 0o750)
    for form, text in texts.items():
        path = os.path.join(params["dest"], params["name"] + EXTENSIONS[form])
        paths[form] = path
        current = read_text(path)
        if form == "markdown":
            before = current
        if current != text:
            changed = True
            if not check_mode:
                write_atomically(path, text)
    return changed, paths, before


def run(params, check_mode, log, now=None):
    """(changed, result, diff)."""
    check_params(params)
    start, end = period(params, now)
    incidents, warnings, stats = gather(params, start, end, log)
    report = metrics.build_report(incidents, start, end, params["manual_baseline"], params["top"])
    report["sources"] = stats
    texts, charts = documents(params, report)
    changed, paths, before = write_files(params, texts, check_mode)
    for warning in warnings[:MAX_WARNINGS]:
        log(warning)
    summary = {"period": report["period"], "totals": report["totals"], "automation": report["automation"],
               "times": report["times"]["all"]}
    result = {"paths": paths, "summary": summary, "incidents": report["totals"]["incidents"], "charts": charts,
              "sources": stats, "warnings_count": len(warnings)}
    diff = {"before": before or "", "after": texts.get("markdown", ""), "before_header": paths.get("markdown", ""),
            "after_header": paths.get("markdown", "")} if "markdown" in texts else {}
    return changed, result, diff


def main():
    module = AnsibleModule(
        argument_spec=sources.connection_spec(
            sources=dict(type="list", elements="str", default=["jira"], choices=["jira", "timelines", "dynatrace", "xmatters"]),
            start=dict(type="str"),
            end=dict(type="str"),
            period_days=dict(type="float", default=30),
            dest=dict(type="path", required=True),
            name=dict(type="str", default="incident-report"),
            formats=dict(type="list", elements="str", default=["json", "markdown", "html"], choices=["json", "markdown", "html"]),
            charts=dict(type="bool", default=True),
            title=dict(type="str", default="Incident report"),
            timeline_dir=dict(type="path", default="/var/tmp/selfheal/incidents"),
            label=dict(type="str", default="selfheal"),
            project=dict(type="str"),
            jql=dict(type="str"),
            key_property=dict(type="str", default="selfheal_incident_key", no_log=False),
            manual_baseline=dict(type="float"),
            top=dict(type="int", default=10),
            rows=dict(type="int", default=50),
            workers=dict(type="int", default=4),
            max_incidents=dict(type="int", default=100000),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if set(params["sources"]) - {"timelines"}:
        _options.require_requests(module)
    if "html" in params["formats"] and params["charts"] and not render.HAS_MATPLOTLIB:
        module.fail_json(msg=missing_required_lib("matplotlib", reason="for the charts of the HTML report (or set charts: false,"
                                                  " or leave html out of formats)"),
                         exception=str(render.MATPLOTLIB_IMPORT_ERROR))
    try:
        changed, result, diff = run(params, module.check_mode, module.warn)
    except SelfHealError as error:
        module.fail_json(**error.to_fail_kwargs())
    except (IOError, OSError) as error:
        module.fail_json(msg="incident_report: cannot read the timelines or write the report: %s" % error)
    if module._diff and diff:
        result["diff"] = diff
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
