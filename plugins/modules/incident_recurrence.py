#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: incident_recurrence
short_description: Find an incident's past occurrences in Jira and open one linked problem ticket when it keeps coming back
version_added: 0.1.0
description:
  - "Run when an incident opens, after its ticket exists. Computes the incident's recurrence signatures - the root-cause
    entity with the title's signature (numbers and ids left out), and the scenario with each host it happened on - and
    labels the ticket with them (C(selfheal-sig-<hash>)), so that later incidents find it with one JQL query."
  - Finds the incident tickets of the last O(window_days) days that share a signature, and returns (and, with
    O(comment=true), writes once on the ticket) C(seen N times in the last 30 days, last fixed by X in Y s), where X and
    Y come from the last occurrence's timeline attachment.
  - "When the incident occurred more than O(threshold) times in the window (this one included), it is a chronic failure
    that self-healing must not hide: the module opens one Jira O(problem_issue_type) ticket for it (found again by its
    label C(selfheal-problem-<hash>) while it is not done), links every occurrence to it (C(Problem/Incident): the
    problem causes the incident) and returns RV(page_owner=true) the one time it opened it, so the playbook pages the
    owning team once. A later occurrence is linked to the same problem ticket; no second one is opened."
extends_documentation_fragment:
  - selfheal.devops.jira
  - selfheal.devops.connection
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: Searches, and returns what it would label, comment, open and link, without writing.
  diff_mode:
    support: full
    details: Shows the ticket's labels and the problem ticket's linked incidents before and after.
