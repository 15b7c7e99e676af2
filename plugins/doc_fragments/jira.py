# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """Jira connection options (plugins/module_utils/_options.py JIRA)."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Jira base URL, for example V(https://example.atlassian.net) or V(https://jira.example.com).
      - If not set, the value of the E(JIRA_URL) environment variable is used.
    type: str
    required: true
  user:
    description:
      - Account e-mail for Jira Cloud basic authentication with an API token.
      - Leave unset to send O(token) as a Bearer personal access token (Jira Data Center).
      - If not set, the value of the E(JIRA_USER) environment variable is used.
    type: str
  token:
    description:
      - Jira Cloud API token (with O(user)) or Data Center personal access token.
      - If not set, the value of the E(JIRA_TOKEN) environment variable is used.
    type: str
    required: true
  api_version:
    description:
      - REST API version. V(3) (Jira Cloud) sends rich text as Atlassian Document Format;
        V(2) (Jira Cloud or Data Center) sends wiki markup.
      - If not set, the value of the E(JIRA_API_VERSION) environment variable is used.
    type: str
    choices: ['2', '3']
    default: '3'
"""
