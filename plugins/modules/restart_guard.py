#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: restart_guard
short_description: Crash-loop guard, count a program's recent restarts on the host and record a new one
version_added: 0.1.0
description:
  - Keeps the times of a program's restarts in a small JSON file on the managed host. When fewer than
    O(max_attempts) of them fall within the last O(window) seconds, the guard allows one more restart and
    records it B(before) the restart happens (so a run that dies halfway still counts); otherwise it reports
    RV(crash_loop) and records nothing.
  - The file is written to a temporary file and renamed, so a reader never sees half a record; times older than
    the window are dropped when it is written. An unreadable or corrupt record counts as no restart and is
    replaced; the problem is reported in RV(warning).
  - Used by the C(selfheal.devops.process_restart) role; one module run reads, decides and writes, under a lock on the
    directory, so two remediations of the same host at once never lose an attempt.
extends_documentation_fragment:
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: Decides as it would, and writes nothing.
  diff_mode:
    support: none
options:
  path:
    description: The record file. Its directory is created (mode C(0750)) when missing.
    type: path
    required: true
  name:
    description: Program the record is for (kept in the file, for people reading it).
    type: str
    required: true
  max_attempts:
    description: Restarts allowed within O(window).
    type: int
    default: 3
  window:
    description: Seconds the restarts are counted over.
    type: float
    default: 900
  record:
    description: Record a restart when one is allowed. V(false) only reports.
    type: bool
    default: true
author:
  - selfheal.devops contributors (@selfheal-devops)
"""

EXAMPLES = r"""
- name: May the web program be restarted once more?
  selfheal.devops.restart_guard:
    path: /var/lib/selfheal/process_restart/web.json
    name: web
    max_attempts: 3
    window: 900
  register: guard

- name: Escalate instead of flapping
  ansible.builtin.fail:
    msg: "crash_loop: web restarted {{ guard.recent | length }} times in 15 minutes"
  when: guard.crash_loop
"""

RETURN = r"""
allowed:
  description: Whether a restart is allowed now (and, with O(record), recorded).
  returned: always
  type: bool
  sample: true
crash_loop:
  description: The opposite of RV(allowed), the name the playbooks escalate on.
  returned: always
  type: bool
  sample: false
recent:
  description: Epoch times of the restarts within the window, before this one.
  returned: always
  type: list
  elements: float
  sample: [1795303501.98]
recorded_at:
  description: Epoch time recorded for this restart; null when none was recorded.
  returned: always
  type: float
  sample: 1795303562.41
warning:
  description: Why an existing record was ignored, when it was.
  returned: when the record could not be read
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.selfheal.devops.plugins.module_utils._process import guard


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            name=dict(type="str", required=True),
            max_attempts=dict(type="int", default=3),
            window=dict(type="float", default=900),
            record=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["max_attempts"] < 1 or params["window"] <= 0:
        module.fail_json(msg="max_attempts must be at least 1 and window positive")
    try:
        result = guard(params["path"], params["name"], params["max_attempts"], params["window"], params["record"],
                       module.check_mode)
    except (IOError, OSError) as error:
        module.fail_json(msg="cannot record the restart in %s: %s" % (params["path"], to_text(error)))
    module.exit_json(changed=result["recorded_at"] is not None, **result)


if __name__ == "__main__":
    main()
