# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""incident_sync on the controller runs in the task's worker process (see plugin_utils/_controller.py), and with
background=true writes in the background: the worker forks a detached process that takes the incident's phase lock,
writes every system and the timeline, and exits; the task returns as soon as that process holds the lock, so the fix
starts at once and the next phase of the incident (resolve) waits for the writes to end. For open, that is the whole
phase; for approve, the answer is awaited here first (the play needs it) and only telling everyone who decided goes on
in the background."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import time

from ansible_collections.selfheal.devops.plugins.module_utils import _incident
from ansible_collections.selfheal.devops.plugins.modules import incident_sync as module
from ansible_collections.selfheal.devops.plugins.plugin_utils._controller import ControllerAction
from ansible_collections.selfheal.devops.plugins.module_utils import _tasks

# How long the task waits for the background process to hold the incident's lock (another phase may hold it): past
# this the task returns anyway, and the background process keeps waiting for its turn.
LOCK_WAIT = 5.0


class ActionModule(ControllerAction):
    MODULE = "selfheal.devops.incident_sync"

    def spec(self):
        return module.argument_spec(), {}

    def background(self, task):
        return task.params["background"] and task.params["phase"] in ("open", "approve") and not task.check_mode

    def execute(self, task):
        problem = module.check(task.params)
        if problem:
            raise _tasks.Failed({"msg": problem})
        if task.params["phase"] != "record":
            from ansible_collections.selfheal.devops.plugins.module_utils import _options

            _options.require_requests(task)
        try:
            if self.background(task) and task.params["phase"] == "approve":
                return approve_in_background(task)
            if self.background(task):
                return start_in_background(task)
            return module.run(task)
        except (IOError, OSError) as error:
            raise _tasks.Failed({"msg": "cannot use the timeline in %s: %s" % (task.params["timeline_dir"], error)})


def approve_in_background(task):
    """Wait for the answer here (no lock held, as in the foreground), then tell every system in the background."""
    params = task.params
    incident = _incident.Incident(params, False, task.warn)
    incident.read_timeline()
    if incident.already_resolved():
        return module.run(task)  # says so, writes nothing
    answer = incident.await_answer(params["decision_dir"], params["oncall"]["approve_response"])
    return dict(start_in_background(task, incident, answer), approval=answer)


def start_in_background(task, incident=None, answer=None):
    """Fork a detached process that runs the phase under the incident's lock (with the incident as read so far and
    the answer already awaited, for approve); return once it holds the lock."""
    params = task.params
    if not os.path.isdir(params["timeline_dir"]):
        os.makedirs(params["timeline_dir"], 0o750)
    ready, told = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked process
        status = 1
        try:
            os.close(ready)
            os.setsid()
            if os.fork():  # the worker reaps the first child at once; the second is nobody's zombie
                os._exit(0)
            _detach(keep=told)
            if incident is None:
                incident = _incident.Incident(params, False, task.warn)
            with _incident.PhaseLock(params["timeline_dir"], params["incident_key"], params["budget"] + 10, task.warn):
                os.write(told, str(os.getpid()).encode())
                os.close(told)
                module.run_phase(task, incident, answer)
            status = 0
        finally:
            os._exit(status)
    os.close(told)
    os.waitpid(child, 0)
    deadline = time.monotonic() + LOCK_WAIT
    answer = b""
    try:
        while time.monotonic() < deadline:
            readable, dummy, dummy2 = select.select([ready], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            data = os.read(ready, 32)
            if not data:
                break
            answer += data
    finally:
        os.close(ready)
    if not answer:
        task.warn("the incident's background %s did not start within %g s (another phase of it may still run); "
                  "it goes on by itself and resolve waits for it" % (params["phase"], LOCK_WAIT))
    return {"changed": True, "background": True, "pid": int(answer) if answer.isdigit() else None,
            "records": [], "errors": [], "already_resolved": False}


def _detach(keep):
    """No terminal, no inherited pipe: ansible-playbook's output (read until its end by ansible-runner) and the
    worker's result queue must not stay open in the background process."""
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(null, descriptor)
    highest = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 4096
    os.closerange(3, keep)
    os.closerange(keep + 1, max(keep + 2, highest))
