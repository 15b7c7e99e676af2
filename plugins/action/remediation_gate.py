# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""remediation_gate on the controller runs in the task's worker process (see plugin_utils/_controller.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.selfheal.devops.plugins.module_utils import _remediation_task
from ansible_collections.selfheal.devops.plugins.plugin_utils._controller import ControllerAction


class ActionModule(ControllerAction):
    MODULE = "selfheal.devops.remediation_gate"

    def spec(self):
        return _remediation_task.argument_spec(), _remediation_task.CONSTRAINTS

    def execute(self, task):
        return _remediation_task.execute(task)
