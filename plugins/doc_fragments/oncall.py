# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """xMatters and PagerDuty connection options (plugins/module_utils/_options.py ONCALL)."""

    DOCUMENTATION = r"""
options:
  xmatters_url:
    description:
      - xMatters base URL, for example V(https://company.xmatters.com). C(/api/xm/1) is appended.
      - If not set, the value of the E(XMATTERS_URL) environment variable is used.
    type: str
  xmatters_user:
    description:
      - xMatters user name or API key, for basic authentication.
      - If not set, the value of the E(XMATTERS_USER) environment variable is used.
    type: str
  xmatters_password:
    description:
      - xMatters password or API key secret.
      - If not set, the value of the E(XMATTERS_PASSWORD) environment variable is used.
    type: str
  xmatters_trigger_url:
    description:
      - URL of the inbound integration (HTTP trigger) that creates events in the xMatters workflow.
      - It can carry the integration's credential (V(?apiKey=...)), so it is treated as a secret - it never appears
        in results, warnings or errors (nor in C(-vvv) output).
      - If not set, the value of the E(XMATTERS_TRIGGER_URL) environment variable is used.
    type: str
  pagerduty_url:
    description:
      - PagerDuty Events API v2 base URL.
      - If not set, the value of the E(PAGERDUTY_EVENTS_URL) environment variable is used.
    type: str
    default: https://events.pagerduty.com
  routing_key:
    description:
      - PagerDuty integration (routing) key; it travels in the request body.
      - If not set, the value of the E(PAGERDUTY_ROUTING_KEY) environment variable is used.
    type: str
"""
