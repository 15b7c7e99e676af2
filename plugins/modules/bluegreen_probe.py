#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: bluegreen_probe
short_description: Probe a URL several times in a row and check the status and the colour that answers
version_added: 0.1.0
description:
  - Sends O(count) consecutive GET requests to O(url), O(interval) seconds apart, each on a fresh connection.
    The probe passes only when every one of them answers with a status in O(status) and, when O(expect) is
    set, reports that value (read from the JSON body key O(json_key) or the response header O(header)).
  - With O(wait_timeout), it first waits (polling every O(poll_interval) seconds) for one passing answer,
    then runs the O(count) consecutive requests. This measures how long a router takes to serve a new colour.
  - Used by the C(selfheal.devops.bluegreen_switch) role for the health checks of a colour before a switch
    and for the post-check through the router after it. One module run does all the requests, so a health
    check of N requests costs one task, not N.
  - Only reads; it behaves the same in check mode.
extends_documentation_fragment:
  - selfheal.devops.attributes
  - selfheal.devops.attributes.INFO_MODULE
options:
  url:
    description: C(http://) or C(https://) URL to request.
    type: str
    required: true
  count:
    description: Consecutive requests that must all pass.
    type: int
    default: 1
  interval:
    description: Seconds between two of the O(count) requests.
    type: float
    default: 0
  timeout:
    description: Seconds allowed for one request.
    type: float
    default: 2
  status:
    description: HTTP statuses that pass.
    type: list
    elements: int
    default: [200]
  expect:
    description: Value the answer must report (for example the colour V(green)). Empty means any value.
    type: str
    default: ""
  json_key:
    description: Key of the JSON body that holds the reported value.
    type: str
    default: colour
  header:
    description: Response header that holds the reported value; when set it is used instead of O(json_key).
    type: str
    default: ""
  wait_timeout:
    description:
      - Seconds to wait for a first passing answer before the O(count) consecutive requests.
        V(0) does not wait (the first request counts as one of the O(count)).
    type: float
    default: 0
  poll_interval:
    description: Seconds between two requests while waiting (O(wait_timeout)).
    type: float
    default: 0.05
  must_pass:
    description:
      - Fail the task when the probe does not pass. With V(false) the result says RV(passed=false) and the
        caller decides (the role does, to revert and to report clearly).
    type: bool
    default: true
  validate_certs:
    description: Verify TLS certificates for C(https://) URLs.
    type: bool
    default: true
seealso:
  - module: ansible.builtin.uri
author:
  - selfheal.devops contributors (@selfheal-devops)
"""

EXAMPLES = r"""
- name: Green must be healthy three times in a row, half a second apart
  selfheal.devops.bluegreen_probe:
    url: http://10.0.0.12:8080/health
    count: 3
    interval: 0.5

- name: Wait up to 10 s for the router to serve green, then 5 answers in a row from green
  selfheal.devops.bluegreen_probe:
    url: http://127.0.0.1/
    expect: green
    json_key: colour
    wait_timeout: 10
    count: 5
    must_pass: false
  register: post_check
"""

RETURN = r"""
passed:
  description: Whether all O(count) consecutive requests passed (after the wait, if any).
  returned: always
  type: bool
  sample: true
results:
  description: The O(count) consecutive requests (fewer if one failed to pass after a wait timed out).
  returned: always
  type: list
  elements: dict
  sample: [{status: 200, value: green, seconds: 0.003, passed: true}]
  contains:
    status:
      description: HTTP status, or V(-1) when no answer came (then see RV(results[].error)).
      type: int
    value:
      description: The reported value (JSON key or header), or null.
      type: str
    seconds:
      description: Duration of the request.
      type: float
    passed:
      description: Whether this request passed.
      type: bool
    error:
      description: The socket or protocol error, when there was no answer.
      type: str
waited:
  description: Seconds until the first passing answer (only with O(wait_timeout)); null if none came in time.
  returned: always
  type: float
  sample: 0.142
first_pass_at:
  description: Epoch time (seconds, on the managed host) of the first passing answer; null if none.
  returned: always
  type: float
  sample: 1795303502.125
started_at:
  description: Epoch time (seconds, on the managed host) when the probe started.
  returned: always
  type: float
  sample: 1795303501.983
wait_requests:
  description: Requests sent while waiting.
  returned: always
  type: int
  sample: 3
"""

import json
import ssl
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.parse import urlsplit


class Prober(object):
    """Sends the requests; `clock` and `sleep` are injectable for tests."""

    def __init__(self, params, clock=time.time, sleep=time.sleep):
        self.params = params
        self.clock = clock
        self.sleep = sleep
        parts = urlsplit(params["url"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host, got %r" % params["url"])
        self.parts = parts
        self.path = (parts.path or "/") + ("?" + parts.query if parts.query else "")

    def _connection(self):
        timeout = self.params["timeout"]
        if self.parts.scheme == "https":
            context = ssl.create_default_context()
            if not self.params["validate_certs"]:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return http_client.HTTPSConnection(self.parts.hostname, self.parts.port or 443, timeout=timeout, context=context)
        return http_client.HTTPConnection(self.parts.hostname, self.parts.port or 80, timeout=timeout)

    def value_of(self, body, headers):
        if self.params["header"]:
            return headers.get(self.params["header"].lower())
        try:
            data = json.loads(to_text(body, errors="surrogate_or_replace"))
        except ValueError:
            return None
        value = data.get(self.params["json_key"]) if isinstance(data, dict) else None
        return None if value is None else to_text(value)

    def request(self):
        started = self.clock()
        conn = self._connection()
        try:
            conn.request("GET", self.path, headers={"Connection": "close", "User-Agent": "selfheal.devops.bluegreen_probe"})
            response = conn.getresponse()
            body = response.read()
            headers = dict((k.lower(), v) for k, v in response.getheaders())
            status, value, error = response.status, self.value_of(body, headers), None
        except (OSError, http_client.HTTPException) as exc:
            status, value, error = -1, None, "%s: %s" % (type(exc).__name__, exc)
        finally:
            conn.close()
        expect = self.params["expect"]
        passed = status in self.params["status"] and (not expect or value == expect)
        entry = {"status": status, "value": value, "seconds": round(self.clock() - started, 4), "passed": passed}
        if error:
            entry["error"] = error
        return entry, self.clock()

    def run(self):
        started_at = self.clock()
        result = {"started_at": started_at, "waited": None, "first_pass_at": None, "wait_requests": 0, "results": []}
        if self.params["wait_timeout"] > 0:
            deadline = started_at + self.params["wait_timeout"]
            while True:
                entry, now = self.request()
                result["wait_requests"] += 1
                if entry["passed"]:
                    result["first_pass_at"] = now
                    result["waited"] = round(now - started_at, 4)
                    break
                if now >= deadline:
                    result["results"] = [entry]
                    result["passed"] = False
                    return result
                self.sleep(min(self.params["poll_interval"], max(0.0, deadline - now)))
        for index in range(self.params["count"]):
            if index:
                self.sleep(self.params["interval"])
            entry, now = self.request()
            result["results"].append(entry)
            if entry["passed"] and result["first_pass_at"] is None:
                result["first_pass_at"] = now
        result["passed"] = all(entry["passed"] for entry in result["results"])
        return result


def describe_failure(params, result):
    failed = [entry for entry in result["results"] if not entry["passed"]]
    seen = ", ".join(
        entry.get("error") or "HTTP %s%s" % (entry["status"], " from %s" % entry["value"] if entry["value"] is not None else "")
        for entry in failed[:5])
    if params["wait_timeout"] > 0 and result["first_pass_at"] is None:
        return "%s: no passing answer within %.1f s (%d requests; last: %s)" % (params["url"], params["wait_timeout"], result["wait_requests"], seen)
    return "%s: %d of %d requests did not pass (%s)" % (params["url"], len(failed), len(result["results"]), seen)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            count=dict(type="int", default=1),
            interval=dict(type="float", default=0),
            timeout=dict(type="float", default=2),
            status=dict(type="list", elements="int", default=[200]),
            expect=dict(type="str", default=""),
            json_key=dict(type="str", default="colour", no_log=False),
            header=dict(type="str", default=""),
            wait_timeout=dict(type="float", default=0),
            poll_interval=dict(type="float", default=0.05),
            must_pass=dict(type="bool", default=True, no_log=False),
            validate_certs=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["count"] < 1 or params["count"] > 1000:
        module.fail_json(msg="count must be between 1 and 1000, got %d" % params["count"])
    for name in ("interval", "timeout", "wait_timeout", "poll_interval"):
        if params[name] < 0:
            module.fail_json(msg="%s must not be negative" % name)
    try:
        result = Prober(params).run()
    except ValueError as error:
        module.fail_json(msg=str(error))
    if result["passed"]:
        result["msg"] = "%s: %d of %d requests passed" % (params["url"], len(result["results"]), params["count"])
    else:
        result["msg"] = describe_failure(params, result)
        if params["must_pass"]:
            module.fail_json(**result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
