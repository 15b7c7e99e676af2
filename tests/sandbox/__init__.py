"""The SaaS API sandbox: loopback stand-ins for Dynatrace, Jira, Slack, xMatters, PagerDuty, Keptn, ServiceNow and
Microsoft Graph, served by `python -m sandbox.server` (see README.md). `make venv` puts tests/ on the virtualenv's
import path, so tests, benchmarks and the demo import it as `sandbox` (for example `from sandbox import credentials`)."""
