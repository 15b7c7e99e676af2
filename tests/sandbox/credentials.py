"""Credentials the sandbox accepts, and where each service is mounted (shared by the tests and the demo).

These are test values for a loopback simulator; the tests also assert that none of them ever shows up
in module output, warnings or errors.
"""

# Dynatrace: prefix.public(24).secret(64), like a real dt0c01 token.
DYNATRACE_TOKEN = "dt0c01.SANDBOXPUBLIC0000000000000." + "S" * 64
DYNATRACE_PREFIX = "/dynatrace"          # environment URL = base + prefix; API under /api/v2

JIRA_USER = "automation@example.com"
JIRA_TOKEN = "ATATT3xSandboxJiraApiToken0001"   # Cloud: Basic user:token
JIRA_PAT = "NjM0SandboxJiraDataCenterPAT0001"   # Data Center: Bearer PAT
JIRA_PREFIX = "/jira"                    # Jira Cloud: /rest/api/3 and /rest/api/2, /rest/servicedeskapi
JIRA_DC_PREFIX = "/jira-dc"              # Jira Data Center: /rest/api/2 only, /search with startAt/total

SLACK_TOKEN = "xoxb-000000000001-000000000002-SandboxSlackBotToken"
SLACK_PREFIX = "/slack/api"              # method URLs: base + /slack/api/chat.postMessage

XMATTERS_USER = "selfheal-automation"
XMATTERS_PASSWORD = "xm-sandbox-password-0001"
XMATTERS_PREFIX = "/xmatters"            # REST: /xmatters/api/xm/1; trigger: .../api/integration/1/functions/{id}/triggers
XMATTERS_TRIGGER_ID = "4c1b3a3e-5d6f-4a7b-8c9d-0e1f2a3b4c5d"

PAGERDUTY_ROUTING_KEY = "R0UT1NGK3Y5ANDB0X000000000000001"   # 32 characters
PAGERDUTY_PREFIX = "/pagerduty"          # Events v2: /pagerduty/v2/enqueue

KEPTN_TOKEN = "keptn-sandbox-api-token-0001"

# Inbound: what the sandbox signs Slack's requests with, and the token of its xMatters response callbacks.
SLACK_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ONCALL_CALLBACK_TOKEN = "oncall-callback-sandbox-token-0001"
KEPTN_PREFIX = "/keptn"                  # gateway: /keptn/api/v1/..., /keptn/api/controlPlane/..., ...


# ServiceNow: Basic user:password (itil), a user without roles, and an OAuth application registry entry.
SERVICENOW_USER = "selfheal.integration"
SERVICENOW_PASSWORD = "sn-sandbox-password-0001"
SERVICENOW_NOROLE_USER = "no.role"
SERVICENOW_NOROLE_PASSWORD = "sn-sandbox-norole-0001"
SERVICENOW_ACCOUNTS = {SERVICENOW_USER: SERVICENOW_PASSWORD, SERVICENOW_NOROLE_USER: SERVICENOW_NOROLE_PASSWORD}
SERVICENOW_CLIENT_ID = "5c2e8f0a9b7d4e1f8a6b3c2d1e0f9a8b"
SERVICENOW_CLIENT_SECRET = "sn-sandbox-oauth-client-secret-0001"
SERVICENOW_PREFIX = "/servicenow"        # instance URL = base + prefix; /api/now/..., /oauth_token.do

# Microsoft Graph / Teams: one tenant, one app registration (also the Azure Bot), a delegated user token.
MSGRAPH_TENANT_ID = "5f1c0b1e-7d3a-4c2b-9e8f-0a1b2c3d4e5f"
MSGRAPH_CLIENT_ID = "9d2a7c1e-3b4f-4a5d-8c6e-7f8091a2b3c4"
MSGRAPH_CLIENT_SECRET = "Sbx8Q~SandboxGraphClientSecret.0001"
MSGRAPH_DELEGATED_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SandboxDelegatedToken0001"
MSGRAPH_LOGIN_PREFIX = "/msidentity"     # token endpoint: base + prefix + /{tenant}/oauth2/v2.0/token
MSGRAPH_PREFIX = "/msgraph"              # Graph: base + prefix + /v1.0/...
MSGRAPH_BOT_PREFIX = "/botframework"     # Bot Framework connector (serviceUrl): base + prefix + /v3/conversations


def environment(base_url):
    """Environment variables that point every module's env fallbacks at a sandbox running at base_url."""
    return {
        "DYNATRACE_URL": base_url + DYNATRACE_PREFIX,
        "DYNATRACE_API_TOKEN": DYNATRACE_TOKEN,
        "JIRA_URL": base_url + JIRA_PREFIX,
        "JIRA_USER": JIRA_USER,
        "JIRA_TOKEN": JIRA_TOKEN,
        "SLACK_API_URL": base_url + SLACK_PREFIX,
        "SLACK_TOKEN": SLACK_TOKEN,
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "ONCALL_CALLBACK_TOKEN": ONCALL_CALLBACK_TOKEN,
        "XMATTERS_URL": base_url + XMATTERS_PREFIX,
        "XMATTERS_USER": XMATTERS_USER,
        "XMATTERS_PASSWORD": XMATTERS_PASSWORD,
        "XMATTERS_TRIGGER_URL": "%s%s/api/integration/1/functions/%s/triggers" % (
            base_url, XMATTERS_PREFIX, XMATTERS_TRIGGER_ID),
        "PAGERDUTY_EVENTS_URL": base_url + PAGERDUTY_PREFIX,
        "PAGERDUTY_ROUTING_KEY": PAGERDUTY_ROUTING_KEY,
        "KEPTN_URL": base_url + KEPTN_PREFIX,
        "KEPTN_API_TOKEN": KEPTN_TOKEN,
        "SERVICENOW_URL": base_url + SERVICENOW_PREFIX,
        "SERVICENOW_USER": SERVICENOW_USER,
        "SERVICENOW_PASSWORD": SERVICENOW_PASSWORD,
        "MSGRAPH_TENANT_ID": MSGRAPH_TENANT_ID,
        "MSGRAPH_CLIENT_ID": MSGRAPH_CLIENT_ID,
        "MSGRAPH_CLIENT_SECRET": MSGRAPH_CLIENT_SECRET,
        "MSGRAPH_URL": base_url + MSGRAPH_PREFIX + "/v1.0",
        "MSGRAPH_LOGIN_URL": base_url + MSGRAPH_LOGIN_PREFIX,
        "MSGRAPH_BOT_URL": base_url + MSGRAPH_BOT_PREFIX,
    }


SECRETS = (DYNATRACE_TOKEN, JIRA_TOKEN, JIRA_PAT, SLACK_TOKEN, XMATTERS_PASSWORD, PAGERDUTY_ROUTING_KEY, KEPTN_TOKEN)
SECRETS += (SLACK_SIGNING_SECRET, ONCALL_CALLBACK_TOKEN)
SECRETS += (SERVICENOW_PASSWORD, SERVICENOW_NOROLE_PASSWORD, SERVICENOW_CLIENT_SECRET, MSGRAPH_CLIENT_SECRET,
            MSGRAPH_DELEGATED_TOKEN)
