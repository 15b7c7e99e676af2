#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dynatrace_problem_info
short_description: Read Dynatrace problems, every page, as normalised problems
version_added: 0.1.0
description:
  - Reads one problem by O(problem_id) (internal or display id), or every problem matching O(problem_selector),
    O(entity_selector) and the time range, across all pages (500 per request, the API's maximum, by default).
  - Returns the problems in the normalised shape the C(selfheal.devops.dynatrace) event source emits, and
    optionally the API objects.
author:
  - selfheal.devops contributors (@selfheal-devops)
extends_documentation_fragment:
  - selfheal.devops.dynatrace
  - selfheal.devops.connection
  - selfheal.devops.attributes
  - selfheal.devops.attributes.INFO_MODULE
  - selfheal.devops.attributes.ACTION_GROUP
attributes:
  action_group:
    membership:
      - selfheal.devops.dynatrace
options:
  problem_id:
    description: One problem by internal id or display id (V(P-1234)); the query options are then ignored.
    type: str
  problem_selector:
    description: Problems API C(problemSelector), for example V(status("open"\),managementZones("prod"\)).
    type: str
  entity_selector:
    description: Problems API C(entitySelector); must contain C(type(...\)) or C(entityId(...\)).
    type: str
  time_from:
    description: Start of the time range (milliseconds, ISO-8601 or relative such as V(now-2h)).
    type: str
  time_to:
    description: End of the time range.
    type: str
  fields:
    description: Extra fields to request on every page.
    type: list
    elements: str
    choices: [evidenceDetails, impactAnalysis, recentComments]
    default: []
  page_size:
    description: Problems per request (at most 500).
    type: int
    default: 500
  query:
    description: A JMESPath expression applied to the list of normalised problems (needs C(jmespath)).
    type: str
  return_raw:
    description: Also return the problems as the API returned them.
    type: bool
    default: false
requirements:
  - jmespath (only for O(query))
seealso:
  - module: selfheal.devops.dynatrace_problem
"""

EXAMPLES = r"""
- name: Is the problem still open?
  selfheal.devops.dynatrace_problem_info:
    problem_id: "{{ ansible_eda.event.problem.id }}"
  register: current

- name: Open availability problems in production, host names only
  selfheal.devops.dynatrace_problem_info:
    problem_selector: status("open"),severityLevel("AVAILABILITY"),managementZones("prod")
    time_from: now-6h
    query: "[].entities[?type=='HOST'].name[]"
  register: problem_hosts
"""

RETURN = r"""
problems:
  description: The normalised problems (or one, with O(problem_id)).
  returned: always
  type: list
  elements: dict
  sample: [{"id": "-615640_16698V2", "display_id": "P-1234", "title": "Disk full", "status": "OPEN",
            "severity": "RESOURCE_CONTENTION", "impact": "INFRASTRUCTURE",
            "entities": [{"id": "HOST-1", "type": "HOST", "name": "db-01"}], "root_cause": null, "tags": {},
            "management_zones": [], "url": null, "start_time": 1669823466223, "end_time": -1}]
count:
  description: Number of problems returned.
  returned: always
  type: int
requests:
  description: Number of list requests the module made (pages read).
  returned: always
  type: int
query_result:
  description: The result of O(query).
  returned: when O(query) is set
  type: raw
raw:
  description: The problems as the API returned them.
  returned: when O(return_raw=true)
  type: list
  elements: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.selfheal.devops.plugins.module_utils import _options, dynatrace
from ansible_collections.selfheal.devops.plugins.module_utils._errors import SelfHealError

try:
    import jmespath
except ImportError:
    HAS_JMESPATH = False
    JMESPATH_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_JMESPATH = True
    JMESPATH_IMPORT_ERROR = None


def run(module, service):
    params = module.params
    if params["problem_id"]:
        raws = [service.get_problem(params["problem_id"], fields=params["fields"])]
    else:
        raws = service.list_problems(problem_selector=params["problem_selector"], entity_selector=params["entity_selector"],
                                     time_from=params["time_from"], time_to=params["time_to"], fields=params["fields"],
                                     page_size=params["page_size"])
    problems = [service.normalize(raw) for raw in raws]
    result = {"problems": problems, "count": len(problems), "requests": service.list_requests}
    if params["query"]:
        try:
            result["query_result"] = jmespath.search(params["query"], problems)
        except jmespath.exceptions.JMESPathError as error:
            module.fail_json(msg="query is not a valid JMESPath expression: %s" % error)
    if params["return_raw"]:
        result["raw"] = raws
    return result


def main():
    spec = _options.argument_spec(
        "dynatrace",
        problem_id=dict(type="str"),
        problem_selector=dict(type="str"),
        entity_selector=dict(type="str"),
        time_from=dict(type="str"),
        time_to=dict(type="str"),
        fields=dict(type="list", elements="str", default=[], choices=["evidenceDetails", "impactAnalysis", "recentComments"]),
        page_size=dict(type="int", default=500),
        query=dict(type="str"),
        return_raw=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    _options.require_requests(module)
    if module.params["query"] and not HAS_JMESPATH:
        module.fail_json(msg=missing_required_lib("jmespath"), exception=JMESPATH_IMPORT_ERROR)
    if not 1 <= module.params["page_size"] <= dynatrace.MAX_PAGE_SIZE:
        module.fail_json(msg="page_size must be between 1 and %d" % dynatrace.MAX_PAGE_SIZE)
    try:
        client = dynatrace.client_from_params(module.params, log=module.warn)
        result = run(module, dynatrace.DynatraceService(client, module.params["url"]))
    except SelfHealError as error:
        module.fail_json(**error.to_fail_kwargs())
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
