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
KEPTN_PREFIX = "/keptn"                  # gateway: /keptn/api/v1/..., /keptn/api/controlPlane/..., ...


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
        "XMATTERS_URL": base_url + XMATTERS_PREFIX,
        "XMATTERS_USER": XMATTERS_USER,
        "XMATTERS_PASSWORD": XMATTERS_PASSWORD,
        "XMATTERS_TRIGGER_URL": "%s%s/api/integration/1/functions/%s/triggers" % (
            base_url, XMATTERS_PREFIX, XMATTERS_TRIGGER_ID),
        "PAGERDUTY_EVENTS_URL": base_url + PAGERDUTY_PREFIX,
        "PAGERDUTY_ROUTING_KEY": PAGERDUTY_ROUTING_KEY,
        "KEPTN_URL": base_url + KEPTN_PREFIX,
        "KEPTN_API_TOKEN": KEPTN_TOKEN,
    }


SECRETS = (DYNATRACE_TOKEN, JIRA_TOKEN, JIRA_PAT, SLACK_TOKEN, XMATTERS_PASSWORD, PAGERDUTY_ROUTING_KEY, KEPTN_TOKEN)
