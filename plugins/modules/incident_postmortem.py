#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: incident_postmortem
short_description: Build one incident's post-mortem (Markdown and self-contained HTML) and attach it to its ticket
version_added: 0.1.0
description:
  - Assembles the record of one incident from its timeline (the incident role's C(<key>.json) in O(timeline_dir), the
    records given in O(timeline), or the ticket's attachment), the Dynatrace problem (O(problem), and with
    O(sources=dynatrace) its root cause, impacted entities and evidence read from Dynatrace), the page and its
    responses (O(sources=xmatters)), the ticket (O(sources=jira)) and the Slack transcript (C(<key>-slack.md)).
  - "Writes three files to O(dest): C(<key>-postmortem.md), C(<key>-postmortem.html) (one page with a timeline chart of
    the stages - detection, page, acknowledge, fix, healthy, resolved - and the incident's time to detect, acknowledge,
    heal and resolve; no script, font or anything else loaded from elsewhere) and C(<key>-postmortem.json), the
    assembled record, which the C(selfheal.devops.incident_report) module reads in preference to the bare timeline."
  - With O(attach=true), uploads the three files to the incident's Jira ticket (found by the O(incident_key) label),
    each once by name, and returns the link to post in the incident channel before it is archived.
  - A file is written only when its content changes, so a re-run with the same input reports V(changed=false).
author:
  - selfheal.devops contributors (@selfheal-devops)
requirements:
  - requests
  - matplotlib (only for the timeline chart; O(charts=false) builds the page without it)
extends_documentation_fragment:
  - selfheal.devops.connection
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: Reads everything and builds the post-mortem; writes and uploads nothing, and says what would change.
  diff_mode:
    support: full
    details: Shows the Markdown post-mortem before and after, and the attachments added.