options:
  incident_key:
    description: The incident key (the ticket's label), for example V(dt-P-1234).
    type: str
    required: true
  problem:
    description: The normalised Dynatrace problem (title, entities, root cause, tags, start time).
    type: dict
    required: true
  scenario:
    description:
      - The incident's scenario (V(process_crash), V(full_disk), V(bluegreen) or your own); default the problem's
        C(selfheal_scenario) tag, else guessed from the title.
    type: str
  ticket:
    description: The incident's ticket key; default the oldest ticket with the O(incident_key) label.
    type: str
  project:
    description: Project the search is limited to and the problem ticket is opened in; default the ticket's project.
    type: str
  label:
    description: The label every incident ticket of the collection carries.
    type: str
    default: selfheal
  window_days:
    description: How far back occurrences count.
    type: int
    default: 30
  threshold:
    description: Open the problem ticket when the incident occurred more than this many times in the window (this one included).
    type: int
    default: 3
  comment:
    description: Write the recurrence text on the ticket (once; a re-run recognises its marker).
    type: bool
    default: true
  problem_ticket:
    description: Open (once) and link the problem ticket past O(threshold).
    type: bool
    default: true
  problem_issue_type:
    description: Issue type of the problem ticket.
    type: str
    default: Problem
  link_type:
    description: Issue link type between the problem ticket (its outward end, "causes") and each incident.
    type: str
    default: Problem/Incident
  problem_labels:
    description: Labels of the problem ticket, besides its C(selfheal-problem-<hash>) label.
    type: list
    elements: str
    default: [selfheal-problem]
  problem_priority:
    description: Priority name of the problem ticket (the project's default when unset).
    type: str
author:
  - selfheal.devops contributors (@selfheal-devops)
seealso:
  - module: selfheal.devops.jira_incident
  - module: selfheal.devops.incident_postmortem
"""

EXAMPLES = r"""
- name: At open, after the ticket exists - recurrence text, and a problem ticket on the 4th occurrence in 30 days
  selfheal.devops.incident_recurrence:
    incident_key: "{{ incident_key }}"
    problem: "{{ incident_problem }}"
    ticket: "{{ incident_ticket.key }}"
    threshold: 3
  register: recurrence

- name: Page the owning team, once, when the problem ticket was opened
  selfheal.devops.oncall_notify:
    provider: xmatters
    incident_key: "{{ recurrence.problem_ticket.key }}"
    summary: "Chronic failure: {{ recurrence.message }} ({{ recurrence.problem_ticket.url }})"
    groups: [Ops Primary]
  when: recurrence.page_owner
"""

RETURN = r"""
message:
  description: The recurrence text for the ticket and the channel.
  returned: always
  type: str
  sample: seen 3 times in the last 30 days, last fixed by selfheal.devops (restart process on web-01) in 12 s
count:
  description: Past occurrences in the window (this incident not counted).
  returned: always
  type: int
occurrences:
  description: Occurrences in the window, this one included (what O(threshold) is compared with).
  returned: always
  type: int
similar:
  description: The past occurrences, newest first (incident key, ticket key, created, status).
  returned: always
  type: list
  elements: dict
signatures:
  description: The incident's signatures and their labels.
  returned: always
  type: list
  elements: dict
ticket:
  description: The incident's ticket key.
  returned: always
  type: str
problem_ticket:
  description: The problem ticket (key, url, created by this run, incidents linked by this run), when past the threshold.
  returned: when the occurrences exceed O(threshold) and O(problem_ticket=true)
  type: dict
page_owner:
  description: True only in the run that opened the problem ticket (page the owning team then).
  returned: always
  type: bool
"""

import hashlib

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _incident_metrics as metrics
from ansible_collections.selfheal.devops.plugins.module_utils import _incident_sources as sources
from ansible_collections.selfheal.devops.plugins.module_utils import _options, jira
from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput, SelfHealError

SEARCH_FIELDS = ("summary", "status", "created", "resolutiondate", "labels", "attachment", "issuetype", "project")
PROBLEM_PREFIX = "selfheal-problem-"
MAX_SIMILAR = 1000


def problem_label(signature):
    return PROBLEM_PREFIX + hashlib.sha256(signature.encode("utf-8")).hexdigest()[:12]


def current_incident(params):
    """The incident as known at open: the problem's facts and the scenario."""
    problem = params["problem"]
    if not problem.get("title") and not problem.get("entities"):
        raise InvalidInput("problem must be the normalised Dynatrace problem (title, entities, ...)")
    incident = metrics.new_incident(params["incident_key"])
    incident["scenario"] = params["scenario"]
    metrics.apply_problem(incident, problem)
    if params["scenario"]:
        incident["scenario"] = params["scenario"]
        incident["signatures"] = metrics.signatures(incident)
    return incident


def find_own_ticket(params, service):
    if params["ticket"]:
        return service.get_issue(params["ticket"], fields=list(SEARCH_FIELDS))
    clauses = "labels = %s" % jira.jql_quote(params["incident_key"])
    if params["project"]:
        clauses = "project = %s AND %s" % (jira.jql_quote(params["project"]), clauses)
    found = service.search(clauses + " ORDER BY created ASC", fields=SEARCH_FIELDS, limit=1)
    if not found:
        raise InvalidInput("no Jira ticket carries the label %s yet: run this after the ticket is opened" % params["incident_key"])
    return found[0]


def similar_tickets(params, service, labels, project, own_key):
    """Incident tickets of the window that carry one of the signature labels, newest first (not this one, no problem tickets)."""
    jql = "project = %s AND labels = %s AND labels in (%s) AND created >= -%dd ORDER BY created DESC" % (
        jira.jql_quote(project), jira.jql_quote(params["label"]), ", ".join(jira.jql_quote(label) for label in labels),
        params["window_days"])
    found = []
    for issue in service.iter_search(jql, fields=SEARCH_FIELDS, max_issues=MAX_SIMILAR):
        issue_labels = (issue.get("fields") or {}).get("labels") or []
        if issue["key"] == own_key or params["incident_key"] in issue_labels:
            continue
        if any(label.startswith(PROBLEM_PREFIX) for label in issue_labels):
            continue
        found.append(issue)
    return found


def incident_key_of(issue):
    for label in (issue.get("fields") or {}).get("labels") or []:
        if label.startswith("dt-"):
            return label
    return None


def last_occurrence(service, issue):
    """The last occurrence as an incident record (its attached record), or None when it has none readable."""
    try:
        return sources.incident_from_issue(service, issue)
    except ValueError:
        return None


def label_ticket(service, ticket, labels, check_mode):
    have = (ticket.get("fields") or {}).get("labels") or []
    missing = [label for label in labels if label not in have]
    if missing and not check_mode:
        service.update_issue(ticket["key"], {"labels": have + missing})
    return have, have + missing


def comment_once(params, service, key, text, check_mode):
    marker = jira.marker_id(None, "%s-recurrence" % params["incident_key"])
    for comment in service.comments(key):
        if marker in jira.markers_in(comment.get("body")):
            return False
    if not check_mode:
        service.add_comment(key, jira.comment_body("Recurrence: %s" % text, marker, service.version))
    return True


def chosen_signature(incident, similar_issues):
    """The signature the problem ticket is about: the one most past occurrences share (the primary one on a tie)."""
    counts = []
    for position, signature in enumerate(incident["signatures"]):
        label = metrics.signature_label(signature)
        shared = sum(1 for issue in similar_issues if label in ((issue.get("fields") or {}).get("labels") or []))
        counts.append((-shared, position, signature))
    return sorted(counts)[0][2]


def problem_description(incident, signature, occurrences, window, keys):
    lines = ["Opened by **selfheal.devops**: the same failure occurred %d times in the last %d days (%s)." % (
        occurrences, window, metrics.describe_signature(signature)), "",
        "Self-healing fixed the occurrences it could; this ticket is for the root cause.", "",
        "Occurrences (linked): %s" % ", ".join(keys), "", "Signature: `%s`" % signature]
    return "\n".join(lines)


def ensure_problem_ticket(params, service, incident, signature, project, incident_tickets, occurrences, check_mode):
    """(problem ticket summary, page_owner, linked before, linked after)."""
    label = problem_label(signature)
    found = service.search("project = %s AND labels = %s AND statusCategory != Done ORDER BY created ASC" % (
        jira.jql_quote(project), jira.jql_quote(label)), fields=("summary", "issuelinks", "status"), limit=1)
    created = False
    if found:
        issue = found[0]
        key = issue["key"]
        linked = set(link["key"] for link in jira.issue_links(issue) if link["type"] == params["link_type"] and link["direction"] == "outward")
    else:
        created, linked = True, set()
        fields = {"project": {"key": project}, "issuetype": {"name": params["problem_issue_type"]},
                  "summary": ("Recurring: %s (%d times in %d days)" % (
                      metrics.describe_signature(signature), occurrences, params["window_days"]))[:250],
                  "description": service.rich(problem_description(incident, signature, occurrences, params["window_days"],
                                                                  incident_tickets)),
                  "labels": list(params["problem_labels"]) + [label]}
        if params["problem_priority"]:
            fields["priority"] = {"name": params["problem_priority"]}
        key = None if check_mode else service.create_issue(fields)["key"]
    if key is not None or check_mode:
        service_link_type = service.link_type(params["link_type"]) if not check_mode else None
        for ticket_key in incident_tickets:
            if ticket_key not in linked and not check_mode:
                service.link(service_link_type["name"], key, ticket_key)
    after = sorted(linked | set(incident_tickets))
    summary = {"key": key, "url": service.browse_url(key), "created": created, "label": label,
               "linked": sorted(set(incident_tickets) - linked), "signature": signature}
    return summary, created, sorted(linked), after


def run(params, service, check_mode):
    """(changed, result, diff)."""
    if params["window_days"] < 1 or params["threshold"] < 1:
        raise InvalidInput("window_days and threshold must be at least 1")
    incident = current_incident(params)
    ticket = find_own_ticket(params, service)
    project = params["project"] or ((ticket.get("fields") or {}).get("project") or {}).get("key") or ticket["key"].rsplit("-", 1)[0]
    labels = [metrics.signature_label(s) for s in incident["signatures"]]
    labels_before, labels_after = label_ticket(service, ticket, labels, check_mode)
    changed = labels_before != labels_after
    similar_issues = similar_tickets(params, service, labels, project, ticket["key"])
    last = last_occurrence(service, similar_issues[0]) if similar_issues else None
    message = metrics.recurrence_text(len(similar_issues), params["window_days"], last)
    if params["comment"] and similar_issues:
        changed = comment_once(params, service, ticket["key"], message, check_mode) or changed
    occurrences = len(similar_issues) + 1
    result = {"message": message, "count": len(similar_issues), "occurrences": occurrences, "ticket": ticket["key"],
              "signatures": [{"signature": s, "label": metrics.signature_label(s)} for s in incident["signatures"]],
              "similar": [{"incident": incident_key_of(i), "ticket": i["key"], "created": (i.get("fields") or {}).get("created"),
                           "status": ((i.get("fields") or {}).get("status") or {}).get("name")} for i in similar_issues],
              "page_owner": False}
    diff = {"before": {"labels": labels_before}, "after": {"labels": labels_after}}
    if params["problem_ticket"] and occurrences > params["threshold"]:
        signature = chosen_signature(incident, similar_issues)
        tickets = sorted(set([i["key"] for i in similar_issues] + [ticket["key"]]), key=lambda k: (len(k), k))
        summary, created, before, after = ensure_problem_ticket(params, service, incident, signature, project, tickets,
                                                                occurrences, check_mode)
        result["problem_ticket"] = summary
        result["page_owner"] = created
        changed = changed or created or bool(summary["linked"])
        diff["before"]["problem_ticket_links"] = before
        diff["after"]["problem_ticket_links"] = after
    return changed, result, diff


def main():
    module = AnsibleModule(
        argument_spec=_options.argument_spec(
            "jira",
            incident_key=dict(type="str", required=True, no_log=False),
            problem=dict(type="dict", required=True),
            scenario=dict(type="str"),
            ticket=dict(type="str"),
            project=dict(type="str"),
            label=dict(type="str", default="selfheal"),
            window_days=dict(type="int", default=30),
            threshold=dict(type="int", default=3),
            comment=dict(type="bool", default=True),
            problem_ticket=dict(type="bool", default=True),
            problem_issue_type=dict(type="str", default="Problem"),
            link_type=dict(type="str", default="Problem/Incident"),
            problem_labels=dict(type="list", elements="str", default=["selfheal-problem"]),
            problem_priority=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    _options.require_requests(module)
    params = module.params
    try:
        client = jira.client_from_params(params, log=module.warn)
        deployment = "dc" if (not params["user"] and params["api_version"] == "2") else "cloud"
        changed, result, diff = run(params, jira.JiraService(client, params["api_version"], deployment), module.check_mode)
    except SelfHealError as error:
        module.fail_json(**error.to_fail_kwargs())
    except ValueError as error:
        module.fail_json(msg="incident_recurrence: %s" % error)
    if module._diff:
        result["diff"] = diff
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
