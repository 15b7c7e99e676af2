# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """Slack Web API connection options (plugins/module_utils/_options.py SLACK)."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Slack Web API base URL.
      - If not set, the value of the E(SLACK_API_URL) environment variable is used.
    type: str
    default: https://slack.com/api
  token:
    description:
      - Bot token (C(xoxb-...)), sent as a Bearer token.
      - If not set, the value of the E(SLACK_TOKEN) environment variable is used.
    type: str
    required: true
"""