options:
  incident_key:
    description: The incident key, for example V(dt-P-1234) (the ticket's label, the timeline's file name).
    type: str
    required: true
  timeline:
    description: The timeline's records (the incident role's C(incident_timeline)); when empty, read from O(timeline_dir), else from the ticket.
    type: list
    elements: dict
    default: []
  timeline_dir:
    description: Directory of the timeline C(<key>.json) and the transcript C(<key>-slack.md).
    type: path
    default: /var/tmp/selfheal/incidents
  problem:
    description: The normalised Dynatrace problem (the event's C(problem), the role's C(incident_problem)).
    type: dict
    default: {}
  sources:
    description:
      - Systems to read for more than O(timeline) and O(problem) tell. V(dynatrace) reads the problem with its evidence,
        V(xmatters) the page's deliveries and responses, V(jira) the ticket (key, status, resolution time).
    type: list
    elements: str
    choices: [jira, dynatrace, xmatters]
    default: []
  dest:
    description: Directory the post-mortem files are written to (created when missing). Default O(timeline_dir).
    type: path
  attach:
    description: Upload the post-mortem files to the incident's Jira ticket (each once, by file name).
    type: bool
    default: false
  project:
    description: Jira project key the ticket is searched in.
    type: str
  recurrence:
    description: The recurrence text of the incident (the C(selfheal.devops.incident_recurrence) module's RV(ignore:message)), shown in the post-mortem.
    type: str
  charts:
    description: Draw the timeline chart (needs C(matplotlib)).
    type: bool
    default: true
  key_property:
    description: The xMatters event property that holds the incident key.
    type: str
    default: selfheal_incident_key
  jira_url:
    description: Jira base URL. If not set, the value of the E(JIRA_URL) environment variable is used.
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
    description: Dynatrace environment URL. If not set, the value of the E(DYNATRACE_URL) environment variable is used.
    type: str
  dynatrace_api_token:
    description: Dynatrace API token (scope C(problems.read)). If not set, the value of the E(DYNATRACE_API_TOKEN) environment variable is used.
    type: str
  xmatters_url:
    description: xMatters base URL. If not set, the value of the E(XMATTERS_URL) environment variable is used.
    type: str
  xmatters_user:
    description: xMatters user or API key. If not set, the value of the E(XMATTERS_USER) environment variable is used.
    type: str
  xmatters_password:
    description: xMatters password or API key secret. If not set, the value of the E(XMATTERS_PASSWORD) environment variable is used.
    type: str
seealso:
  - module: selfheal.devops.incident_report
  - module: selfheal.devops.incident_timeline
"""

EXAMPLES = r"""
- name: Build the post-mortem at resolve, attach it and keep its link for the channel
  selfheal.devops.incident_postmortem:
    incident_key: "{{ incident_key }}"
    problem: "{{ incident_problem }}"
    timeline_dir: /var/tmp/selfheal/incidents
    sources: [dynatrace, xmatters, jira]
    attach: true
  register: postmortem

- name: Rebuild one on demand from the ticket alone (on a controller without the local files)
  selfheal.devops.incident_postmortem:
    incident_key: dt-P-1234
    sources: [jira, dynatrace]
    dest: /tmp/postmortems
    charts: false
"""

RETURN = r"""
paths:
  description: The files written (or that would be), by format.
  returned: always
  type: dict
  sample: {"markdown": "/var/tmp/selfheal/incidents/dt-P-1234-postmortem.md"}
link:
  description: Where to read the post-mortem - the HTML attachment on the ticket when attached, else the local HTML file.
  returned: always
  type: str
ticket:
  description: The incident's ticket (key, url, status), when Jira was read.
  returned: when O(sources) has V(jira) or O(attach=true)
  type: dict
attached:
  description: File names uploaded to the ticket by this run.
  returned: always
  type: list
  elements: str
figures:
  description: The incident's time to detect, acknowledge, heal and resolve, in seconds (null when a stage is unknown).
  returned: always
  type: dict
incident:
  description: The assembled incident record (stage times in epoch seconds, mode, fix, responses, signatures).
  returned: always
  type: dict
charts:
  description: The charts drawn into the HTML page.
  returned: always
  type: list
  elements: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.selfheal.devops.plugins.module_utils import _incident_metrics as metrics
from ansible_collections.selfheal.devops.plugins.module_utils import _incident_render as render
from ansible_collections.selfheal.devops.plugins.module_utils import _incident_sources as sources
from ansible_collections.selfheal.devops.plugins.module_utils import _options
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, SelfHealError
from ansible_collections.selfheal.devops.plugins.module_utils._files import write_atomically

FORMATS = (("json", "-postmortem.json", "application/json"), ("markdown", "-postmortem.md", "text/markdown"),
           ("html", "-postmortem.html", "text/html"))
MAX_TRANSCRIPT = 200000


def read_file(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError) as error:
        if getattr(error, "errno", None) == 2:
            return None
        raise


def timeline_records(params, ticket, jira_service):
    """(records, where from, problem display id) of the timeline: given, else the local file, else the ticket's."""
    if params["timeline"]:
        return params["timeline"], "timeline option", None
    path = os.path.join(params["timeline_dir"], params["incident_key"] + ".json")
    text = read_file(path)
    if text is not None:
        try:
            document = json.loads(text)
        except ValueError as error:
            raise InvalidInput("%s is not JSON: %s" % (path, error))
        if not isinstance(document, dict) or not isinstance(document.get("records"), list):
            raise InvalidInput("%s is not a timeline (no records list)" % path)
        return document["records"], path, document.get("problem")
    if ticket is not None:
        name = params["incident_key"] + ".json"
        item = next((a for a in (ticket.get("fields") or {}).get("attachment") or [] if a.get("filename") == name), None)
        if item is not None:
            document = json.loads(jira_service.attachment_content(item["id"]).decode("utf-8"))
            if not isinstance(document, dict) or not isinstance(document.get("records"), list):
                raise InvalidInput("%s's attachment %s is not a timeline (no records list)" % (ticket["key"], name))
            return document["records"], "%s attachment %s" % (ticket["key"], name), document.get("problem")
    raise InvalidInput("no timeline for %s: give timeline, or put %s in timeline_dir, or add jira to sources (the ticket's %s.json)"
                       % (params["incident_key"], os.path.basename(path), params["incident_key"]))


def find_ticket(params, service):
    found = service.search('labels = %s%s ORDER BY created ASC' % (
        sources.jira.jql_quote(params["incident_key"]),
        (" AND project = %s" % sources.jira.jql_quote(params["project"])) if params["project"] else ""),
        fields=sources.SEARCH_FIELDS, limit=1)
    return found[0] if found else None


def assemble(params, log):
    """(document, incident, ticket issue, jira service)."""
    key = params["incident_key"]
    jira_service = sources.jira_factory(params, log)() if ("jira" in params["sources"] or params["attach"]) else None
    ticket = find_ticket(params, jira_service) if jira_service else None
    if params["attach"] and ticket is None:
        raise InvalidInput("attach: no Jira ticket carries the label %s%s" % (key, (" in " + params["project"]) if params["project"] else ""))
    problem = params["problem"] or {}
    records, origin, display_id = timeline_records(params, ticket, jira_service)
    incident = metrics.from_timeline({"incident": key, "problem": problem.get("display_id") or display_id, "records": records})
    if problem:
        metrics.apply_problem(incident, problem)
    if ticket is not None:
        metrics.apply_ticket(incident, ticket, jira_service.browse_url(ticket["key"]))
    evidence = []
    if "dynatrace" in params["sources"]:
        ident = problem.get("id") or incident.get("problem")
        if not ident:
            raise InvalidInput("sources has dynatrace but neither problem.id nor the timeline names the problem")
        raw = sources.dynatrace_service(params, log).get_problem(ident, fields=("evidenceDetails",))
        metrics.apply_problem(incident, raw)
        evidence = sources.evidence_of(raw)
    if "xmatters" in params["sources"]:
        sources.enrich_incident_from_xmatters(sources.xmatters_client(params, log), incident, params["key_property"])
    transcript = read_file(os.path.join(params["timeline_dir"], key + "-slack.md"))
    document = {
        "version": metrics.RECORD_VERSION, "incident": incident, "records": records, "timeline_from": origin,
        "problem": {"id": problem.get("id") or incident.get("problem_id"), "display_id": incident.get("problem"),
                    "title": incident.get("title"), "severity": problem.get("severity") or incident.get("severity"),
                    "impact": problem.get("impact"), "url": problem.get("url"), "evidence": evidence},
        "responses": sorted(incident["responses"], key=lambda r: r.get("time") or 0),
        "ticket": incident.get("ticket"), "recurrence": params["recurrence"],
        "transcript": (transcript or "")[:MAX_TRANSCRIPT] or None,
    }
    return document, incident, ticket, jira_service


def write(params, texts, check_mode):
    """(changed, paths, markdown before)."""
    dest = params["dest"] or params["timeline_dir"]
    if not check_mode and not os.path.isdir(dest):
        os.makedirs(dest, 0o750)
    changed, paths, before = False, {}, None
    for form, suffix, dummy in FORMATS:
        path = os.path.join(dest, params["incident_key"] + suffix)
        paths[form] = path
        current = read_file(path)
        if form == "markdown":
            before = current
        if current != texts[form]:
            changed = True
            if not check_mode:
                write_atomically(path, texts[form])
    return changed, paths, before


def attach(params, texts, ticket, service, check_mode):
    """(names uploaded, link to the HTML attachment or None): each file once by name."""
    present = dict((a.get("filename"), a) for a in (ticket.get("fields") or {}).get("attachment") or [])
    files = [(params["incident_key"] + suffix, texts[form].encode("utf-8"), mime)
             for form, suffix, mime in FORMATS if params["incident_key"] + suffix not in present]
    added = []
    if files and not check_mode:
        added = service.add_attachments(ticket["key"], files)
    html_name = params["incident_key"] + "-postmortem.html"
    html = present.get(html_name) or next((a for a in added if a.get("filename") == html_name), None)
    return [name for name, dummy, dummy2 in files], (html or {}).get("content")


def run(params, check_mode, log):
    """(changed, result, diff)."""
    if params["attach"] and params["dest"] is None and not params["timeline_dir"]:
        raise InvalidInput("dest or timeline_dir is needed")
    document, incident, ticket, service = assemble(params, log)
    html, charts = render.postmortem_html(document, charts=params["charts"])
    texts = {"json": json.dumps(document, indent=2, sort_keys=True, default=str) + "\n",
             "markdown": render.postmortem_markdown(document), "html": html}
    changed, paths, before = write(params, texts, check_mode)
    attached, link = [], None
    if params["attach"]:
        attached, link = attach(params, texts, ticket, service, check_mode)
        changed = changed or bool(attached)
    result = {"paths": paths, "attached": attached, "link": link or paths["html"], "figures": metrics.figures(incident),
              "incident": incident, "charts": charts}
    if ticket is not None:
        result["ticket"] = incident.get("ticket")
    diff = {"before": before or "", "after": texts["markdown"], "before_header": paths["markdown"], "after_header": paths["markdown"]}
    return changed, result, diff


def main():
    module = AnsibleModule(
        argument_spec=sources.connection_spec(
            incident_key=dict(type="str", required=True, no_log=False),
            timeline=dict(type="list", elements="dict", default=[]),
            timeline_dir=dict(type="path", default="/var/tmp/selfheal/incidents"),
            problem=dict(type="dict", default={}),
            sources=dict(type="list", elements="str", default=[], choices=["jira", "dynatrace", "xmatters"]),
            dest=dict(type="path"),
            attach=dict(type="bool", default=False),
            project=dict(type="str"),
            recurrence=dict(type="str"),
            charts=dict(type="bool", default=True),
            key_property=dict(type="str", default="selfheal_incident_key", no_log=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["sources"] or params["attach"]:
        _options.require_requests(module)
    if params["charts"] and not render.HAS_MATPLOTLIB:
        module.fail_json(msg=missing_required_lib("matplotlib", reason="for the post-mortem's timeline chart (or set charts: false)"),
                         exception=str(render.MATPLOTLIB_IMPORT_ERROR))
    try:
        changed, result, diff = run(params, module.check_mode, module.warn)
    except SelfHealError as error:
        module.fail_json(**error.to_fail_kwargs())
    except (IOError, OSError) as error:
        module.fail_json(msg="incident_postmortem: cannot read the timeline or write the post-mortem: %s" % error)
    except ValueError as error:
        module.fail_json(msg="incident_postmortem: %s" % error)
    if module._diff:
        result["diff"] = diff
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
