# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """Keptn v1 API connection options (plugins/module_utils/_options.py KEPTN)."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Keptn API gateway URL, for example V(https://keptn.example.com) (the C(/api) prefix is appended).
      - If not set, the value of the E(KEPTN_URL) environment variable is used.
    type: str
    required: true
  api_token:
    description:
      - Keptn API token (the C(keptn-api-token) secret), sent in the C(x-token) header.
      - If not set, the value of the E(KEPTN_API_TOKEN) environment variable is used.
    type: str
    required: true
"""
