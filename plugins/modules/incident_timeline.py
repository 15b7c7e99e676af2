#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: incident_timeline
short_description: Read an incident's timeline file and append records to it, atomically
version_added: 0.1.0
description:
  - An incident's timeline is a JSON file C({"incident", "problem", "records"}) with one record per step (what,
    where, result, duration). This module reads it and, with O(append), adds records to it.
  - The append reads the file again under a lock on its directory, adds the records and replaces the file with a
    temporary one renamed into place, so two runs writing the same incident never lose each other's records
    and a reader never sees half a file. The directory is created (mode C(0750)) when missing.
  - A file that is not a timeline (not JSON, or without a records list) is kept aside as
    C(<path>.corrupt-<time>), reported in RV(warning), and a new timeline starts; nothing is lost.
  - Used by the C(selfheal.devops.incident) role, one module run per save instead of making the directory and
    copying the file.
extends_documentation_fragment:
  - selfheal.devops.attributes
attributes:
  check_mode:
    support: full
    details: Returns the records as they would be, writes nothing.
  diff_mode:
    support: none
options:
  path:
    description: The timeline file.
    type: path
    required: true
  incident:
    description: Incident key, written into the file.
    type: str
    required: true
  problem:
    description: The problem's display ID, written into the file.
    type: str
    default: ""
  append:
    description: Records to add at the end. Empty only reads (unless O(create)).
    type: list
    elements: dict
    default: []
  create:
    description: Write an empty timeline when there is none yet, even with nothing to append.
    type: bool
    default: false
author:
  - selfheal.devops contributors (@selfheal-devops)
"""

EXAMPLES = r"""
- name: What has happened so far?
  selfheal.devops.incident_timeline:
    path: /var/tmp/selfheal/incidents/dynatrace-P-2611.json
    incident: dynatrace-P-2611
  register: timeline

- name: Add a record
  selfheal.devops.incident_timeline:
    path: /var/tmp/selfheal/incidents/dynatrace-P-2611.json
    incident: dynatrace-P-2611
    problem: P-2611
    append:
      - {time: "2026-11-30T05:00:01.250Z", action: record, step: restart process, system: web-01, result: changed,
         duration: 1.42, detail: "PID 4242 -> 4301, healthy"}
"""

RETURN = r"""
records:
  description: All records of the timeline, the appended ones last.
  returned: always
  type: list
  elements: dict
exists:
  description: Whether the file held a timeline before this run.
  returned: always
  type: bool
appended:
  description: Records added by this run.
  returned: always
  type: int
warning:
  description: What was wrong with the file found, and where it was kept.
  returned: when the file was not a timeline
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.selfheal.devops.plugins.module_utils._timeline import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            incident=dict(type="str", required=True),
            problem=dict(type="str", default=""),
            append=dict(type="list", elements="dict", default=[]),
            create=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode)
    except (IOError, OSError) as error:
        module.fail_json(msg="cannot use the timeline %s: %s" % (module.params["path"], to_text(error)))
    module.exit_json(changed=result["appended"] > 0 or (module.params["create"] and not result["exists"]), **result)


if __name__ == "__main__":
    main()
