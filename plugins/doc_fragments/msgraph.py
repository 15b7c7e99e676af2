# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """Microsoft Graph (Teams) and Bot Framework connection options (plugins/module_utils/_options.py MSGRAPH)."""

    DOCUMENTATION = r"""
options:
  tenant_id:
    description:
      - Microsoft Entra tenant id (a GUID) or verified domain of the app registration.
      - If not set, the value of the E(MSGRAPH_TENANT_ID) environment variable is used, else E(AZURE_TENANT_ID).
    type: str
  client_id:
    description:
      - Application (client) id of the app registration. Tokens come from the Microsoft identity platform with
        the OAuth 2.0 client credentials grant (scope C(https://graph.microsoft.com/.default) for Graph and
        C(https://api.botframework.com/.default) for the Bot Framework connector).
      - If not set, the value of the E(MSGRAPH_CLIENT_ID) environment variable is used, else E(AZURE_CLIENT_ID).
    type: str
  client_secret:
    description:
      - Client secret of the app registration.
      - If not set, the value of the E(MSGRAPH_CLIENT_SECRET) environment variable is used, else E(AZURE_CLIENT_SECRET).
    type: str
  token:
    description:
      - A ready Graph access token (for example a delegated token of a service account), used instead of the
        client credentials for Graph calls.
      - If not set, the value of the E(MSGRAPH_TOKEN) environment variable is used.
    type: str
  graph_url:
    description:
      - Microsoft Graph base URL with its version (national clouds have their own, for example
        V(https://graph.microsoft.us/v1.0)).
      - If not set, the value of the E(MSGRAPH_URL) environment variable is used.
    type: str
    default: https://graph.microsoft.com/v1.0
  login_url:
    description:
      - Microsoft identity platform authority host; the token endpoint is C(<login_url>/<tenant_id>/oauth2/v2.0/token).
      - If not set, the value of the E(MSGRAPH_LOGIN_URL) environment variable is used.
    type: str
    default: https://login.microsoftonline.com
  bot_url:
    description:
      - Bot Framework connector service URL for Microsoft Teams, used to post messages as the app's bot.
      - If not set, the value of the E(MSGRAPH_BOT_URL) environment variable is used.
    type: str
    default: https://smba.trafficmanager.net/teams
notes:
  - Either O(token), or O(tenant_id), O(client_id) and O(client_secret) are required.
"""
