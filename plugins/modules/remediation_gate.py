#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: remediation_gate
short_description: Decide whether, and on which hosts, a remediation may run by itself; take the incident's lease
version_added: 0.1.0
description:
  - The blast-radius rules of the self-healing playbooks, in one module run on the controller. It answers with a
    RV(decision), one of the four below.
  - V(fix) - the fix runs by itself on RV(targets).
  - V(approve) - the fix may run on RV(targets) only after a human approves it (approve mode, more hosts than
    O(max_hosts), or a host or service over its budget of automatic fixes).
  - V(escalate) - there is nothing the automation may fix (the problem names no host, or none in the inventory), so
    a human must act; RV(reason) says why.
  - V(skip) - nothing to do (Dynatrace closed the problem, or another live run owns this incident).
  - Targets are only ever inventory hosts named by the problem (or given in O(targets)). A name is the inventory host
    of that name; else the host O(aliases) maps it to; else the one inventory host whose name differs from it only in
    case. Nothing else is guessed (not a short name for a long one); a name left unresolved is reported in
    RV(not_in_inventory), and an empty list never means "all hosts".
  - "Across concurrent runs on one controller, a SQLite database (O(path)) keeps one lease per incident (a second run
    of the same incident gets V(skip) while the first is alive; a lease whose run died, killed or its container gone,
    is taken over), and the automatic fixes made per host and per service within O(budget_window), checked and recorded
    in one transaction (O(host_limit), O(service_limit))."
  - With O(recheck), the problem's status is read from Dynatrace first (connection options of the Dynatrace modules).
  - O(state=released) releases the incident's lease at the end of the run.
extends_documentation_fragment:
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: >-
      Decides as it would and writes nothing (no lease, no budget record, no clean-up of old records; a database
      that does not exist yet is not created).
  diff_mode:
    support: none
options:
  incident_key:
    description: The incident key (for example V(dt-P-1234)); the lease and the budget records are kept under it.
    type: str
    required: true
  problem:
    description: The normalised problem (the event source's C(event.problem)); its HOST entities are the targets.
    type: dict
    default: {}
  state:
    description: V(decided) decides and takes the lease; V(released) releases it.
    type: str
    choices: [decided, released]
    default: decided
  mode:
    description: V(auto) fixes by itself within the limits; V(approve) always asks first.
    type: str
    choices: [auto, approve]
    default: auto
  inventory:
    description: The inventory's host names (C(groups['all'])); only these can be targets.
    type: list
    elements: str
    default: []
  aliases:
    description:
      - Other names of inventory hosts (a mapping of each other name to the inventory host), for hosts Dynatrace names
        differently from the inventory (C(web-01.prod.example.com) for C(web-01)). Names are compared without regard to
        case, as DNS names are. An alias to a host that is not in O(inventory) resolves nothing.
    type: dict
    default: {}
  targets:
    description: Explicit targets instead of the problem's HOST entities (for a fix that runs on a router, say).
    type: list
    elements: str
  max_hosts:
    description: More targets than this are not fixed automatically; the decision becomes V(approve).
    type: int
    default: 10
  service:
    description: The service the fix is for (budget key); no service budget when empty.
    type: str
    default: ""
  host_limit:
    description: Automatic fixes allowed per host within O(budget_window) (all incidents, all runs); 0 for no limit.
    type: int
    default: 5
  service_limit:
    description: Automatic fixes allowed per O(service) within O(budget_window); 0 for no limit.
    type: int
    default: 10
  budget_window:
    description: Seconds the budgets count over.
    type: float
    default: 3600
  lease_ttl:
    description: Seconds a lease lasts at most (a run longer than this loses it).
    type: float
    default: 3600
  path:
    description: The controller's remediation database (created with its folder, mode 0700/0600).
    type: path
    default: /var/tmp/selfheal/remediations.db
  recheck:
    description: Read the problem's current status from Dynatrace before deciding.
    type: bool
    default: false
  url:
    description: Dynatrace environment URL, for O(recheck). Falls back to E(DYNATRACE_URL).
    type: str
  api_token:
    description: Dynatrace API token with C(problems.read), for O(recheck). Falls back to E(DYNATRACE_API_TOKEN).
    type: str
  validate_certs:
    description: Verify the Dynatrace certificate. Falls back to E(SELFHEAL_VALIDATE_CERTS).
    type: bool
    default: true
  ca_path:
    description: CA bundle for the Dynatrace certificate. Falls back to E(SELFHEAL_CA_PATH).
    type: path
  timeout:
    description: Seconds the Dynatrace request may take.
    type: float
    default: 10
  max_retries:
    description: Retries of the Dynatrace request on 429/5xx and connection failures.
    type: int
    default: 2
  max_retry_wait:
    description: Seconds all retries may wait in total.
    type: float
    default: 10
author:
  - selfheal.devops contributors (@selfheal-devops)
seealso:
  - module: selfheal.devops.restart_guard
    description: The per-program crash-loop guard on the managed host.
"""

EXAMPLES = r"""
- name: Decide where to restart, within the limits
  selfheal.devops.remediation_gate:
    incident_key: "{{ ansible_eda.event.incident_key }}"
    problem: "{{ ansible_eda.event.problem }}"
    inventory: "{{ groups['all'] }}"
    mode: auto
    service: "{{ ansible_eda.event.problem.tags.process | default('') }}"
    max_hosts: 10
    recheck: true
  register: gate

- name: Release the incident when the run ends
  selfheal.devops.remediation_gate:
    incident_key: "{{ ansible_eda.event.incident_key }}"
    state: released
"""

RETURN = r"""
decision:
  description: fix, approve, escalate or skip (see the description).
  returned: state=decided
  type: str
  sample: fix
reason:
  description: Why, in words for the ticket and the channel.
  returned: state=decided
  type: str
  sample: "automatic fix on web-01"
targets:
  description: Inventory hosts the fix may run on (empty for escalate and skip).
  returned: state=decided
  type: list
  elements: str
  sample: [web-01]
resolved:
  description: The names the problem gives that are not inventory host names, with the inventory host each resolved to.
  returned: state=decided
  type: dict
  sample: {"web-01.prod.example.com": "web-01"}
not_in_inventory:
  description: Hosts the problem names that resolve to no inventory host.
  returned: state=decided
  type: list
  elements: str
  sample: []
status:
  description: The problem's status (read from Dynatrace with O(recheck)).
  returned: state=decided
  type: str
  sample: OPEN
owner:
  description: The live run that holds the incident when the decision is skip because of it.
  returned: when another run holds the incident
  type: dict
released:
  description: Whether a lease was released.
  returned: state=released
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.selfheal.devops.plugins.module_utils import _remediation_task, _tasks


def main():
    module = AnsibleModule(argument_spec=_remediation_task.argument_spec(), supports_check_mode=True,
                           **_remediation_task.CONSTRAINTS)
    try:
        result = _remediation_task.execute(module)
    except _tasks.Failed as failed:
        module.fail_json(**failed.kwargs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
