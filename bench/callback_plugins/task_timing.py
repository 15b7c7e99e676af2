# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: one JSON line per task and host (play, task, host, start, end, status, the run's PID)
appended to $SELFHEAL_TASK_TIMING, so a benchmark can say where the seconds of a run go."""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: task_timing
type: aggregate
short_description: Per-task start and end times for the benchmarks
description:
  - Appends one JSON line per task and host to the file named by E(SELFHEAL_TASK_TIMING). Used by bench/ only.
requirements:
  - enabled via E(ANSIBLE_CALLBACKS_ENABLED)
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.path = os.environ.get("SELFHEAL_TASK_TIMING")
        self.play = None
        self.started = {}

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name()
        self._write({"play": self.play, "task": "(play start)", "host": "", "start": time.time(), "end": time.time(),
                     "status": "start", "pid": os.getpid()})

    def v2_runner_on_start(self, host, task):
        self.started[(host.get_name(), task._uuid)] = time.time()

    def _done(self, result, status):
        key = (result._host.get_name(), result._task._uuid)
        start = self.started.pop(key, None)
        self._write({"play": self.play, "task": result._task.get_name(), "host": result._host.get_name(),
                     "start": start, "end": time.time(), "status": status,
                     "action": result._task.action, "pid": os.getpid()})

    def v2_runner_on_ok(self, result):
        self._done(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._done(result, "unreachable")

    def _write(self, entry):
        if not self.path:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")
