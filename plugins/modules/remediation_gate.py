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
  - Targets are only ever inventory hosts named by the problem (or given in O(targets)); a name the inventory does not
    know is reported in RV(not_in_inventory), never guessed, and an empty list never means "all hosts".
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
    details: Decides as it would and writes nothing (no lease, no budget record).
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
not_in_inventory:
  description: Hosts the problem names that the inventory does not know.
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

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.selfheal.devops.plugins.module_utils import _remediation
from ansible_collections.selfheal.devops.plugins.module_utils._errors import SelfHealError


def recheck_status(module):
    """The problem's current status from Dynatrace (OPEN or CLOSED)."""
    from ansible_collections.selfheal.devops.plugins.module_utils import _options, dynatrace

    params = module.params
    if not params["url"] or not params["api_token"]:
        raise _InputError("recheck needs url and api_token (or DYNATRACE_URL / DYNATRACE_API_TOKEN)")
    _options.require_requests(module)
    service = dynatrace.DynatraceService(dynatrace.client_from_params(params, log=module.warn), params["url"])
    problem_id = (params["problem"] or {}).get("id")
    if not problem_id:
        raise _InputError("recheck needs problem.id")
    return service.normalize(service.get_problem(problem_id))["status"]


class _InputError(ValueError):
    pass


def decided(module, store):
    params = module.params
    problem = dict(params["problem"] or {})
    if params["recheck"]:
        problem["status"] = recheck_status(module)
    key = params["incident_key"]
    owner = _remediation.run_owner()
    result = {"changed": False, "status": str(problem.get("status", "OPEN")).upper()}

    def over_budget(targets):
        for host in targets:
            used = store.count("host:" + host, params["budget_window"], key)
            if params["host_limit"] and used >= params["host_limit"]:
                return "host %s already had %d automatic fixes within %g s (host_limit %d)" % (
                    host, used, params["budget_window"], params["host_limit"])
        if params["service"] and params["service_limit"]:
            used = store.count("service:" + params["service"], params["budget_window"], key)
            if used >= params["service_limit"]:
                return "service %s already had %d automatic fixes within %g s (service_limit %d)" % (
                    params["service"], used, params["budget_window"], params["service_limit"])
        return None

    with store.transaction():
        holder = store.lease_holder(key, owner)
        if holder is not None:
            result.update(decision=_remediation.SKIP, targets=[], not_in_inventory=[], owner=holder,
                          reason="another run (pid %s on %s) is remediating %s" % (holder.get("pid"), holder.get("host"), key))
            return result
        decision, targets, reason, named = _remediation.decide(
            problem, set(params["inventory"]), params["mode"], params["targets"], params["max_hosts"], over_budget)
        result.update(decision=decision, targets=targets, reason=reason,
                      not_in_inventory=[h for h in named if h not in set(params["inventory"])])
        if decision != _remediation.SKIP and not module.check_mode:
            store.take_lease(key, owner, params["lease_ttl"])
            if decision == _remediation.FIX:
                keys = ["host:" + h for h in targets] + (["service:" + params["service"]] if params["service"] else [])
                store.record(keys, key)
            result["changed"] = True
        store.prune(max(params["budget_window"], params["lease_ttl"]) * 2)
    return result


def released(module, store):
    if module.check_mode:
        return {"changed": False, "released": False}
    with store.transaction():
        done = store.release(module.params["incident_key"], _remediation.run_owner())
    return {"changed": done, "released": done}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            incident_key=dict(type="str", required=True, no_log=False),
            problem=dict(type="dict", default={}),
            state=dict(type="str", choices=["decided", "released"], default="decided"),
            mode=dict(type="str", choices=["auto", "approve"], default="auto"),
            inventory=dict(type="list", elements="str", default=[]),
            targets=dict(type="list", elements="str"),
            max_hosts=dict(type="int", default=10),
            service=dict(type="str", default=""),
            host_limit=dict(type="int", default=5),
            service_limit=dict(type="int", default=10),
            budget_window=dict(type="float", default=3600),
            lease_ttl=dict(type="float", default=3600),
            path=dict(type="path", default="/var/tmp/selfheal/remediations.db"),
            recheck=dict(type="bool", default=False),
            url=dict(type="str", fallback=(env_fallback, ["DYNATRACE_URL"])),
            api_token=dict(type="str", no_log=True, fallback=(env_fallback, ["DYNATRACE_API_TOKEN"])),
            validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["SELFHEAL_VALIDATE_CERTS"])),
            ca_path=dict(type="path", fallback=(env_fallback, ["SELFHEAL_CA_PATH"])),
            timeout=dict(type="float", default=10),
            max_retries=dict(type="int", default=2),
            max_retry_wait=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    params = module.params
    for name in ("max_hosts", "host_limit", "service_limit"):
        if params[name] < 0:
            module.fail_json(msg="%s must be 0 or more, got %d" % (name, params[name]))
    if params["max_hosts"] < 1:
        module.fail_json(msg="max_hosts must be at least 1")
    for name in ("budget_window", "lease_ttl"):
        if params[name] <= 0:
            module.fail_json(msg="%s must be more than 0, got %s" % (name, params[name]))
    try:
        store = _remediation.RemediationStore(params["path"])
    except (OSError, _remediation.sqlite3.Error) as exc:
        module.fail_json(msg="cannot use the remediation database %s: %s" % (params["path"], exc))
    try:
        if params["state"] == "released":
            result = released(module, store)
        else:
            result = decided(module, store)
    except _InputError as exc:
        module.fail_json(msg=str(exc))
    except SelfHealError as exc:
        module.fail_json(**exc.to_fail_kwargs())
    except _remediation.sqlite3.Error as exc:
        module.fail_json(msg="the remediation database %s failed: %s" % (params["path"], exc))
    finally:
        store.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
