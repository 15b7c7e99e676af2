# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The remediation_gate module's logic: may a fix run by itself, and where. Private to the selfheal.devops collection.

execute(task) takes an AnsibleModule or a _tasks.Task (.params, .check_mode, .warn) and returns the result, or raises
_tasks.Failed; the module's main() and its controller-side action plugin are the callers.
"""

from ansible.module_utils.basic import env_fallback

from ansible_collections.selfheal.devops.plugins.module_utils import _remediation, _tasks
from ansible_collections.selfheal.devops.plugins.module_utils._errors import SelfHealError


def argument_spec():
    return dict(
        incident_key=dict(type="str", required=True, no_log=False),
        problem=dict(type="dict", default={}),
        state=dict(type="str", choices=["decided", "released"], default="decided"),
        mode=dict(type="str", choices=["auto", "approve"], default="auto"),
        inventory=dict(type="list", elements="str", default=[]),
        aliases=dict(type="dict", default={}),
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
    )


CONSTRAINTS = {}


def recheck_status(task):
    """The problem's current status from Dynatrace (OPEN or CLOSED)."""
    from ansible_collections.selfheal.devops.plugins.module_utils import _options, dynatrace

    params = task.params
    if not params["url"] or not params["api_token"]:
        raise _InputError("recheck needs url and api_token (or DYNATRACE_URL / DYNATRACE_API_TOKEN)")
    _options.require_requests(task)
    service = dynatrace.DynatraceService(dynatrace.client_from_params(params, log=task.warn), params["url"])
    problem_id = (params["problem"] or {}).get("id")
    if not problem_id:
        raise _InputError("recheck needs problem.id")
    return service.normalize(service.get_problem(problem_id))["status"]


class _InputError(ValueError):
    pass


def decided(task, store):
    params = task.params
    problem = dict(params["problem"] or {})
    if params["recheck"]:
        problem["status"] = recheck_status(task)
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
        decision, targets, reason, unresolved, renamed = _remediation.decide(
            problem, set(params["inventory"]), params["mode"], params["targets"], params["max_hosts"], over_budget,
            params["aliases"])
        result.update(decision=decision, targets=targets, reason=reason, resolved=renamed, not_in_inventory=unresolved)
        if decision != _remediation.SKIP and not task.check_mode:
            store.take_lease(key, owner, params["lease_ttl"])
            if decision == _remediation.FIX:
                keys = ["host:" + h for h in targets] + (["service:" + params["service"]] if params["service"] else [])
                store.record(keys, key)
            result["changed"] = True
        if not task.check_mode:
            store.prune(max(params["budget_window"], params["lease_ttl"]) * 2)
    return result


def released(task, store):
    if task.check_mode:
        return {"changed": False, "released": False}
    with store.transaction():
        done = store.release(task.params["incident_key"], _remediation.run_owner())
    return {"changed": done, "released": done}


def execute(task):
    params = task.params
    for name in ("max_hosts", "host_limit", "service_limit"):
        if params[name] < 0:
            raise _tasks.Failed({"msg": "%s must be 0 or more, got %d" % (name, params[name])})
    if params["max_hosts"] < 1:
        raise _tasks.Failed({"msg": "max_hosts must be at least 1"})
    if not all(isinstance(host, str) and host for host in params["aliases"].values()):
        raise _tasks.Failed({"msg": "aliases maps other names of hosts to inventory host names: every value must be a "
                                    "host name (a non-empty string)"})
    for name in ("budget_window", "lease_ttl"):
        if params[name] <= 0:
            raise _tasks.Failed({"msg": "%s must be more than 0, got %s" % (name, params[name])})
    try:
        store = _remediation.RemediationStore(params["path"], create=not task.check_mode)
    except (OSError, _remediation.sqlite3.Error) as exc:
        raise _tasks.Failed({"msg": "cannot use the remediation database %s: %s" % (params["path"], exc)})
    try:
        if params["state"] == "released":
            return released(task, store)
        return decided(task, store)
    except _InputError as exc:
        raise _tasks.Failed({"msg": str(exc)})
    except SelfHealError as exc:
        raise _tasks.Failed(exc.to_fail_kwargs())
    except _remediation.sqlite3.Error as exc:
        raise _tasks.Failed({"msg": "the remediation database %s failed: %s" % (params["path"], exc)})
    finally:
        store.close()
