# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options, defined once per service. Private to the selfheal.devops collection.

Each dict generates a module's argument spec (with environment fallbacks and no_log on secrets) and
matches the doc fragment of the same name in plugins/doc_fragments/; client_from_params() turns the
validated parameters into the one transport client. The event sources reuse the same names.
"""

from ansible.module_utils.basic import env_fallback

from ansible_collections.selfheal.devops.plugins.module_utils import _http

# Options every API module shares (doc fragment: selfheal.devops.connection).
CONNECTION = dict(
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["SELFHEAL_VALIDATE_CERTS"])),
    ca_path=dict(type="path", fallback=(env_fallback, ["SELFHEAL_CA_PATH"])),
    timeout=dict(type="float", default=30.0),
    max_retries=dict(type="int", default=4),
    max_retry_wait=dict(type="float", default=60.0),
)

DYNATRACE = dict(
    url=dict(type="str", required=True, fallback=(env_fallback, ["DYNATRACE_URL"])),
    api_token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["DYNATRACE_API_TOKEN"])),
)

JIRA = dict(
    url=dict(type="str", required=True, fallback=(env_fallback, ["JIRA_URL"])),
    user=dict(type="str", fallback=(env_fallback, ["JIRA_USER"])),
    token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["JIRA_TOKEN"])),
    api_version=dict(type="str", default="3", choices=["2", "3"], fallback=(env_fallback, ["JIRA_API_VERSION"])),
)

SLACK = dict(
    url=dict(type="str", default="https://slack.com/api", fallback=(env_fallback, ["SLACK_API_URL"])),
    token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["SLACK_TOKEN"])),
)

ONCALL = dict(
    xmatters_url=dict(type="str", fallback=(env_fallback, ["XMATTERS_URL"])),
    xmatters_user=dict(type="str", fallback=(env_fallback, ["XMATTERS_USER"])),
    xmatters_password=dict(type="str", no_log=True, fallback=(env_fallback, ["XMATTERS_PASSWORD"])),
    # The inbound integration's URL can carry its credential (?apiKey=...): treated as a secret.
    xmatters_trigger_url=dict(type="str", no_log=True, fallback=(env_fallback, ["XMATTERS_TRIGGER_URL"])),
    pagerduty_url=dict(type="str", default="https://events.pagerduty.com",
                       fallback=(env_fallback, ["PAGERDUTY_EVENTS_URL"])),
    routing_key=dict(type="str", no_log=True, fallback=(env_fallback, ["PAGERDUTY_ROUTING_KEY"])),
)

KEPTN = dict(
    url=dict(type="str", required=True, fallback=(env_fallback, ["KEPTN_URL"])),
    api_token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["KEPTN_API_TOKEN"])),
)

# ServiceNow: the instance URL, then Basic (user + password), a ready OAuth bearer token, or an OAuth token
# fetched from the instance's /oauth_token.do (client_id + client_secret, with user + password: password grant).
# The SN_* names are those of the certified servicenow.itsm collection, so one environment serves both.
SERVICENOW = dict(
    url=dict(type="str", required=True, fallback=(env_fallback, ["SERVICENOW_URL", "SN_HOST"])),
    user=dict(type="str", fallback=(env_fallback, ["SERVICENOW_USER", "SN_USERNAME"])),
    password=dict(type="str", no_log=True, fallback=(env_fallback, ["SERVICENOW_PASSWORD", "SN_PASSWORD"])),
    token=dict(type="str", no_log=True, fallback=(env_fallback, ["SERVICENOW_TOKEN", "SN_ACCESS_TOKEN"])),
    client_id=dict(type="str", fallback=(env_fallback, ["SERVICENOW_CLIENT_ID", "SN_CLIENT_ID"])),
    client_secret=dict(type="str", no_log=True, fallback=(env_fallback, ["SERVICENOW_CLIENT_SECRET", "SN_SECRET_ID"])),
)

# Microsoft Graph v1.0 (Teams) and the Bot Framework connector: an app registration's client credentials
# (tenant_id + client_id + client_secret, tokens from the Microsoft identity platform), or a ready token.
MSGRAPH = dict(
    tenant_id=dict(type="str", fallback=(env_fallback, ["MSGRAPH_TENANT_ID", "AZURE_TENANT_ID"])),
    client_id=dict(type="str", fallback=(env_fallback, ["MSGRAPH_CLIENT_ID", "AZURE_CLIENT_ID"])),
    client_secret=dict(type="str", no_log=True, fallback=(env_fallback, ["MSGRAPH_CLIENT_SECRET", "AZURE_CLIENT_SECRET"])),
    token=dict(type="str", no_log=True, fallback=(env_fallback, ["MSGRAPH_TOKEN"])),
    graph_url=dict(type="str", default="https://graph.microsoft.com/v1.0", fallback=(env_fallback, ["MSGRAPH_URL"])),
    login_url=dict(type="str", default="https://login.microsoftonline.com", fallback=(env_fallback, ["MSGRAPH_LOGIN_URL"])),
    bot_url=dict(type="str", default="https://smba.trafficmanager.net/teams", fallback=(env_fallback, ["MSGRAPH_BOT_URL"])),
)

SERVICES = dict(dynatrace=DYNATRACE, jira=JIRA, slack=SLACK, oncall=ONCALL, keptn=KEPTN)
SERVICES.update(servicenow=SERVICENOW, msgraph=MSGRAPH)


def argument_spec(service_options_of, **module_options):
    """The full argument spec of a module: its service's connection options plus its own.

    service_options_of names the service ("dynatrace", "jira", ...); it has an unusual name so that it cannot
    collide with a module option such as keptn_rollback's `service`.
    """
    spec = {}
    spec.update(SERVICES[service_options_of])
    spec.update(CONNECTION)
    spec.update(module_options)
    return spec


def retry_policy(params, default_retry_after=None):
    return _http.RetryPolicy(max_attempts=params["max_retries"] + 1, max_wait=params["max_retry_wait"],
                             default_retry_after=default_retry_after)


def client_kwargs(params, log=None):
    """Transport keyword arguments shared by every service, from validated module parameters."""
    return dict(timeout=params["timeout"], validate_certs=params["validate_certs"], ca_path=params["ca_path"],
                log=log)


def require_requests(module):
    """Fail the module cleanly when the requests library is missing on the host that runs it."""
    if not _http.HAS_REQUESTS:
        from ansible.module_utils.basic import missing_required_lib

        module.fail_json(msg=missing_required_lib("requests"), exception=str(_http.REQUESTS_IMPORT_ERROR))
