#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: incident_sync
short_description: Open, update, approve, resolve or escalate an incident in every system of record at once
version_added: 0.1.0
description:
  - One module run per phase of an incident, for the C(selfheal.devops.incident) role. The systems - the Dynatrace
    problem (comment, close), the on-call page (xMatters or PagerDuty), the service desks (a Jira ticket, a ServiceNow
    incident, either or both) and the chats (a Slack channel, a Microsoft Teams channel, either or both) - are written
    B(concurrently), each by the very logic of its own module (M(selfheal.devops.dynatrace_problem),
    M(selfheal.devops.oncall_notify), M(selfheal.devops.jira_incident), M(selfheal.devops.servicenow_incident),
    M(selfheal.devops.slack_channel), M(selfheal.devops.teams_channel)), with the same checks, idempotence on the
    incident key, retries and errors. A step that needs another's result runs in a later stage (the channels' opening
    messages name the tickets and bring in the people paged; each desk names the other; every ticket's resolution
    carries every chat's transcript).
  - "Phases: V(open) - comment that remediation started, page, the tickets, then the channels with the responders
    (and, with O(slack.buttons), Approve / Ignore / Run fix again / Escalate buttons for the
    C(selfheal.devops.slack_actions) source) and the cross-links between the desks. V(approve) - wait for the first
    answer (a decision written by an event source into O(decision_dir), or the xMatters page's first response) and
    tell the tickets and the channels who decided. V(update) - progress everywhere. V(resolve) - outcome comment and
    close, page resolved, outcome in the channels, each ticket opened if it still is not (catch-up), the channels'
    transcripts exported, then each ticket resolved with the timeline and every transcript attached (ServiceNow with
    O(servicenow.close_code) and close notes), and the channels archived. V(escalate) - comment, escalation page,
    ticket comments and work notes, channel messages. V(record) - only append O(fix_records) to the timeline."
  - "Cross-links, when both desks are on: the ServiceNow incident's number and link in the Jira ticket (a comment, once)
    and the Jira key and link in the ServiceNow incident (a work note, once), written as soon as both are known (in
    the phase that learns the second one) and recorded in the timeline (steps C(link servicenow) and C(link jira))."
  - Every step is appended to the incident's timeline (C(<timeline_dir>/<incident_key>.json)) with its real start,
    end and result, in one locked, atomic write per stage. A failing system never fails the module - its error is in
    RV(errors) and the timeline - and a system still answering when O(budget) is spent is recorded as failed and
    left behind; every write being idempotent on the incident key (and a write whose answer was lost being looked up
    before it is sent again), the next phase catches it up exactly once.
  - Each system fails on its own - a desk or chat that is down, refuses the credentials or the input (an unknown
    assignment group, a team that does not exist) is one failed step, named in RV(errors), while the others go on.
  - An incident already resolved is not opened again (nothing is written).
  - On the controller (the task runs there - localhost or delegated to it, no privilege escalation, no task
    environment, not async), the module runs in the task's own worker process through its action plugin instead of a
    new Python interpreter, and O(background) writes an V(open) or an V(approve) in a detached process; elsewhere it runs as a
    module.
  - The phases of one incident run one after the other (a lock file beside its timeline), so a V(resolve) started while
    an V(open) runs in the background waits for it (at most O(budget) seconds); the two never race to create the
    same ticket or channel.
extends_documentation_fragment:
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: partial
    details: Each system predicts as its module does; nothing is written, and V(approve) does not wait.
  diff_mode:
    support: none
options:
  phase:
    description: What to do (see the description).
    type: str
    required: true
    choices: [open, update, approve, resolve, escalate, record]
  background:
    description:
      - With O(phase=open), on the controller, return as soon as a detached process that opens the incident holds its
        lock (about as long as forking takes), so no communication system holds the fix. What it writes goes to the
        timeline; the incident's next phase (or V(record), to read what was written) waits for it to end.
      - With O(phase=approve), the answer is awaited as without it and returned in RV(approval); only telling every
        system who decided goes on in the detached process.
      - Ignored for other phases, in check mode, and where the module does not run on the controller.
    type: bool
    default: false
  incident_key:
    description: The incident key every record is idempotent on (for example V(dt-P-1234)).
    type: str
    required: true
  problem:
    description: The normalised Dynatrace problem (C(event.problem) of the C(selfheal.devops.dynatrace) source).
    type: dict
    default: {}
  text:
    description: The outcome (resolve), the progress (update) or the reason (escalate).
    type: str
    default: ""
  run_url:
    description: A link to this run (an AWX job), written into the records.
    type: str
    default: ""
  fix_records:
    description:
      - Records of the fix to append to the timeline before this phase's own (resolve and record), each a dict with
        C(step), C(host), C(result) (V(ok), V(changed), V(failed)), C(detail), C(started) and C(ended) (epoch seconds).
    type: list
    elements: dict
    default: []
  timeline_dir:
    description:
      - Where the timeline (C(<incident_key>.json)) and the chats' transcripts (C(<incident_key>-slack.md),
        C(<incident_key>-teams.md)) of each incident are kept on the controller.
    type: path
    default: /var/tmp/selfheal/incidents
  decision_dir:
    description:
      - Where the event sources (C(selfheal.devops.oncall_callback), C(selfheal.devops.slack_actions), option
        C(decision_dir)) write the first answer to an incident; V(approve) reacts to it at once. Without it, only the
        xMatters page's responses are read (every O(oncall.approval_poll_interval) seconds).
    type: path
  budget:
    description: Seconds the phase may take in all (V(approve) waits up to O(oncall.approval_timeout) on top).
    type: float
    default: 60
  request_timeout:
    description: Seconds one API request may take.
    type: float
    default: 10
  max_retries:
    description: Retries of each request on 429, 503 and connection failures (Retry-After honoured).
    type: int
    default: 4
  max_retry_wait:
    description: Seconds the retries of one request may wait in total.
    type: float
    default: 30
  dynatrace:
    description: The Dynatrace problem's part.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: Comment on the problem (needs O(problem) with its C(id)).
        type: bool
        default: true
      close:
        description: Close the problem on resolve.
        type: bool
        default: true
  oncall:
    description: The on-call page's part.
    type: dict
    default: {}
    suboptions:
      provider:
        description: V(xmatters), V(pagerduty), or empty for no page.
        type: str
        default: ""
        choices: ["", xmatters, pagerduty]
      groups:
        description: Groups to page (xMatters).
        type: list
        elements: str
        default: []
      escalation_groups:
        description: Groups paged on escalate (default O(oncall.groups)).
        type: list
        elements: str
        default: []
      priority:
        description: xMatters priority.
        type: str
        default: high
        choices: [low, medium, high]
      severity:
        description: PagerDuty severity.
        type: str
        default: critical
        choices: [critical, error, warning, info]
      response_options:
        description: xMatters response options (C(text), C(description), C(action)).
        type: list
        elements: dict
        default: []
      approve:
        description:
          - This incident waits for approval; the page is refused before sending when O(oncall.approve_response) is not
            among O(oncall.response_options).
        type: bool
        default: false
      page_policy:
        description:
          - V(always) pages the on-call engineer when the incident opens. V(on_failure) pages only when a human is
            needed - at open in approve mode, and on escalation (a failed fix, nothing to fix automatically) - so an
            incident the automation fixes by itself wakes nobody; it is still in the tickets, the channels and
            Dynatrace.
        type: str
        choices: [always, on_failure]
        default: always
      approve_response:
        description: The response that approves the fix.
        type: str
        default: Approve
      approval_timeout:
        description: Seconds V(approve) waits for an answer; no answer is not an approval.
        type: float
        default: 300
      approval_poll_interval:
        description: Seconds between reads of the xMatters page's responses while waiting.
        type: float
        default: 2
  jira:
    description: The Jira ticket's part (no ticket when O(jira.project) is empty).
    type: dict
    default: {}
    suboptions:
      project:
        description: Project key.
        type: str
        default: ""
      issue_type:
        description: Issue type of the ticket.
        type: str
        default: Incident
      priority:
        description: Priority name.
        type: str
        default: ""
      labels:
        description: Labels besides the incident key.
        type: list
        elements: str
        default: [selfheal]
      components:
        description: Component names.
        type: list
        elements: str
        default: []
      resolved_status:
        description: Status on resolve (empty for a status of the done category).
        type: str
        default: ""
      resolution:
        description: Resolution set with it.
        type: str
        default: ""
      service_desk_id:
        description: Jira Service Management desk (a customer request instead of an issue).
        type: str
        default: ""
      request_type_id:
        description: Its request type.
        type: str
        default: ""
  servicenow:
    description:
      - The ServiceNow incident's part (M(selfheal.devops.servicenow_incident)); short description, description, urgency
        and impact (from the problem's severity), the configuration item (the problem's first host) and the notes come
        from the incident.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: One ServiceNow incident per incident key (its C(correlation_id)).
        type: bool
        default: false
      assignment_group:
        description: Assignment group name or C(sys_id); an unknown one fails the ServiceNow step (nothing is written there).
        type: str
        default: ""
      correlation_display:
        description: The incident's C(correlation_display), part of the lookup.
        type: str
        default: selfheal.devops
      severity_map:
        description:
          - Overrides of the Dynatrace severity to urgency / impact mapping (see M(selfheal.devops.servicenow_incident)).
            On V(escalate) the urgency becomes 1 (high), and stays so in the later phases.
        type: dict
        default: {}
      fields:
        description: Other incident fields by column name (for example C(category), C(caller_id)).
        type: dict
        default: {}
      close_code:
        description: Resolution code set on resolve (the close notes say what the fix did).
        type: str
        default: Solution provided
  slack:
    description: The Slack channel's part.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: One channel per incident.
        type: bool
        default: false
      channel_prefix:
        description: Channel name prefix (the name is the prefix and the incident key).
        type: str
        default: inc-
      private:
        description: A private channel.
        type: bool
        default: false
      users:
        description: Slack ids or e-mails invited.
        type: list
        elements: str
        default: []
      oncall_email_domain:
        description: Invite the paged xMatters people as C(<target name>@<this domain>).
        type: str
        default: ""
      buttons:
        description: Put Approve / Ignore / Run fix again / Escalate buttons on the opening message.
        type: bool
        default: false
  teams:
    description:
      - The Microsoft Teams channel's part (M(selfheal.devops.teams_channel)); messages are posted once each, as the
        app's bot unless O(teams.post_as=graph).
    type: dict
    default: {}
    suboptions:
      enabled:
        description: One channel per incident in O(teams.team).
        type: bool
        default: false
      team:
        description: The team (id or display name); required when O(teams.enabled).
        type: str
        default: ""
      channel_prefix:
        description: Channel name prefix (the name is the prefix and the incident key).
        type: str
        default: inc-
      membership_type:
        description: V(standard) (the team's members) or V(private) (needs O(teams.owners)).
        type: str
        default: standard
        choices: [standard, private]
      members:
        description: People added (user principal names, e-mail addresses or object ids).
        type: list
        elements: str
        default: []
      owners:
        description: Owners of a private channel.
        type: list
        elements: str
        default: []
      oncall_email_domain:
        description: Add the paged xMatters people as C(<target name>@<this domain>).
        type: str
        default: ""
      post_as:
        description: V(bot) (the app's bot, application permissions) or V(graph) (a delegated token).
        type: str
        default: bot
        choices: [bot, graph]
      close_action:
        description: What resolve does with the channel - V(archive) it, V(rename) it with O(teams.closed_prefix), or both.
        type: list
        elements: str
        default: [archive]
        choices: [archive, rename]
      closed_prefix:
        description: Prefix of a renamed channel.
        type: str
        default: closed-
  connections:
    description:
      - Connection options per system, as the system's module takes them (C(url), C(api_token), C(user), C(token),
        C(xmatters_url), ...); what is not given falls back to the same environment variables as the modules
        (E(DYNATRACE_URL), E(JIRA_TOKEN), E(SERVICENOW_PASSWORD), E(SLACK_TOKEN), E(MSGRAPH_CLIENT_SECRET),
        E(XMATTERS_PASSWORD), ...).
    type: dict
    default: {}
    suboptions:
      dynatrace:
        description: Options of M(selfheal.devops.dynatrace_problem)'s connection.
        type: dict
        default: {}
      oncall:
        description: Options of M(selfheal.devops.oncall_notify)'s connection.
        type: dict
        default: {}
      jira:
        description: Options of M(selfheal.devops.jira_incident)'s connection.
        type: dict
        default: {}
      servicenow:
        description: Options of M(selfheal.devops.servicenow_incident)'s connection.
        type: dict
        default: {}
      slack:
        description: Options of M(selfheal.devops.slack_channel)'s connection.
        type: dict
        default: {}
      teams:
        description: Options of M(selfheal.devops.teams_channel)'s connection.
        type: dict
        default: {}
author:
  - selfheal.devops contributors (@selfheal-devops)
seealso:
  - module: selfheal.devops.incident_timeline
    description: Read an incident's timeline.
"""

EXAMPLES = r"""
- name: Open the incident everywhere, in the background while the fix runs
  selfheal.devops.incident_sync:
    phase: open
    incident_key: "{{ ansible_eda.event.incident_key }}"
    problem: "{{ ansible_eda.event.problem }}"
    oncall: {provider: xmatters, groups: [Ops Primary]}
    jira: {project: OPS}
    slack: {enabled: true, oncall_email_domain: example.com}
    background: true
  register: opening

- name: Resolve everywhere
  selfheal.devops.incident_sync:
    phase: resolve
    incident_key: "{{ ansible_eda.event.incident_key }}"
    problem: "{{ ansible_eda.event.problem }}"
    text: web restarted on web-01, healthy.
    jira: {project: OPS, resolution: Fixed}
    slack: {enabled: true}

- name: Open it in ServiceNow and Microsoft Teams as well
  selfheal.devops.incident_sync:
    phase: open
    incident_key: "{{ ansible_eda.event.incident_key }}"
    problem: "{{ ansible_eda.event.problem }}"
    oncall: {provider: xmatters, groups: [Ops Primary]}
    jira: {project: OPS}
    servicenow: {enabled: true, assignment_group: Linux Operations}
    slack: {enabled: true, oncall_email_domain: example.com}
    teams: {enabled: true, team: Operations, oncall_email_domain: example.com}
"""

RETURN = r"""
records:
  description: The timeline records this run appended.
  returned: always
  type: list
  elements: dict
  sample: [{"step": "open ticket", "system": "jira", "result": "changed", "duration": 0.41, "detail": "OPS-24 Open"}]
timeline:
  description: The whole timeline after this run.
  returned: always
  type: list
  elements: dict
errors:
  description: The steps that failed or missed the budget, with the reason (secrets redacted).
  returned: always
  type: list
  elements: dict
  sample: [{"step": "open ticket", "system": "jira", "error": "Jira POST ... answered HTTP 503"}]
ticket:
  description: The Jira ticket (key, url, status) when a step learnt it.
  returned: when known
  type: dict
servicenow:
  description: The ServiceNow incident (number, url, sys_id, state) when a step learnt it.
  returned: when known
  type: dict
  sample: {"key": "INC0010001", "number": "INC0010001", "sys_id": "9d385017c611228701d22104cc95c371", "state": "New",
           "url": "https://example.service-now.com/nav_to.do?uri=incident.do?sys_id=9d385017c611228701d22104cc95c371"}
channel:
  description: The Slack channel when a step learnt it.
  returned: when known
  type: dict
teams:
  description: The Microsoft Teams channel (id, displayName, webUrl, isArchived, message) when a step learnt it.
  returned: when known
  type: dict
approval:
  description: The answer (approved, response, responder, source) of V(approve).
  returned: phase=approve
  type: dict
  sample: {"approved": true, "response": "Restart", "responder": "oncall.primary", "source": "xmatters"}
already_resolved:
  description: The incident was resolved before; nothing was written.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _incident, _options


def argument_spec():
    any_dict = dict(type="dict", default={})
    return dict(
        phase=dict(type="str", required=True, choices=list(_incident.PHASES)),
        background=dict(type="bool", default=False),
        incident_key=dict(type="str", required=True, no_log=False),
        problem=dict(type="dict", default={}),
        text=dict(type="str", default=""),
        run_url=dict(type="str", default=""),
        fix_records=dict(type="list", elements="dict", default=[]),
        timeline_dir=dict(type="path", default="/var/tmp/selfheal/incidents"),
        decision_dir=dict(type="path"),
        budget=dict(type="float", default=60.0),
        request_timeout=dict(type="float", default=10.0),
        max_retries=dict(type="int", default=4),
        max_retry_wait=dict(type="float", default=30.0),
        dynatrace=dict(type="dict", default={}, options=dict(
            enabled=dict(type="bool", default=True), close=dict(type="bool", default=True))),
        oncall=dict(type="dict", default={}, options=dict(
            provider=dict(type="str", default="", choices=["", "xmatters", "pagerduty"]),
            groups=dict(type="list", elements="str", default=[]),
            escalation_groups=dict(type="list", elements="str", default=[]),
            priority=dict(type="str", default="high", choices=["low", "medium", "high"]),
            severity=dict(type="str", default="critical", choices=["critical", "error", "warning", "info"]),
            response_options=dict(type="list", elements="dict", default=[]),
            approve=dict(type="bool", default=False),
            page_policy=dict(type="str", default="always", choices=["always", "on_failure"]),
            approve_response=dict(type="str", default="Approve"),
            approval_timeout=dict(type="float", default=300.0),
            approval_poll_interval=dict(type="float", default=2.0))),
        jira=dict(type="dict", default={}, options=dict(
            project=dict(type="str", default=""), issue_type=dict(type="str", default="Incident"),
            priority=dict(type="str", default=""), labels=dict(type="list", elements="str", default=["selfheal"]),
            components=dict(type="list", elements="str", default=[]), resolved_status=dict(type="str", default=""),
            resolution=dict(type="str", default=""), service_desk_id=dict(type="str", default=""),
            request_type_id=dict(type="str", default=""))),
        servicenow=dict(type="dict", default={}, options=dict(
            enabled=dict(type="bool", default=False), assignment_group=dict(type="str", default=""),
            correlation_display=dict(type="str", default="selfheal.devops"), severity_map=dict(type="dict", default={}),
            fields=dict(type="dict", default={}), close_code=dict(type="str", default="Solution provided"))),
        slack=dict(type="dict", default={}, options=dict(
            enabled=dict(type="bool", default=False), channel_prefix=dict(type="str", default="inc-"),
            private=dict(type="bool", default=False), users=dict(type="list", elements="str", default=[]),
            oncall_email_domain=dict(type="str", default=""), buttons=dict(type="bool", default=False))),
        teams=dict(type="dict", default={}, options=dict(
            enabled=dict(type="bool", default=False), team=dict(type="str", default=""),
            channel_prefix=dict(type="str", default="inc-"),
            membership_type=dict(type="str", default="standard", choices=["standard", "private"]),
            members=dict(type="list", elements="str", default=[]), owners=dict(type="list", elements="str", default=[]),
            oncall_email_domain=dict(type="str", default=""), post_as=dict(type="str", default="bot", choices=["bot", "graph"]),
            close_action=dict(type="list", elements="str", default=["archive"], choices=["archive", "rename"]),
            closed_prefix=dict(type="str", default="closed-"))),
        connections=dict(type="dict", default={}, no_log=True, options=dict(
            dynatrace=dict(any_dict), oncall=dict(any_dict), jira=dict(any_dict), servicenow=dict(any_dict),
            slack=dict(any_dict), teams=dict(any_dict))),
    )


def check(params):
    """The inputs' own errors, before anything is sent."""
    for name in ("budget", "request_timeout"):
        if not params[name] > 0:
            return "%s must be more than 0 seconds, got %s" % (name, params[name])
    if params["max_retries"] < 0 or params["max_retry_wait"] < 0:
        return "max_retries and max_retry_wait must be 0 or more"
    if params["oncall"]["approval_timeout"] <= 0 or params["oncall"]["approval_poll_interval"] < 0.2:
        return "oncall.approval_timeout must be more than 0 and oncall.approval_poll_interval at least 0.2 s"
    if params["teams"]["enabled"] and not params["teams"]["team"].strip():
        return "teams.team is required when teams.enabled is true (the team the incident channels are opened in)"
    if params["teams"]["enabled"] and not params["teams"]["close_action"]:
        return "teams.close_action needs archive, rename or both"
    return None


def run(module):
    params = module.params
    incident = _incident.Incident(params, module.check_mode, module.warn)
    answer = None
    if params["phase"] == "approve" and not module.check_mode:
        # Waiting for a human holds no lock: a note, an escalation or a status from chat goes on meanwhile.
        incident.read_timeline()
        if not incident.already_resolved():
            answer = incident.await_answer(params["decision_dir"], params["oncall"]["approve_response"])
    with _incident.PhaseLock(params["timeline_dir"], params["incident_key"], params["budget"] + 10, module.warn,
                             enabled=not module.check_mode):
        return run_phase(module, incident, answer)


def run_phase(module, incident, answer=None):
    params = module.params
    incident.read_timeline()
    phase = params["phase"]
    result = {"already_resolved": False, "records": [], "errors": []}
    done = incident.resolved_cleanly() if phase == "resolve" else (incident.already_resolved() and phase != "record")
    if done:
        result.update(already_resolved=True, timeline=incident.saved)
        module.warn("%s was resolved before; nothing to %s (no page, ticket, channel or comment is written)"
                    % (params["incident_key"], phase))
        return result
    fix = [dict(record, incident=params["incident_key"], action=record.get("action", "record")) for record in
           _fix_records(params["fix_records"])]
    if phase == "open":
        incident.open()
    elif phase == "update":
        incident.update(params["text"])
    elif phase == "escalate":
        incident.escalate(params["text"])
    elif phase == "approve":
        if module.check_mode:
            result["approval"] = {"approved": False, "response": "check_mode", "responder": "", "source": ""}
        else:
            result["approval"] = incident.approve(params["decision_dir"], params["oncall"]["approve_response"], answer)
    elif phase == "resolve":
        incident.resolve(params["text"], fix)
        fix = []
    records = fix + incident.records(phase)
    timeline = incident.save(records) if records else incident.saved
    result.update(records=records, timeline=timeline, errors=incident.errors, changed=bool(records) or incident.written)
    for name in ("ticket", "servicenow", "channel", "teams"):
        if incident.found.get(name):
            result[name] = incident.found[name]
    return result


def _fix_records(records):
    """Fix records in the timeline's shape (time = end), from {step, host, result, detail, started, ended}."""
    out = []
    for record in records:
        ended = float(record.get("ended") or record.get("started") or 0)
        started = float(record.get("started") or ended)
        out.append({"time": _incident.utc(ended), "step": record.get("step", "remediation"),
                    "system": record.get("host") or record.get("system") or "controller",
                    "result": record.get("result", "changed"), "duration": round(max(0.0, ended - started), 3),
                    "detail": record.get("detail", "")})
    return out


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    problem = check(module.params)
    if problem:
        module.fail_json(msg=problem)
    if module.params["phase"] != "record":
        _options.require_requests(module)
    try:
        result = run(module)
    except (IOError, OSError) as error:
        module.fail_json(msg="cannot use the timeline in %s: %s" % (module.params["timeline_dir"], error))
    result.setdefault("changed", False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
