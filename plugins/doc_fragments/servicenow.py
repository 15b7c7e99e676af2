# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """ServiceNow connection options (plugins/module_utils/_options.py SERVICENOW)."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - ServiceNow instance URL, for example V(https://example.service-now.com).
      - If not set, the value of the E(SERVICENOW_URL) environment variable is used, else E(SN_HOST)
        (the variable the certified C(servicenow.itsm) collection reads).
    type: str
    required: true
  user:
    description:
      - User name for Basic authentication (with O(password)), or for the OAuth password grant (with
        O(client_id) and O(client_secret)).
      - If not set, the value of the E(SERVICENOW_USER) environment variable is used, else E(SN_USERNAME).
    type: str
  password:
    description:
      - Password of O(user).
      - If not set, the value of the E(SERVICENOW_PASSWORD) environment variable is used, else E(SN_PASSWORD).
    type: str
  token:
    description:
      - An OAuth access token, sent as a Bearer token; takes precedence over the other credentials.
      - If not set, the value of the E(SERVICENOW_TOKEN) environment variable is used, else E(SN_ACCESS_TOKEN).
    type: str
  client_id:
    description:
      - Client id of an OAuth application registry entry (System OAuth > Application Registry). With
        O(client_secret), the module fetches a token from the instance's C(/oauth_token.do) (password grant
        when O(user) and O(password) are set, else client credentials) and uses it as a Bearer token.
      - If not set, the value of the E(SERVICENOW_CLIENT_ID) environment variable is used, else E(SN_CLIENT_ID).
    type: str
  client_secret:
    description:
      - Client secret of O(client_id).
      - If not set, the value of the E(SERVICENOW_CLIENT_SECRET) environment variable is used, else E(SN_SECRET_ID).
    type: str
notes:
  - Credentials are used in this order - O(token); O(client_id) and O(client_secret) (OAuth); O(user) and
    O(password) (Basic). One of them is required.
"""
