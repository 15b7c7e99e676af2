# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """Dynatrace API v2 connection options (plugins/module_utils/_options.py DYNATRACE)."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Dynatrace environment URL, for example V(https://abc12345.live.dynatrace.com) (SaaS) or
        V(https://dynatrace.example.com/e/ENVIRONMENT-ID) (Managed). C(/api/v2) is appended.
      - If not set, the value of the E(DYNATRACE_URL) environment variable is used.
    type: str
    required: true
  api_token:
    description:
      - API token, sent as C(Authorization Api-Token ...).
      - Scopes needed are C(problems.read), C(problems.write) and C(events.ingest).
      - If not set, the value of the E(DYNATRACE_API_TOKEN) environment variable is used.
    type: str
    required: true
"""
