# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's logic without its AnsibleModule. Private to the selfheal.devops collection.

Each per-system module (jira_incident, slack_channel, oncall_notify, dynatrace_problem) keeps its logic in a
module_utils file exposing argument_spec(), CONSTRAINTS and execute(task). The module's main() passes its
AnsibleModule as the task; the incident orchestrator passes a Task built from validated parameters, so several
systems are handled in one module run, with exactly the same checks, defaults, idempotence and errors.
"""

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.selfheal.devops.plugins.module_utils._errors import SelfHealError


class Failed(Exception):
    """What main() gives fail_json: a dict with msg and any partial result."""

    def __init__(self, kwargs):
        super(Failed, self).__init__(kwargs.get("msg"))
        self.kwargs = kwargs


class Task(object):
    """The part of AnsibleModule the shared logic uses: params, check_mode, _diff, warn() and fail_json() (raises
    Failed)."""

    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)

    def fail_json(self, **kwargs):
        raise Failed(kwargs)


def failure(error, result, keep_result=True):
    """fail_json arguments for a SelfHealError: the error and what the run learnt (result, when keep_result); when the
    run wrote something before it, changed=true, the writes in written and named in msg, so a retry knows."""
    written = result.get("written") or []
    kwargs = dict((k, v) for k, v in result.items() if k not in ("written", "changed")) if keep_result else {}
    kwargs.update(error.to_fail_kwargs())
    kwargs["changed"] = bool(written)
    if written:
        kwargs["written"] = written
        kwargs["msg"] = "%s (this run had already %s)" % (kwargs["msg"], "; ".join(written))
    return kwargs


def execute_writes(task, connect, run, result):
    """The result of run(task, connect(), result) -> (changed, diff), which lists each write in result["written"]:
    the module's result (changed, diff when asked), or Failed naming what was written before the error."""
    try:
        changed, diff = run(task, connect(), result)
    except SelfHealError as error:
        raise Failed(failure(error, result, keep_result=False))
    del result["written"]
    if task._diff:
        result["diff"] = diff
    result["changed"] = changed
    return result


def prepare(argument_spec, constraints, args, check_mode=False):
    """A Task from raw arguments, validated as AnsibleModule would (defaults, environment fallbacks, types,
    required_* rules); Failed with every error message when they are not valid. Also returns the no_log values."""
    validator = ArgumentSpecValidator(argument_spec, **(constraints or {}))
    result = validator.validate(args)
    if result.error_messages:
        raise Failed({"msg": "; ".join(result.error_messages)})
    return Task(result.validated_parameters, check_mode), set(result._no_log_values)


def run(execute, argument_spec, constraints, args, check_mode=False):
    """The module's result for args, as a dict; a failure is a result with failed=True, never an exception."""
    try:
        task, dummy = prepare(argument_spec, constraints, args, check_mode)
    except Failed as failed:
        return dict(failed.kwargs, failed=True, changed=False)
    try:
        result = execute(task)
    except Failed as failed:
        result = dict(failed.kwargs, failed=True)
        result.setdefault("changed", False)
    if task.warnings:
        result["warnings"] = task.warnings
    return result
