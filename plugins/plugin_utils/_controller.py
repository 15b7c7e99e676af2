# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side modules run in the task's own worker process. Private to the selfheal.devops collection.

remediation_gate and incident_sync work on the controller: the remediation database, the timeline, the SaaS APIs.
Executed as modules, every task starts a Python interpreter and unpacks the module and its module_utils before its
first request (0.3-0.5 s on a quiet 2-core machine, about 1 s under load), on the path between the problem and the
fix. On the controller nothing needs that: the action plugin validates the arguments with the module's own
specification (defaults, environment fallbacks, types, constraints), runs the module's logic in the worker process
Ansible already forked for the task, and hides the no_log values in the result as AnsibleModule would.

The task's environment keyword applies as it would to the module (the worker process is the task's own). The module
runs the normal way wherever the task is not plainly on the controller: delegated to another host, with privilege
escalation, or async.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

from ansible_collections.selfheal.devops.plugins.module_utils import _tasks

LOCAL = ("local", "ansible.builtin.local")


class ControllerAction(ActionBase):
    """Base of the action plugins of controller-side modules: set MODULE, spec() and execute(task)."""

    MODULE = None
    _supports_check_mode = True
    _supports_async = True

    def spec(self):
        """(argument_spec, constraints) of the module."""
        raise NotImplementedError

    def execute(self, task):
        """The module's result for a validated _tasks.Task; raise _tasks.Failed to fail."""
        raise NotImplementedError

    def in_process(self):
        return (getattr(self._connection, "transport", "") in LOCAL and not self._play_context.become
                and not self._task.async_val)

    def task_environment(self):
        """The task's environment keyword (its own and inherited) as one dict, None when it is not a mapping."""
        merged = {}
        for entry in self._task.environment or []:
            entry = self._templar.template(entry) if entry else entry
            if not entry:
                continue
            if not isinstance(entry, dict):
                return None
            merged.update(entry)
        return merged

    def module_args(self):
        """The task's arguments as the module takes them."""
        return dict(self._task.args)

    def run(self, tmp=None, task_vars=None):
        result = super(ControllerAction, self).run(tmp, task_vars)
        environment = self.task_environment() if self.in_process() else None
        if environment is None:
            result.update(self._execute_module(module_name=self.MODULE, module_args=self.module_args(),
                                               task_vars=task_vars, wrap_async=bool(self._task.async_val)))
            return result
        os.environ.update(dict((str(k), str(v)) for k, v in environment.items()))  # this task's worker process only
        argument_spec, constraints = self.spec()
        try:
            task, no_log_values = _tasks.prepare(argument_spec, constraints, self.module_args(),
                                                 bool(self._task.check_mode))
        except _tasks.Failed as failed:
            result.update(failed.kwargs, failed=True, changed=False)
            return result
        task._diff = bool(self._task.diff)
        try:
            outcome = self.execute(task)
        except _tasks.Failed as failed:
            outcome = dict(failed.kwargs, failed=True)
        outcome.setdefault("changed", False)
        if task.warnings:
            outcome["warnings"] = list(task.warnings)
        result.update(remove_values(outcome, no_log_values))
        return result
